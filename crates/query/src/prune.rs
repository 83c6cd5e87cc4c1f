//! Chunk pruning: which partitions a query's filters can rule out.
//!
//! Conservative by design. DataFusion re-applies every filter above the scan (the table answers
//! `Inexact`), so keeping a chunk that holds no matching row costs only time, while dropping one
//! that does would lose rows. Anything not understood therefore keeps the chunk.

use arrow::datatypes::{DataType, TimeUnit};
use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};
use datafusion::scalar::ScalarValue;
use shoal_catalog::PartitionKey;
use shoal_catalog::partition::KeyKind;

const MS_PER_DAY: i64 = 86_400_000;

/// The column a table is partitioned by, as DataFusion names it.
#[derive(Clone, Debug)]
pub struct PartitionColumn {
    pub name: String,
    pub kind: KeyKind,
}

impl PartitionColumn {
    /// Whether `filter` refers to the partition column and nothing else: the filters worth
    /// handing to `scan`.
    pub fn is_only_column_of(&self, filter: &Expr) -> bool {
        let refs = filter.column_refs();
        !refs.is_empty() && refs.iter().all(|c| c.name == self.name)
    }

    /// Whether the chunk of partition `key` may hold rows satisfying every filter.
    pub fn may_match(&self, filters: &[Expr], key: PartitionKey) -> bool {
        let key = match (self.kind, key) {
            (KeyKind::Date, PartitionKey::Date(d)) => i64::from(d),
            (KeyKind::Int, PartitionKey::Int(v)) => v,
            // A key of the wrong kind: nothing to reason with.
            _ => return true,
        };
        filters.iter().all(|f| self.expr_may_match(f, key))
    }

    fn expr_may_match(&self, e: &Expr, key: i64) -> bool {
        match e {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
                Operator::And => self.expr_may_match(left, key) && self.expr_may_match(right, key),
                Operator::Or => self.expr_may_match(left, key) || self.expr_may_match(right, key),
                _ => self.comparison_may_match(left, *op, right, key),
            },
            Expr::Between(Between {
                expr,
                negated: false,
                low,
                high,
            }) if self.is_column(expr) => {
                let above = self.bound(low).is_none_or(|lo| lo.may_be_at_most(key));
                let below = self.bound(high).is_none_or(|hi| hi.may_be_at_least(key));
                above && below
            }
            Expr::InList(InList {
                expr,
                list,
                negated: false,
            }) if self.is_column(expr) => {
                // One element that is not a literal could equal anything.
                let bounds: Option<Vec<Bound>> = list.iter().map(|v| self.bound(v)).collect();
                bounds.is_none_or(|b| b.iter().any(|b| b.may_equal(key)))
            }
            _ => true,
        }
    }

    /// `left op right` where one side is the column and the other a literal.
    fn comparison_may_match(&self, left: &Expr, op: Operator, right: &Expr, key: i64) -> bool {
        let (op, lit) = if self.is_column(left) {
            (op, right)
        } else if self.is_column(right) {
            match op.swap() {
                Some(op) => (op, left),
                None => return true,
            }
        } else {
            return true;
        };
        let Some(b) = self.bound(lit) else {
            return true;
        };
        match op {
            Operator::Eq => b.may_equal(key),
            // column < v and column <= v: the key may not exceed v.
            Operator::Lt => b.may_be_above(key),
            Operator::LtEq => b.may_be_at_least(key),
            Operator::Gt => b.may_be_below(key),
            Operator::GtEq => b.may_be_at_most(key),
            _ => true,
        }
    }

    /// The partition column itself, or a cast of it that keeps each value's order and day
    /// (type coercion casts a DATE column to compare it with a timestamp). Narrowing casts,
    /// which could wrap or truncate values, are not the column.
    fn is_column(&self, e: &Expr) -> bool {
        let keeps_keys = |t: &DataType| match self.kind {
            KeyKind::Date => matches!(
                t,
                DataType::Date32
                    | DataType::Date64
                    | DataType::Timestamp(
                        TimeUnit::Millisecond | TimeUnit::Microsecond | TimeUnit::Nanosecond,
                        _
                    )
            ),
            KeyKind::Int => matches!(t, DataType::Int64),
        };
        match e {
            Expr::Column(c) => c.name == self.name,
            Expr::Cast(c) => keeps_keys(c.field.data_type()) && self.is_column(&c.expr),
            Expr::TryCast(c) => keeps_keys(c.field.data_type()) && self.is_column(&c.expr),
            _ => false,
        }
    }

    /// A literal as a position among the partition keys.
    fn bound(&self, e: &Expr) -> Option<Bound> {
        let Expr::Literal(v, _) = e else {
            return None;
        };
        match self.kind {
            KeyKind::Date => date_bound(v),
            KeyKind::Int => int_value(v).map(Bound::Exact),
        }
    }
}

