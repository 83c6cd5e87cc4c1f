//! `shoal sql "..."` (or `-f FILE`, `shoal script FILE`): DDL through the controller leader;
//! queries and DolphinDB scripts through a data node's Flight SQL service, trying the next
//! data node while one is unavailable.

use anyhow::{Context, bail};
use arrow::array::{Array, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::{Value, json};
use shoal_catalog::ddl::{self, Statement};
use shoal_proto::{NodeMode, NodeState};

use crate::cli::SqlArgs;
use crate::output;
use crate::target::Target;

/// How a query's result is printed.
#[derive(Clone, Copy)]
pub enum Format {
    Table,
    Json,
    Csv,
}

pub async fn run(args: SqlArgs) -> anyhow::Result<()> {
    let text = match (&args.sql, &args.file) {
        (Some(text), _) => text.clone(),
        (None, Some(file)) => {
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
        }
        (None, None) => bail!("give a statement, or --file FILE"),
    };
    let format = match (args.run.json, args.run.csv) {
        (true, _) => Format::Json,
        (_, true) => Format::Csv,
        _ => Format::Table,
    };
    if shoal_script::is_script(&text) {
        let target = Target::resolve(&args.run.target)?;
        let (schema, batches) = query(&target, &text).await?;
        return print_script_answer(&schema, &batches, format);
    }
    // Parse locally first: a malformed statement is reported without contacting the cluster.
    let statement = ddl::parse(&text)?;
    let target = Target::resolve(&args.run.target)?;
    if let Statement::Query(_) = statement {
        let (schema, batches) = query(&target, &text).await?;
        return print(&schema, &batches, format);
    }
    if args.run.csv {
        bail!("--csv is for queries; DDL prints a message or a small table");
    }
    let resp = target.controllers.execute_ddl(&text).await?;
    let rows: Vec<Vec<String>> = resp.rows.into_iter().map(|r| r.values).collect();
    if args.run.json {
        let v = if resp.columns.is_empty() {
            json!({ "message": resp.message })
        } else {
            let objects: Vec<serde_json::Map<String, Value>> = rows
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

/// Runs a query on the first data node that can answer it.
pub async fn query(target: &Target, sql: &str) -> anyhow::Result<(SchemaRef, Vec<RecordBatch>)> {
    let sites = data_node_sites(target).await?;
    let mut last = None;
    for addr in &sites {
        match shoal_query::query(target.channels.get(addr)?, sql).await {
            Ok(result) => return Ok(result),
            Err(s) if s.code() == tonic::Code::Unavailable => {
                last = Some(format!("{addr}: {}", s.message()));
            }
            Err(s) => bail!("{}", s.message()),
        }
    }
    bail!(
        "no data node could answer (tried {}); last error: {}",
        sites.join(", "),
        last.unwrap_or_default()
    )
}

/// Data node addresses: from cluster.nodes when the cluster directory is known, else from the
/// controllers' status, nodes that are UP first.
async fn data_node_sites(target: &Target) -> anyhow::Result<Vec<String>> {
    if let Some(nodes) = &target.nodes {
        return Ok(nodes.datanodes().map(|n| n.site.addr()).collect());
    }
    let status = target
        .controllers
        .cluster_status()
        .await
        .context("finding the data nodes")?;
    let mut nodes: Vec<_> = status
        .nodes
        .into_iter()
        .filter(|n| n.mode() == NodeMode::Datanode)
        .collect();
    nodes.sort_by_key(|n| n.state() != NodeState::Up);
    if nodes.is_empty() {
        bail!("the cluster has no data node");
    }
    Ok(nodes.into_iter().map(|n| n.addr).collect())
}

/// A script's answer as DolphinDB's console shows it: a scalar alone on its line, the
/// messages of a script that ended in an assignment one per line, a table as a table.
fn print_script_answer(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    format: Format,
) -> anyhow::Result<()> {
    let form = schema
        .metadata()
        .get(shoal_script::FORM_KEY)
        .map(String::as_str);
    match (form, format) {
        (Some("scalar" | "void"), Format::Table) => {
            for row in rows(batches)? {
                println!(
                    "{}",
                    row.into_iter().flatten().collect::<Vec<_>>().join(" ")
                );
            }
            Ok(())
        }
        (Some("scalar"), Format::Json) => {
            let value = rows(batches)?.into_iter().flatten().flatten().next();
            let t = schema.fields().first().map(|f| f.data_type().clone());
            let v = json_value(&t.unwrap_or(DataType::Utf8), value);
            println!("{}", output::json(&v)?);
            Ok(())
        }
        _ => print(schema, batches, format),
    }
}

/// Every row's cells as text (`None` for null).
fn rows(batches: &[RecordBatch]) -> anyhow::Result<Vec<Vec<Option<String>>>> {
    let options = FormatOptions::default();
    let mut rows: Vec<Vec<Option<String>>> = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        for i in 0..batch.num_rows() {
            rows.push(
                batch
                    .columns()
                    .iter()
                    .zip(&formatters)
                    .map(|(c, f)| (!c.is_null(i)).then(|| f.value(i).to_string()))
                    .collect(),
            );
        }
    }
    Ok(rows)
}

pub fn print(schema: &SchemaRef, batches: &[RecordBatch], format: Format) -> anyhow::Result<()> {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let rows = rows(batches)?;
    match format {
        Format::Table => {
            let rows = rows
                .into_iter()
                .map(|r| {
                    r.into_iter()
                        .map(|v| v.unwrap_or_else(|| "NULL".into()))
                        .collect()
                })
                .collect();
            println!("{}", output::table(&names, rows));
        }
        Format::Csv => {
            println!(
                "{}",
                names
                    .iter()
                    .map(|n| csv_field(n))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            for r in rows {
                let fields: Vec<String> = r
                    .iter()
                    .map(|v| csv_field(v.as_deref().unwrap_or("")))
                    .collect();
                println!("{}", fields.join(","));
            }
        }
        Format::Json => {
            let types: Vec<&DataType> = schema.fields().iter().map(|f| f.data_type()).collect();
            let objects: Vec<serde_json::Map<String, Value>> = rows
                .into_iter()
                .map(|r| {
                    names
                        .iter()
                        .zip(&types)
                        .zip(r)
                        .map(|((n, t), v)| ((*n).to_owned(), json_value(t, v)))
                        .collect()
                })
                .collect();
            println!("{}", output::json(&objects)?);
        }
    }
    Ok(())
}

/// Numbers and booleans as JSON numbers and booleans; everything else (dates, timestamps,
/// text) as the text the table shows.
fn json_value(t: &DataType, v: Option<String>) -> Value {
    match v {
        None => Value::Null,
        Some(s) if t.is_numeric() || *t == DataType::Boolean => {
            serde_json::from_str(&s).unwrap_or(Value::String(s))
        }
        Some(s) => Value::String(s),
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}
