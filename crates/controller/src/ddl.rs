//! DDL on the leader: parse (DolphinDB dialect, `shoal_catalog::ddl`), turn into a Raft command,
//! commit, and answer; SHOW statements read the committed catalog.

use std::collections::BTreeMap;
use std::time::Duration;

use shoal_catalog::ddl::{self, Statement};
use shoal_catalog::{DatabaseDef, KeepDuplicates, PartitionKey, PartitionScheme};
use shoal_common::clock::CATALOG_LEASE;
use shoal_common::version;
use shoal_proto::{DdlResponse, DdlRow};
use tonic::Status;

use crate::cluster_meta::ClusterMeta;
use crate::command::Command;
use crate::controller_service::{ControllerCore, now_ms};

/// How long a DROP waits after it commits before it answers: a data node's catalog lease plus
/// a margin for clock-rate differences between machines.
pub const DROP_FENCE: Duration = CATALOG_LEASE.saturating_add(Duration::from_secs(1));

/// A CREATE of a name dropped moments ago is refused (see `drop_holds`). Checked
/// after a read-index: a leader just elected may not have applied the DROP yet.
async fn refuse_recent_name(core: &ControllerCore, cmd: &Command) -> Result<(), Status> {
    let names = match cmd {
        Command::CreateDatabase { database } => vec![database.path.clone()],
        Command::CreateTable { db, table } => vec![db.clone(), format!("{db}.{}", table.name)],
        _ => return Ok(()),
    };
    core.read_index().await?;
    for name in &names {
        if let Some(wait) = core.reuse_wait(name) {
            return Err(Status::failed_precondition(format!(
                "`{name}` was dropped moments ago and data nodes may still route writes to it; \
                 create it again in {:.1} s",
                wait.as_secs_f64()
            )));
        }
    }
    Ok(())
}

pub async fn execute(core: &ControllerCore, sql: &str) -> Result<DdlResponse, Status> {
    core.ensure_leader()?;
    let stmt = ddl::parse(sql).map_err(|e| Status::invalid_argument(e.to_string()))?;
    let (cmd, done) = match stmt {
        Statement::CreateDatabase {
            path,
            scheme,
            engine,
        } => {
            let message = format!("created database {path}");
            let database = DatabaseDef {
                path,
                scheme,
                engine,
                tables: BTreeMap::new(),
            };
            (Command::CreateDatabase { database }, message)
        }
        Statement::CreateTable { db_path, table } => {
            if table.keep_duplicates != KeepDuplicates::All {
                core.read_index().await?;
                core.read(|m| {
                    require_cluster_version(
                        m,
                        version::KEEP_DUPLICATES_CLUSTER_VERSION,
                        &format!("keepDuplicates={}", table.keep_duplicates),
                    )
                })?;
            }
            let message = format!("created table {db_path}.{}", table.name);
            (Command::CreateTable { db: db_path, table }, message)
        }
        Statement::DropDatabase { path } => {
            let message = format!("dropped database {path}");
            let cmd = Command::DropDatabase {
                db: path,
                at_ms: now_ms(),
            };
            (cmd, message)
        }
        Statement::DropTable { db_path, table } => {
            let message = format!("dropped table {db_path}.{table}");
            let cmd = Command::DropTable {
                db: db_path,
                table,
                at_ms: now_ms(),
            };
            (cmd, message)
        }
        Statement::DropPartitions {
            db_path,
            table,
            keys,
        } => {
            core.read_index().await?;
            let message = core.read(|m| drop_partitions_message(m, &db_path, &table, &keys))?;
            let cmd = Command::DropPartitions {
                db: db_path,
                table,
                keys,
                at_ms: now_ms(),
            };
            (cmd, message)
        }
        Statement::ShowDatabases => {
            core.read_index().await?;
            return Ok(core.read(|m| show_databases(&m.catalog.databases)));
        }
        Statement::ShowTables { db_path } => {
            core.read_index().await?;
            return core.read(|m| show_tables(&m.catalog.databases, &db_path));
        }
        Statement::Query(q) => {
            return Err(Status::invalid_argument(format!(
                "not a DDL statement (CREATE/DROP DATABASE/TABLE, ALTER TABLE ... DROP \
                 PARTITION, SHOW DATABASES/TABLES): {q}"
            )));
        }
    };
    refuse_recent_name(core, &cmd).await?;
    let drops = cmd.drops_data();
    core.write(cmd).await?.into_result()?;
    if drops {
        // Until then a data node may still acknowledge a write by a catalog that holds the
        // dropped chunks; once the DROP has returned, none does (F9). Waiting longer (a pause
        // of this process) is only slower, never unsafe.
        tokio::time::sleep(DROP_FENCE).await;
    }
    Ok(DdlResponse {
        message: done,
        ..DdlResponse::default()
    })
}