/// Where a literal falls among the keys: exactly on a key (a date, an integer), at the start
/// of a key's day (a timestamp at midnight), or inside a key's day (any other timestamp: rows
/// of several times share that day's chunk).
#[derive(Clone, Copy, Debug)]
enum Bound {
    Exact(i64),
    DayStart(i64),
    Within(i64),
}

impl Bound {
    fn may_equal(self, key: i64) -> bool {
        match self {
            Bound::Exact(v) | Bound::DayStart(v) | Bound::Within(v) => key == v,
        }
    }
    /// Some row of the chunk may be greater than the literal (`literal < column`).
    fn may_be_below(self, key: i64) -> bool {
        match self {
            Bound::Exact(v) => v < key,
            Bound::DayStart(v) | Bound::Within(v) => v <= key,
        }
    }
    /// Some row may be greater or equal (`literal <= column`).
    fn may_be_at_most(self, key: i64) -> bool {
        match self {
            Bound::Exact(v) | Bound::DayStart(v) | Bound::Within(v) => v <= key,
        }
    }
    /// Some row may be less than the literal (`column < literal`).
    fn may_be_above(self, key: i64) -> bool {
        match self {
            Bound::Exact(v) | Bound::DayStart(v) => key < v,
            Bound::Within(v) => key <= v,
        }
    }
    /// Some row may be less or equal (`column <= literal`).
    fn may_be_at_least(self, key: i64) -> bool {
        match self {
            Bound::Exact(v) | Bound::DayStart(v) | Bound::Within(v) => key <= v,
        }
    }
}

fn date_bound(v: &ScalarValue) -> Option<Bound> {
    let ms = match v {
        ScalarValue::Date32(Some(d)) => return Some(Bound::Exact(i64::from(*d))),
        ScalarValue::Date64(Some(ms)) => *ms,
        ScalarValue::TimestampSecond(Some(s), _) => s.checked_mul(1000)?,
        ScalarValue::TimestampMillisecond(Some(ms), _) => *ms,
        ScalarValue::TimestampMicrosecond(Some(us), _) => us.div_euclid(1000),
        ScalarValue::TimestampNanosecond(Some(ns), _) => ns.div_euclid(1_000_000),
        _ => return None,
    };
    // Timestamps are UTC instants whatever their zone: their partition is their UTC date.
    let day = ms.div_euclid(MS_PER_DAY);
    Some(if ms.rem_euclid(MS_PER_DAY) == 0 {
        Bound::DayStart(day)
    } else {
        Bound::Within(day)
    })
}

