//! Every node's HTTP endpoints watched while a rolling upgrade runs, as Prometheus and a load
//! balancer would see them: the version each node's `shoal_build_info` reports over time, the
//! controllers' count of RECOVERING chunks, and what the data nodes' `/ready` answers. A node
//! that is down for a moment just fails a scrape.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::nodes;
use crate::metrics::{http_addr, sample, try_get};

/// How often every node's `/metrics` is read (a controller samples its own each second).
const METRICS_EVERY: Duration = Duration::from_millis(50);
/// How often the data nodes' `/ready` is read: a drain lasts a fraction of a second.
const READY_EVERY: Duration = Duration::from_millis(5);

#[derive(Clone, Debug, Default)]
pub struct Seen {
    /// Each node's machine, by alias.
    pub machines: BTreeMap<String, String>,
    /// Each node's versions, by alias: each one with when it was first reported (after
    /// another).
    pub versions: BTreeMap<String, Vec<(Instant, String)>>,
    /// The most RECOVERING chunks a controller reported.
    pub recovering_max: f64,
    /// What a data node's `/ready` answered while not ready, by alias.
    pub not_ready: BTreeMap<String, BTreeSet<String>>,
}

impl Seen {
    fn saw_version(&mut self, alias: &str, version: String, at: Instant) {
        let seen = self.versions.entry(alias.to_owned()).or_default();
        if seen.last().is_none_or(|(_, v)| *v != version) {
            seen.push((at, version));
        }
    }

    /// Every node reported `old`, then `new`, and nothing after; machine by machine in
    /// `order`: every node of a machine reported `new` before any node of the next did.
    pub fn check_versions(&self, order: &[&str], old: &str, new: &str) -> Result<(), String> {
        if let Some((alias, m)) = self
            .machines
            .iter()
            .find(|(_, m)| !order.contains(&m.as_str()))
        {
            return Err(format!("{alias} is on {m}, which is not in {order:?}"));
        }
        // The machine before, and when the last of its nodes switched.
        let mut before: Option<(&str, Instant)> = None;
        for &machine in order {
            let mut switched = Vec::new();
            for (alias, _) in self.machines.iter().filter(|(_, m)| *m == machine) {
                let seen = self.versions.get(alias).map_or(&[][..], Vec::as_slice);
                let said: Vec<&str> = seen.iter().map(|(_, v)| v.as_str()).collect();
                if said != [old, new] {
                    return Err(format!(
                        "{alias} on {machine} reported {said:?}, not {old} then {new}"
                    ));
                }
                switched.push((seen[1].0, alias));
            }
            let (Some(first), Some(last)) = (switched.iter().min(), switched.iter().max()) else {
                return Err(format!("no node on {machine}"));
            };
            if let Some((prev, prev_done)) = before
                && first.0 <= prev_done
            {
                return Err(format!(
                    "{} on {machine} reported {new} before {prev} was done ({:?} earlier)",
                    first.1,
                    prev_done - first.0
                ));
            }
            before = Some((machine, last.0));
        }
        Ok(())
    }

    /// The data nodes whose `/ready` said they were draining.
    pub fn seen_draining(&self) -> Vec<&str> {
        self.not_ready
            .iter()
            .filter(|(_, why)| why.iter().any(|w| w.contains("draining")))
            .map(|(alias, _)| alias.as_str())
            .collect()
    }
}

/// The watching threads, stopped when dropped.
pub struct Watch {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    threads: Vec<JoinHandle<()>>,
}

struct Target {
    alias: String,
    http: String,
    controller: bool,
}

impl Watch {
    /// Watches every node of `status`; returns once each one's version was read.
    pub fn start(status: &Value) -> Self {
        let targets: Vec<Target> = nodes(status)
            .iter()
            .map(|n| Target {
                alias: n["alias"].as_str().unwrap().to_owned(),
                http: http_addr(n["addr"].as_str().unwrap()),
                controller: n["mode"] == "controller",
            })
            .collect();
        let data: Vec<(String, String)> = nodes(status)
            .iter()
            .filter(|n| n["mode"] == "datanode")
            .map(|n| {
                let alias = n["alias"].as_str().unwrap().to_owned();
                (alias, http_addr(n["addr"].as_str().unwrap()))
            })
            .collect();
        let seen = Arc::new(Mutex::new(Seen {
            machines: nodes(status)
                .iter()
                .map(|n| {
                    let s = |k: &str| n[k].as_str().unwrap().to_owned();
                    (s("alias"), s("machine"))
                })
                .collect(),
            ..Seen::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let watch = Watch {
            threads: vec![
                spawn_loop(&stop, &seen, METRICS_EVERY, move |seen| {
                    scrape_metrics(&targets, seen);
                }),
                spawn_loop(&stop, &seen, READY_EVERY, move |seen| {
                    read_ready(&data, seen);
                }),
            ],
            stop,
            seen,
        };
        let started = Instant::now();
        loop {
            let seen = watch.seen();
            if seen.versions.len() == seen.machines.len() {
                return watch;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "not every node's version read: {seen:?}"
            );
            std::thread::sleep(METRICS_EVERY);
        }
    }

    /// What was seen so far.
    pub fn seen(&self) -> Seen {
        self.seen.lock().unwrap().clone()
    }

    /// Stops watching: what was seen.
    pub fn stop(mut self) -> Seen {
        self.join();
        self.seen()
    }

    fn join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.join();
    }
}

fn spawn_loop(
    stop: &Arc<AtomicBool>,
    seen: &Arc<Mutex<Seen>>,
    every: Duration,
    round: impl Fn(&Mutex<Seen>) + Send + 'static,
) -> JoinHandle<()> {
    let (stop, seen) = (Arc::clone(stop), Arc::clone(seen));
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            round(&seen);
            std::thread::sleep(every);
        }
    })
}

