//! `shoal verify`: the seed's check after writing through failures. The table must hold ids
//! exactly 1..N, each once, its newest `time` must be current (the writer really was writing
//! until recently), and given the writer's record, every acknowledged id must be there exactly
//! once and nothing the writer never sent may be. An append whose outcome the writer does not
//! know (failed) may be present once or not at all; as a gap it still fails the 1..N check.
//!
//! The table is read with two SQL queries over Flight SQL (per-id counts, newest time), so it
//! checks what any reader sees. Problems are printed as compact id ranges, the first
//! [`SHOWN`] of each kind.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use arrow::array::{Array, Int64Array, RecordBatch, TimestampMillisecondArray};
use arrow::datatypes::{DataType, TimeUnit};
use serde_json::{Value, json};

use crate::cli::VerifyArgs;
use crate::cmd::sql;
use crate::output;
use crate::target::Target;
use shoal_client::record::{self, AppendRecord, Outcome};

/// Ranges shown per problem.
const SHOWN: usize = 20;

pub async fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let record = args.record.as_deref().map(record::load).transpose()?;
    let target = Target::resolve(&args.target)?;
    let table = format!("{}.{}", quote(&args.db), quote(&args.table));
    let (_, batches) = sql::query(
        &target,
        &format!("SELECT id, count(*) AS n FROM {table} GROUP BY id"),
    )
    .await?;
    let counts = id_counts(&batches)?;
    let (_, batches) =
        sql::query(&target, &format!("SELECT max(time) AS latest FROM {table}")).await?;
    let latest_ms = latest_ms(&batches)?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let report = check(&counts, latest_ms, now_ms, args.max_age, record.as_deref());
    output::verdict(args.json, report.ok(), || report.json(), || report.text())
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Rows per id; `None` for rows without an id.
fn id_counts(batches: &[RecordBatch]) -> anyhow::Result<BTreeMap<Option<i64>, u64>> {
    let mut counts = BTreeMap::new();
    for b in batches {
        let ids = int64(b, "id")?;
        let ns = int64(b, "n")?;
        for i in 0..b.num_rows() {
            let id = (!ids.is_null(i)).then(|| ids.value(i));
            *counts.entry(id).or_default() += ns.value(i) as u64;
        }
    }
    Ok(counts)
}

fn int64(b: &RecordBatch, name: &str) -> anyhow::Result<Int64Array> {
    let col = b
        .column_by_name(name)
        .with_context(|| format!("the result has no column `{name}`"))?;
    let col = arrow::compute::cast(col, &DataType::Int64)?;
    Ok(col
        .as_any()
        .downcast_ref::<Int64Array>()
        .context("cast to Int64")?
        .clone())
}

fn latest_ms(batches: &[RecordBatch]) -> anyhow::Result<Option<i64>> {
    let Some(b) = batches.iter().find(|b| b.num_rows() > 0) else {
        bail!("`SELECT max(time)` returned no row");
    };
    let col = arrow::compute::cast(
        b.column(0),
        &DataType::Timestamp(TimeUnit::Millisecond, None),
    )?;
    let col = col
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .context("cast to timestamp")?;
    Ok((!col.is_null(0)).then(|| col.value(0)))
}

/// Ascending ids folded into inclusive ranges; ids counted in full, ranges kept in full.
#[derive(Default, Debug, PartialEq, Eq)]
struct Ranges {
    /// (first, last, copies present).
    ranges: Vec<(i64, i64, u64)>,
    ids: u64,
}

impl Ranges {
    fn push(&mut self, id: i64, copies: u64) {
        self.ids += 1;
        match self.ranges.last_mut() {
            Some((_, last, c)) if *last + 1 == id && *c == copies => *last = id,
            _ => self.ranges.push((id, id, copies)),
        }
    }

    fn push_range(&mut self, first: i64, last: i64) {
        if first <= last {
            self.ids += (last - first + 1) as u64;
            self.ranges.push((first, last, 0));
        }
    }

    fn is_empty(&self) -> bool {
        self.ids == 0
    }

