//! Flight SQL bulk ingest (`CommandStatementIngest`, what ADBC's `adbc_ingest` sends): the
//! streamed batches of one DoPut become one append through the data node's coordinator.
//!
//! - Target: `schema` is the database path (`dfs://stock`) and `table` the table name; the
//!   catalog, if given, must be `shoal`. Without a schema, `table` may name both:
//!   `dfs://stock.stock` or `"dfs://stock".stock`.
//! - Only appends to existing tables: tables are created by DDL, so "create" and "replace"
//!   are refused (INVALID_ARGUMENT); ADBC's "create_append" appends to an existing table.
//! - Idempotency: the request headers `x-shoal-writer-id` and `x-shoal-seq` (decimal u64) are
//!   the append's `(writer_id, seq)`; a retry with the same pair is applied once. Without them
//!   the call gets a random writer id and seq 1: applied at most once per call, but a client
//!   retrying such a call may append twice.

use std::sync::Arc;

use arrow::compute::concat_batches;
use arrow::record_batch::RecordBatch;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::sql::{CommandStatementIngest, TableExistsOption, TableNotExistOption};
use futures::TryStreamExt;
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

/// Request header carrying the writer id of an idempotent ingest.
pub const WRITER_ID_HEADER: &str = "x-shoal-writer-id";
/// Request header carrying the sequence number of an idempotent ingest.
pub const SEQ_HEADER: &str = "x-shoal-seq";

/// The catalog name DataFusion gives Shoal's tables (`shoal."dfs://stock".stock`).
const CATALOG: &str = "shoal";

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Rows in the append.
    pub rows: u64,
    /// The `(writer_id, seq)` had been applied before: nothing was written this time.
    pub duplicate: bool,
}

/// Appends rows to a table; the data node provides it (over its coordinator). Errors keep
/// their gRPC codes: INVALID_ARGUMENT for rows that do not fit, NOT_FOUND for an unknown
/// table, UNAVAILABLE when the client should try another data node.
#[async_trait::async_trait]
pub trait Appender: Send + Sync {
    async fn append(
        &self,
        db: &str,
        table: &str,
        writer_id: u64,
        seq: u64,
        batch: RecordBatch,
    ) -> Result<AppendOutcome, Status>;
}

/// Runs one ingest; answers the number of rows appended (also for a duplicate, so a retry
/// reports what the first try did).
pub(crate) async fn ingest(
    appender: &Arc<dyn Appender>,
    cmd: CommandStatementIngest,
    request: Request<PeekableFlightDataStream>,
) -> Result<i64, Status> {
    check_mode(&cmd)?;
    let (db, table) = target(&cmd)?;
    let (writer_id, seq) = idempotency_key(request.metadata())?;
    let Some(batch) = collect(request).await? else {
        return Ok(0);
    };
    let outcome = appender.append(&db, &table, writer_id, seq, batch).await?;
    tracing::debug!(
        "ingest {db}.{table} writer {writer_id} seq {seq}: {} rows{}",
        outcome.rows,
        if outcome.duplicate {
            " (duplicate)"
        } else {
            ""
        }
    );
    i64::try_from(outcome.rows).map_err(|_| Status::internal("row count overflows i64"))
}

/// The batches a DoPut sent, as one (`None` if it sent none).
pub(crate) async fn collect(
    request: Request<PeekableFlightDataStream>,
) -> Result<Option<RecordBatch>, Status> {
    let stream = FlightRecordBatchStream::new_from_flight_data(
        request
            .into_inner()
            .map_err(|e| FlightError::Tonic(Box::new(e))),
    );
    let batches: Vec<RecordBatch> = stream.try_collect().await.map_err(|e| match e {
        FlightError::Tonic(s) => *s,
        e => Status::invalid_argument(format!("cannot decode the batches sent: {e}")),
    })?;
    let Some(first) = batches.first() else {
        return Ok(None);
    };
    concat_batches(first.schema_ref(), &batches)
        .map(Some)
        .map_err(|e| Status::invalid_argument(format!("the batches sent differ: {e}")))
}

fn check_mode(cmd: &CommandStatementIngest) -> Result<(), Status> {
    if cmd.temporary {
        return Err(Status::invalid_argument(
            "temporary tables are not supported: ingest appends to a table created by DDL",
        ));
    }
    if cmd.transaction_id.is_some() {
        return Err(Status::invalid_argument("transactions are not supported"));
    }
    let opts = cmd.table_definition_options.unwrap_or_default();
    let if_exists = TableExistsOption::try_from(opts.if_exists).ok();
    let if_not_exist = TableNotExistOption::try_from(opts.if_not_exist).ok();
    match if_exists {
        // ADBC's "append" (fail if missing) and "create_append" (the table must exist here).
        Some(TableExistsOption::Append) => Ok(()),
        // Options left unset: a plain append.
        Some(TableExistsOption::Unspecified)
            if matches!(if_not_exist, Some(TableNotExistOption::Unspecified)) =>
        {
            Ok(())
        }
        _ => Err(Status::invalid_argument(
            "only appends to an existing table are supported (ingest mode \"append\"); tables \
             are created by DDL (CREATE TABLE \"dfs://db\".t(...)), never by ingest",
        )),
    }
}