const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

fn scrape_metrics(targets: &[Target], seen: &Mutex<Seen>) {
    for t in targets {
        let Ok((200, body)) = try_get(&t.http, "/metrics", SCRAPE_TIMEOUT) else {
            continue;
        };
        let at = Instant::now();
        let mut seen = seen.lock().unwrap();
        if let Some(version) = build_version(&body) {
            seen.saw_version(&t.alias, version, at);
        }
        if t.controller {
            let recovering = sample(&body, "shoal_chunks", &[r#"state="RECOVERING""#]);
            seen.recovering_max = seen.recovering_max.max(recovering);
        }
    }
}

fn read_ready(data: &[(String, String)], seen: &Mutex<Seen>) {
    for (alias, http) in data {
        if let Ok((code, body)) = try_get(http, "/ready", SCRAPE_TIMEOUT)
            && code != 200
        {
            let mut seen = seen.lock().unwrap();
            let why = seen.not_ready.entry(alias.clone()).or_default();
            why.insert(format!("{code} {}", body.trim()));
        }
    }
}

/// The `version` label of `shoal_build_info`.
fn build_version(metrics: &str) -> Option<String> {
    let line = metrics
        .lines()
        .find(|l| l.starts_with("shoal_build_info{"))?;
    let (_, rest) = line.split_once(r#"version=""#)?;
    Some(rest.split_once('"')?.0.to_owned())
}

#[test]
fn the_version_check_fails_on_a_machine_out_of_order_or_a_node_switching_back() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut seen = Seen::default();
    // m1 switches at 10-12 ms, m2 at 20-22.
    for (alias, machine, switched) in [
        ("c1", "m1", 10),
        ("d1", "m1", 12),
        ("c2", "m2", 20),
        ("d2", "m2", 22),
    ] {
        seen.machines.insert(alias.into(), machine.into());
        seen.saw_version(alias, "1".into(), at(0));
        seen.saw_version(alias, "1".into(), at(5));
        seen.saw_version(alias, "2".into(), at(switched));
    }
    assert_eq!(seen.check_versions(&["m1", "m2"], "1", "2"), Ok(()));
    let wrong = seen.check_versions(&["m2", "m1"], "1", "2").unwrap_err();
    assert!(wrong.contains("before m2 was done"), "{wrong}");
    assert!(seen.check_versions(&["m1"], "1", "2").is_err());

    // A node of m2 switching while m1 is still under way.
    let mut early = seen.clone();
    early.versions.get_mut("c2").unwrap()[1].0 = at(11);
    let err = early.check_versions(&["m1", "m2"], "1", "2").unwrap_err();
    assert!(err.starts_with("c2 on m2 reported 2 before m1"), "{err}");

    // Back to the old version, or never seen on it.
    seen.saw_version("d2", "1".into(), at(30));
    let err = seen.check_versions(&["m1", "m2"], "1", "2").unwrap_err();
    assert!(
        err.contains(r#"d2 on m2 reported ["1", "2", "1"]"#),
        "{err}"
    );
    seen.versions.remove("d2");
    assert!(seen.check_versions(&["m1", "m2"], "1", "2").is_err());
}

#[test]
fn the_version_is_read_from_the_build_info() {
    let m = "# HELP shoal_build_info x\nshoal_build_info{role=\"agent\",alias=\"a1\",version=\"0.2.1\",build_date=\"2026.01.01\"} 1\n";
    assert_eq!(build_version(m).as_deref(), Some("0.2.1"));
    assert_eq!(build_version("shoal_raft_term 3\n"), None);
}