    /// `3, 7-9 ×2, … (12 more ranges)`; copies shown when `with_copies`.
    fn text(&self, with_copies: bool) -> String {
        let mut s = String::new();
        for (i, (first, last, copies)) in self.ranges.iter().take(SHOWN).enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            let _ = match first == last {
                true => write!(s, "{first}"),
                false => write!(s, "{first}-{last}"),
            };
            if with_copies {
                let _ = write!(s, " ×{copies}");
            }
        }
        if self.ranges.len() > SHOWN {
            let _ = write!(s, ", … ({} more ranges)", self.ranges.len() - SHOWN);
        }
        let _ = write!(
            s,
            " ({} id{})",
            self.ids,
            if self.ids == 1 { "" } else { "s" }
        );
        s
    }

    fn json(&self, with_copies: bool) -> Value {
        let shown: Vec<Value> = self
            .ranges
            .iter()
            .take(SHOWN)
            .map(|&(first, last, copies)| match with_copies {
                true => json!({ "first": first, "last": last, "copies": copies }),
                false => json!([first, last]),
            })
            .collect();
        json!({ "ids": self.ids, "ranges": self.ranges.len(), "first_ranges": shown })
    }
}

#[derive(Debug)]
struct Report {
    rows: u64,
    /// N: the highest id present or sent.
    max_id: i64,
    missing: Ranges,
    doubled: Ranges,
    /// Ids outside 1..N can only be below 1; rows without an id.
    out_of_range: Ranges,
    null_ids: u64,
    latest_ms: Option<i64>,
    age: Option<Duration>,
    max_age: Duration,
    record: Option<RecordReport>,
}

#[derive(Debug)]
struct RecordReport {
    appends: usize,
    failed_appends: usize,
    acked_rows: u64,
    last_sent: i64,
    acked_missing: Ranges,
    acked_doubled: Ranges,
    /// Present but in no append of the record.
    never_sent: Ranges,
    /// Ids of failed appends present more than once.
    failed_doubled: Ranges,
}

fn check(
    counts: &BTreeMap<Option<i64>, u64>,
    latest_ms: Option<i64>,
    now_ms: i64,
    max_age: Duration,
    record: Option<&[AppendRecord]>,
) -> Report {
    let last_sent = record.map_or(0, |r| r.iter().map(|a| a.last_id as i64).max().unwrap_or(0));
    let max_present = counts.keys().flatten().max().copied().unwrap_or(0);
    let max_id = max_present.max(last_sent);
    let mut report = Report {
        rows: counts.values().sum(),
        max_id,
        missing: Ranges::default(),
        doubled: Ranges::default(),
        out_of_range: Ranges::default(),
        null_ids: counts.get(&None).copied().unwrap_or(0),
        latest_ms,
        age: latest_ms.map(|t| Duration::from_millis(now_ms.saturating_sub(t).max(0) as u64)),
        max_age,
        record: None,
    };
    let mut expected = 1;
    for (&id, &n) in counts.iter().filter_map(|(id, n)| Some((id.as_ref()?, n))) {
        if id < 1 {
            report.out_of_range.push(id, n);
            continue;
        }
        report.missing.push_range(expected, id - 1);
        expected = id + 1;
        if n > 1 {
            report.doubled.push(id, n);
        }
    }
    report.missing.push_range(expected, max_id);

    report.record = record.map(|appends| {
        // Every sent id's append outcome, by its range's first id.
        let mut sent: Vec<(i64, i64, Outcome)> = appends
            .iter()
            .map(|a| (a.first_id as i64, a.last_id as i64, a.outcome))
            .collect();
        sent.sort_unstable_by_key(|s| s.0);
        let outcome_of = |id: i64| {
            let i = sent.partition_point(|s| s.0 <= id);
            i.checked_sub(1)
                .map(|i| sent[i])
                .filter(|s| id <= s.1)
                .map(|s| s.2)
        };
        let mut r = RecordReport {
            appends: appends.len(),
            failed_appends: appends
                .iter()
                .filter(|a| a.outcome == Outcome::Failed)
                .count(),
            acked_rows: appends
                .iter()
                .filter(|a| a.outcome == Outcome::Ok)
                .map(|a| a.last_id - a.first_id + 1)
                .sum(),
            last_sent,
            acked_missing: Ranges::default(),
            acked_doubled: Ranges::default(),
            never_sent: Ranges::default(),
            failed_doubled: Ranges::default(),
        };
        for &(first, last, outcome) in &sent {
            if outcome != Outcome::Ok {
                continue;
            }
            for id in first..=last {
                match counts.get(&Some(id)).copied().unwrap_or(0) {
                    0 => r.acked_missing.push(id, 0),
                    1 => {}
                    n => r.acked_doubled.push(id, n),
                }
            }
        }
        for (&id, &n) in counts.iter().filter_map(|(id, n)| Some((id.as_ref()?, n))) {
            match outcome_of(id) {
                None => r.never_sent.push(id, n),
                Some(Outcome::Failed) if n > 1 => r.failed_doubled.push(id, n),
                Some(_) => {}
            }
        }
        r
    });
    report
}

