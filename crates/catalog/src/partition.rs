//! VALUE partitioning: each distinct value of the partition column (a date, or an integer) is one
//! partition. A TIMESTAMP column partitioned by DATE values goes by the row's UTC date, as in
//! DolphinDB.

use std::fmt;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{Date32Type, Int32Type, Int64Type, TimestampMillisecondType};
use serde::{Deserialize, Serialize};

use crate::types::ColumnType;

const MS_PER_DAY: i64 = 86_400_000;

/// The value that names one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartitionKey {
    /// Days since 1970-01-01.
    Date(i32),
    Int(i64),
}

impl fmt::Display for PartitionKey {
    /// DolphinDB's literal: `2023.01.01` for dates.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartitionKey::Date(days) => {
                let (y, m, d) = civil_from_days(i64::from(*days));
                write!(f, "{y:04}.{m:02}.{d:02}")
            }
            PartitionKey::Int(v) => write!(f, "{v}"),
        }
    }
}

impl PartitionKey {
    pub fn kind(&self) -> KeyKind {
        match self {
            PartitionKey::Date(_) => KeyKind::Date,
            PartitionKey::Int(_) => KeyKind::Int,
        }
    }

    /// Parses a DolphinDB literal of the given kind (`2023.01.01`, `42`).
    pub fn parse(kind: KeyKind, s: &str) -> Result<Self, String> {
        match kind {
            KeyKind::Date => parse_date(s)
                .map(PartitionKey::Date)
                .ok_or_else(|| format!("`{s}` is not a date like 2023.01.01")),
            KeyKind::Int => s
                .parse()
                .map(PartitionKey::Int)
                .map_err(|_| format!("`{s}` is not an integer")),
        }
    }

    /// The directory-safe form used in chunk paths: `20230101` for dates.
    pub fn path_segment(&self) -> String {
        match self {
            PartitionKey::Date(days) => {
                let (y, m, d) = civil_from_days(i64::from(*days));
                format!("{y:04}{m:02}{d:02}")
            }
            PartitionKey::Int(v) => v.to_string(),
        }
    }
}

/// What kind of values a VALUE scheme partitions by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    Date,
    Int,
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyKind::Date => "dates",
            KeyKind::Int => "integers",
        })
    }
}

/// A database's partitioning: VALUE over a list of initial keys; rows with other values create
/// their partition on first write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PartitionScheme {
    Value {
        kind: KeyKind,
        initial: Vec<PartitionKey>,
    },
}

impl PartitionScheme {
    pub fn kind(&self) -> KeyKind {
        match self {
            PartitionScheme::Value { kind, .. } => *kind,
        }
    }

    pub fn initial(&self) -> &[PartitionKey] {
        match self {
            PartitionScheme::Value { initial, .. } => initial,
        }
    }

    /// Whether a column of type `t` can be the partition column of this scheme.
    pub fn accepts(&self, t: ColumnType) -> bool {
        match self.kind() {
            KeyKind::Date => matches!(t, ColumnType::Date | ColumnType::Timestamp),
            KeyKind::Int => matches!(t, ColumnType::Int | ColumnType::Long),
        }
    }

    /// The partition key of every row of `column` (the partition column, of type `t`).
    pub fn keys(&self, t: ColumnType, column: &ArrayRef) -> Result<Vec<PartitionKey>, String> {
        if column.null_count() > 0 {
            return Err("the partition column has null values".into());
        }
        let keys = match (self.kind(), t) {
            (KeyKind::Date, ColumnType::Date) => column
                .as_primitive_opt::<Date32Type>()
                .ok_or("DATE column is not Date32")?
                .values()
                .iter()
                .map(|d| PartitionKey::Date(*d))
                .collect(),
            (KeyKind::Date, ColumnType::Timestamp) => column
                .as_primitive_opt::<TimestampMillisecondType>()
                .ok_or("TIMESTAMP column is not Timestamp(ms)")?
                .values()
                .iter()
                .map(|ms| date_of_millis(*ms))
                .collect::<Result<_, _>>()?,
            (KeyKind::Int, ColumnType::Int) => column
                .as_primitive_opt::<Int32Type>()
                .ok_or("INT column is not Int32")?
                .values()
                .iter()
                .map(|v| PartitionKey::Int(i64::from(*v)))
                .collect(),
            (KeyKind::Int, ColumnType::Long) => column
                .as_primitive_opt::<Int64Type>()
                .ok_or("LONG column is not Int64")?
                .values()
                .iter()
                .map(|v| PartitionKey::Int(*v))
                .collect(),
            (kind, t) => {
                return Err(format!(
                    "a {t} column cannot be partitioned by {kind:?} values"
                ));
            }
        };
        Ok(keys)
    }
}

