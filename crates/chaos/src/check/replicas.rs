//! Replica agreement after recovery, from the final `chunk_state` and `replica_read` ops.
//!
//! Once the faults are healed and the writers have stopped, every chunk must be COMPLETE with
//! one checksum across its in-sync replicas, and each in-sync replica, read directly, must hold
//! the same `(writer, seq)` records, each writer's in the same log order. (While writes run a
//! replica may be a prefix of another; after recovery a shorter one has lost its tail.) A record
//! appears once: the rows of one append are contiguous, so `(writer, seq)` may repeat only in a
//! run.
//!
//! Each writer's order, not the order across writers: a replica answers from its chunk files
//! first, whose rows a flush sorted by the table's sort columns (the workload's: `writer`),
//! then from memory in log order. Replicas flush at different times (60 s after their last
//! append, counted from a restart too), so one may answer in log order and another sorted by
//! writer with the same records. A sort by writer keeps each writer's records in log order (an
//! append's rows are one date: one chunk, one time order), so comparing the replicas with their
//! records stably sorted by writer compares every writer's log order.

use std::collections::{BTreeMap, HashSet};

use super::Violation;
use crate::history::{F, Kind, Op};

/// A replica's records, `(writer, seq)`: by writer, each writer's in log order.
type Records = Vec<(u64, u64)>;

pub fn check(ops: &[Op]) -> Vec<Violation> {
    let mut violations = Vec::new();
    for op in ops.iter().filter(|o| o.f == F::ChunkState) {
        chunk_state(op, &mut violations);
    }
    let mut by_chunk: BTreeMap<u64, Vec<(String, Records)>> = BTreeMap::new();
    for op in ops.iter().filter(|o| o.f == F::ReplicaRead) {
        let (Some(chunk), Some(true)) = (op.chunk, op.in_sync) else {
            continue;
        };
        let node = op.node.clone().unwrap_or_else(|| "?".into());
        if op.kind != Kind::Ok {
            violations.push(Violation::ReplicaUnreadable {
                chunk,
                node,
                error: op.code.clone().unwrap_or_default(),
            });
            continue;
        }
        let mut records = records(chunk, &node, &op.pairs, &mut violations);
        // Stable: each writer's records stay in the replica's order.
        records.sort_by_key(|&(writer, _)| writer);
        by_chunk.entry(chunk).or_default().push((node, records));
    }
    for (chunk, mut replicas) in by_chunk {
        replicas.sort();
        let Some(((a, first), rest)) = replicas.split_first() else {
            continue;
        };
        for (b, other) in rest {
            if let Some(position) =
                (0..first.len().max(other.len())).find(|i| first.get(*i) != other.get(*i))
            {
                violations.push(Violation::ReplicaDiverged {
                    chunk,
                    a: a.clone(),
                    b: b.clone(),
                    position,
                    a_has: first.get(position).copied(),
                    b_has: other.get(position).copied(),
                });
            }
        }
    }
    violations
}

fn chunk_state(op: &Op, violations: &mut Vec<Violation>) {
    let chunk = op.chunk.unwrap_or_default();
    let state = op.state.clone().unwrap_or_default();
    if state != "COMPLETE" {
        violations.push(Violation::NotRecovered { chunk, state });
    }
    let distinct: HashSet<&String> = op.checksums.values().collect();
    if distinct.len() > 1 || distinct.iter().any(|c| c.as_str() == "?") {
        violations.push(Violation::ChecksumMismatch {
            chunk,
            checksums: op
                .checksums
                .iter()
                .map(|(n, c)| (n.clone(), c.clone()))
                .collect(),
        });
    }
}

