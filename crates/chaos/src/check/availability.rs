//! What clients saw while each fault was on: appends and reads invoked in the window, the share
//! acknowledged, p99 latency, and the longest time in the window without any acknowledgement.
//! Not a correctness check: a partition may rightly make a chunk unwritable.

use serde::Serialize;

use crate::history::{F, Kind, Op};

#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Window {
    /// The nemesis (`value` of its start), or `whole run`.
    pub name: String,
    pub from_ms: u64,
    pub to_ms: u64,
    pub appends: u64,
    pub appends_ok: u64,
    pub appends_failed: u64,
    pub appends_unknown: u64,
    /// Acknowledged share of the appends invoked in the window, in percent.
    pub ok_pct: Option<f64>,
    /// Of the acknowledged appends.
    pub p99_ms: Option<u64>,
    /// The longest stretch of the window without an acknowledgement.
    pub longest_ack_gap_ms: u64,
    pub reads: u64,
    pub reads_ok: u64,
}

/// One window per nemesis start (to its stop, or the history's end), then the whole run.
pub fn windows(ops: &[Op]) -> Vec<Window> {
    let (Some(first), Some(last)) = (ops.iter().map(|o| o.t).min(), ops.iter().map(|o| o.t).max())
    else {
        return Vec::new();
    };
    let mut acks: Vec<u64> = ops
        .iter()
        .filter(|o| o.f == F::Append && o.kind == Kind::Ok)
        .map(|o| o.t)
        .collect();
    acks.sort_unstable();
    let mut out = Vec::new();
    for (i, start) in ops.iter().enumerate() {
        if start.f != F::NemesisStart {
            continue;
        }
        let stop = ops[i..]
            .iter()
            .find(|o| o.f == F::NemesisStop && o.value == start.value)
            .map_or(last, |o| o.t);
        let name = start.value.clone().unwrap_or_else(|| "nemesis".into());
        out.push(window(name, start.t, stop, ops, &acks));
    }
    // The run's end is the last client operation's, not the final reads' after healing.
    let end = ops
        .iter()
        .filter(|o| matches!(o.f, F::Append | F::Read))
        .map(|o| o.t)
        .max()
        .unwrap_or(last);
    out.push(window("whole run".into(), first, end, ops, &acks));
    out
}

fn window(name: String, from: u64, to: u64, ops: &[Op], acks: &[u64]) -> Window {
    let invoked = |f: F| {
        ops.iter()
            .filter(move |o| o.f == f && o.kind != Kind::Invoke)
            .filter(|o| (from..to).contains(&o.t_invoke.unwrap_or(o.t)))
    };
    let appends: Vec<&Op> = invoked(F::Append).collect();
    let count = |k: Kind| appends.iter().filter(|o| o.kind == k).count() as u64;
    let mut latencies: Vec<u64> = appends
        .iter()
        .filter(|o| o.kind == Kind::Ok)
        .map(|o| o.t.saturating_sub(o.t_invoke.unwrap_or(o.t)))
        .collect();
    latencies.sort_unstable();
    let ok = count(Kind::Ok);
    // Appends invoked but never completed count as unknown.
    let invokes = ops
        .iter()
        .filter(|o| o.f == F::Append && o.kind == Kind::Invoke && (from..to).contains(&o.t))
        .count() as u64;
    let marks = std::iter::once(from)
        .chain(acks.iter().copied().filter(|t| (from..to).contains(t)))
        .chain(std::iter::once(to));
    let marks: Vec<u64> = marks.collect();
    Window {
        name,
        from_ms: from,
        to_ms: to,
        appends: invokes,
        appends_ok: ok,
        appends_failed: count(Kind::Fail),
        appends_unknown: invokes.saturating_sub(ok + count(Kind::Fail)),
        ok_pct: (invokes > 0).then(|| ok as f64 * 100.0 / invokes as f64),
        p99_ms: percentile(&latencies, 0.99),
        longest_ack_gap_ms: marks.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0),
        reads: invoked(F::Read).count() as u64,
        reads_ok: invoked(F::Read).filter(|o| o.kind == Kind::Ok).count() as u64,
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::check::test_history::*;

    #[test]
    fn a_window_counts_what_was_invoked_in_it_and_its_longest_silence() {
        let mut h = History::default();
        h.append(1, &[1], 0, Some((Kind::Ok, 10)));
        h.append(2, &[2], 100, Some((Kind::Ok, 150)));
        h.append(3, &[3], 120, Some((Kind::Info, 900)));
        h.append(4, &[4], 130, None);
        h.append(5, &[5], 140, Some((Kind::Fail, 141)));
        h.append(6, &[6], 400, Some((Kind::Ok, 1100)));
        h.read("r1", 200, 210, &[1]);
        h.fail_read("r1", 300, 310);
        h.nemesis("pause node2", 100, 1000);
        let w = windows(&h.ops);
        assert_eq!(w.len(), 2);
        assert_eq!(
            w[0],
            Window {
                name: "pause node2".into(),
                from_ms: 100,
                to_ms: 1000,
                appends: 5,
                appends_ok: 2,
                appends_failed: 1,
                appends_unknown: 2,
                ok_pct: Some(40.0),
                p99_ms: Some(700),
                longest_ack_gap_ms: 850, // from the ack at 150 to the window's end
                reads: 2,
                reads_ok: 1,
            }
        );
        assert_eq!((w[1].name.as_str(), w[1].appends), ("whole run", 6));
        assert_eq!((w[1].from_ms, w[1].to_ms), (0, 1100));
    }
}
