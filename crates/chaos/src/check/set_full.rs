//! Jepsen's set-full check over appends of unique ids and reads of the whole set.
//!
//! Each id is sent by exactly one append. An id is *known* from the earlier of its append's
//! acknowledgement and the completion of the first read that saw it; from then on every read
//! invoked later must see it exactly once. A read that lacks a known id followed by one that has
//! it again is a *flip-flop*; a final read (after healing) that lacks it means it is *lost*.
//! Every read must also hold only ids that were sent, none whose append failed (was refused),
//! and no id twice; after healing an append's ids are all there or all absent.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use super::Violation;
use crate::history::{F, Kind, Op};

/// What the history holds, for the summary.
#[derive(Serialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub appends_ok: u64,
    pub appends_failed: u64,
    /// Outcome unknown (`info`, or never completed).
    pub appends_unknown: u64,
    pub ids_acknowledged: u64,
    pub reads_ok: u64,
    pub reads_failed: u64,
    pub final_reads: u64,
    /// Ids in the first final read.
    pub ids_final: u64,
}

pub struct SetFull {
    pub counts: Counts,
    pub violations: Vec<Violation>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok { at: u64 },
    Failed,
    Unknown,
}

struct Append {
    writer: u64,
    seq: u64,
    ids: Vec<u64>,
    outcome: Outcome,
}

struct Read {
    label: String,
    t_invoke: u64,
    t: u64,
    ids: HashSet<u64>,
    counts: HashMap<u64, u64>,
}

impl Read {
    fn new(op: &Op) -> Self {
        let mut counts = HashMap::new();
        for id in &op.ids {
            *counts.entry(*id).or_insert(0) += 1;
        }
        let node = op.node.as_deref().unwrap_or("?");
        Self {
            label: format!("{} via {node} at {}", op.process, op.t),
            t_invoke: op.t_invoke.unwrap_or(op.t),
            t: op.t,
            ids: counts.keys().copied().collect(),
            counts,
        }
    }
}

pub fn check(ops: &[Op]) -> SetFull {
    let mut violations = Vec::new();
    let appends = appends(ops, &mut violations);
    let by_id: HashMap<u64, usize> = appends
        .iter()
        .enumerate()
        .flat_map(|(i, a)| a.ids.iter().map(move |id| (*id, i)))
        .collect();
    let mut reads: Vec<Read> = ops
        .iter()
        .filter(|o| o.f == F::Read && o.kind == Kind::Ok)
        .map(Read::new)
        .collect();
    reads.sort_by_key(|r| r.t_invoke);
    let finals: Vec<Read> = ops
        .iter()
        .filter(|o| o.f == F::FinalRead && o.kind == Kind::Ok)
        .map(Read::new)
        .collect();
    if finals.is_empty() {
        violations.push(Violation::BadHistory {
            reason: "no final read: nothing says what the cluster kept".into(),
        });
    }

    for r in reads.iter().chain(&finals) {
        contents(r, &appends, &by_id, &mut violations);
    }
    lost_and_flip_flops(&appends, &reads, &finals, &mut violations);
    if let Some(first) = finals.first() {
        partial_appends(&appends, first, &mut violations);
    }

    let count = |pred: fn(&Outcome) -> bool| appends.iter().filter(|a| pred(&a.outcome)).count();
    let counts = Counts {
        appends_ok: count(|o| matches!(o, Outcome::Ok { .. })) as u64,
        appends_failed: count(|o| *o == Outcome::Failed) as u64,
        appends_unknown: count(|o| *o == Outcome::Unknown) as u64,
        ids_acknowledged: appends
            .iter()
            .filter(|a| matches!(a.outcome, Outcome::Ok { .. }))
            .map(|a| a.ids.len() as u64)
            .sum(),
        reads_ok: reads.len() as u64,
        reads_failed: ops
            .iter()
            .filter(|o| o.f == F::Read && matches!(o.kind, Kind::Fail | Kind::Info))
            .count() as u64,
        final_reads: finals.len() as u64,
        ids_final: finals.first().map_or(0, |r| r.ids.len() as u64),
    };
    SetFull { counts, violations }
}

