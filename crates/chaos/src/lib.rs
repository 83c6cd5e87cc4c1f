//! Shoal's fault tier, the pure part: what a chaos run records and how it is judged.
//!
//! - [`history`]: one operation a line (JSONL): client appends and reads as invoke/ok/fail/info
//!   pairs, nemesis start/stop, and the final state read after the cluster healed.
//! - [`check`]: Jepsen's set-full checks over a history (acknowledged ids present exactly once,
//!   nothing never sent, no lost or flip-flopping ids), replica agreement per chunk, and
//!   availability per nemesis window; a [`check::Report`] rendered as text or JSON.
//!
//! The processes, namespaces and nemeses that produce histories live in `shoal chaos`
//! (`crates/shoal/src/cmd/chaos/`): this crate never touches a cluster, so every check is
//! unit-tested against hand-built histories, violating ones included.

pub mod check;
pub mod history;
