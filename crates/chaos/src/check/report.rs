//! The checker's verdict: a human summary and JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Value, json};

use super::Violation;
use super::availability::Window;
use super::set_full::Counts;

/// Violations of one kind listed in the text summary; the rest are counted.
const SHOWN_PER_KIND: usize = 5;
/// ... and in the JSON (a run that lost a chunk has thousands).
const LISTED_PER_KIND: usize = 100;

#[derive(Serialize, Clone, Debug)]
pub struct Report {
    pub counts: Counts,
    pub windows: Vec<Window>,
    pub violations: Vec<Violation>,
    /// Replica repairs the data nodes made, by how (`cut`, `snapshot`, `reset`): how the run's
    /// replicas that diverged or fell behind were brought back.
    pub repairs: BTreeMap<String, u64>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    fn by_kind(&self) -> BTreeMap<&'static str, Vec<&Violation>> {
        let mut map: BTreeMap<&'static str, Vec<&Violation>> = BTreeMap::new();
        for v in &self.violations {
            map.entry(v.kind()).or_default().push(v);
        }
        map
    }

    pub fn json(&self) -> Value {
        let by_kind = self.by_kind();
        let counts: BTreeMap<&str, usize> = by_kind.iter().map(|(k, v)| (*k, v.len())).collect();
        let listed: Vec<&&Violation> = by_kind
            .values()
            .flat_map(|v| v.iter().take(LISTED_PER_KIND))
            .collect();
        json!({
            "ok": self.ok(),
            "counts": self.counts,
            "windows": self.windows,
            "violation_counts": counts,
            "violations": listed,
            "repairs": self.repairs,
        })
    }

    pub fn text(&self) -> String {
        let c = &self.counts;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "history: {} appends ({} ok, {} failed, {} unknown), {} ids acknowledged; {} reads ok, {} failed; {} final reads ({} ids)",
            c.appends_ok + c.appends_failed + c.appends_unknown,
            c.appends_ok,
            c.appends_failed,
            c.appends_unknown,
            c.ids_acknowledged,
            c.reads_ok,
            c.reads_failed,
            c.final_reads,
            c.ids_final
        );
        let start = self.windows.iter().map(|w| w.from_ms).min().unwrap_or(0);
        let secs = |t: u64| (t.saturating_sub(start)) as f64 / 1000.0;
        let _ = writeln!(
            s,
            "availability:\n  {:<44} {:>7} {:>7} {:>8} {:>6} {:>8} {:>9} {:>9}",
            "window", "from s", "to s", "appends", "ok %", "p99 ms", "max gap s", "reads ok"
        );
        for w in &self.windows {
            let _ = writeln!(
                s,
                "  {:<44} {:>7.1} {:>7.1} {:>8} {:>6} {:>8} {:>9.1} {:>9}",
                truncate(&w.name, 44),
                secs(w.from_ms),
                secs(w.to_ms),
                w.appends,
                w.ok_pct.map_or("-".into(), |p| format!("{p:.1}")),
                w.p99_ms.map_or("-".into(), |p| p.to_string()),
                w.longest_ack_gap_ms as f64 / 1000.0,
                format!("{}/{}", w.reads_ok, w.reads),
            );
        }
        if !self.repairs.is_empty() {
            let list: Vec<String> = self
                .repairs
                .iter()
                .map(|(h, n)| format!("{h} {n}"))
                .collect();
            let _ = writeln!(s, "replica repairs: {}", list.join(", "));
        }
        if self.ok() {
            s.push_str("violations: none\n");
            return s;
        }
        let _ = writeln!(s, "violations: {}", self.violations.len());
        for (kind, list) in self.by_kind() {
            let _ = writeln!(s, "  {kind}: {}", list.len());
            for v in list.iter().take(SHOWN_PER_KIND) {
                let _ = writeln!(s, "    {}", serde_json::to_string(v).unwrap_or_default());
            }
            if list.len() > SHOWN_PER_KIND {
                let _ = writeln!(s, "    ... and {} more", list.len() - SHOWN_PER_KIND);
            }
        }
        s
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(n - 1).collect();
    t.push('…');
    t
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::check::check;
    use crate::check::test_history::*;
    use crate::history::Kind;

    #[test]
    fn the_summary_names_each_kind_with_examples_and_the_json_counts_them() {
        let mut h = History::default();
        for seq in 1..=8 {
            h.append(seq, &[seq], seq, Some((Kind::Ok, seq + 1)));
        }
        h.nemesis("partition node1 from node2", 0, 50);
        h.final_read(100, &[1, 2]);
        let r = check(&h.ops);
        assert!(!r.ok());
        let text = r.text();
        assert!(text.contains("violations: 6\n  lost: 6\n"), "{text}");
        assert!(text.contains("... and 1 more"), "{text}");
        assert!(text.contains("partition node1 from node2"), "{text}");
        let json = r.json();
        assert_eq!(json["ok"], false);
        assert_eq!(json["violation_counts"]["lost"], 6);
        assert_eq!(json["violations"][0]["kind"], "lost");
        assert_eq!(json["counts"]["appends_ok"], 8);
    }

    #[test]
    fn replica_repairs_are_summed_over_the_nodes_that_answered() {
        let mut h = History::default();
        h.append(1, &[1], 0, Some((Kind::Ok, 5)));
        h.final_read(10, &[1]);
        h.repairs("node1", Some(&[("cut", 2), ("snapshot", 1)]));
        h.repairs("node2", Some(&[("cut", 1)]));
        h.repairs("node3", None);
        let r = check(&h.ops);
        assert_eq!(
            r.json()["repairs"],
            serde_json::json!({"cut": 3, "snapshot": 1})
        );
        assert!(
            r.text().contains("replica repairs: cut 3, snapshot 1\n"),
            "{}",
            r.text()
        );
    }

    #[test]
    fn a_clean_run_says_so() {
        let mut h = History::default();
        h.append(1, &[1], 0, Some((Kind::Ok, 5)));
        h.final_read(10, &[1]);
        let r = check(&h.ops);
        assert!(r.ok());
        assert!(r.text().ends_with("violations: none\n"), "{}", r.text());
        assert_eq!(r.json()["ok"], true);
    }
}
