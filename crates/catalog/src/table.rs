//! Database and table definitions as the catalog stores them.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::partition::PartitionScheme;
use crate::types::ColumnType;

/// Field metadata key holding the declared Shoal type (SYMBOL and STRING share an Arrow type).
pub const TYPE_METADATA_KEY: &str = "shoal.type";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    pub ty: ColumnType,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDef {
    pub name: String,
    pub columns: Vec<ColumnDef>,
    pub partition_column: String,
    #[serde(default)]
    pub sort_columns: Vec<String>,
    /// Stored as the string DolphinDB writes (`"ALL"`, `"FIRST"`, `"LAST"`), which is what
    /// every release stored here (as a plain string before FIRST and LAST were accepted), so
    /// state written by any release reads in any other; absent reads as ALL.
    #[serde(default)]
    pub keep_duplicates: KeepDuplicates,
}

/// DolphinDB's `keepDuplicates` of a TSDB table: of the rows equal on the whole sort key
/// ([`TableDef::sort_key`]), which ones the table keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum KeepDuplicates {
    /// Every row.
    #[default]
    All,
    /// The first row written of each key (lowest lsn, then row order within an append).
    First,
    /// The last row written of each key.
    Last,
}

impl KeepDuplicates {
    pub fn name(self) -> &'static str {
        match self {
            KeepDuplicates::All => "ALL",
            KeepDuplicates::First => "FIRST",
            KeepDuplicates::Last => "LAST",
        }
    }
}

impl fmt::Display for KeepDuplicates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KeepDuplicates {
    type Err = String;

    /// Case-insensitive, as DolphinDB's DDL.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "ALL" => Ok(KeepDuplicates::All),
            "FIRST" => Ok(KeepDuplicates::First),
            "LAST" => Ok(KeepDuplicates::Last),
            _ => Err(format!(
                "unknown keepDuplicates value `{s}` (ALL, FIRST or LAST)"
            )),
        }
    }
}

impl TableDef {
    /// The Arrow schema of the table's rows. Columns are nullable except the partition column.
    pub fn schema(&self) -> SchemaRef {
        let fields: Vec<Field> = self
            .columns
            .iter()
            .map(|c| {
                Field::new(&c.name, c.ty.arrow_type(), c.name != self.partition_column)
                    .with_metadata([(TYPE_METADATA_KEY.to_owned(), c.ty.name().to_owned())].into())
            })
            .collect();
        Arc::new(Schema::new(fields))
    }

    pub fn column(&self, name: &str) -> Option<&ColumnDef> {
        self.columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }

    pub fn partition_type(&self) -> Option<ColumnType> {
        self.column(&self.partition_column).map(|c| c.ty)
    }

    /// What a chunk file's rows are sorted by, as column names of the schema: `sortColumns`,
    /// then the partition column when it is a time (DolphinDB's sort key ends with the time
    /// column, so a time range within a key reads few rows).
    pub fn sort_key(&self) -> Vec<String> {
        let mut key: Vec<String> = self
            .sort_columns
            .iter()
            .filter_map(|c| self.column(c).map(|c| c.name.clone()))
            .collect();
        let temporal = matches!(
            self.partition_type(),
            Some(ColumnType::Timestamp | ColumnType::Date)
        );
        if temporal && !key.iter().any(|c| c == &self.partition_column) {
            key.push(self.partition_column.clone());
        }
        key
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseDef {
    /// `dfs://name`.
    pub path: String,
    pub scheme: PartitionScheme,
    /// DolphinDB's storage engine name, kept for compatibility (`TSDB` or `OLAP`).
    pub engine: String,
    #[serde(default)]
    pub tables: BTreeMap<String, TableDef>,
}

#[cfg(test)]
mod tests {
    use crate::ddl::{Statement, parse};

    fn table(sql: &str) -> super::TableDef {
        match parse(sql).unwrap() {
            Statement::CreateTable { table, .. } => table,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_sort_key_is_the_sort_columns_then_a_time_partition_column() {
        let seed = table(
            r#"create table "dfs://stock"."stock"(time TIMESTAMP, name SYMBOL, id INT) partitioned by time, sortColumns=[`NAME]"#,
        );
        assert_eq!(seed.sort_key(), ["name", "time"]);
        let explicit = table(
            r#"create table "dfs://stock".t(time TIMESTAMP, name SYMBOL) partitioned by time, sortColumns=[`name, `time]"#,
        );
        assert_eq!(explicit.sort_key(), ["name", "time"]);
        let by_int = table(r#"create table "dfs://m".t(k INT, v DOUBLE) partitioned by k"#);
        assert!(by_int.sort_key().is_empty());
    }

    /// Controllers and data nodes of every release exchange this JSON: the value stays the
    /// string every release wrote, and a definition without it is ALL.
    #[test]
    fn keep_duplicates_reads_and_writes_the_json_every_release_wrote() {
        use super::{KeepDuplicates, TableDef};
        let seed = table(
            r#"create table "dfs://stock"."stock"(time TIMESTAMP, name SYMBOL, id INT) partitioned by time, sortColumns=[`name], keepDuplicates=ALL"#,
        );
        let json = serde_json::to_value(&seed).unwrap();
        assert_eq!(json["keep_duplicates"], "ALL");
        let mut older = json.clone();
        older.as_object_mut().unwrap().remove("keep_duplicates");
        let read: TableDef = serde_json::from_value(older).unwrap();
        assert_eq!(read.keep_duplicates, KeepDuplicates::All);
        for (keep, text) in [
            (KeepDuplicates::First, "FIRST"),
            (KeepDuplicates::Last, "LAST"),
        ] {
            let t = TableDef {
                keep_duplicates: keep,
                ..seed.clone()
            };
            let json = serde_json::to_value(&t).unwrap();
            assert_eq!(json["keep_duplicates"], text);
            assert_eq!(serde_json::from_value::<TableDef>(json).unwrap(), t);
        }
    }
}
