//! `shoal-bench`: cluster benchmarks with a reference measured in the same run.
//!
//! - `ingest`: replicated appends (2 replicas, dataSync=1) into a local 3-machine cluster,
//!   against Arrow IPC appended with an fdatasync per batch to one local file.
//! - `recovery`: one machine stopped while writes go on, then restarted; time until every chunk
//!   is COMPLETE with identical replicas, against a raw sequential copy with fsync.
//! - `snapshot`: the same, with everything in chunk files and the WAL truncated while the machine
//!   is down, so its replicas are copied whole (`InstallSnapshot`); MB/s against a sequential
//!   copy of the same bytes.
//!
//! - `upgrade`: the seed's writer's longest stall and p99 during `shoal upgrade`, a plain
//!   rolling restart, and stop-the-world (the reference), on one cluster.
//! - `memory`: each data node's peak RSS and threads while the cluster ingests 10× its memory
//!   budget, against the budget + 0.5 GiB; the ingest rate meanwhile against `ingest`'s reference.
//! - `restart`: time from `host start` to UP with data in chunk files, and with more of it.
//! - `query`: the queries (GROUP BY, filtered counts, latest by time, count, the last
//!   minutes of one name) through Flight SQL over rows in chunk files, against DuckDB on the same
//!   rows in one Parquet file.
//! - `scale`: restart time at two sizes of a data node's data, then the seed's writer through `shoal upgrade`
//!   of the machines holding that data and the minute after, against its own baseline.
//! - `pause`: the same writer's longest stall while one data node is paused (SIGSTOP) as its
//!   coordinator, its chunk's primary, its chunk's replica, against nothing paused.
//!
//! Every loop is bounded in count and time; every address is loopback; the cluster is always
//! taken down (`shoal local down`), also on error.

mod cluster;
mod load;
mod memory;
mod pause;
mod query;
mod reference;
mod restart;
mod scale;
mod scan_traffic;
mod snapshot;
mod upgrade;
mod writer;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use comfy_table::{Table, presets::ASCII_MARKDOWN};

use cluster::{Cluster, Conn, cpu_seconds, pids_by_mode};
use load::{Load, Written};
use shoal_client::seed::{CREATE_DB, CREATE_TABLE};

#[derive(Parser)]
#[command(name = "shoal-bench", about = "Shoal cluster benchmarks")]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct Common {
    /// The `shoal` binary [default: `shoal` next to this binary].
    #[arg(long, global = true)]
    shoal: Option<PathBuf>,
    /// Cluster directory; must not exist; removed afterwards unless --keep
    /// [default: $TMPDIR/shoal-bench-<pid>].
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
    /// The three machines (loopback addresses).
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "127.77.0.1,127.77.0.2,127.77.0.3"
    )]
    hosts: Vec<String>,
    /// Keep the cluster directory (logs, data) afterwards.
    #[arg(long, global = true)]
    keep: bool,
    /// A configuration key for the cluster's files, as `shoal local up --set` (repeatable).
    #[arg(long, global = true, value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Concurrent writers, each with its own writer id.
    #[arg(long, global = true, default_value_t = 8)]
    writers: usize,
    /// Rows per append.
    #[arg(long, global = true, default_value_t = 10_000)]
    batch_rows: usize,
    /// Dates (partitions, hence chunks) the rows fall on.
    #[arg(long, global = true, default_value_t = 3)]
    days: i64,
    /// Give each row a STRING column of this many random printable characters (table
    /// `dfs://stock`.`wide`), so stored bytes do not compress away; 0: the seed's rows.
    #[arg(long, global = true, default_value_t = 0)]
    payload: usize,
}

