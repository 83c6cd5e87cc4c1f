//! What a controller tells Prometheus (`/metrics`, see `shoal_server::http`): its Raft term,
//! role and log positions, the cluster version, and, as its state machine holds them, nodes and
//! chunks by state and replicas out of sync. Sampled every second: a scrape reads the last
//! sample.

use std::collections::BTreeMap;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use shoal_client::upgrade_record::UpgradeState;
use shoal_server::http::Readiness;
use tokio::sync::watch;

use crate::controller_service::ControllerCore;

const SAMPLE_EVERY: Duration = Duration::from_secs(1);

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
pub struct ControllerMetrics {
    term: Gauge,
    is_leader: Gauge,
    last_log_index: Gauge,
    last_applied_index: Gauge,
    cluster_version: Gauge,
    nodes: Family<Labels, Gauge>,
    chunks: Family<Labels, Gauge>,
    replicas_out_of_sync: Gauge,
    upgrade_running: Gauge,
    upgrade_machines: Family<Labels, Gauge>,
    upgrade_step: Family<Labels, Gauge>,
}

impl ControllerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register("raft_term", "This controller's Raft term", m.term.clone());
        registry.register(
            "raft_is_leader",
            "1 while this controller is the Raft leader",
            m.is_leader.clone(),
        );
        registry.register(
            "raft_last_log_index",
            "The last index of this controller's Raft log",
            m.last_log_index.clone(),
        );
        registry.register(
            "raft_last_applied_index",
            "The last Raft log index this controller applied",
            m.last_applied_index.clone(),
        );
        registry.register(
            "cluster_version",
            "The cluster version (raised by `shoal upgrade --finalize`)",
            m.cluster_version.clone(),
        );
        registry.register("nodes", "Nodes by state", m.nodes.clone());
        registry.register("chunks", "Chunks by state", m.chunks.clone());
        registry.register(
            "replicas_out_of_sync",
            "Chunk replicas not in their chunk's in-sync set",
            m.replicas_out_of_sync.clone(),
        );
        registry.register(
            "upgrade_running",
            "1 while a rolling upgrade (or rollback) runs, by its record",
            m.upgrade_running.clone(),
        );
        registry.register(
            "upgrade_machines",
            "Machines of the recorded upgrade's plan, by whether they are done",
            m.upgrade_machines.clone(),
        );
        registry.register(
            "upgrade_step",
            "1 for the machine a running upgrade is at and the step it does next",
            m.upgrade_step.clone(),
        );
        m
    }

    /// Samples `core` every second until `stop` turns true; meanwhile the controller is ready
    /// while it knows a Raft leader (itself or another).
    pub async fn run(
        self,
        core: ControllerCore,
        ready: watch::Sender<Readiness>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            self.sample(&core);
            ready.send_replace(match core.raft.metrics().borrow_watched().current_leader {
                Some(_) => Readiness::Ready,
                None => Readiness::NotReady("no Raft leader known".into()),
            });
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                () = tokio::time::sleep(SAMPLE_EVERY) => {}
            }
        }
    }

    fn sample(&self, core: &ControllerCore) {
        let raft = core.raft.metrics().borrow_watched().clone();
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.term.set(gauge(raft.current_term));
        self.is_leader
            .set(i64::from(raft.current_leader == Some(raft.id)));
        self.last_log_index
            .set(gauge(raft.last_log_index.unwrap_or_default()));
        self.last_applied_index
            .set(gauge(raft.last_applied.map_or(0, |l| l.index)));
        let (nodes, chunks, out_of_sync) = core.read(|m| {
            self.cluster_version.set(i64::from(m.cluster_version));
            self.sample_upgrade(UpgradeState::parse(&m.upgrade.state_json).as_ref());
            let mut nodes: BTreeMap<String, i64> = BTreeMap::new();
            for n in m.nodes.values() {
                *nodes
                    .entry(format!("{:?}", n.state).to_uppercase())
                    .or_default() += 1;
            }
            let mut chunks: BTreeMap<String, i64> = BTreeMap::new();
            let mut out_of_sync = 0;
            for c in m.catalog.chunks.values() {
                *chunks.entry(c.state.name().to_owned()).or_default() += 1;
                out_of_sync += c.replicas.iter().filter(|r| !r.in_sync).count();
            }
            (nodes, chunks, out_of_sync)
        });
        set_counts(&self.nodes, NODE_STATES, &nodes);
        set_counts(&self.chunks, CHUNK_STATES, &chunks);
        self.replicas_out_of_sync
            .set(i64::try_from(out_of_sync).unwrap_or(i64::MAX));
    }
}

impl ControllerMetrics {
    fn sample_upgrade(&self, st: Option<&UpgradeState>) {
        let current = st.and_then(UpgradeState::current);
        self.upgrade_running.set(i64::from(current.is_some()));
        let total = st.map_or(0, |st| st.machines.len());
        let done = st.map_or(0, |st| st.machines.iter().filter(|m| m.finished()).count());
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        for (state, n) in [("done", done), ("remaining", total - done)] {
            self.upgrade_machines
                .get_or_create(&vec![("state", state.to_owned())])
                .set(count(n));
        }
        // One series at a time: the last step's is dropped when the upgrade moves on.
        let at = current.map(|(m, step)| {
            vec![
                ("machine", m.machine.clone()),
                ("step", step.map_or("", |s| s.name()).to_owned()),
            ]
        });
        if at
            .as_ref()
            .is_none_or(|l| self.upgrade_step.get(l).is_none())
        {
            self.upgrade_step.clear();
        }
        if let Some(labels) = at {
            self.upgrade_step.get_or_create(&labels).set(1);
        }
    }
}

const NODE_STATES: &[&str] = &["UNKNOWN", "UP", "DOWN", "STOPPING"];
const CHUNK_STATES: &[&str] = &["CONSTRUCTING", "RECOVERING", "COMPLETE"];

/// Sets every state's count, 0 for those with none: each sample overwrites the last in place,
/// so a scrape never sees the family half filled (as clearing and refilling it would show).
fn set_counts(family: &Family<Labels, Gauge>, states: &[&str], counts: &BTreeMap<String, i64>) {
    for state in states
        .iter()
        .copied()
        .chain(counts.keys().map(String::as_str))
    {
        family
            .get_or_create(&vec![("state", state.to_owned())])
            .set(counts.get(state).copied().unwrap_or(0));
    }
}
