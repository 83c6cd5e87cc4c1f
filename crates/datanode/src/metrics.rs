//! What a data node tells Prometheus (`/metrics`, see `shoal_server::http`): client appends it
//! coordinated, by outcome, and how long they took; the replicas it holds, and how many of them
//! were repaired after they diverged or fell behind, by how, and the bytes that took; its WAL's
//! fdatasync latency; its flushes and compactions; the chunk scans it served, by how they came,
//! and the rows and bytes they answered (rows, or partial aggregate states); the statements
//! its Flight SQL service answered, by kind and outcome, and how long they took.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use shoal_query::{Outcome, QueryObserver, StatementKind};
use tonic::Status;

type Labels = Vec<(&'static str, String)>;

pub struct DataNodeMetrics {
    appends: Family<Labels, Counter>,
    append_seconds: Histogram,
    replicas: Gauge,
    repairs: Family<Labels, Counter>,
    recovery_bytes: Family<Labels, Counter>,
    wal_fsync_seconds: Histogram,
    flushes: Family<Labels, Counter>,
    flush_seconds: Histogram,
    flushed_bytes: Counter,
    compactions: Family<Labels, Counter>,
    compaction_seconds: Histogram,
    compacted_bytes: Counter,
    chunk_scans: Family<Labels, Counter>,
    scan_rows: Family<Labels, Counter>,
    scan_bytes: Family<Labels, Counter>,
    queries: QueryMetrics,
}

/// The Flight SQL service's statements, as `shoal_query` reports them.
#[derive(Clone)]
struct QueryMetrics {
    count: Family<Labels, Counter>,
    seconds: Family<Labels, Histogram, fn() -> Histogram>,
}

impl QueryObserver for QueryMetrics {
    fn answered(&self, kind: StatementKind, outcome: Outcome, took: Duration) {
        let outcome = match outcome {
            Outcome::Ok => "ok".to_owned(),
            Outcome::Failed(code) => format!("{code:?}"),
            Outcome::Cancelled => "cancelled".to_owned(),
        };
        let kind = ("kind", kind.name().to_owned());
        self.count
            .get_or_create(&vec![kind.clone(), ("outcome", outcome)])
            .inc();
        self.seconds
            .get_or_create(&vec![kind])
            .observe(took.as_secs_f64());
    }
}

/// How a chunk scan reached this node.
#[derive(Clone, Copy)]
pub enum ScanVia {
    /// `ScanChunk`, from a query another node (or a client) coordinates.
    Grpc,
    /// In-process, from a query this node coordinates.
    Local,
}

impl ScanVia {
    fn name(self) -> &'static str {
        match self {
            ScanVia::Grpc => "grpc",
            ScanVia::Local => "local",
        }
    }
}

/// The `answer` label of a scan's rows and bytes.
fn answer(states: bool) -> String {
    if states { "partial_aggregate" } else { "rows" }.to_owned()
}

/// Append latency buckets, seconds: a group commit takes milliseconds, a failover up to a
/// second, a client's whole deadline 30 s.
const APPEND_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];
/// fdatasync buckets, seconds: tens of microseconds on a fast SSD, a stuck disk seconds.
const FSYNC_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.0, 10.0,
];
/// Flush and compaction buckets, seconds: a small flush takes milliseconds, a 32 MiB run or a
/// large merge seconds to minutes.
const BACKGROUND_BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 120.0, 600.0];
/// Statement buckets, seconds: a point lookup or a SHOW takes milliseconds, a scan of a large
/// table minutes.
fn query_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 300.0,
    ])
}