#[derive(Subcommand)]
enum Cmd {
    /// Replicated ingest throughput vs. fdatasync'd appends to one local file.
    Ingest {
        /// Measured writing time, seconds (at most 120).
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Stop earlier after this many rows.
        #[arg(long, default_value_t = 200_000_000)]
        max_rows: u64,
    },
    /// Catch-up of a machine's replicas after it was stopped during writes.
    Recovery {
        /// MB (10^6 bytes of Arrow IPC) written before the machine stops.
        #[arg(long, default_value_t = 20)]
        before_mb: u64,
        /// MB written while it is stopped (what its replicas miss).
        #[arg(long, default_value_t = 200)]
        missed_mb: u64,
        /// The machine to stop [default: the second of --hosts].
        #[arg(long)]
        stop_host: Option<String>,
        /// Give up waiting for recovery after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// The writer's stall during `shoal upgrade` vs. a plain rolling restart vs. stop-the-world.
    Upgrade {
        /// A build of shoal reporting a newer version (the package upgraded to), e.g.
        /// target/upgrade/shoal-next from scripts/build-upgrade-binaries for release builds.
        #[arg(long)]
        next: PathBuf,
        /// The writer's appends per second (one row each).
        #[arg(long, default_value_t = 200.0)]
        rate: f64,
    },
    /// Time from `host start` to UP with data in chunk files, and with `--factor` times more.
    Restart {
        /// MB (10^6 bytes of Arrow IPC) stored before the first restart.
        #[arg(long, default_value_t = 200)]
        mb: u64,
        /// The second restart has this many times as much stored.
        #[arg(long, default_value_t = 5)]
        factor: u64,
    },
    /// Peak data-node RSS while ingesting `--factor` times the memory budget. Run with
    /// `--set flushIdleTime=2000` so the final flush does not wait a minute.
    Memory {
        /// The data nodes' memory budget (`TSDBCacheEngineSize`), GB.
        #[arg(long, default_value_t = 0.25)]
        budget_gb: f64,
        /// Ingest this many times the budget per data node.
        #[arg(long, default_value_t = 10)]
        factor: u64,
    },
    /// Recovery of a machine's replicas by snapshot install vs. a sequential copy of the bytes.
    Snapshot {
        /// MB (10^6 bytes of Arrow IPC) stored before the machine stops.
        #[arg(long, default_value_t = 200)]
        mb: u64,
        /// MB written while it is stopped (flushed and its WAL truncated before it returns).
        #[arg(long, default_value_t = 20)]
        missed_mb: u64,
        /// Give up waiting for recovery after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// The queries through Flight SQL vs. DuckDB on the same rows in a Parquet file.
    /// Sets `flushIdleTime=2000` so every row is in chunk files before the queries.
    Query {
        /// Rows of the seed table to load (in `--batch-rows` appends).
        #[arg(long, default_value_t = 5_000_000)]
        rows: u64,
        /// Timed runs of each query after one untimed (the median is shown).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// A Python with the `duckdb` package.
        #[arg(long, default_value = "target/pyenv/bin/python3")]
        python: PathBuf,
        /// Only the queries whose label contains this text (e.g. `GROUP BY`), to profile one.
        #[arg(long)]
        only: Option<String>,
    },
    /// Restart time with `--first-gb` and with `--gb` in a data node's directory, then the seed's
    /// writer through `shoal upgrade` of the machines holding it and the minute after. Use with
    /// `--payload` (rows that do not compress away), `--days` (chunks) and
    /// `--set flushIdleTime=2000`.
    Scale {
        /// GB (10^9 bytes) in the restarted data node's directory at the first restart (the reference).
        #[arg(long, default_value_t = 1.0)]
        first_gb: f64,
        /// GB in it at the second restart and through the upgrade.
        #[arg(long, default_value_t = 20.0)]
        gb: f64,
        /// A build of shoal reporting a newer version, as `upgrade --next`.
        #[arg(long)]
        next: PathBuf,
        /// The writer's appends per second (one row each).
        #[arg(long, default_value_t = 200.0)]
        rate: f64,
        /// Seconds the writer is watched after the upgrade.
        #[arg(long, default_value_t = 60)]
        after: u64,
    },
    /// The writer's stall while one data node is paused, in each role, vs. nothing paused.
    Pause {
        /// The writer's appends per second (one row each).
        #[arg(long, default_value_t = 200.0)]
        rate: f64,
        /// How long the node stays paused, seconds (at most 60).
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

const MB: f64 = 1e6;
/// Days after 2023-01-01 rows may fall on (each a partition, hence a chunk).
const MAX_DAYS: i64 = 5000;
const MAX_PAYLOAD: usize = 4096;
/// An append's rows must fit a gRPC message of the clients' 4 MiB limit, with room to spare.
const MAX_APPEND_BYTES: usize = 3_000_000;

fn main() -> Result<()> {
    let cli = Cli::parse();
    let c = &cli.common;
    if c.hosts.len() != 3 || c.hosts.iter().any(|h| !h.starts_with("127.")) {
        bail!("--hosts: three loopback (127.x.y.z) addresses");
    }
    if c.writers == 0
        || c.writers > 256
        || c.batch_rows == 0
        || !(1..=MAX_DAYS).contains(&c.days)
        || c.payload > MAX_PAYLOAD
        || c.batch_rows * (c.payload + 20) > MAX_APPEND_BYTES
    {
        bail!(
            "--writers 1..=256, --batch-rows >= 1, --days 1..={MAX_DAYS}, --payload \
             0..={MAX_PAYLOAD}, --batch-rows × (--payload + 20) ≤ {MAX_APPEND_BYTES} bytes"
        );
    }
    let bin = match &c.shoal {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("binary has no directory")?
            .join("shoal"),
    };
    if !bin.is_file() {
        bail!(
            "no shoal binary at {} (build it, or pass --shoal)",
            bin.display()
        );
    }
    let dir = c.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("shoal-bench-{}", std::process::id()))
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = {
        let mut set = c.set.clone();
        if let Cmd::Memory { budget_gb, .. } = &cli.cmd {
            set.push(memory::budget_setting(*budget_gb));
        }
        if let Cmd::Query { .. } = &cli.cmd {
            set.push("flushIdleTime=2000".into());
        }
        let mut cluster = Cluster::up(&bin, &dir, &c.hosts, &set)?;
        let r = (|| {
            for sql in [CREATE_DB, CREATE_TABLE, load::CREATE_WIDE_TABLE] {
                cluster.run(&["sql", sql])?;
            }
            let conn = Conn::connect(&cluster.dir)?;
            match &cli.cmd {
                Cmd::Ingest { seconds, max_rows } => rt.block_on(ingest(
                    &cluster,
                    &conn,
                    c,
                    Duration::from_secs((*seconds).clamp(1, 120)),
                    *max_rows,
                )),
                Cmd::Recovery {
                    before_mb,
                    missed_mb,
                    stop_host,
                    timeout,
                } => {
                    let host = stop_host.clone().unwrap_or_else(|| c.hosts[1].clone());
                    rt.block_on(recovery(
                        &cluster,
                        &conn,
                        c,
                        *before_mb,
                        *missed_mb,
                        &host,
                        Duration::from_secs((*timeout).clamp(1, 1800)),
                    ))
                }
                Cmd::Upgrade { next, rate } => {
                    upgrade::run(&cluster, next, rate.clamp(1.0, 2000.0))
                }
                Cmd::Restart { mb, factor } => {
                    rt.block_on(create_chunks(&conn, c))?;
                    restart::run(
                        &cluster,
                        &conn,
                        &rt,
                        base_load(c, 100),
                        (*mb).max(1),
                        (*factor).max(1),
                        &c.hosts[1],
                    )
                }
                Cmd::Memory { budget_gb, factor } => {
                    rt.block_on(create_chunks(&conn, c))?;
                    memory::run(
                        &cluster,
                        &conn,
                        &rt,
                        base_load(c, 100),
                        budget_gb.clamp(0.01, 64.0),
                        (*factor).clamp(1, 100),
                    )
                }
                Cmd::Snapshot {
                    mb,
                    missed_mb,
                    timeout,
                } => {
                    rt.block_on(create_chunks(&conn, c))?;
                    snapshot::run(
                        &cluster,
                        &conn,
                        &rt,
                        base_load(c, 100),
                        (*mb).max(1),
                        *missed_mb,
                        &c.hosts[1],
                        Duration::from_secs((*timeout).clamp(1, 1800)),
                    )
                }
                Cmd::Query {
                    rows,
                    runs,
                    python,
                    only,
                } => query::run(
                    &conn,
                    &rt,
                    base_load(c, 1000),
                    &query::Options {
                        rows: (*rows).clamp(1, 1_000_000_000),
                        runs: (*runs).clamp(1, 1000),
                        python,
                        only: only.as_deref(),
                    },
                    &cluster.dir,
                ),
                Cmd::Scale {
                    first_gb,
                    gb,
                    next,
                    rate,
                    after,
                } => {
                    rt.block_on(create_chunks(&conn, c))?;
                    scale::run(
                        &cluster,
                        &conn,
                        &rt,
                        base_load(c, 100),
                        &scale::Scale {
                            first_gb: first_gb.clamp(0.01, 1000.0),
                            gb: gb.clamp(0.01, 1000.0),
                            next,
                            rate: rate.clamp(1.0, 2000.0),
                            after: Duration::from_secs((*after).clamp(1, 600)),
                        },
                        &c.hosts[1],
                    )
                }
                Cmd::Pause { rate, seconds } => pause::run(
                    &cluster,
                    &conn,
                    &rt,
                    rate.clamp(1.0, 2000.0),
                    Duration::from_secs((*seconds).clamp(1, 60)),
                ),
            }
        })();
        if r.is_err() {
            eprintln!("{}", cluster.logs());
        }
        let down = cluster.down();
        r.and(down)
    };
    if result.is_ok() && !c.keep {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("cannot remove {}", dir.display()))?;
    } else {
        eprintln!("cluster directory kept: {}", dir.display());
    }
    result
}

fn base_load(c: &Common, writer_base: u64) -> Load {
    Load {
        writers: c.writers,
        batch_rows: c.batch_rows,
        days: c.days,
        max_rows: u64::MAX,
        max_bytes: u64::MAX,
        max_time: Duration::from_secs(600),
        writer_base,
        payload: c.payload,
    }
}

/// One append per day, so chunk creation is not in the measured time.
async fn create_chunks(conn: &Conn, c: &Common) -> Result<()> {
    let mut l = base_load(c, 1);
    l.writers = 1;
    l.batch_rows = 5;
    l.max_rows = 5 * c.days as u64;
    load::write(conn, &l).await?;
    Ok(())
}

/// Transfer rates, each also as a multiple of a reference rate measured in the same run.
struct RateTable {
    table: Table,
    ref_mbps: f64,
}

impl RateTable {
    fn new(ref_mbps: f64) -> Self {
        let mut table = Table::new();
        table.load_preset(ASCII_MARKDOWN);
        table.set_header(["measurement", "MB", "seconds", "MB/s", "vs reference"]);
        Self { table, ref_mbps }
    }

    fn row(&mut self, label: &str, bytes: u64, took: Duration) {
        let mbps = rate(bytes as f64 / MB, took);
        self.table.add_row([
            label.to_owned(),
            format!("{:.1}", bytes as f64 / MB),
            format!("{:.2}", took.as_secs_f64()),
            format!("{mbps:.1}"),
            format!("{:.2}×", mbps / self.ref_mbps.max(1e-9)),
        ]);
    }
}

impl std::fmt::Display for RateTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.table.fmt(f)
    }
}

