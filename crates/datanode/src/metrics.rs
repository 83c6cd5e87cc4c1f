//! What a data node tells Prometheus (`/metrics`, see `shoal_server::http`): client appends it
//! coordinated, by outcome, and how long they took; the replicas it holds, and how many of them
//! were repaired after they diverged or fell behind, by how.

use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tonic::Status;

type Labels = Vec<(&'static str, String)>;

pub struct DataNodeMetrics {
    appends: Family<Labels, Counter>,
    append_seconds: Histogram,
    replicas: Gauge,
    repairs: Family<Labels, Counter>,
}

/// Append latency buckets, seconds: a group commit takes milliseconds, a failover up to a
/// second, a client's whole deadline 30 s.
const APPEND_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

impl DataNodeMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            appends: Family::default(),
            append_seconds: Histogram::new(APPEND_BUCKETS),
            replicas: Gauge::default(),
            repairs: Family::default(),
        };
        registry.register(
            "appends",
            "Client appends this node coordinated, by outcome (ok, duplicate, or the gRPC code)",
            m.appends.clone(),
        );
        registry.register(
            "append_duration_seconds",
            "Time from a client append's arrival to its answer, failovers included",
            m.append_seconds.clone(),
        );
        registry.register(
            "replicas",
            "Chunk replicas held by this node",
            m.replicas.clone(),
        );
        registry.register(
            "replica_repairs",
            "Replicas on this node its primary repaired, by how: `cut` back to the prefix they \
             share (a diverged tail, never acknowledged), a `snapshot` of its chunk files, or \
             `reset` to empty",
            m.repairs.clone(),
        );
        m
    }

    /// Times one client append: [`AppendTimer::answered`] records its outcome; dropped before
    /// (the client went away, or its deadline passed and the call was dropped) it counts as
    /// `cancelled`, so the slowest appends are not the ones missing.
    pub fn append(&self) -> AppendTimer<'_> {
        AppendTimer {
            metrics: self,
            started: Instant::now(),
            answered: false,
        }
    }

    fn record(&self, took: Duration, outcome: String) {
        self.appends
            .get_or_create(&vec![("outcome", outcome)])
            .inc();
        self.append_seconds.observe(took.as_secs_f64());
    }

    /// A replica here was repaired `how` (`cut`, `snapshot`, `reset`).
    pub fn repaired(&self, how: &'static str) {
        self.repairs
            .get_or_create(&vec![("how", how.to_owned())])
            .inc();
    }

    pub fn set_replicas(&self, n: usize) {
        self.replicas.set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}

pub struct AppendTimer<'a> {
    metrics: &'a DataNodeMetrics,
    started: Instant,
    answered: bool,
}

impl AppendTimer<'_> {
    /// The append was answered: `Ok(duplicate)` or the error it got.
    pub fn answered(mut self, outcome: Result<bool, &Status>) {
        self.answered = true;
        let outcome = match outcome {
            Ok(false) => "ok".to_owned(),
            Ok(true) => "duplicate".to_owned(),
            Err(s) => format!("{:?}", s.code()),
        };
        self.metrics.record(self.started.elapsed(), outcome);
    }
}

impl Drop for AppendTimer<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.metrics
                .record(self.started.elapsed(), "cancelled".to_owned());
        }
    }
}
