//! The writer's record: one JSON object a line per finished append, in the order they finished.
//! `shoal write --record` writes it as it goes (a line is flushed when its append finishes, so a
//! killed writer leaves every decided append behind); `shoal verify --record` reads it back to
//! tell acknowledged rows from rows whose outcome is unknown.

use std::io::BufRead;
use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Acknowledged: its rows are in the table exactly once.
    Ok,
    /// Not acknowledged within the client's deadline, or refused: its rows may or may not
    /// be in the table (at most once, thanks to `(writer_id, seq)`).
    Failed,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct AppendRecord {
    pub seq: u64,
    /// The append's rows have ids `first_id..=last_id`.
    pub first_id: u64,
    pub last_id: u64,
    pub outcome: Outcome,
    pub latency_us: u64,
    /// Failovers to another data node before the acknowledgement.
    pub retries: u32,
    /// The cluster had applied this `(writer_id, seq)` before: a retry's earlier attempt got
    /// through.
    pub duplicate: bool,
    /// Wall clock, ms since the Unix epoch.
    pub sent_at_ms: u64,
    /// When the acknowledgement (or the failure) arrived.
    pub acked_at_ms: u64,
    /// The data node that acknowledged it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The wall clock records are stamped with: ms since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub fn load(path: &Path) -> std::io::Result<Vec<AppendRecord>> {
    let named = |e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("the record {}: {e}", path.display()))
    };
    let file = std::fs::File::open(path).map_err(named)?;
    let mut records = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(named)?;
        if line.trim().is_empty() {
            continue;
        }
        records.push(serde_json::from_str(&line).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}:{}: not a writer record: {e}", path.display(), i + 1),
            )
        })?);
    }
    Ok(records)
}

/// The nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
    sorted.get(rank - 1).copied()
}

/// What a writer saw during a time window: for the upgrade report, per step.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct WindowStats {
    /// Appends sent in the window.
    pub appends: u64,
    pub failed: u64,
    /// Appends that needed another data node.
    pub retried: u64,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Longest time between two consecutive acknowledgements, the later one in the window.
    pub longest_gap_ms: Option<u64>,
}

/// Stats of the appends sent in `[from_ms, to_ms)` (and the acknowledgement gaps ending in it).
pub fn window_stats(records: &[AppendRecord], from_ms: u64, to_ms: u64) -> WindowStats {
    let inside = |t: u64| t >= from_ms && t < to_ms;
    let sent: Vec<&AppendRecord> = records.iter().filter(|r| inside(r.sent_at_ms)).collect();
    let mut latencies: Vec<u64> = sent
        .iter()
        .filter(|r| r.outcome == Outcome::Ok)
        .map(|r| r.latency_us)
        .collect();
    latencies.sort_unstable();
    let p99 = percentile(&latencies, 0.99).map(|us| us as f64 / 1000.0);
    let mut acks: Vec<u64> = records
        .iter()
        .filter(|r| r.outcome == Outcome::Ok)
        .map(|r| r.acked_at_ms)
        .collect();
    acks.sort_unstable();
    let longest_gap_ms = acks
        .windows(2)
        .filter(|w| inside(w[1]))
        .map(|w| w[1] - w[0])
        .max();
    WindowStats {
        appends: sent.len() as u64,
        failed: sent.iter().filter(|r| r.outcome == Outcome::Failed).count() as u64,
        retried: sent.iter().filter(|r| r.retries > 0).count() as u64,
        p99_ms: p99,
        max_ms: latencies.last().map(|us| *us as f64 / 1000.0),
        longest_gap_ms,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rec(seq: u64, sent: u64, acked: u64, ok: bool) -> AppendRecord {
        AppendRecord {
            seq,
            first_id: seq,
            last_id: seq,
            outcome: if ok { Outcome::Ok } else { Outcome::Failed },
            latency_us: (acked - sent) * 1000,
            retries: 0,
            duplicate: false,
            sent_at_ms: sent,
            acked_at_ms: acked,
            site: None,
            error: None,
        }
    }

    #[test]
    fn window_stats_count_the_window_and_the_gaps_ending_in_it() {
        let records = vec![
            rec(1, 0, 5, true),
            rec(2, 100, 105, true),
            rec(3, 200, 900, true), // a 795 ms gap after seq 2
            rec(4, 300, 400, false),
            rec(5, 1000, 1010, true),
        ];
        let s = window_stats(&records, 100, 1000);
        assert_eq!((s.appends, s.failed), (3, 1));
        assert_eq!(s.longest_gap_ms, Some(795));
        assert_eq!(s.max_ms, Some(700.0));
        let later = window_stats(&records, 1000, 2000);
        assert_eq!((later.appends, later.longest_gap_ms), (1, Some(110)));
        assert_eq!(window_stats(&records, 5000, 6000), WindowStats::default());
    }
}