/// Every chunk is COMPLETE and all its replicas hold the same records (last lsn and checksum).
fn settled(
    chunks: &[shoal_proto::ChunkInfo],
    pos: &std::collections::BTreeMap<(u64, String), shoal_proto::ReplicaPosition>,
) -> bool {
    chunks.iter().all(|ch| {
        let of: Vec<_> = ch
            .replicas
            .iter()
            .map(|r| pos.get(&(ch.id, r.node.clone())))
            .collect();
        ch.current_state() == shoal_proto::ChunkState::Complete
            && of.iter().all(|p| {
                p.is_some_and(|p| {
                    of[0].is_some_and(|q| (p.last_lsn, p.checksum) == (q.last_lsn, q.checksum))
                })
            })
    })
}

fn rate(n: f64, d: Duration) -> f64 {
    n / d.as_secs_f64().max(1e-9)
}

fn fmt_int(v: f64) -> String {
    let s = format!("{:.0}", v);
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

async fn ingest(
    cluster: &Cluster,
    conn: &Conn,
    c: &Common,
    seconds: Duration,
    max_rows: u64,
) -> Result<()> {
    create_chunks(conn, c).await?;
    let pids = pids_by_mode(&cluster.status()?);
    let self_pid = [u64::from(std::process::id())];
    let cpu0: Vec<(String, f64)> = pids
        .iter()
        .map(|(m, p)| (m.clone(), cpu_seconds(p)))
        .collect();
    let me0 = cpu_seconds(&self_pid);
    let before = conn.positions().await;
    let mut l = base_load(c, 1000);
    l.max_time = seconds;
    l.max_rows = max_rows;
    let w = load::write(conn, &l).await?;
    let after = conn.positions().await;
    let cpu: Vec<(String, f64)> = pids
        .iter()
        .zip(&cpu0)
        .map(|((m, p), (_, c0))| (m.clone(), cpu_seconds(p) - c0))
        .collect();
    let me = cpu_seconds(&self_pid) - me0;
    let replica_bytes: u64 = after
        .iter()
        .map(|(k, p)| p.bytes.saturating_sub(before.get(k).map_or(0, |b| b.bytes)))
        .sum();
    let replica_rows: u64 = after
        .iter()
        .map(|(k, p)| p.rows.saturating_sub(before.get(k).map_or(0, |b| b.rows)))
        .sum();

    let r = reference::ipc_append_fsync(
        &cluster.dir.join("reference.arrows"),
        &l,
        w.rows.max(c.batch_rows as u64),
        seconds,
    )?;

    let cluster_rps = rate(w.rows as f64, w.elapsed);
    let ref_rps = rate(r.rows as f64, r.elapsed);
    println!(
        "\n## ingest: {} writers × {} rows/append, {} dates, 3 machines, 2 replicas, dataSync=1\n",
        c.writers, c.batch_rows, c.days
    );
    let mut t = Table::new();
    t.load_preset(ASCII_MARKDOWN);
    t.set_header(vec![
        "measurement",
        "rows",
        "MB (IPC)",
        "seconds",
        "rows/s",
        "MB/s",
        "vs reference",
    ]);
    t.add_row(vec![
        "cluster: replicated append".to_owned(),
        fmt_int(w.rows as f64),
        format!("{:.1}", w.ipc_bytes as f64 / MB),
        format!("{:.2}", w.elapsed.as_secs_f64()),
        fmt_int(cluster_rps),
        format!("{:.1}", rate(w.ipc_bytes as f64 / MB, w.elapsed)),
        format!("{:.2}×", cluster_rps / ref_rps.max(1e-9)),
    ]);
    t.add_row(vec![
        "reference: IPC + fdatasync per batch, 1 file".to_owned(),
        fmt_int(r.rows as f64),
        format!("{:.1}", r.bytes as f64 / MB),
        format!("{:.2}", r.elapsed.as_secs_f64()),
        fmt_int(ref_rps),
        format!("{:.1}", rate(r.bytes as f64 / MB, r.elapsed)),
        "1.00×".to_owned(),
    ]);
    println!("{t}\n");
    print_written(&w);
    println!(
        "replicas grew by {:.1} MB on disk, {} rows in all ({:.2} replica rows per row acked)",
        replica_bytes as f64 / MB,
        fmt_int(replica_rows as f64),
        replica_rows as f64 / (w.rows.max(1)) as f64
    );
    let secs = w.elapsed.as_secs_f64();
    let mut cpu_line = format!(
        "CPU during the run ({secs:.1} s wall, 2 cores = {:.1} core-s):",
        2.0 * secs
    );
    for (m, s) in &cpu {
        cpu_line.push_str(&format!(" {m}s {s:.1} core-s,"));
    }
    cpu_line.push_str(&format!(" shoal-bench client {me:.1} core-s"));
    println!("{cpu_line}");
    Ok(())
}

fn print_written(w: &Written) {
    println!(
        "appends: {} ok, {} retried attempts; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        w.appends,
        w.retries,
        w.latency_pct(0.5).as_secs_f64() * 1e3,
        w.latency_pct(0.99).as_secs_f64() * 1e3,
        w.latency_pct(1.0).as_secs_f64() * 1e3,
    );
}

async fn recovery(
    cluster: &Cluster,
    conn: &Conn,
    c: &Common,
    before_mb: u64,
    missed_mb: u64,
    host: &str,
    timeout: Duration,
) -> Result<()> {
    let down = conn.datanode_on(host)?;
    create_chunks(conn, c).await?;
    let mut l = base_load(c, 1000);
    l.max_bytes = before_mb * 1_000_000;
    let w_before = load::write(conn, &l).await?;
    let p0 = conn.positions().await;

    let t_stop = Instant::now();
    cluster.run(&["host", "stop", host])?;
    let stop_took = t_stop.elapsed();
    let mut l = base_load(c, 2000);
    l.max_bytes = missed_mb * 1_000_000;
    let w_missed = load::write(conn, &l).await?;
    let p1 = conn.positions().await;
    let chunks = conn.chunks().await?;
    let affected: Vec<_> = chunks
        .iter()
        .filter(|ch| ch.replicas.iter().any(|r| r.node == down))
        .collect();
    // Missed = growth of the in-sync replica of each affected chunk while the node was down.
    let mut missed = 0u64;
    for ch in &affected {
        let other = ch
            .replicas
            .iter()
            .find(|r| r.node != down && r.in_sync)
            .with_context(|| format!("chunk {} has no in-sync replica besides {down}", ch.id))?;
        let key = (ch.id, other.node.clone());
        missed += p1
            .get(&key)
            .map_or(0, |p| p.bytes)
            .saturating_sub(p0.get(&key).map_or(0, |p| p.bytes));
    }
    let states: Vec<String> = affected
        .iter()
        .map(|ch| format!("{}:{}", ch.partition_key, ch.state))
        .collect();

    // The returning replicas' lowest `bytes` seen (a replica rebuilt from empty shrinks first).
    let mut low: std::collections::BTreeMap<u64, u64> = affected
        .iter()
        .map(|ch| {
            let b = p0.get(&(ch.id, down.clone())).map_or(0, |p| p.bytes);
            (ch.id, b)
        })
        .collect();
    let t_start = Instant::now();
    cluster.run(&["host", "start", host])?;
    let t_up = Instant::now();
    let mut polls = 0u32;
    let (final_pos, t_done) = loop {
        polls += 1;
        let chunks = conn.chunks().await?;
        let pos = conn.positions().await;
        for (id, b) in low.iter_mut() {
            if let Some(p) = pos.get(&(*id, down.clone())) {
                *b = (*b).min(p.bytes);
            }
        }
        if settled(&chunks, &pos) {
            break (pos, Instant::now());
        }
        if t_up.elapsed() > timeout || polls > 100_000 {
            bail!("not COMPLETE with identical replicas after {timeout:?}: {chunks:#?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let copied: u64 = low
        .iter()
        .map(|(id, b)| {
            final_pos
                .get(&(*id, down.clone()))
                .map_or(0, |p| p.bytes.saturating_sub(*b))
        })
        .sum();
    let catchup = t_done - t_up;
    let total = t_done - t_start;

    let ref_bytes = copied.max(missed).max(1);
    let ref_one = reference::copy_fsync(&cluster.dir, ref_bytes, u64::MAX)?;
    let ref_4m = reference::copy_fsync(&cluster.dir, ref_bytes, 4 << 20)?;

    println!(
        "\n## recovery: stop {host} ({down}) after {:.1} MB, write {:.1} MB, start it again\n",
        w_before.ipc_bytes as f64 / MB,
        w_missed.ipc_bytes as f64 / MB
    );
    let mut t = RateTable::new(rate(ref_bytes as f64 / MB, ref_one));
    let mut row = |label: &str, bytes: u64, took: Duration| t.row(label, bytes, took);
    row(
        "catch-up: node UP → all COMPLETE, checksums equal (bytes copied)",
        copied,
        catchup,
    );
    row(
        "same, from `host start` issued (process start + catch-up)",
        copied,
        total,
    );
    row(
        "reference: sequential copy, 1 MiB writes, fdatasync at end",
        ref_bytes,
        ref_one,
    );
    row("reference: same, fdatasync every 4 MiB", ref_bytes, ref_4m);
    println!("{t}\n");
    println!(
        "bytes missed (in-sync replicas' growth while {down} was down): {:.1} MB; bytes copied \
         (returning replicas' growth during recovery): {:.1} MB; copied/missed = {:.3}",
        missed as f64 / MB,
        copied as f64 / MB,
        copied as f64 / (missed.max(1)) as f64
    );
    println!(
        "{} chunks had a replica on {down}; after the writes: {}; `host stop` took {:.1} s, \
         `host start` {:.1} s; {polls} polls (50 ms apart)",
        affected.len(),
        states.join(" "),
        stop_took.as_secs_f64(),
        (t_up - t_start).as_secs_f64()
    );
    print!("writes before the stop: ");
    print_written(&w_before);
    print!(
        "writes while {down} was down: {:.1} MB/s, ",
        rate(w_missed.ipc_bytes as f64 / MB, w_missed.elapsed)
    );
    print_written(&w_missed);
    Ok(())
}
