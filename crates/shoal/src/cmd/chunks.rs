//! `shoal chunks`: every chunk's state, replicas, rows and replica checksums (the seed's
//! `getClusterChunksStatus`), read from `cluster.chunks` through a data node.

use crate::cli::ChunksArgs;
use crate::cmd::sql::{self, Format};
use crate::target::Target;

pub async fn run(args: ChunksArgs) -> anyhow::Result<()> {
    let target = Target::resolve(&args.target)?;
    // Quoted: `partition` and `rows` are SQL keywords.
    let mut query = String::from(
        r#"SELECT chunk_id, db, table_name, "partition", path, state, version, replicas, "rows", checksums FROM cluster.chunks"#,
    );
    if args.not_complete {
        query.push_str(" WHERE state <> 'COMPLETE'");
    }
    query.push_str(r#" ORDER BY db, table_name, "partition""#);
    let (schema, batches) = sql::query(&target, &query).await?;
    let format = if args.json {
        Format::Json
    } else {
        Format::Table
    };
    sql::print(&schema, &batches, format)
}