/// Appends by invoke, with their outcome from the completion (none: unknown).
fn appends(ops: &[Op], violations: &mut Vec<Violation>) -> Vec<Append> {
    let mut list: Vec<Append> = Vec::new();
    let mut index: BTreeMap<(u64, u64), usize> = BTreeMap::new();
    let mut sent: HashSet<u64> = HashSet::new();
    for op in ops.iter().filter(|o| o.f == F::Append) {
        let (Some(writer), Some(seq)) = (op.writer, op.seq) else {
            violations.push(Violation::BadHistory {
                reason: format!("an append of {} without writer and seq", op.process),
            });
            continue;
        };
        if op.kind == Kind::Invoke {
            if let Some(id) = op.ids.iter().find(|id| !sent.insert(**id)) {
                violations.push(Violation::BadHistory {
                    reason: format!("id {id} sent twice (again by ({writer}, {seq}))"),
                });
            }
            index.insert((writer, seq), list.len());
            list.push(Append {
                writer,
                seq,
                ids: op.ids.clone(),
                outcome: Outcome::Unknown,
            });
            continue;
        }
        let Some(a) = index.get(&(writer, seq)).map(|i| &mut list[*i]) else {
            continue;
        };
        a.outcome = match op.kind {
            Kind::Ok => Outcome::Ok { at: op.t },
            Kind::Fail => Outcome::Failed,
            Kind::Info | Kind::Invoke => Outcome::Unknown,
        };
    }
    list
}

/// Each id a read holds: sent, not refused, once.
fn contents(
    r: &Read,
    appends: &[Append],
    by_id: &HashMap<u64, usize>,
    violations: &mut Vec<Violation>,
) {
    let mut ids: Vec<&u64> = r.ids.iter().collect();
    ids.sort_unstable();
    for id in ids {
        let count = r.counts[id];
        if count > 1 {
            violations.push(Violation::Duplicate {
                id: *id,
                count,
                read: r.label.clone(),
            });
        }
        match by_id.get(id).map(|i| &appends[*i]) {
            None => violations.push(Violation::NeverSent {
                id: *id,
                read: r.label.clone(),
            }),
            Some(a) if a.outcome == Outcome::Failed => violations.push(Violation::FailedPresent {
                id: *id,
                writer: a.writer,
                seq: a.seq,
                read: r.label.clone(),
            }),
            Some(_) => {}
        }
    }
}

fn lost_and_flip_flops(
    appends: &[Append],
    reads: &[Read],
    finals: &[Read],
    violations: &mut Vec<Violation>,
) {
    for a in appends {
        for id in &a.ids {
            let acked = match a.outcome {
                Outcome::Ok { at } => Some(at),
                _ => None,
            };
            let seen = reads
                .iter()
                .chain(finals)
                .filter(|r| r.ids.contains(id))
                .map(|r| r.t)
                .min();
            let Some(known_at) = acked.into_iter().chain(seen).min() else {
                continue;
            };
            let later = reads.iter().filter(|r| r.t_invoke > known_at);
            let mut missing: Option<&Read> = None;
            for r in later.chain(finals) {
                match (r.ids.contains(id), missing) {
                    (false, None) => missing = Some(r),
                    (true, Some(m)) => {
                        violations.push(Violation::FlipFlop {
                            id: *id,
                            known_at,
                            missing_from: m.label.clone(),
                            back_in: r.label.clone(),
                        });
                        break;
                    }
                    _ => {}
                }
            }
            if let Some(f) = finals.iter().find(|f| !f.ids.contains(id)) {
                violations.push(Violation::Lost {
                    id: *id,
                    writer: a.writer,
                    seq: a.seq,
                    acknowledged: acked.is_some(),
                    known_at,
                    missing_from: f.label.clone(),
                });
            }
        }
    }
}