fn int_value(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::Int8(Some(x)) => Some(i64::from(*x)),
        ScalarValue::Int16(Some(x)) => Some(i64::from(*x)),
        ScalarValue::Int32(Some(x)) => Some(i64::from(*x)),
        ScalarValue::Int64(Some(x)) => Some(*x),
        ScalarValue::UInt8(Some(x)) => Some(i64::from(*x)),
        ScalarValue::UInt16(Some(x)) => Some(i64::from(*x)),
        ScalarValue::UInt32(Some(x)) => Some(i64::from(*x)),
        ScalarValue::UInt64(Some(x)) => i64::try_from(*x).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::{col, lit};
    use shoal_catalog::partition::parse_date;

    use super::*;

    fn day(s: &str) -> i32 {
        parse_date(s).expect("valid date")
    }

    fn date_lit(s: &str) -> Expr {
        lit(ScalarValue::Date32(Some(day(s))))
    }

    fn ts_lit(ms: i64) -> Expr {
        lit(ScalarValue::TimestampMillisecond(Some(ms), None))
    }

    fn by_date() -> PartitionColumn {
        PartitionColumn {
            name: "date".into(),
            kind: KeyKind::Date,
        }
    }

    fn by_int() -> PartitionColumn {
        PartitionColumn {
            name: "id".into(),
            kind: KeyKind::Int,
        }
    }

    /// The dates among 2023.01.01..=2023.01.05 whose chunks `filter` keeps.
    fn kept_days(filter: Expr) -> Vec<u32> {
        let p = by_date();
        (1..=5)
            .filter(|d| {
                let key = PartitionKey::Date(day(&format!("2023.01.0{d}")));
                p.may_match(std::slice::from_ref(&filter), key)
            })
            .collect()
    }

    #[test]
    fn comparisons_with_a_date_keep_exactly_the_matching_days() {
        let d3 = || date_lit("2023.01.03");
        assert_eq!(kept_days(col("date").eq(d3())), [3]);
        assert_eq!(kept_days(col("date").lt(d3())), [1, 2]);
        assert_eq!(kept_days(col("date").lt_eq(d3())), [1, 2, 3]);
        assert_eq!(kept_days(col("date").gt(d3())), [4, 5]);
        assert_eq!(kept_days(col("date").gt_eq(d3())), [3, 4, 5]);
        // Literal on the left: the operator is mirrored.
        assert_eq!(kept_days(d3().lt(col("date"))), [4, 5]);
        assert_eq!(kept_days(d3().eq(col("date"))), [3]);
    }

    #[test]
    fn between_in_and_or_combine() {
        let between = col("date").between(date_lit("2023.01.02"), date_lit("2023.01.04"));
        assert_eq!(kept_days(between), [2, 3, 4]);
        let in_list =
            col("date").in_list(vec![date_lit("2023.01.01"), date_lit("2023.01.05")], false);
        assert_eq!(kept_days(in_list), [1, 5]);
        let and = col("date")
            .gt(date_lit("2023.01.01"))
            .and(col("date").lt(date_lit("2023.01.04")));
        assert_eq!(kept_days(and), [2, 3]);
        let or = col("date")
            .eq(date_lit("2023.01.01"))
            .or(col("date").eq(date_lit("2023.01.04")));
        assert_eq!(kept_days(or), [1, 4]);
    }

    #[test]
    fn timestamps_keep_the_whole_day_they_fall_in() {
        let noon_day3 = i64::from(day("2023.01.03")) * MS_PER_DAY + MS_PER_DAY / 2;
        let midnight_day3 = i64::from(day("2023.01.03")) * MS_PER_DAY;
        assert_eq!(kept_days(col("date").eq(ts_lit(noon_day3))), [3]);
        assert_eq!(kept_days(col("date").gt(ts_lit(noon_day3))), [3, 4, 5]);
        assert_eq!(kept_days(col("date").lt(ts_lit(noon_day3))), [1, 2, 3]);
        // At midnight, `< t` cannot match day 3; `<= t` and `> t` can.
        assert_eq!(kept_days(col("date").lt(ts_lit(midnight_day3))), [1, 2]);
        assert_eq!(
            kept_days(col("date").lt_eq(ts_lit(midnight_day3))),
            [1, 2, 3]
        );
        assert_eq!(kept_days(col("date").gt(ts_lit(midnight_day3))), [3, 4, 5]);
        assert_eq!(kept_days(col("date").eq(ts_lit(midnight_day3))), [3]);
        let us = lit(ScalarValue::TimestampMicrosecond(
            Some(noon_day3 * 1000),
            Some("+08:00".into()),
        ));
        assert_eq!(kept_days(col("date").gt_eq(us)), [3, 4, 5]);
        // A widening cast of the column (type coercion) is still the column; a narrowing one
        // is not.
        let cast = |t| {
            Expr::Cast(datafusion::logical_expr::Cast::new(
                Box::new(col("date")),
                t,
            ))
        };
        let ms = DataType::Timestamp(TimeUnit::Millisecond, None);
        assert_eq!(kept_days(cast(ms).eq(ts_lit(noon_day3))), [3]);
        let s = DataType::Timestamp(TimeUnit::Second, None);
        assert_eq!(kept_days(cast(s).eq(ts_lit(noon_day3))), [1, 2, 3, 4, 5]);
    }

    #[test]
    fn anything_not_understood_keeps_every_chunk() {
        let all = [1, 2, 3, 4, 5];
        assert_eq!(kept_days(col("price").gt(lit(3.0))), all);
        assert_eq!(kept_days(col("date").not_eq(date_lit("2023.01.03"))), all);
        assert_eq!(
            kept_days(col("date").in_list(vec![date_lit("2023.01.03")], true)),
            all
        );
        // One unknown element in an IN list: keep.
        assert_eq!(
            kept_days(col("date").in_list(vec![date_lit("2023.01.03"), col("other")], false)),
            all
        );
        assert_eq!(
            kept_days(col("date").eq(lit(ScalarValue::Date32(None)))),
            all
        );
        // OR with a side that is not understood keeps all; AND still prunes by the other side.
        let or = col("date")
            .eq(date_lit("2023.01.03"))
            .or(col("sym").eq(lit("A")));
        assert_eq!(kept_days(or), all);
        let and = col("date")
            .eq(date_lit("2023.01.03"))
            .and(col("sym").eq(lit("A")));
        assert_eq!(kept_days(and), [3]);
    }

    #[test]
    fn integer_partitions_compare_as_integers() {
        let p = by_int();
        let keep = |f: Expr| -> Vec<i64> {
            (1..=5)
                .filter(|k| p.may_match(std::slice::from_ref(&f), PartitionKey::Int(*k)))
                .collect()
        };
        assert_eq!(keep(col("id").eq(lit(3i32))), [3]);
        assert_eq!(keep(col("id").gt_eq(lit(4i64))), [4, 5]);
        assert_eq!(keep(col("id").lt(lit(2u8))), [1]);
        assert_eq!(keep(col("id").between(lit(2i64), lit(3i64))), [2, 3]);
        assert_eq!(keep(col("id").eq(lit(2.5))), [1, 2, 3, 4, 5]);
    }

    #[test]
    fn only_filters_on_the_partition_column_alone_are_pushed() {
        let p = by_date();
        assert!(p.is_only_column_of(&col("date").eq(date_lit("2023.01.01"))));
        assert!(!p.is_only_column_of(&col("date").eq(col("other"))));
        assert!(!p.is_only_column_of(&col("price").gt(lit(1))));
        assert!(!p.is_only_column_of(&lit(true)));
    }
}
