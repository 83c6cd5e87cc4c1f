//! `shoal chaos churn` (in the client namespace, for the hold of a `ddl-churn` nemesis): DDL
//! beside the workload, on names the checker never reads. Each round creates a database and a
//! table, appends rows on two dates (two chunks), drops one of those partitions, then the table
//! and the database: the catalog changes under the writers and data nodes create and delete
//! chunks while they append. The workload's own table is left alone: a partition of it dropped
//! would take acknowledged ids with it, and its chunks are what the final checks compare.
//!
//! Every round has fresh names (a dropped name is reusable only after 5 s). A round that fails
//! is logged and the next one starts: a refused DDL is no violation, and the checker judges the
//! workload's history only.

use std::time::Instant;

use anyhow::Context;
use shoal_client::data::DataClient;

use super::workload::{TABLE, create_db, create_table, rows};
use crate::cli::ChaosChurnArgs;
use crate::target::Target;

/// The churn's appends are the only ones to its databases; any writer id will do.
const WRITER: u64 = 1;
/// Rows per append.
const ROWS: u64 = 20;

pub async fn run(args: ChaosChurnArgs) -> anyhow::Result<()> {
    let target = Target::resolve(&args.target)?;
    let sites = target
        .nodes
        .as_ref()
        .context("the churn needs --dir (cluster.nodes)")?
        .datanodes()
        .map(|n| n.site.addr())
        .collect();
    let client = DataClient::new(sites, target.channels.clone());
    let end = Instant::now() + args.duration;
    let (mut done, mut failed) = (0u64, 0u64);
    for round in 1.. {
        if Instant::now() >= end {
            break;
        }
        match churn(&target, &client, round).await {
            Ok(()) => done += 1,
            Err(e) => {
                failed += 1;
                eprintln!("churn round {round}: {e:#}");
            }
        }
    }
    eprintln!("churn: {done} rounds done, {failed} failed");
    Ok(())
}

async fn churn(target: &Target, client: &DataClient, round: u64) -> anyhow::Result<()> {
    let db = format!("dfs://churn_{}_{round}", std::process::id());
    ddl(target, &create_db(&db)).await?;
    ddl(target, &create_table(&db)).await?;
    for day in 0..2u64 {
        let ids: Vec<u64> = (day * ROWS + 1..=(day + 1) * ROWS).collect();
        let batch = rows(WRITER, day + 1, &ids, i64::try_from(day)?)?;
        client
            .append(&db, TABLE, WRITER, day + 1, &batch)
            .await
            .with_context(|| format!("append to {db}"))?;
    }
    // Day 0 of `rows`.
    ddl(
        target,
        &format!(r#"ALTER TABLE "{db}".{TABLE} DROP PARTITION 2024.01.01"#),
    )
    .await?;
    ddl(target, &format!(r#"DROP TABLE "{db}".{TABLE}"#)).await?;
    ddl(target, &format!(r#"DROP DATABASE "{db}""#)).await
}

async fn ddl(target: &Target, sql: &str) -> anyhow::Result<()> {
    target
        .controllers
        .execute_ddl(sql)
        .await
        .with_context(|| sql.to_owned())?;
    Ok(())
}
