//! The seed's rows and the concurrent writers that append them to the cluster.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};

use crate::cluster::Conn;

pub const DB: &str = "dfs://stock";
pub const TABLE: &str = "stock";
/// The table of `--payload` rows, in the seed's database.
pub const WIDE_TABLE: &str = "wide";
pub const CREATE_WIDE_TABLE: &str = r#"create table "dfs://stock"."wide"(time TIMESTAMP, name SYMBOL, id INT, payload STRING) partitioned by time, sortColumns=[`name], keepDuplicates=ALL"#;
/// Milliseconds of 2023-01-01T00:00:00Z.
const JAN1_MS: i64 = 19_358 * 86_400_000;
const DAY_MS: i64 = 86_400_000;

/// `n` rows of the seed's table on `day` (days after 2023-01-01), ids from `first_id`.
pub fn seed_rows(first_id: i64, n: usize, day: i64) -> RecordBatch {
    let ids: Vec<i32> = (0..n as i64).map(|k| (first_id + k) as i32).collect();
    shoal_client::seed::rows(&ids, |i| {
        JAN1_MS + day * DAY_MS + i64::from(i).rem_euclid(DAY_MS)
    })
}

/// The seed's rows with a `payload` column of `len` random printable ASCII characters, which
/// compress to about 0.8 of their size: stored bytes that do not vanish in zstd, so a benchmark
/// can fill gigabytes with a bounded number of rows.
pub fn wide_rows(first_id: i64, n: usize, day: i64, len: usize) -> Result<RecordBatch> {
    let seed = seed_rows(first_id, n, day);
    let mut rng = SplitMix64(first_id as u64 ^ (day as u64).rotate_left(32));
    let mut text = String::with_capacity(len);
    let payload = StringArray::from_iter_values((0..n).map(|_| {
        text.clear();
        while text.len() < len {
            for b in rng.next().to_le_bytes().into_iter().take(len - text.len()) {
                text.push(char::from(b' ' + b % 95));
            }
        }
        text.clone()
    }));
    let mut fields: Vec<Field> = seed
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new("payload", DataType::Utf8, false));
    let mut columns = seed.columns().to_vec();
    columns.push(Arc::new(payload));
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// A small fast generator (Steele, Lea, Flood 2014); the payload needs noise, not secrecy.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Arrow IPC bytes of one batch, as the client sends it.
pub fn ipc_len(batch: &RecordBatch) -> Result<u64> {
    Ok(
        shoal_catalog::rows::encode_ipc(batch.schema_ref(), std::slice::from_ref(batch))?.len()
            as u64,
    )
}

#[derive(Clone, Debug)]
pub struct Load {
    pub writers: usize,
    pub batch_rows: usize,
    pub days: i64,
    /// Stop once this many rows are claimed …
    pub max_rows: u64,
    /// … or this many IPC bytes …
    pub max_bytes: u64,
    /// … or this much time has passed.
    pub max_time: Duration,
    /// Writer ids are `writer_base + k`.
    pub writer_base: u64,
    /// 0: the seed's rows into its table; otherwise [`wide_rows`] of this payload length into
    /// [`WIDE_TABLE`].
    pub payload: usize,
}

impl Load {
    pub fn table(&self) -> &'static str {
        if self.payload == 0 { TABLE } else { WIDE_TABLE }
    }

    pub fn rows(&self, first_id: i64, n: usize, day: i64) -> Result<RecordBatch> {
        if self.payload == 0 {
            Ok(seed_rows(first_id, n, day))
        } else {
            wide_rows(first_id, n, day, self.payload)
        }
    }
}

#[derive(Debug, Default)]
pub struct Written {
    pub rows: u64,
    pub appends: u64,
    pub ipc_bytes: u64,
    pub elapsed: Duration,
    pub retries: u64,
    /// Per-append latency, sorted.
    pub latencies: Vec<Duration>,
    /// The slowest appends over [`SLOW_APPEND`], slowest first (at most [`SLOW_KEPT`]).
    pub slow: Vec<SlowAppend>,
    /// Appends over [`SLOW_APPEND`], all of them.
    pub slow_total: u64,
}

/// An append is reported as slow past this.
pub const SLOW_APPEND: Duration = Duration::from_secs(1);
/// Slow appends kept per writer and overall.
const SLOW_KEPT: usize = 10;

/// One append slower than [`SLOW_APPEND`] and what it waited on.
#[derive(Debug)]
pub struct SlowAppend {
    pub writer: u64,
    pub seq: u64,
    pub latency: Duration,
    /// Its attempts that failed over (site, time, code, message), in order.
    pub failures: Vec<String>,
}

/// Keeps the [`SLOW_KEPT`] slowest of `slow`, slowest first.
fn keep_slowest(slow: &mut Vec<SlowAppend>) {
    slow.sort_unstable_by_key(|s| std::cmp::Reverse(s.latency));
    slow.truncate(SLOW_KEPT);
}

impl Written {
    pub fn latency_pct(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        self.latencies[i]
    }
}

/// Runs `load.writers` concurrent writers, each with its own writer id and its own first
/// coordinator, until a bound is reached. Fails on the first append that fails.
pub async fn write(conn: &Conn, load: &Load) -> Result<Written> {
    // Every batch has the same shape, so its IPC size is that of a sample (within a few bytes).
    let per_append = ipc_len(&load.rows(0, load.batch_rows, 0)?)?;
    let claimed_rows = Arc::new(AtomicU64::new(0));
    let claimed_bytes = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..load.writers {
        let client = conn.data_client(k);
        let load = load.clone();
        let claimed_rows = claimed_rows.clone();
        let claimed_bytes = claimed_bytes.clone();
        tasks.push(tokio::spawn(async move {
            let writer = load.writer_base + k as u64;
            let mut w = Written::default();
            let mut seq = 0u64;
            loop {
                let rows = load.batch_rows as u64;
                if started.elapsed() >= load.max_time
                    || claimed_rows.fetch_add(rows, Ordering::Relaxed) >= load.max_rows
                    || claimed_bytes.fetch_add(per_append, Ordering::Relaxed) >= load.max_bytes
                {
                    break;
                }
                seq += 1;
                let day = (k as i64 + seq as i64) % load.days;
                let first_id = (writer as i64 % 20) * 100_000_000 + seq as i64 * rows as i64;
                let batch = load.rows(first_id, load.batch_rows, day)?;
                let t = Instant::now();
                let r = client
                    .append(DB, load.table(), writer, seq, &batch)
                    .await
                    .with_context(|| format!("append ({writer}, {seq})"))?;
                let latency = t.elapsed();
                w.latencies.push(latency);
                if latency > SLOW_APPEND {
                    w.slow_total += 1;
                    w.slow.push(SlowAppend {
                        writer,
                        seq,
                        latency,
                        failures: r.failures,
                    });
                    if w.slow.len() > 2 * SLOW_KEPT {
                        keep_slowest(&mut w.slow);
                    }
                }
                w.rows += r.rows;
                w.appends += 1;
                w.ipc_bytes += per_append;
                w.retries += u64::from(r.retries);
            }
            anyhow::Ok(w)
        }));
    }
    let mut all = Written::default();
    for t in tasks {
        let w = t.await??;
        all.rows += w.rows;
        all.appends += w.appends;
        all.ipc_bytes += w.ipc_bytes;
        all.retries += w.retries;
        all.latencies.extend(w.latencies);
        all.slow.extend(w.slow);
        all.slow_total += w.slow_total;
    }
    keep_slowest(&mut all.slow);
    all.elapsed = started.elapsed();
    all.latencies.sort_unstable();
    Ok(all)
}