impl Report {
    /// (check, passed, detail) for each check.
    fn checks(&self) -> Vec<(&'static str, bool, String)> {
        let n = self.max_id;
        let mut checks = vec![
            (
                "ids 1..N without a gap",
                self.missing.is_empty() && self.out_of_range.is_empty() && self.null_ids == 0,
                {
                    let mut d = format!("N = {n}, {} rows", self.rows);
                    if !self.missing.is_empty() {
                        let _ = write!(d, "; missing {}", self.missing.text(false));
                    }
                    if !self.out_of_range.is_empty() {
                        let _ = write!(d, "; below 1: {}", self.out_of_range.text(true));
                    }
                    if self.null_ids > 0 {
                        let _ = write!(d, "; {} rows without an id", self.null_ids);
                    }
                    d
                },
            ),
            (
                "no duplicate id",
                self.doubled.is_empty(),
                match self.doubled.is_empty() {
                    true => String::new(),
                    false => format!("doubled {}", self.doubled.text(true)),
                },
            ),
            (
                "latest time current",
                self.age.is_some_and(|a| a <= self.max_age),
                match self.age {
                    None => "the table is empty".into(),
                    Some(a) => format!(
                        "newest row {:.1} s old (at most {:.1} s)",
                        a.as_secs_f64(),
                        self.max_age.as_secs_f64()
                    ),
                },
            ),
        ];
        if let Some(r) = &self.record {
            let mut d = format!(
                "{} acknowledged rows of {} appends ({} failed)",
                r.acked_rows, r.appends, r.failed_appends
            );
            if !r.acked_missing.is_empty() {
                let _ = write!(d, "; missing {}", r.acked_missing.text(false));
            }
            if !r.acked_doubled.is_empty() {
                let _ = write!(d, "; doubled {}", r.acked_doubled.text(true));
            }
            checks.push((
                "acknowledged ids exactly once",
                r.acked_missing.is_empty() && r.acked_doubled.is_empty(),
                d,
            ));
            let mut d = format!("last sent id {}", r.last_sent);
            if !r.never_sent.is_empty() {
                let _ = write!(d, "; never sent {}", r.never_sent.text(true));
            }
            if !r.failed_doubled.is_empty() {
                let _ = write!(
                    d,
                    "; of failed appends, doubled {}",
                    r.failed_doubled.text(true)
                );
            }
            checks.push((
                "nothing never sent",
                r.never_sent.is_empty() && r.failed_doubled.is_empty(),
                d,
            ));
        }
        checks
    }

    fn ok(&self) -> bool {
        self.checks().iter().all(|(_, ok, _)| *ok)
    }

    fn text(&self) -> String {
        let rows = self
            .checks()
            .into_iter()
            .map(|(name, ok, detail)| {
                vec![
                    name.to_owned(),
                    if ok { "ok" } else { "FAILED" }.to_owned(),
                    detail,
                ]
            })
            .collect();
        let verdict = if self.ok() {
            "verified"
        } else {
            "NOT verified"
        };
        format!(
            "{}\n{verdict}\n",
            output::table(&["check", "result", "detail"], rows)
        )
    }

