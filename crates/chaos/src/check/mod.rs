//! Judging a history: [`check`] runs every check and returns a [`Report`].
//!
//! - [`set_full`]: Jepsen's set-full over appends and reads (ids acknowledged, failed, unknown,
//!   never sent; lost, flip-flopping, duplicated).
//! - [`replicas`]: after recovery, every chunk COMPLETE with equal checksums, and its in-sync
//!   replicas holding the same `(writer, seq)` records in the same order.
//! - [`availability`]: what clients saw during each nemesis window (not a violation).

pub mod availability;
pub mod replicas;
pub mod report;
pub mod set_full;
#[cfg(test)]
mod test_history;

use serde::Serialize;

use crate::history::{F, Kind, Op};
pub use report::Report;

/// Something the cluster promised and did not keep. Ids are the rows' `id` column.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Violation {
    /// The history cannot be judged: no final read, or an id sent twice by the workload.
    BadHistory { reason: String },
    /// An id that was known (acknowledged, or seen by a read) is missing from a final read.
    Lost {
        id: u64,
        writer: u64,
        seq: u64,
        acknowledged: bool,
        known_at: u64,
        missing_from: String,
    },
    /// A read invoked after the id was known lacks it, and a later read has it again.
    FlipFlop {
        id: u64,
        known_at: u64,
        missing_from: String,
        back_in: String,
    },
    /// An id read more than once by one read.
    Duplicate { id: u64, count: u64, read: String },
    /// An id no append ever carried.
    NeverSent { id: u64, read: String },
    /// An id whose append failed (was refused) was read.
    FailedPresent {
        id: u64,
        writer: u64,
        seq: u64,
        read: String,
    },
    /// Some of an append's ids are in the final state and some are not: not atomic.
    PartialAppend {
        writer: u64,
        seq: u64,
        present: Vec<u64>,
        absent: Vec<u64>,
    },
    /// A chunk did not recover (not COMPLETE) after the faults were healed.
    NotRecovered { chunk: u64, state: String },
    /// A chunk's in-sync replicas report different checksums (or one did not answer).
    ChecksumMismatch {
        chunk: u64,
        checksums: Vec<(String, String)>,
    },
    /// An in-sync replica could not be read after recovery.
    ReplicaUnreadable {
        chunk: u64,
        node: String,
        error: String,
    },
    /// Two in-sync replicas of a chunk hold different records at the same position.
    ReplicaDiverged {
        chunk: u64,
        a: String,
        b: String,
        position: usize,
        a_has: Option<(u64, u64)>,
        b_has: Option<(u64, u64)>,
    },
    /// An in-sync replica holds a `(writer, seq)` twice, apart.
    ReplicaDuplicate {
        chunk: u64,
        node: String,
        writer: u64,
        seq: u64,
    },
}

impl Violation {
    /// The snake_case kind, as in the JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadHistory { .. } => "bad_history",
            Self::Lost { .. } => "lost",
            Self::FlipFlop { .. } => "flip_flop",
            Self::Duplicate { .. } => "duplicate",
            Self::NeverSent { .. } => "never_sent",
            Self::FailedPresent { .. } => "failed_present",
            Self::PartialAppend { .. } => "partial_append",
            Self::NotRecovered { .. } => "not_recovered",
            Self::ChecksumMismatch { .. } => "checksum_mismatch",
            Self::ReplicaUnreadable { .. } => "replica_unreadable",
            Self::ReplicaDiverged { .. } => "replica_diverged",
            Self::ReplicaDuplicate { .. } => "replica_duplicate",
        }
    }
}

/// Runs every check over `ops` (one merged history, any order).
pub fn check(ops: &[Op]) -> Report {
    let set = set_full::check(ops);
    let mut violations = set.violations.clone();
    violations.extend(replicas::check(ops));
    Report {
        counts: set.counts,
        windows: availability::windows(ops),
        violations,
        repairs: repairs(ops),
    }
}

/// Replica repairs over every data node (the last reading of each), by how.
fn repairs(ops: &[Op]) -> std::collections::BTreeMap<String, u64> {
    let mut last: std::collections::BTreeMap<&str, &Op> = Default::default();
    for op in ops
        .iter()
        .filter(|o| o.f == F::Repairs && o.kind == Kind::Ok)
    {
        last.insert(op.node.as_deref().unwrap_or(""), op);
    }
    let mut total = std::collections::BTreeMap::new();
    for (how, n) in last.values().flat_map(|o| &o.repairs) {
        *total.entry(how.clone()).or_insert(0) += n;
    }
    total
}
