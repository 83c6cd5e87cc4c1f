//! DolphinDB-style DDL sent over Flight SQL (e.g. `s.run('CREATE DATABASE ...')` from Python):
//! run once, by the controller leader, when the statement is planned; the result travels in the
//! ticket itself, so fetching it (on any data node) never runs the statement again.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use shoal_catalog::ddl::{self, Statement};
use shoal_client::ClientError;
use shoal_client::controller::ControllerClient;
use shoal_common::users::Role;
use tonic::Status;

/// Marks a ticket that carries a DDL result (an Arrow IPC stream) instead of SQL.
pub const RESULT_TICKET_PREFIX: &[u8] = b"shoal-ddl-result\n";

/// The role a statement needs if it is DDL: SHOW reads (reader), the rest changes the catalog
/// (admin). `None`: not DDL, a query.
pub fn needed_role(sql: &str) -> Option<Role> {
    match ddl::parse(sql).ok()? {
        Statement::Query(_) => None,
        Statement::ShowDatabases | Statement::ShowTables { .. } => Some(Role::Reader),
        _ => Some(Role::Admin),
    }
}

/// Runs DDL on the controller leader; answers its result as a batch (SHOW's table, or one
/// `message` column) encoded for a ticket.
pub async fn run(
    controllers: &ControllerClient,
    sql: &str,
) -> Result<(Arc<Schema>, Vec<u8>), Status> {
    let batch = execute(controllers, sql).await?;
    Ok((batch.schema(), ticket(&batch)?))
}

/// Runs DDL on the controller leader: its result (SHOW's table, or one `message` column).
pub async fn execute(controllers: &ControllerClient, sql: &str) -> Result<RecordBatch, Status> {
    let resp = controllers.execute_ddl(sql).await.map_err(|e| match e {
        ClientError::Rpc { code, message, .. } => Status::new(code, message),
        e => Status::unavailable(e.to_string()),
    })?;
    let (names, rows): (Vec<String>, Vec<Vec<String>>) = if resp.columns.is_empty() {
        (vec!["message".into()], vec![vec![resp.message]])
    } else {
        (
            resp.columns,
            resp.rows.into_iter().map(|r| r.values).collect(),
        )
    };
    let schema = Arc::new(Schema::new(
        names
            .iter()
            .map(|n| Field::new(n, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let columns: Vec<ArrayRef> = (0..names.len())
        .map(|i| {
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.get(i).cloned()).collect::<Vec<_>>(),
            )) as ArrayRef
        })
        .collect();
    RecordBatch::try_new(schema, columns).map_err(|e| Status::internal(format!("DDL result: {e}")))
}

/// A ticket carrying `batch` (a result computed when the statement was planned: DDL, a
/// script), so fetching it, on any data node, never runs the statement again.
pub fn ticket(batch: &RecordBatch) -> Result<Vec<u8>, Status> {
    let mut ticket = RESULT_TICKET_PREFIX.to_vec();
    ticket.extend(
        shoal_catalog::rows::encode_ipc(&batch.schema(), std::slice::from_ref(batch))
            .map_err(|e| Status::internal(format!("result ticket: {e}")))?,
    );
    Ok(ticket)
}

/// The result a DDL ticket carries, if it is one.
pub fn result_of(ticket: &[u8]) -> Option<Result<RecordBatch, Status>> {
    let ipc = ticket.strip_prefix(RESULT_TICKET_PREFIX)?;
    Some(
        shoal_catalog::rows::decode_ipc(ipc)
            .map_err(|e| Status::invalid_argument(format!("bad DDL result ticket: {e}"))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddl_needs_admin_show_needs_reader_queries_are_not_ddl() {
        assert_eq!(
            needed_role(
                r#"CREATE DATABASE "dfs://x" PARTITIONED BY VALUE(2023.01.01..2023.01.02)"#
            ),
            Some(Role::Admin)
        );
        assert_eq!(needed_role(r#"DROP TABLE "dfs://x".t"#), Some(Role::Admin));
        assert_eq!(needed_role("SHOW DATABASES"), Some(Role::Reader));
        assert_eq!(needed_role("SELECT 1"), None);
    }
}
