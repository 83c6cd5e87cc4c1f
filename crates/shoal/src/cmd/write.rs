//! `shoal write`: the seed's writer, the client side of "clients keep writing while machines
//! are upgraded". It appends `(time = now, name, id = 1, 2, 3, …)` at a steady rate through
//! [`DataClient`], which fails over between data nodes re-sending the same `(writer_id, seq)`,
//! and measures what a client sees: each append's outcome and latency, and the longest time
//! without any acknowledgement (the outage a failover costs).
//!
//! The writer id is random per run: a restarted writer must not be mistaken for a retry of the
//! previous one's appends (the cluster would drop its rows as duplicates). Up to
//! [`MAX_IN_FLIGHT`] appends run at once so one slow append (a failover) does not stop the
//! clock; when that many are stuck, sending waits, so the writer never queues up more than
//! that. Lateness is caught up; after a stall longer than [`MAX_BEHIND`] it resumes at the rate
//! rather than sending everything owed in a burst.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use arrow::array::RecordBatch;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use shoal_client::ClientError;
use shoal_client::channel::Channels;
use shoal_client::data::{Appended, DataClient};
use shoal_client::seed;
use shoal_common::config::ClusterNodes;

use crate::cli::WriteArgs;
use crate::output;
use crate::target::Target;
use shoal_client::record::{AppendRecord, Outcome, now_ms, percentile};

/// Appends in flight at once.
const MAX_IN_FLIGHT: usize = 32;
/// How often the live line is refreshed (a terminal) or printed (`--progress` otherwise).
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
const PROGRESS_LINE_EVERY: Duration = Duration::from_secs(1);