/// Refuses `what` (a feature nodes of an older release would not know) while the cluster
/// runs below `needed`, i.e. until an upgrade is finalized. The cluster version never goes
/// down, so a check after a read-index holds when the command applies.
pub(crate) fn require_cluster_version(
    m: &ClusterMeta,
    needed: u32,
    what: &str,
) -> Result<(), Status> {
    if m.cluster_version < needed {
        return Err(Status::failed_precondition(format!(
            "{what} needs cluster version {needed} (this cluster runs at {}): finish the \
             upgrade with `shoal upgrade --finalize` first",
            m.cluster_version
        )));
    }
    Ok(())
}

/// Refuses DROP PARTITION before the cluster version allows it (a controller of the previous
/// release would not know the command); otherwise says which partitions held data.
fn drop_partitions_message(
    m: &ClusterMeta,
    db: &str,
    table: &str,
    keys: &[PartitionKey],
) -> Result<String, Status> {
    require_cluster_version(m, version::DROP_PARTITION_CLUSTER_VERSION, "DROP PARTITION")?;
    let (held, empty): (Vec<&PartitionKey>, Vec<&PartitionKey>) = keys
        .iter()
        .partition(|k| m.catalog.chunk_of(db, table, **k).is_some());
    let list = |ks: &[&PartitionKey]| {
        ks.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut message = format!(
        "dropped from {db}.{table}: {}",
        if held.is_empty() {
            "nothing".to_owned()
        } else {
            list(&held)
        }
    );
    if !empty.is_empty() {
        message += &format!("; no data in {}", list(&empty));
    }
    Ok(message)
}

fn table_response(columns: &[&str], rows: Vec<Vec<String>>) -> DdlResponse {
    DdlResponse {
        message: format!("{} rows", rows.len()),
        columns: columns.iter().map(|c| (*c).to_owned()).collect(),
        rows: rows.into_iter().map(|values| DdlRow { values }).collect(),
    }
}

fn show_databases(dbs: &BTreeMap<String, DatabaseDef>) -> DdlResponse {
    let rows = dbs
        .values()
        .map(|d| {
            let PartitionScheme::Value { initial, .. } = &d.scheme;
            let range = match (initial.first(), initial.last()) {
                (Some(a), Some(b)) => format!("VALUE({a}..{b}, {} initial)", initial.len()),
                _ => "VALUE".into(),
            };
            vec![
                d.path.clone(),
                range,
                d.engine.clone(),
                d.tables.len().to_string(),
            ]
        })
        .collect();
    table_response(&["database", "partitioning", "engine", "tables"], rows)
}

fn show_tables(dbs: &BTreeMap<String, DatabaseDef>, db: &str) -> Result<DdlResponse, Status> {
    let d = dbs
        .get(db)
        .ok_or_else(|| Status::not_found(format!("database `{db}` does not exist")))?;
    let rows = d
        .tables
        .values()
        .map(|t| {
            let columns: Vec<String> = t
                .columns
                .iter()
                .map(|c| format!("{} {}", c.name, c.ty))
                .collect();
            vec![
                t.name.clone(),
                columns.join(", "),
                t.partition_column.clone(),
                t.sort_columns.join(", "),
                t.keep_duplicates.to_string(),
            ]
        })
        .collect();
    Ok(table_response(
        &[
            "table",
            "columns",
            "partition column",
            "sort columns",
            "keep duplicates",
        ],
        rows,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_of_a_later_cluster_version_are_refused_naming_finalize() {
        let mut m = ClusterMeta {
            cluster_version: 1,
            ..ClusterMeta::default()
        };
        let needed = version::KEEP_DUPLICATES_CLUSTER_VERSION;
        let refused = require_cluster_version(&m, needed, "keepDuplicates=LAST").unwrap_err();
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
        assert!(
            refused
                .message()
                .starts_with("keepDuplicates=LAST needs cluster version 2")
                && refused.message().contains("`shoal upgrade --finalize`"),
            "{}",
            refused.message()
        );
        m.cluster_version = needed;
        assert!(require_cluster_version(&m, needed, "keepDuplicates=LAST").is_ok());
    }
}