/// A replica's rows as records: runs of one `(writer, seq)` collapsed; a record seen again
/// after others is a duplicate.
fn records(
    chunk: u64,
    node: &str,
    pairs: &[(u64, u64)],
    violations: &mut Vec<Violation>,
) -> Records {
    let mut out: Records = Vec::new();
    let mut seen = HashSet::new();
    for p in pairs {
        if out.last() == Some(p) {
            continue;
        }
        if !seen.insert(*p) {
            violations.push(Violation::ReplicaDuplicate {
                chunk,
                node: node.to_owned(),
                writer: p.0,
                seq: p.1,
            });
        }
        out.push(*p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::test_history::*;

    #[test]
    fn equal_replicas_and_complete_chunks_pass_and_stale_replicas_are_not_compared() {
        let mut h = History::default();
        h.chunk_state(1, "COMPLETE", &[("node1", "ab"), ("node2", "ab")]);
        h.replica(1, "node1", true, &[1, 1, 1, 2, 3]);
        h.replica(1, "node2", true, &[1, 2, 3, 3]);
        h.replica(1, "node3", false, &[9]);
        assert_eq!(check(&h.ops), vec![]);
    }

    #[test]
    fn a_replica_sorted_by_writer_by_a_flush_matches_one_in_log_order_but_not_a_reordered_one() {
        let log = [(2, 1), (1, 1), (1, 1), (2, 2), (1, 2)];
        let flushed = [(1, 1), (1, 1), (1, 2), (2, 1), (2, 2)];
        let reordered = [(1, 2), (1, 1), (1, 1), (2, 1), (2, 2)];
        let mut h = History::default();
        h.replica_pairs(1, "node1", true, &log);
        h.replica_pairs(1, "node2", true, &flushed);
        assert_eq!(check(&h.ops), vec![]);
        h.replica_pairs(1, "node3", true, &reordered);
        assert_eq!(
            check(&h.ops),
            vec![Violation::ReplicaDiverged {
                chunk: 1,
                a: "node1".into(),
                b: "node3".into(),
                position: 0,
                a_has: Some((1, 1)),
                b_has: Some((1, 2)),
            }]
        );
    }

    #[test]
    fn a_chunk_not_complete_or_with_differing_checksums_is_reported() {
        let mut h = History::default();
        h.chunk_state(1, "RECOVERING", &[("node1", "ab"), ("node2", "ab")]);
        h.chunk_state(2, "COMPLETE", &[("node1", "ab"), ("node2", "cd")]);
        h.chunk_state(3, "COMPLETE", &[("node1", "?")]);
        assert_eq!(
            kinds(&check(&h.ops)),
            ["not_recovered", "checksum_mismatch", "checksum_mismatch"]
        );
    }

    #[test]
    fn diverged_short_duplicated_and_unreadable_replicas_are_reported() {
        let mut h = History::default();
        h.replica(1, "node1", true, &[1, 2, 3]);
        h.replica(1, "node2", true, &[1, 4, 3]);
        h.replica(2, "node1", true, &[1, 2]);
        h.replica(2, "node2", true, &[1]);
        h.replica(3, "node1", true, &[1, 2, 1]);
        let mut unreadable = Op::new("final", Kind::Fail, F::ReplicaRead, 5);
        (unreadable.chunk, unreadable.node) = (Some(4), Some("node3".into()));
        (unreadable.in_sync, unreadable.code) = (Some(true), Some("Unavailable".into()));
        h.ops.push(unreadable);
        let v = check(&h.ops);
        assert_eq!(
            kinds(&v),
            [
                "replica_duplicate",
                "replica_unreadable",
                "replica_diverged",
                "replica_diverged"
            ]
        );
        assert_eq!(
            v[2],
            Violation::ReplicaDiverged {
                chunk: 1,
                a: "node1".into(),
                b: "node2".into(),
                position: 1,
                a_has: Some((WRITER, 2)),
                b_has: Some((WRITER, 4)),
            }
        );
        assert!(matches!(
            v[3],
            Violation::ReplicaDiverged {
                chunk: 2,
                position: 1,
                b_has: None,
                ..
            }
        ));
    }
}