pub async fn run(args: WriteArgs) -> anyhow::Result<ExitCode> {
    if !(args.rate.is_finite() && args.rate > 0.0) {
        bail!("--rate must be a positive number of appends per second");
    }
    if args.count.is_some_and(|c| c > i32::MAX as u64) {
        bail!("--count: ids are INT, at most {}", i32::MAX);
    }
    let (sites, channels) = connect(&args).await?;
    if sites.is_empty() {
        bail!("no data node to write to");
    }
    let client = DataClient::new(sites, channels);
    let mut record = match &args.record {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create the record {}", path.display()))?,
        )),
        None => None,
    };
    let writer_id: u64 = rand::random();
    let max_id = args.count.unwrap_or(i32::MAX as u64);
    let mut live = Live::new(args.progress);
    let mut stats = Stats::default();

    let started = Instant::now();
    let end = args
        .duration
        .map(|d| tokio::time::Instant::from_std(started + d));
    let mut pace = Pace::new(args.rate);
    let mut progress = tokio::time::interval(PROGRESS_EVERY);
    let stop_at = tokio::time::sleep_until(end.unwrap_or_else(far_future));
    tokio::pin!(stop_at);
    // Ctrl-C stops sending and waits for the appends in flight; a second one gives up on them.
    let mut interrupts = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut in_flight = FuturesUnordered::new();
    let (mut seq, mut next_id) = (0u64, 1u64);
    let mut sending = true;
    // A refusal that retrying cannot fix (no such table, wrong secret): stop sending.
    let mut refused = None;
    while sending || !in_flight.is_empty() {
        tokio::select! {
            _ = tokio::time::sleep_until(pace.due().into()), if sending && in_flight.len() < MAX_IN_FLIGHT => {
                if end.is_some_and(|e| pace.due() >= e.into_std()) {
                    sending = false;
                    continue;
                }
                pace.next();
                let last_id = (next_id + u64::from(args.batch) - 1).min(max_id);
                seq += 1;
                let batch = rows_now(next_id, last_id)?;
                in_flight.push(append(&client, &args, writer_id, seq, next_id, last_id, batch));
                next_id = last_id + 1;
                sending = next_id <= max_id;
            }
            Some(done) = in_flight.next() => {
                if let Err(e @ (ClientError::Rpc { .. } | ClientError::Unauthenticated { .. })) = &done.result {
                    sending = false;
                    refused.get_or_insert_with(|| e.to_string());
                }
                let line = stats.add(&done, client.sites());
                if let Some(w) = &mut record {
                    serde_json::to_writer(&mut *w, &line)?;
                    w.write_all(b"\n")?;
                    w.flush()?;
                }
            }
            _ = &mut stop_at, if sending => sending = false,
            _ = interrupts.recv() => {
                if !sending {
                    bail!(
                        "interrupted with {} appends in flight: their outcome is unknown and not recorded",
                        in_flight.len()
                    );
                }
                sending = false;
            }
            _ = progress.tick() => live.update(&mut stats, seq, in_flight.len()),
        }
    }
    live.finish();
    let summary = stats.summary(writer_id, seq, started.elapsed());
    if args.json {
        println!("{}", output::json(&summary)?);
    } else {
        println!("{}", summary_table(&summary));
    }
    if let Some(e) = refused {
        eprintln!("error: the cluster refused an append, stopped: {e}");
    }
    Ok(if stats.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The schedule: the n-th append is due n/rate after the start. Lateness (a busy machine, a
/// slow append holding up the in-flight limit) is caught up; after a stall longer than
/// [`MAX_BEHIND`] the schedule restarts from now instead of sending everything owed at once.
struct Pace {
    start: Instant,
    rate: f64,
    n: u64,
}

const MAX_BEHIND: Duration = Duration::from_millis(500);

impl Pace {
    fn new(rate: f64) -> Self {
        Self {
            start: Instant::now(),
            rate,
            n: 0,
        }
    }

    fn due(&self) -> Instant {
        self.start + Duration::from_secs_f64(self.n as f64 / self.rate)
    }

    /// One append is sent.
    fn next(&mut self) {
        self.n += 1;
        let now = Instant::now();
        if now > self.due() + MAX_BEHIND {
            (self.start, self.n) = (now, 0);
        }
    }
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(100 * 365 * 86_400)
}

/// A finished append.
struct Done {
    seq: u64,
    first_id: u64,
    last_id: u64,
    sent_at_ms: u64,
    acked_at_ms: u64,
    latency: Duration,
    acked_at: Instant,
    result: Result<Appended, ClientError>,
}

async fn append(
    client: &DataClient,
    args: &WriteArgs,
    writer_id: u64,
    seq: u64,
    first_id: u64,
    last_id: u64,
    batch: RecordBatch,
) -> Done {
    let sent_at_ms = now_ms();
    let sent = Instant::now();
    let result = client
        .append(&args.db, &args.table, writer_id, seq, &batch)
        .await;
    Done {
        seq,
        first_id,
        last_id,
        sent_at_ms,
        acked_at_ms: now_ms(),
        latency: sent.elapsed(),
        acked_at: Instant::now(),
        result,
    }
}

/// Rows `first_id..=last_id` of the seed's table, all stamped now.
pub(crate) fn rows_now(first_id: u64, last_id: u64) -> anyhow::Result<RecordBatch> {
    let ids: Vec<i32> = (first_id..=last_id)
        .map(|id| i32::try_from(id).context("id beyond INT"))
        .collect::<anyhow::Result<_>>()?;
    let now = now_ms() as i64;
    Ok(seed::rows(&ids, |_| now))
}

#[derive(Default)]
struct Stats {
    ok: u64,
    retried: u64,
    failed: u64,
    duplicates: u64,
    rows_ok: u64,
    /// Microseconds, of acknowledged appends.
    latencies_us: Vec<u64>,
    last_ack: Option<Instant>,
    /// The longest time between two consecutive acknowledgements, and the seq that ended it.
    longest_gap: Option<(Duration, u64)>,
    /// Acknowledgements of the last second: (when, latency), for the live line.
    recent: std::collections::VecDeque<(Instant, Duration)>,
}

impl Stats {
    /// Counts a finished append and returns its record line.
    fn add(&mut self, d: &Done, sites: &[String]) -> AppendRecord {
        let mut line = AppendRecord {
            seq: d.seq,
            first_id: d.first_id,
            last_id: d.last_id,
            outcome: Outcome::Ok,
            latency_us: d.latency.as_micros() as u64,
            retries: 0,
            duplicate: false,
            sent_at_ms: d.sent_at_ms,
            acked_at_ms: d.acked_at_ms,
            site: None,
            error: None,
        };
        match &d.result {
            Ok(a) => {
                self.ok += 1;
                self.retried += u64::from(a.retries > 0);
                self.duplicates += u64::from(a.duplicate);
                self.rows_ok += d.last_id - d.first_id + 1;
                self.latencies_us.push(line.latency_us);
                if let Some(last) = self.last_ack {
                    let gap = d.acked_at.saturating_duration_since(last);
                    if self.longest_gap.is_none_or(|(g, _)| gap > g) {
                        self.longest_gap = Some((gap, d.seq));
                    }
                }
                self.last_ack = Some(d.acked_at);
                self.recent.push_back((d.acked_at, d.latency));
                line.retries = a.retries;
                line.duplicate = a.duplicate;
                line.site = sites.get(a.site).cloned();
            }
            Err(e) => {
                self.failed += 1;
                line.outcome = Outcome::Failed;
                line.error = Some(e.to_string());
            }
        }
        line
    }

    fn summary(&mut self, writer_id: u64, appends: u64, elapsed: Duration) -> serde_json::Value {
        self.latencies_us.sort_unstable();
        let ms = |us: Option<u64>| us.map(|us| us as f64 / 1000.0);
        json!({
            "writer_id": format!("{writer_id:016x}"),
            "appends": appends,
            "appends_ok": self.ok,
            "appends_retried": self.retried,
            "appends_failed": self.failed,
            "duplicates": self.duplicates,
            "rows_ok": self.rows_ok,
            "latency_p50_ms": ms(percentile(&self.latencies_us, 0.50)),
            "latency_p99_ms": ms(percentile(&self.latencies_us, 0.99)),
            "latency_max_ms": ms(self.latencies_us.last().copied()),
            "longest_ack_gap_ms": self.longest_gap.map(|(g, _)| g.as_secs_f64() * 1000.0),
            "longest_ack_gap_ended_at_seq": self.longest_gap.map(|(_, seq)| seq),
            "appends_per_s": appends as f64 / elapsed.as_secs_f64(),
            "elapsed_s": elapsed.as_secs_f64(),
        })
    }
}

fn summary_table(s: &serde_json::Value) -> String {
    let ms = |key: &str| s[key].as_f64().map_or("-".into(), fmt_ms);
    let n = |key: &str| s[key].to_string();
    let gap = match s["longest_ack_gap_ended_at_seq"].as_u64() {
        Some(seq) => format!("{} (ended by seq {seq})", ms("longest_ack_gap_ms")),
        None => "-".into(),
    };
    let rows = vec![
        vec![
            "writer".into(),
            s["writer_id"].as_str().unwrap_or("").into(),
        ],
        vec!["appends ok".into(), n("appends_ok")],
        vec!["appends retried".into(), n("appends_retried")],
        vec!["appends failed".into(), n("appends_failed")],
        vec!["duplicates".into(), n("duplicates")],
        vec!["rows ok".into(), n("rows_ok")],
        vec!["latency p50".into(), ms("latency_p50_ms")],
        vec!["latency p99".into(), ms("latency_p99_ms")],
        vec!["latency max".into(), ms("latency_max_ms")],
        vec!["longest gap between acks".into(), gap],
        vec![
            "elapsed".into(),
            format!(
                "{:.1} s ({:.0} appends/s)",
                s["elapsed_s"].as_f64().unwrap_or(0.0),
                s["appends_per_s"].as_f64().unwrap_or(0.0)
            ),
        ],
    ];
    output::table(&["", ""], rows)
}

fn fmt_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        format!("{ms:.1} ms")
    }
}