    fn json(&self) -> Value {
        let checks: Vec<Value> = self
            .checks()
            .into_iter()
            .map(|(name, ok, detail)| json!({ "check": name, "ok": ok, "detail": detail }))
            .collect();
        json!({
            "ok": self.ok(),
            "rows": self.rows,
            "max_id": self.max_id,
            "missing": self.missing.json(false),
            "doubled": self.doubled.json(true),
            "below_1": self.out_of_range.json(true),
            "null_ids": self.null_ids,
            "latest_time_ms": self.latest_ms,
            "age_ms": self.age.map(|a| a.as_millis() as u64),
            "record": self.record.as_ref().map(|r| json!({
                "appends": r.appends,
                "failed_appends": r.failed_appends,
                "acked_rows": r.acked_rows,
                "last_sent_id": r.last_sent,
                "acked_missing": r.acked_missing.json(false),
                "acked_doubled": r.acked_doubled.json(true),
                "never_sent": r.never_sent.json(true),
                "failed_doubled": r.failed_doubled.json(true),
            })),
            "checks": checks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(ids: &[(i64, u64)]) -> BTreeMap<Option<i64>, u64> {
        ids.iter().map(|&(id, n)| (Some(id), n)).collect()
    }

    fn append(seq: u64, first: u64, last: u64, outcome: Outcome) -> AppendRecord {
        AppendRecord {
            seq,
            first_id: first,
            last_id: last,
            outcome,
            latency_us: 1,
            retries: 0,
            duplicate: false,
            sent_at_ms: 0,
            acked_at_ms: 0,
            site: None,
            error: None,
        }
    }

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn exactly_one_to_n_and_current_passes() {
        let r = check(
            &counts(&[(1, 1), (2, 1), (3, 1)]),
            Some(1_000),
            2_000,
            MIN,
            None,
        );
        assert!(r.ok(), "{r:?}");
        assert_eq!(r.max_id, 3);
    }

    #[test]
    fn gaps_and_duplicates_come_out_as_ranges() {
        let c = counts(&[(1, 1), (2, 2), (4, 1), (5, 3), (6, 3), (7, 2), (10, 1)]);
        let r = check(&c, Some(0), 0, MIN, None);
        assert!(!r.ok());
        assert_eq!(r.missing.ranges, vec![(3, 3, 0), (8, 9, 0)]);
        assert_eq!(r.missing.ids, 3);
        assert_eq!(r.missing.text(false), "3, 8-9 (3 ids)");
        assert_eq!(r.doubled.text(true), "2 ×2, 5-6 ×3, 7 ×2 (4 ids)");
    }

    #[test]
    fn an_old_or_empty_table_is_not_current() {
        let c = counts(&[(1, 1)]);
        assert!(!check(&c, Some(0), 61_000, MIN, None).ok());
        assert!(check(&c, Some(0), 60_000, MIN, None).ok());
        assert!(!check(&BTreeMap::new(), None, 0, MIN, None).ok());
    }

    #[test]
    fn the_record_tells_acked_from_unknown_and_never_sent() {
        let record = [
            append(1, 1, 2, Outcome::Ok),
            append(3, 5, 6, Outcome::Failed),
            append(2, 3, 4, Outcome::Ok),
        ];
        // Acked 1-4 once, the failed append's 5-6 once: all fine.
        let c = counts(&[(1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (6, 1)]);
        assert!(check(&c, Some(0), 0, MIN, Some(&record)).ok());
        // The failed append absent: the record checks pass, the 1..N check does not.
        let c = counts(&[(1, 1), (2, 1), (3, 1), (4, 1)]);
        let r = check(&c, Some(0), 0, MIN, Some(&record));
        assert_eq!(r.missing.ranges, vec![(5, 6, 0)]);
        let rr = r.record.as_ref().unwrap();
        assert!(rr.acked_missing.is_empty() && rr.never_sent.is_empty());
        // An acked id missing, one doubled, a failed one doubled, one never sent.
        let c = counts(&[(1, 1), (2, 2), (4, 1), (5, 2), (6, 1), (7, 1)]);
        let r = check(&c, Some(0), 0, MIN, Some(&record));
        let rr = r.record.as_ref().unwrap();
        assert_eq!(rr.acked_missing.text(false), "3 (1 id)");
        assert_eq!(rr.acked_doubled.text(true), "2 ×2 (1 id)");
        assert_eq!(rr.failed_doubled.text(true), "5 ×2 (1 id)");
        assert_eq!(rr.never_sent.text(true), "7 ×1 (1 id)");
        assert_eq!(rr.acked_rows, 4);
        assert!(!r.ok());
    }

    #[test]
    fn many_ranges_are_cut_after_the_first_twenty() {
        let c = counts(&(0..30).map(|i| (i * 2 + 1, 1)).collect::<Vec<_>>());
        let r = check(&c, Some(0), 0, MIN, None);
        assert_eq!(r.missing.ranges.len(), 29);
        assert!(
            r.missing
                .text(false)
                .ends_with("… (9 more ranges) (29 ids)")
        );
    }
}