fn date_of_millis(ms: i64) -> Result<PartitionKey, String> {
    i32::try_from(ms.div_euclid(MS_PER_DAY))
        .map(PartitionKey::Date)
        .map_err(|_| format!("timestamp {ms} ms is out of the date range"))
}

/// Parses DolphinDB's date literal `YYYY.MM.DD` into days since 1970-01-01.
pub fn parse_date(s: &str) -> Option<i32> {
    let mut parts = s.split('.');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    i32::try_from(days_from_civil(y, m, d)).ok()
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Howard Hinnant's days-from-civil (proleptic Gregorian).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int32Array, TimestampMillisecondArray};

    use super::*;

    #[test]
    fn dates_round_trip_through_dolphindb_literals() {
        assert_eq!(parse_date("1970.01.01"), Some(0));
        let d = parse_date("2023.01.01").unwrap();
        assert_eq!(PartitionKey::Date(d).to_string(), "2023.01.01");
        assert_eq!(PartitionKey::Date(d).path_segment(), "20230101");
        assert_eq!(
            parse_date("2024.02.29").map(|d| PartitionKey::Date(d).to_string()),
            Some("2024.02.29".into())
        );
        for bad in [
            "2023.02.29",
            "2023.13.01",
            "2023.1",
            "2023-01-01",
            "x.1.1",
            "2023.01.01.01",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn keys_parse_from_their_literals() {
        let d = PartitionKey::parse(KeyKind::Date, "2023.01.05").unwrap();
        assert_eq!(d.to_string(), "2023.01.05");
        assert_eq!(
            PartitionKey::parse(KeyKind::Int, "-7").unwrap(),
            PartitionKey::Int(-7)
        );
        assert!(
            PartitionKey::parse(KeyKind::Date, "7")
                .unwrap_err()
                .contains("`7`")
        );
        assert!(PartitionKey::parse(KeyKind::Int, "2023.01.05").is_err());
    }

    #[test]
    fn timestamps_partition_by_their_utc_date() {
        let scheme = PartitionScheme::Value {
            kind: KeyKind::Date,
            initial: vec![],
        };
        let day = i64::from(parse_date("2023.01.02").unwrap()) * MS_PER_DAY;
        let col: ArrayRef = Arc::new(TimestampMillisecondArray::from(vec![
            day,
            day + MS_PER_DAY - 1,
            day - 1,
        ]));
        let keys = scheme.keys(ColumnType::Timestamp, &col).unwrap();
        let names: Vec<String> = keys.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["2023.01.02", "2023.01.02", "2023.01.01"]);
    }

    #[test]
    fn a_mismatched_or_null_partition_column_is_refused() {
        let scheme = PartitionScheme::Value {
            kind: KeyKind::Date,
            initial: vec![],
        };
        let col: ArrayRef = Arc::new(Int32Array::from(vec![1]));
        assert!(
            scheme
                .keys(ColumnType::Int, &col)
                .unwrap_err()
                .contains("INT")
        );
        assert!(!scheme.accepts(ColumnType::Symbol));
        let nulls: ArrayRef = Arc::new(TimestampMillisecondArray::from(vec![None, Some(1)]));
        assert!(
            scheme
                .keys(ColumnType::Timestamp, &nulls)
                .unwrap_err()
                .contains("null")
        );
    }
}