/// The live line: an indicatif spinner on a terminal, else (with `--progress`) a plain line a
/// second, or nothing.
enum Live {
    Bar(ProgressBar),
    Lines(Instant),
    Off,
}

impl Live {
    fn new(forced: bool) -> Self {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed}] {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            Self::Bar(bar)
        } else if forced {
            Self::Lines(Instant::now())
        } else {
            Self::Off
        }
    }

    fn update(&mut self, stats: &mut Stats, sent: u64, in_flight: usize) {
        while stats
            .recent
            .front()
            .is_some_and(|(at, _)| at.elapsed() > Duration::from_secs(1))
        {
            stats.recent.pop_front();
        }
        let describe = |stats: &Stats| {
            let worst = stats.recent.iter().map(|(_, l)| *l).max();
            format!(
                "sent {sent}  ok {}  failed {}  in flight {in_flight}  {}/s  max latency {}  longest gap {}",
                stats.ok,
                stats.failed,
                stats.recent.len(),
                worst.map_or("-".into(), |l| fmt_ms(l.as_secs_f64() * 1000.0)),
                stats
                    .longest_gap
                    .map_or("-".into(), |(g, _)| fmt_ms(g.as_secs_f64() * 1000.0)),
            )
        };
        match self {
            Self::Bar(bar) => {
                bar.set_message(describe(stats));
                bar.tick();
            }
            Self::Lines(last) if last.elapsed() >= PROGRESS_LINE_EVERY => {
                *last = Instant::now();
                eprintln!("{}", describe(stats));
            }
            Self::Lines(_) | Self::Off => {}
        }
    }

    fn finish(&self) {
        if let Self::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// The data node sites and how to authenticate to them: a user's token after a login with
/// `--user`, else the cluster secret.
async fn connect(args: &WriteArgs) -> anyhow::Result<(Vec<String>, Channels)> {
    let Some(user) = &args.user else {
        let target = Target::resolve(&args.target)?;
        let sites = match &target.nodes {
            Some(nodes) => nodes.datanodes().map(|n| n.site.addr()).collect(),
            None => args.target.sites.clone(),
        };
        return Ok((sites, target.channels));
    };
    let sites: Vec<String> = match &args.target.dir {
        Some(dir) => ClusterNodes::load(&dir.join("cluster.nodes"))?
            .datanodes()
            .map(|n| n.site.addr())
            .collect(),
        None => args.target.sites.clone(),
    };
    let password = crate::target::password(args.password_file.as_deref(), "--user")?;
    let tls = crate::target::client_tls(&args.target)?;
    let token = shoal_query::login(&sites, user, &password, tls.as_ref())
        .await
        .map_err(|s| anyhow::anyhow!("login as `{user}` failed: {}", s.message()))?;
    Ok((sites, Channels::new(&token)?.with_tls(tls)))
}