/// The `(database path, table)` an ingest names.
fn target(cmd: &CommandStatementIngest) -> Result<(String, String), Status> {
    if let Some(catalog) = cmd.catalog.as_deref().filter(|c| !c.is_empty())
        && catalog != CATALOG
    {
        return Err(Status::not_found(format!(
            "unknown catalog `{catalog}` (Shoal's is `{CATALOG}`; give the database path as \
             the schema: db_schema_name=\"dfs://db\")"
        )));
    }
    let table = unquote(&cmd.table);
    match cmd.schema.as_deref().filter(|s| !s.is_empty()) {
        Some(db) => Ok((unquote(db).to_owned(), table.to_owned())),
        None => {
            let Some((db, t)) = cmd.table.rsplit_once('.') else {
                return Err(Status::invalid_argument(format!(
                    "table `{}` names no database: give the database path as the schema \
                     (db_schema_name=\"dfs://db\") or the table as \"dfs://db\".table",
                    cmd.table
                )));
            };
            Ok((unquote(db).to_owned(), unquote(t).to_owned()))
        }
    }
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
}

/// `(writer_id, seq)` from the request headers, or a fresh writer id with seq 1.
fn idempotency_key(headers: &MetadataMap) -> Result<(u64, u64), Status> {
    let get = |name: &str| -> Result<Option<u64>, Status> {
        let Some(v) = headers.get(name) else {
            return Ok(None);
        };
        v.to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| Status::invalid_argument(format!("header {name} must be a decimal u64")))
    };
    match (get(WRITER_ID_HEADER)?, get(SEQ_HEADER)?) {
        (Some(w), Some(s)) => Ok((w, s)),
        (None, None) => Ok((rand::random(), 1)),
        _ => Err(Status::invalid_argument(format!(
            "headers {WRITER_ID_HEADER} and {SEQ_HEADER} go together: give both or neither"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_flight::sql::TableDefinitionOptions;

    fn cmd(catalog: Option<&str>, schema: Option<&str>, table: &str) -> CommandStatementIngest {
        CommandStatementIngest {
            table: table.into(),
            schema: schema.map(Into::into),
            catalog: catalog.map(Into::into),
            ..Default::default()
        }
    }

    fn mode(
        if_not_exist: TableNotExistOption,
        if_exists: TableExistsOption,
    ) -> CommandStatementIngest {
        CommandStatementIngest {
            table_definition_options: Some(TableDefinitionOptions {
                if_not_exist: if_not_exist as i32,
                if_exists: if_exists as i32,
            }),
            ..cmd(None, Some("dfs://stock"), "stock")
        }
    }

    #[test]
    fn the_target_is_schema_and_table_or_a_qualified_table() {
        let want = Ok(("dfs://stock".to_owned(), "stock".to_owned()));
        let got = |c| target(&c).map_err(|s| s.message().to_owned());
        assert_eq!(got(cmd(None, Some("dfs://stock"), "stock")), want);
        assert_eq!(
            got(cmd(Some("shoal"), Some("\"dfs://stock\""), "stock")),
            want
        );
        assert_eq!(got(cmd(Some(""), None, "dfs://stock.stock")), want);
        assert_eq!(got(cmd(None, None, "\"dfs://stock\".\"stock\"")), want);
        let e = target(&cmd(None, None, "stock")).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            target(&cmd(Some("other"), Some("dfs://stock"), "stock"))
                .unwrap_err()
                .code(),
            tonic::Code::NotFound
        );
    }

    #[test]
    fn only_appends_are_accepted() {
        use TableExistsOption as E;
        use TableNotExistOption as N;
        assert!(check_mode(&mode(N::Fail, E::Append)).is_ok()); // append
        assert!(check_mode(&mode(N::Create, E::Append)).is_ok()); // create_append
        assert!(check_mode(&cmd(None, Some("dfs://stock"), "stock")).is_ok()); // unset
        for (n, e) in [
            (N::Create, E::Fail),
            (N::Create, E::Replace),
            (N::Fail, E::Fail),
        ] {
            let err = check_mode(&mode(n, e)).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
            assert!(
                err.message().contains("created by DDL"),
                "{}",
                err.message()
            );
        }
        let temp = CommandStatementIngest {
            temporary: true,
            ..cmd(None, Some("dfs://stock"), "stock")
        };
        assert!(check_mode(&temp).is_err());
    }

    #[test]
    fn the_idempotency_key_comes_from_both_headers_or_is_fresh() {
        let mut h = MetadataMap::new();
        let (w1, s1) = idempotency_key(&h).unwrap();
        let (w2, _) = idempotency_key(&h).unwrap();
        assert_eq!(s1, 1);
        assert_ne!(w1, w2);
        h.insert(WRITER_ID_HEADER, "42".parse().unwrap());
        assert!(idempotency_key(&h).is_err());
        h.insert(SEQ_HEADER, "7".parse().unwrap());
        assert_eq!(idempotency_key(&h).unwrap(), (42, 7));
        h.insert(SEQ_HEADER, "-1".parse().unwrap());
        assert_eq!(
            idempotency_key(&h).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
