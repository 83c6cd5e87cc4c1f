//! Building histories by hand for the checks' tests.

use super::Violation;
use crate::history::{F, Kind, Op};

/// The writer id of [`History::append`].
pub const WRITER: u64 = 7;

#[derive(Default)]
pub struct History {
    pub ops: Vec<Op>,
}

impl History {
    /// Append `seq` by [`WRITER`] invoked at `t_invoke`, completed as given (or never).
    pub fn append(&mut self, seq: u64, ids: &[u64], t_invoke: u64, done: Option<(Kind, u64)>) {
        let mut invoke = Op::new("w1", Kind::Invoke, F::Append, t_invoke);
        (invoke.writer, invoke.seq, invoke.ids) = (Some(WRITER), Some(seq), ids.to_vec());
        let completion = done.map(|(kind, t)| invoke.complete(kind, t));
        self.ops.push(invoke);
        self.ops.extend(completion);
    }

    pub fn read(&mut self, process: &str, t_invoke: u64, t: u64, ids: &[u64]) {
        let mut op = Op::new(process, Kind::Invoke, F::Read, t_invoke).complete(Kind::Ok, t);
        (op.ids, op.node) = (ids.to_vec(), Some("node1".into()));
        self.ops.push(op);
    }

    pub fn fail_read(&mut self, process: &str, t_invoke: u64, t: u64) {
        let op = Op::new(process, Kind::Invoke, F::Read, t_invoke).complete(Kind::Fail, t);
        self.ops.push(op);
    }

    pub fn final_read(&mut self, t: u64, ids: &[u64]) {
        self.final_read_via("node1", t, ids);
    }

    pub fn final_read_via(&mut self, node: &str, t: u64, ids: &[u64]) {
        let mut op = Op::new("final", Kind::Ok, F::FinalRead, t);
        (op.ids, op.node) = (ids.to_vec(), Some(node.into()));
        self.ops.push(op);
    }

    /// `node`'s replica of `chunk` read as `pairs` of [`WRITER`]'s seqs.
    pub fn replica(&mut self, chunk: u64, node: &str, in_sync: bool, seqs: &[u64]) {
        let pairs: Vec<(u64, u64)> = seqs.iter().map(|s| (WRITER, *s)).collect();
        self.replica_pairs(chunk, node, in_sync, &pairs);
    }

    /// A replica read directly: its rows' `(writer, seq)` in the order it answered.
    pub fn replica_pairs(&mut self, chunk: u64, node: &str, in_sync: bool, pairs: &[(u64, u64)]) {
        let mut op = Op::new("final", Kind::Ok, F::ReplicaRead, 200);
        op.chunk = Some(chunk);
        op.node = Some(node.into());
        op.in_sync = Some(in_sync);
        op.pairs = pairs.to_vec();
        self.ops.push(op);
    }

    pub fn chunk_state(&mut self, chunk: u64, state: &str, checksums: &[(&str, &str)]) {
        let mut op = Op::new("final", Kind::Ok, F::ChunkState, 150);
        op.chunk = Some(chunk);
        op.state = Some(state.into());
        op.checksums = checksums
            .iter()
            .map(|(n, c)| ((*n).to_owned(), (*c).to_owned()))
            .collect();
        self.ops.push(op);
    }

    /// Data node `node` had repaired replicas `repairs` (how, count); `None`: unreachable.
    pub fn repairs(&mut self, node: &str, repairs: Option<&[(&str, u64)]>) {
        let mut op = Op::new("final", Kind::Ok, F::Repairs, 160);
        op.node = Some(node.into());
        match repairs {
            Some(r) => op.repairs = r.iter().map(|(h, n)| ((*h).to_owned(), *n)).collect(),
            None => (op.kind, op.code) = (Kind::Fail, Some("connection refused".into())),
        }
        self.ops.push(op);
    }

    pub fn nemesis(&mut self, what: &str, start: u64, stop: u64) {
        let mut op = Op::new("nemesis", Kind::Info, F::NemesisStart, start);
        op.value = Some(what.into());
        self.ops.push(op.clone());
        (op.f, op.t) = (F::NemesisStop, stop);
        self.ops.push(op);
    }
}

pub fn kinds(v: &[Violation]) -> Vec<&'static str> {
    v.iter().map(Violation::kind).collect()
}
