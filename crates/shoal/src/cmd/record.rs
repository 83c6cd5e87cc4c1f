//! The writer's record: one JSON object a line per finished append, in the order they finished.
//! `shoal write --record` writes it as it goes (a line is flushed when its append finishes, so a
//! killed writer leaves every decided append behind); `shoal verify --record` reads it back to
//! tell acknowledged rows from rows whose outcome is unknown.

use std::io::BufRead;
use std::path::Path;

use anyhow::Context;
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

pub fn load(path: &Path) -> anyhow::Result<Vec<AppendRecord>> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open the record {}", path.display()))?;
    let mut records = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        records.push(
            serde_json::from_str(&line)
                .with_context(|| format!("{}:{}: not a writer record", path.display(), i + 1))?,
        );
    }
    Ok(records)
}
