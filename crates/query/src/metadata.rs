//! Flight SQL's catalog calls (`GetCatalogs`, `GetDbSchemas`, `GetTables`, `GetTableTypes`,
//! `GetXdbcTypeInfo`): what DBeaver, Grafana and ADBC's `adbc_get_objects` ask to browse the
//! cluster. One catalog,
//! `shoal`; its schemas are the `dfs://` databases, `cluster` (system tables) and
//! `information_schema`. Each answer is one batch, filtered by the command's patterns.

use std::collections::BTreeSet;

use arrow::array::RecordBatch;
use arrow_flight::error::FlightError;
use arrow_flight::sql::metadata::{XdbcTypeInfo, XdbcTypeInfoDataBuilder};
use arrow_flight::sql::{
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetTableTypes, CommandGetTables,
    CommandGetXdbcTypeInfo, Nullable, Searchable, XdbcDataType, XdbcDatetimeSubcode,
};
use datafusion::error::{DataFusionError, Result};
use shoal_catalog::types::ColumnType;

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

/// The column types DDL accepts, as JDBC/ODBC tools list them (`GetXdbcTypeInfo`).
pub fn xdbc_type_info(query: CommandGetXdbcTypeInfo) -> Result<RecordBatch> {
    let mut b = XdbcTypeInfoDataBuilder::new();
    for t in ColumnType::ALL {
        let (data_type, subcode, quoted) = match t {
            ColumnType::Bool => (XdbcDataType::XdbcBit, None, false),
            ColumnType::Int => (XdbcDataType::XdbcInteger, None, false),
            ColumnType::Long => (XdbcDataType::XdbcBigint, None, false),
            ColumnType::Double => (XdbcDataType::XdbcDouble, None, false),
            ColumnType::Date => (
                XdbcDataType::XdbcDate,
                // 1: ODBC's SQL_CODE_DATE, which the enum names for its YEAR interval alias.
                Some(XdbcDatetimeSubcode::XdbcSubcodeYear),
                true,
            ),
            ColumnType::Timestamp => (
                XdbcDataType::XdbcTimestamp,
                Some(XdbcDatetimeSubcode::XdbcSubcodeTimestamp),
                true,
            ),
            ColumnType::Symbol | ColumnType::String => (XdbcDataType::XdbcVarchar, None, true),
        };
        let numeric = matches!(t, ColumnType::Int | ColumnType::Long | ColumnType::Double);
        b.append(XdbcTypeInfo {
            type_name: t.name().to_owned(),
            data_type,
            column_size: None,
            literal_prefix: quoted.then(|| "'".to_owned()),
            literal_suffix: quoted.then(|| "'".to_owned()),
            create_params: None,
            nullable: Nullable::NullabilityNullable,
            case_sensitive: matches!(t, ColumnType::Symbol | ColumnType::String),
            searchable: Searchable::Full,
            unsigned_attribute: numeric.then_some(false),
            fixed_prec_scale: false,
            auto_increment: numeric.then_some(false),
            local_type_name: Some(t.name().to_owned()),
            minimum_scale: None,
            maximum_scale: None,
            sql_data_type: data_type,
            datetime_subcode: subcode,
            num_prec_radix: numeric.then_some(10),
            interval_precision: None,
        });
    }
    let data = b.build().map_err(flight)?;
    query.into_builder(&data).build().map_err(flight)
}

/// The schema of [`xdbc_type_info`]'s answer.
pub fn xdbc_type_info_schema(query: CommandGetXdbcTypeInfo) -> Result<arrow::datatypes::SchemaRef> {
    let data = XdbcTypeInfoDataBuilder::new().build().map_err(flight)?;
    Ok(query.into_builder(&data).schema())
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
