//! `shoal sql "..."`: DDL through the controller leader. Queries will go to the data nodes'
//! Flight SQL service once it exists; until then they are refused with that explanation.

use anyhow::bail;
use serde_json::json;
use shoal_catalog::ddl::{self, Statement};

use crate::cli::SqlArgs;
use crate::output;
use crate::target::Target;

pub async fn run(args: SqlArgs) -> anyhow::Result<()> {
    // Parse locally first: a malformed statement is reported without contacting the cluster.
    if let Statement::Query(_) = ddl::parse(&args.sql)? {
        bail!(
            "only DDL is supported so far (CREATE/DROP DATABASE/TABLE, SHOW DATABASES/TABLES); queries need the data nodes' SQL service, which is not built yet"
        );
    }
    let target = Target::resolve(&args.target)?;
    let resp = target.controllers.execute_ddl(&args.sql).await?;
    let rows: Vec<Vec<String>> = resp.rows.into_iter().map(|r| r.values).collect();
    if args.json {
        let v = if resp.columns.is_empty() {
            json!({ "message": resp.message })
        } else {
            let objects: Vec<serde_json::Map<String, serde_json::Value>> = rows
                .iter()
                .map(|r| {
                    resp.columns
                        .iter()
                        .cloned()
                        .zip(r.iter().map(|v| json!(v)))
                        .collect()
                })
                .collect();
            json!(objects)
        };
        println!("{}", output::json(&v)?);
    } else if resp.columns.is_empty() {
        println!("{}", resp.message);
    } else {
        let header: Vec<&str> = resp.columns.iter().map(String::as_str).collect();
        println!("{}", output::table(&header, rows));
    }
    Ok(())
}
