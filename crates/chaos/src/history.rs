//! A chaos run's history: one [`Op`] a line (JSONL), in the order things happened.
//!
//! Client operations come as an `invoke` line when sent and a completion line (`ok`, `fail` or
//! `info`) when answered, Jepsen's vocabulary: `fail` means it certainly did not happen (refused
//! before anything was written); `info` means the outcome is unknown (a timeout, retries
//! exhausted, a crash); an invoke without a completion counts as `info`. Completions repeat the
//! invoke's time as `t_invoke`, so a completion line alone says when the operation ran.
//!
//! Besides appends and reads: `nemesis_start` / `nemesis_stop` bracket each fault, and after the
//! faults are healed `final_read` (a read through one data node), `replica_read` (one replica of
//! one chunk, pinned) and `chunk_state` (a chunk's state and replica checksums) record what the
//! cluster holds.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Invoke,
    Ok,
    Fail,
    Info,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum F {
    /// Rows `ids` appended as `(writer, seq)`.
    Append,
    /// `SELECT id` through data node `node` while faults run.
    Read,
    /// The same after the faults were healed and the cluster recovered.
    FinalRead,
    /// One replica of `chunk` on `node`, read directly: `pairs` in its log order.
    ReplicaRead,
    /// `chunk`'s state and its replicas' checksums, once recovered (or given up waiting).
    ChunkState,
    /// A fault starts; `value` says which.
    NemesisStart,
    /// The fault of the matching start (same `value`) ends.
    NemesisStop,
    /// Data node `node`'s replica repairs since it started, by how (`repairs`), read from its
    /// `/metrics` at the end.
    Repairs,
}

/// One line of a history. Fields a given `f` does not use are absent.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// Who did it: `w3` (a writer), `r1` (a reader), `nemesis`, `final`.
    pub process: String,
    #[serde(rename = "type")]
    pub kind: Kind,
    pub f: F,
    /// When it happened (invoke: sent; completion: answered), ms since the Unix epoch.
    pub t: u64,
    /// On a completion: when it was invoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t_invoke: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Appends: the ids sent; reads: the ids seen (with repetitions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<u64>,
    /// The data node that answered (appends: the coordinator that acknowledged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Why it failed: a gRPC code or error text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Nemesis: what it does, e.g. `pause node2 (primary of chunk 7) 20s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<u64>,
    /// Replica reads: `(writer, seq)` of each row, in the replica's log order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pairs: Vec<(u64, u64)>,
    /// Replica reads: whether the catalog had this replica in sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_sync: Option<bool>,
    /// Chunk states: CONSTRUCTING / RECOVERING / COMPLETE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Chunk states: checksum per in-sync replica's node (`?` if it did not answer).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checksums: BTreeMap<String, String>,
    /// Repairs: count per how (`cut`, `snapshot`, `reset`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub repairs: BTreeMap<String, u64>,
}

impl Op {
    /// An op with only the common fields set.
    pub fn new(process: impl Into<String>, kind: Kind, f: F, t: u64) -> Self {
        Self {
            process: process.into(),
            kind,
            f,
            t,
            t_invoke: None,
            writer: None,
            seq: None,
            ids: Vec::new(),
            node: None,
            code: None,
            value: None,
            chunk: None,
            pairs: Vec::new(),
            in_sync: None,
            state: None,
            checksums: BTreeMap::new(),
            repairs: BTreeMap::new(),
        }
    }

    /// This op's completion at `t`: same process, f, writer, seq; invoked at `self.t`.
    pub fn complete(&self, kind: Kind, t: u64) -> Self {
        Self {
            t_invoke: Some(self.t),
            writer: self.writer,
            seq: self.seq,
            ..Self::new(self.process.clone(), kind, self.f, t)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: not a history operation: {source}")]
    Parse {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
}

/// Reads a history file; blank lines are skipped.
pub fn load(path: &Path) -> Result<Vec<Op>, HistoryError> {
    let io = |source| HistoryError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut ops = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        ops.push(
            serde_json::from_str(&line).map_err(|source| HistoryError::Parse {
                path: path.to_owned(),
                line: i + 1,
                source,
            })?,
        );
    }
    Ok(ops)
}

/// Appends ops to a history file as they happen, one flushed line each, so a killed process
/// leaves everything it recorded behind.
pub struct Recorder {
    path: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
}

impl Recorder {
    pub fn create(path: &Path) -> Result<Self, HistoryError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| HistoryError::Io {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            path: path.to_owned(),
            out: std::io::BufWriter::new(file),
        })
    }

    pub fn record(&mut self, op: &Op) -> Result<(), HistoryError> {
        let io = |source| HistoryError::Io {
            path: self.path.clone(),
            source,
        };
        serde_json::to_writer(&mut self.out, op).map_err(|e| io(e.into()))?;
        self.out.write_all(b"\n").map_err(io)?;
        self.out.flush().map_err(io)
    }
}

/// Several processes' histories as one, ordered by time (stable: a process's own order is
/// kept for equal times).
pub fn merge(parts: Vec<Vec<Op>>) -> Vec<Op> {
    let mut all: Vec<Op> = parts.into_iter().flatten().collect();
    all.sort_by_key(|op| op.t);
    all
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ops_round_trip_through_a_file_and_absent_fields_stay_absent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl");
        let mut invoke = Op::new("w1", Kind::Invoke, F::Append, 10);
        (invoke.writer, invoke.seq, invoke.ids) = (Some(7), Some(1), vec![1, 2]);
        let mut ok = invoke.complete(Kind::Ok, 25);
        ok.node = Some("node2".into());
        let mut rec = Recorder::create(&path).unwrap();
        rec.record(&invoke).unwrap();
        rec.record(&ok).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines().next().unwrap(),
            r#"{"process":"w1","type":"invoke","f":"append","t":10,"writer":7,"seq":1,"ids":[1,2]}"#
        );
        assert_eq!(load(&path).unwrap(), vec![invoke, ok]);
    }

    #[test]
    fn a_bad_line_is_named_by_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl");
        std::fs::write(&path, "\n{\"process\":\"w1\"}\n").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("h.jsonl:2: not a history operation"), "{err}");
    }

    #[test]
    fn merge_orders_by_time_keeping_each_process_order_on_ties() {
        let a = vec![
            Op::new("a", Kind::Invoke, F::Read, 5),
            Op::new("a", Kind::Ok, F::Read, 9),
        ];
        let b = vec![Op::new("b", Kind::Info, F::NemesisStart, 5)];
        let merged: Vec<(String, u64)> = merge(vec![a, b])
            .into_iter()
            .map(|o| (o.process, o.t))
            .collect();
        assert_eq!(merged, [("a".into(), 5), ("b".into(), 5), ("a".into(), 9)]);
    }
}