impl DataNodeMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            appends: Family::default(),
            append_seconds: Histogram::new(APPEND_BUCKETS),
            replicas: Gauge::default(),
            repairs: Family::default(),
            recovery_bytes: Family::default(),
            wal_fsync_seconds: Histogram::new(FSYNC_BUCKETS),
            flushes: Family::default(),
            flush_seconds: Histogram::new(BACKGROUND_BUCKETS),
            flushed_bytes: Counter::default(),
            compactions: Family::default(),
            compaction_seconds: Histogram::new(BACKGROUND_BUCKETS),
            compacted_bytes: Counter::default(),
            chunk_scans: Family::default(),
            scan_rows: Family::default(),
            scan_bytes: Family::default(),
            queries: QueryMetrics {
                count: Family::default(),
                seconds: Family::new_with_constructor(query_histogram),
            },
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
        registry.register(
            "recovery_bytes",
            "Bytes this node's replicas received to catch up while out of sync, by how: \
             `records` (Arrow IPC of the records shipped) or `snapshot` (chunk files copied)",
            m.recovery_bytes.clone(),
        );
        registry.register(
            "wal_fsync_duration_seconds",
            "fdatasync of a WAL segment (one per commit group with dataSync=1, and per sealed segment)",
            m.wal_fsync_seconds.clone(),
        );
        registry.register(
            "flushes",
            "Flushes of a replica's records to chunk files, by outcome (ok, failed)",
            m.flushes.clone(),
        );
        registry.register(
            "flush_duration_seconds",
            "Time a flush took, successful ones",
            m.flush_seconds.clone(),
        );
        registry.register(
            "flushed_bytes",
            "Bytes of the chunk files flushes wrote",
            m.flushed_bytes.clone(),
        );
        registry.register(
            "compactions",
            "Compactions merging a replica's chunk files, by outcome (ok, failed)",
            m.compactions.clone(),
        );
        registry.register(
            "compaction_duration_seconds",
            "Time a compaction took, successful ones",
            m.compaction_seconds.clone(),
        );
        registry.register(
            "compacted_bytes",
            "Bytes of the chunk files compactions merged (their inputs)",
            m.compacted_bytes.clone(),
        );
        registry.register(
            "chunk_scans",
            "Chunk scans this node served to queries, by how they came: `grpc` (ScanChunk) or \
             `local` (a query this node coordinates, read in-process)",
            m.chunk_scans.clone(),
        );
        registry.register(
            "scan_answer_rows",
            "Rows chunk scans answered (after their filters), by `answer`: `rows`, or \
             `partial_aggregate` (rows of groups and aggregate states), and by `via`",
            m.scan_rows.clone(),
        );
        registry.register(
            "scan_sent_bytes",
            "Bytes of Arrow IPC ScanChunk sent, by `answer` (`rows` or `partial_aggregate`)",
            m.scan_bytes.clone(),
        );
        registry.register(
            "queries",
            "Flight SQL statements this node answered, by `kind` (`query`, `ddl`, `script`) and \
             `outcome` (ok, the gRPC code, or `cancelled` when the client left mid-result)",
            m.queries.count.clone(),
        );
        registry.register(
            "query_duration_seconds",
            "Time a statement took, by `kind`: a query from its DoGet to its last batch sent \
             (or from its planning, if that failed); DDL and scripts, their run",
            m.queries.seconds.clone(),
        );
        m
    }

    /// What the Flight SQL service reports its statements to.
    pub fn query_observer(&self) -> Arc<dyn QueryObserver> {
        Arc::new(self.queries.clone())
    }

    /// Rows a scan answered: `states` when they are partial aggregate states.
    pub fn answered_rows(&self, states: bool, via: ScanVia, rows: usize) {
        let labels = vec![("answer", answer(states)), ("via", via.name().to_owned())];
        self.scan_rows.get_or_create(&labels).inc_by(rows as u64);
    }

    /// Bytes a `ScanChunk` message carried.
    pub fn sent_bytes(&self, states: bool, bytes: usize) {
        let labels = vec![("answer", answer(states))];
        self.scan_bytes.get_or_create(&labels).inc_by(bytes as u64);
    }

    pub fn scanned(&self, via: ScanVia) {
        self.chunk_scans
            .get_or_create(&vec![("via", via.name().to_owned())])
            .inc();
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

    /// A replica here received `bytes` to catch up, `how` (`records`, `snapshot`).
    pub fn recovered(&self, how: &'static str, bytes: u64) {
        self.recovery_bytes
            .get_or_create(&vec![("how", how.to_owned())])
            .inc_by(bytes);
    }

    /// Hands each WAL fdatasync's duration to the histogram (see `StoreOptions::on_sync`).
    pub fn wal_sync_hook(&self) -> shoal_storage::SyncHook {
        let h = self.wal_fsync_seconds.clone();
        std::sync::Arc::new(move |took: Duration| h.observe(took.as_secs_f64()))
    }

    /// A flush ended: `Ok(file bytes)` after `took`, or failed.
    pub fn flushed(&self, outcome: Result<u64, ()>, took: Duration) {
        Self::background(
            &self.flushes,
            &self.flush_seconds,
            &self.flushed_bytes,
            outcome,
            took,
        );
    }

    /// A compaction ended: `Ok(input bytes)` after `took`, or failed.
    pub fn compacted(&self, outcome: Result<u64, ()>, took: Duration) {
        Self::background(
            &self.compactions,
            &self.compaction_seconds,
            &self.compacted_bytes,
            outcome,
            took,
        );
    }

    fn background(
        count: &Family<Labels, Counter>,
        seconds: &Histogram,
        bytes: &Counter,
        outcome: Result<u64, ()>,
        took: Duration,
    ) {
        let label = if outcome.is_ok() { "ok" } else { "failed" };
        count
            .get_or_create(&vec![("outcome", label.to_owned())])
            .inc();
        if let Ok(n) = outcome {
            seconds.observe(took.as_secs_f64());
            bytes.inc_by(n);
        }
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
