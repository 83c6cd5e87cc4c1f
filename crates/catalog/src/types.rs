//! Column types as DolphinDB names them, and the Arrow type each is stored as.

use std::fmt;
use std::str::FromStr;

use arrow::datatypes::{DataType, TimeUnit};
use serde::{Deserialize, Serialize};

/// A column type. SYMBOL is a string column DolphinDB stores dictionary-encoded; Shoal stores it
/// as plain UTF-8 and remembers the declared type in the catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ColumnType {
    Bool,
    Int,
    Long,
    Double,
    Date,
    Timestamp,
    Symbol,
    String,
}

impl ColumnType {
    pub const ALL: [ColumnType; 8] = [
        ColumnType::Bool,
        ColumnType::Int,
        ColumnType::Long,
        ColumnType::Double,
        ColumnType::Date,
        ColumnType::Timestamp,
        ColumnType::Symbol,
        ColumnType::String,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ColumnType::Bool => "BOOL",
            ColumnType::Int => "INT",
            ColumnType::Long => "LONG",
            ColumnType::Double => "DOUBLE",
            ColumnType::Date => "DATE",
            ColumnType::Timestamp => "TIMESTAMP",
            ColumnType::Symbol => "SYMBOL",
            ColumnType::String => "STRING",
        }
    }

    /// The Arrow type values of this column are stored and exchanged as.
    pub fn arrow_type(self) -> DataType {
        match self {
            ColumnType::Bool => DataType::Boolean,
            ColumnType::Int => DataType::Int32,
            ColumnType::Long => DataType::Int64,
            ColumnType::Double => DataType::Float64,
            ColumnType::Date => DataType::Date32,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, None),
            ColumnType::Symbol | ColumnType::String => DataType::Utf8,
        }
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ColumnType {
    type Err = String;

    /// Case-insensitive; a few common aliases are accepted (INTEGER, BIGINT, FLOAT8, BOOLEAN,
    /// VARCHAR) so SQL written for other databases works.
    fn from_str(s: &str) -> Result<Self, String> {
        let upper = s.to_ascii_uppercase();
        let t = match upper.as_str() {
            "BOOL" | "BOOLEAN" => ColumnType::Bool,
            "INT" | "INTEGER" => ColumnType::Int,
            "LONG" | "BIGINT" => ColumnType::Long,
            "DOUBLE" | "FLOAT8" => ColumnType::Double,
            "DATE" => ColumnType::Date,
            "TIMESTAMP" => ColumnType::Timestamp,
            "SYMBOL" => ColumnType::Symbol,
            "STRING" | "VARCHAR" => ColumnType::String,
            _ => {
                let names: Vec<&str> = Self::ALL.iter().map(|t| t.name()).collect();
                return Err(format!(
                    "unknown type `{s}` (supported: {})",
                    names.join(", ")
                ));
            }
        };
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips_through_its_name() {
        for t in ColumnType::ALL {
            assert_eq!(t.name().parse::<ColumnType>().unwrap(), t);
            assert_eq!(t.name().to_lowercase().parse::<ColumnType>().unwrap(), t);
        }
        let err = "DECIMAL32".parse::<ColumnType>().unwrap_err();
        assert!(err.contains("DECIMAL32") && err.contains("SYMBOL"), "{err}");
    }

    #[test]
    fn timestamp_is_milliseconds_as_in_dolphindb() {
        assert_eq!(
            ColumnType::Timestamp.arrow_type(),
            DataType::Timestamp(TimeUnit::Millisecond, None)
        );
    }
}