fn partial_appends(appends: &[Append], last: &Read, violations: &mut Vec<Violation>) {
    for a in appends {
        let (present, absent): (Vec<u64>, Vec<u64>) =
            a.ids.iter().partition(|id| last.ids.contains(id));
        if !present.is_empty() && !absent.is_empty() {
            violations.push(Violation::PartialAppend {
                writer: a.writer,
                seq: a.seq,
                present,
                absent,
            });
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::check::test_history::*;

    #[test]
    fn a_clean_history_has_no_violation_and_counts_what_happened() {
        let mut h = History::default();
        h.append(1, &[1, 2], 0, Some((Kind::Ok, 10)));
        h.append(2, &[3], 5, Some((Kind::Info, 30))); // unknown, absent: fine
        h.append(3, &[4], 6, Some((Kind::Fail, 7)));
        h.append(4, &[5], 8, Some((Kind::Info, 40))); // unknown, present once: fine
        h.append(5, &[6], 9, None); // never completed: unknown
        h.read("r1", 11, 12, &[1, 2]);
        h.read("r1", 41, 42, &[1, 2, 5]);
        h.fail_read("r2", 43, 44);
        h.final_read(100, &[1, 2, 5]);
        let r = check(&h.ops);
        assert_eq!(r.violations, vec![]);
        assert_eq!(
            r.counts,
            Counts {
                appends_ok: 1,
                appends_failed: 1,
                appends_unknown: 3,
                ids_acknowledged: 2,
                reads_ok: 2,
                reads_failed: 1,
                final_reads: 1,
                ids_final: 3,
            }
        );
    }

    #[test]
    fn an_acknowledged_id_missing_at_the_end_is_lost() {
        let mut h = History::default();
        h.append(1, &[1], 0, Some((Kind::Ok, 10)));
        h.final_read(100, &[]);
        let v = check(&h.ops).violations;
        assert_eq!(
            v,
            vec![Violation::Lost {
                id: 1,
                writer: WRITER,
                seq: 1,
                acknowledged: true,
                known_at: 10,
                missing_from: "final via node1 at 100".into()
            }]
        );
    }

    #[test]
    fn an_unknown_id_once_read_then_missing_at_the_end_is_lost() {
        let mut h = History::default();
        h.append(1, &[1], 0, Some((Kind::Info, 50)));
        h.read("r1", 20, 30, &[1]);
        h.final_read(100, &[]);
        assert_eq!(
            kinds(&check(&h.ops).violations),
            ["lost"],
            "a read saw it: it was known from 30"
        );
    }

    #[test]
    fn a_known_id_missing_from_a_later_read_then_back_is_a_flip_flop() {
        let mut h = History::default();
        h.append(1, &[1], 0, Some((Kind::Ok, 10)));
        h.read("r1", 5, 8, &[]); // invoked before the ack: may miss it
        h.read("r1", 20, 22, &[]);
        h.read("r1", 30, 32, &[1]);
        h.final_read(100, &[1]);
        let v = check(&h.ops).violations;
        assert_eq!(
            v,
            vec![Violation::FlipFlop {
                id: 1,
                known_at: 10,
                missing_from: "r1 via node1 at 22".into(),
                back_in: "r1 via node1 at 32".into()
            }]
        );
    }

    #[test]
    fn a_read_concurrent_with_the_ack_may_miss_the_id() {
        let mut h = History::default();
        h.append(1, &[1], 0, Some((Kind::Ok, 10)));
        h.read("r1", 9, 12, &[]); // invoked before the ack
        h.final_read(100, &[1]);
        assert_eq!(check(&h.ops).violations, vec![]);
    }

    #[test]
    fn duplicates_never_sent_and_failed_ids_in_any_read_are_reported() {
        let mut h = History::default();
        h.append(1, &[1], 0, Some((Kind::Ok, 10)));
        h.append(2, &[2], 0, Some((Kind::Info, 10)));
        h.append(3, &[3], 0, Some((Kind::Fail, 10)));
        h.read("r1", 20, 21, &[1, 1, 3]);
        h.final_read(100, &[1, 2, 2, 99]);
        assert_eq!(
            kinds(&check(&h.ops).violations),
            [
                "duplicate",
                "failed_present",
                "duplicate",
                "never_sent",
                "lost"
            ],
            "the failed id 3 is never known from its append, but a read saw it, so its absence \
             at the end is a loss too"
        );
    }

    #[test]
    fn an_append_half_present_at_the_end_is_partial() {
        let mut h = History::default();
        h.append(1, &[1, 2, 3], 0, Some((Kind::Info, 10)));
        h.final_read(100, &[2]);
        assert_eq!(
            check(&h.ops).violations,
            vec![Violation::PartialAppend {
                writer: WRITER,
                seq: 1,
                present: vec![2],
                absent: vec![1, 3]
            }]
        );
    }

    #[test]
    fn every_final_read_is_checked_not_only_the_first() {
        let mut h = History::default();
        h.append(1, &[1], 0, Some((Kind::Ok, 10)));
        h.final_read(100, &[1]);
        h.final_read_via("node3", 101, &[]);
        assert_eq!(kinds(&check(&h.ops).violations), ["lost"]);
    }

    #[test]
    fn a_history_without_final_read_or_with_an_id_sent_twice_cannot_pass() {
        let mut h = History::default();
        h.append(1, &[1], 0, Some((Kind::Ok, 10)));
        h.append(2, &[1], 0, Some((Kind::Ok, 10)));
        assert_eq!(
            kinds(&check(&h.ops).violations),
            ["bad_history", "bad_history"]
        );
    }
}
