//! What the orchestrator tells whoever watches it, as events: `drive` reports to a [`Progress`]
//! sink and never prints; [`Terminal`] renders them (a bar per machine on a terminal, one line
//! per event otherwise).

use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::state::Step;

/// How a machine's pass ended, as shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MachineEnd {
    Done,
    /// Not stopped: the cluster could not lose it.
    Paused,
    Failed,
}

/// Events of one orchestrator run, in order; one machine at a time.
pub trait Progress: Sync {
    /// A machine's pass begins, `done` of its steps already finished.
    fn machine(&self, machine: &str, done: usize);
    /// A step of the current machine begins.
    fn step(&self, step: Step);
    /// What the running step is doing or waiting for.
    fn detail(&self, step: Step, detail: &str);
    /// The running step finished.
    fn step_done(&self, step: Step);
    /// The current machine's pass ended; `version` is what it runs when done.
    fn machine_end(&self, end: MachineEnd, version: &str);
    /// Something the operator must read whatever the display: a failure and what undoes it.
    fn notice(&self, text: &str);
}

/// Renders progress on stderr.
pub struct Terminal {
    bars: MultiProgress,
    current: Mutex<Option<(String, ProgressBar)>>,
    /// No terminal: one line per step instead of bars.
    lines: bool,
}

impl Terminal {
    pub fn new() -> Self {
        use std::io::IsTerminal;
        Self {
            bars: MultiProgress::new(),
            current: Mutex::new(None),
            lines: !std::io::stderr().is_terminal(),
        }
    }

    fn with_bar(&self, f: impl FnOnce(&str, &ProgressBar)) {
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((machine, bar)) = current.as_ref() {
            f(machine, bar);
        }
    }
}

impl Progress for Terminal {
    fn machine(&self, machine: &str, done: usize) {
        let bar = self
            .bars
            .add(ProgressBar::new(Step::ALL.len() as u64))
            .with_style(
                ProgressStyle::with_template(
                    "{prefix:>12} [{bar:18}] {pos}/{len} {wide_msg} [{elapsed}]",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            )
            .with_prefix(machine.to_owned())
            .with_position(done as u64);
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some((machine.to_owned(), bar));
    }

    fn step(&self, step: Step) {
        self.with_bar(|machine, bar| {
            bar.set_message(step.describe());
            if self.lines {
                eprintln!("{machine}: {}", step.describe());
            }
        });
    }

    fn detail(&self, step: Step, detail: &str) {
        self.with_bar(|_, bar| bar.set_message(format!("{}: {detail}", step.describe())));
    }

    fn step_done(&self, _step: Step) {
        self.with_bar(|_, bar| bar.inc(1));
    }

    fn machine_end(&self, end: MachineEnd, version: &str) {
        self.with_bar(|_, bar| match end {
            MachineEnd::Done => bar.finish_with_message(format!("on {version}")),
            MachineEnd::Paused => bar.abandon_with_message("not stopped: paused"),
            MachineEnd::Failed => bar.abandon_with_message("failed"),
        });
    }

    fn notice(&self, text: &str) {
        if self.lines {
            eprintln!("{text}");
        } else if self.bars.println(text).is_err() {
            // Above the bars, so a redraw does not hide it; else plainly.
            eprintln!("{text}");
        }
    }
}
