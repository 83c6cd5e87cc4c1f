//! Flight SQL's catalog calls (`GetCatalogs`, `GetDbSchemas`, `GetTables`, `GetTableTypes`):
//! what DBeaver, Grafana and ADBC's `adbc_get_objects` ask to browse the cluster. One catalog,
//! `shoal`; its schemas are the `dfs://` databases, `cluster` (system tables) and
//! `information_schema`. Each answer is one batch, filtered by the command's patterns.

use std::collections::BTreeSet;

use arrow::array::RecordBatch;
use arrow_flight::error::FlightError;
use arrow_flight::sql::{
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetTableTypes, CommandGetTables,
};
use datafusion::error::{DataFusionError, Result};

use crate::engine::{CATALOG, QueryEngine};

/// Every table type `GetTables` may answer.
const TABLE_TYPES: [&str; 3] = ["SYSTEM TABLE", "TABLE", "VIEW"];

pub fn catalogs(query: CommandGetCatalogs) -> Result<RecordBatch> {
    let mut b = query.into_builder();
    b.append(CATALOG);
    b.build().map_err(flight)
}

pub fn table_types(query: CommandGetTableTypes) -> Result<RecordBatch> {
    let mut b = query.into_builder();
    for t in TABLE_TYPES {
        b.append(t);
    }
    b.build().map_err(flight)
}

pub async fn schemas(engine: &QueryEngine, query: CommandGetDbSchemas) -> Result<RecordBatch> {
    let names: BTreeSet<String> = engine
        .tables()
        .await?
        .into_iter()
        .map(|t| t.schema)
        .collect();
    let mut b = query.into_builder();
    for name in names {
        b.append(CATALOG, name);
    }
    b.build().map_err(flight)
}

pub async fn tables(engine: &QueryEngine, query: CommandGetTables) -> Result<RecordBatch> {
    let mut b = query.into_builder();
    for t in engine.tables().await? {
        b.append(CATALOG, &t.schema, &t.name, t.kind, &t.columns)
            .map_err(flight)?;
    }
    b.build().map_err(flight)
}

fn flight(e: FlightError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}
