//! What the operator reads: the plan before, the record on `--show`, and at the end each
//! step's duration with what the probe (and the writer, given its record) saw during it.

use serde_json::json;

use super::state::{Status, UpgradeState};
use crate::output;
use shoal_client::record::{self, AppendRecord, WindowStats};

pub fn plan(st: &UpgradeState, json: bool) {
    if json {
        return;
    }
    println!(
        "{} {} -> {}, one machine at a time:",
        if st.rolling_back {
            "rollback"
        } else {
            "upgrade"
        },
        st.source_version(),
        st.target_version()
    );
    let rows = st
        .machines
        .iter()
        .enumerate()
        .map(|(i, m)| {
            vec![
                (i + 1).to_string(),
                m.machine.clone(),
                m.nodes().collect::<Vec<_>>().join(" "),
                if m.finished() {
                    "done".into()
                } else if m.done.is_empty() {
                    "pending".into()
                } else {
                    format!("{} steps done", m.done.len())
                },
            ]
        })
        .collect();
    println!(
        "{}",
        output::table(&["#", "machine", "nodes", "state"], rows)
    );
}

pub fn show(st: Option<&UpgradeState>, json: bool) -> anyhow::Result<()> {
    match (st, json) {
        (None, true) => println!("null"),
        (None, false) => println!("no upgrade recorded"),
        (Some(st), true) => println!("{}", output::json(st)?),
        (Some(st), false) => {
            plan(st, false);
            println!("status: {}", describe(&st.status));
        }
    }
    Ok(())
}

fn describe(s: &Status) -> String {
    match s {
        Status::Running => "running (or its orchestrator died: `--resume`)".into(),
        Status::Paused(why) => format!("paused: {why}; `--resume` to go on"),
        Status::Done => "done; `--finalize` once satisfied, or `--rollback`".into(),
        Status::Failed(why) => format!("failed: {why}"),
        Status::Finalized => "finalized".into(),
    }
}

fn cells(s: &WindowStats) -> [String; 4] {
    let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
    [
        s.appends.to_string(),
        s.failed.to_string(),
        ms(s.p99_ms),
        s.longest_gap_ms.map_or("-".into(), |g| g.to_string()),
    ]
}

pub fn finish(
    st: &UpgradeState,
    probe: &[AppendRecord],
    writer: Option<&[AppendRecord]>,
    json: bool,
) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    let mut steps = Vec::new();
    for s in &st.steps {
        // At least 1 ms wide, so an instant step still shows what was sent at that moment.
        let end = s.ended_ms.max(s.started_ms + 1);
        let p = record::window_stats(probe, s.started_ms, end);
        let w = writer.map(|w| record::window_stats(w, s.started_ms, end));
        let mut row = vec![
            s.machine.clone(),
            s.step.describe().to_owned(),
            format!("{:.2}", (s.ended_ms - s.started_ms) as f64 / 1000.0),
        ];
        row.extend(cells(&p));
        if let Some(w) = &w {
            row.extend(cells(w));
        }
        if !s.error.is_empty() {
            row[1] = format!("{} FAILED: {}", row[1], s.error);
        }
        rows.push(row);
        steps.push(json!({"machine": s.machine, "step": s.step, "seconds": (s.ended_ms - s.started_ms) as f64 / 1000.0, "error": s.error, "probe": p, "writer": w}));
    }
    let end = st.steps.last().map_or(st.started_ms, |s| s.ended_ms);
    let total_probe = record::window_stats(probe, st.started_ms, end + 1);
    let total_writer = writer.map(|w| record::window_stats(w, st.started_ms, end + 1));
    if json {
        let doc = json!({
            "from": st.from_version, "to": st.to_version, "rolling_back": st.rolling_back,
            "status": st.status, "seconds": (end - st.started_ms) as f64 / 1000.0,
            "probe": total_probe, "writer": total_writer, "steps": steps,
        });
        println!("{}", output::json(&doc)?);
        return Ok(());
    }
    let mut header = vec![
        "machine",
        "step",
        "seconds",
        "probe appends",
        "failed",
        "p99 ms",
        "longest gap ms",
    ];
    if writer.is_some() {
        header.extend(["writer appends", "failed", "p99 ms", "longest gap ms"]);
    }
    let mut total = vec![
        "all".to_owned(),
        "whole run".to_owned(),
        format!("{:.2}", (end - st.started_ms) as f64 / 1000.0),
    ];
    total.extend(cells(&total_probe));
    if let Some(w) = &total_writer {
        total.extend(cells(w));
    }
    rows.push(total);
    println!("{}", output::table(&header, rows));
    println!("{}", describe(&st.status));
    Ok(())
}
