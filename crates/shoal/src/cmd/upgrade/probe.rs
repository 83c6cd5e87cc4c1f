//! The orchestrator's own writer: appends one row at a steady rate to `dfs://shoal_probe`
//! throughout the upgrade, one append at a time, so any stall shows as a gap between its
//! acknowledgements. Its record decides whether the next machine may go (the budget) and
//! feeds the report.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shoal_client::channel::Channels;
use shoal_client::data::DataClient;
use shoal_client::seed;
use tokio::sync::watch;

use crate::cmd::write::rows_now;
use shoal_client::record::now_ms;
use shoal_client::record::{AppendRecord, Outcome};

const DB: &str = "dfs://shoal_probe";
const TABLE: &str = "probe";

pub struct Probe {
    records: Arc<Mutex<Vec<AppendRecord>>>,
    /// When the append in flight was sent (ms since the epoch), 0 when none is.
    in_flight_since: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// Creates the probe table if needed (the seed's schema) and starts appending.
pub async fn start(
    controllers: &shoal_client::controller::ControllerClient,
    sites: Vec<String>,
    channels: Channels,
    rate: f64,
) -> anyhow::Result<Probe> {
    for ddl in [
        seed::CREATE_DB.replace(seed::DB, DB),
        seed::CREATE_TABLE
            .replace(seed::DB, DB)
            .replace(&format!("\"{}\"(", seed::TABLE), &format!("\"{TABLE}\"(")),
    ] {
        match controllers.execute_ddl(&ddl).await {
            Ok(_) => {}
            Err(shoal_client::ClientError::Rpc {
                code: tonic::Code::AlreadyExists,
                ..
            }) => {}
            Err(e) => anyhow::bail!("cannot create the probe table {DB}.{TABLE}: {e}"),
        }
    }
    let records = Arc::new(Mutex::new(Vec::new()));
    let in_flight_since = Arc::new(AtomicU64::new(0));
    let (stop, stopped) = watch::channel(false);
    let client = DataClient::new(sites, channels);
    let task = tokio::spawn(run(
        client,
        rate,
        records.clone(),
        in_flight_since.clone(),
        stopped,
    ));
    Ok(Probe {
        records,
        in_flight_since,
        stop,
        task,
    })
}

impl Probe {
    /// How long the append in flight has waited so far (0 when none is).
    pub fn in_flight_ms(&self) -> u64 {
        match self.in_flight_since.load(Ordering::Relaxed) {
            0 => 0,
            since => now_ms().saturating_sub(since),
        }
    }

    pub fn records(&self) -> Vec<AppendRecord> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stops after the append in flight; answers everything it recorded.
    pub async fn stop(self) -> Vec<AppendRecord> {
        self.stop.send_replace(true);
        let _ = self.task.await;
        std::mem::take(&mut *self.records.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

async fn run(
    client: DataClient,
    rate: f64,
    records: Arc<Mutex<Vec<AppendRecord>>>,
    in_flight_since: Arc<AtomicU64>,
    mut stopped: watch::Receiver<bool>,
) {
    // A new writer id per run: its sequence numbers start again at 1.
    let writer_id = rand::random::<u64>() | 1;
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.1));
    let mut next = tokio::time::Instant::now();
    for seq in 1u64.. {
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
            () = tokio::time::sleep_until(next) => {}
        }
        next += interval;
        let Ok(batch) = rows_now(seq, seq) else {
            return;
        };
        let sent_at_ms = now_ms();
        let sent = Instant::now();
        in_flight_since.store(sent_at_ms, Ordering::Relaxed);
        let result = client.append(DB, TABLE, writer_id, seq, &batch).await;
        in_flight_since.store(0, Ordering::Relaxed);
        let mut line = AppendRecord {
            seq,
            first_id: seq,
            last_id: seq,
            outcome: Outcome::Ok,
            latency_us: sent.elapsed().as_micros() as u64,
            retries: 0,
            duplicate: false,
            sent_at_ms,
            acked_at_ms: now_ms(),
            site: None,
            error: None,
        };
        match result {
            Ok(a) => {
                line.retries = a.retries;
                line.duplicate = a.duplicate;
                line.site = client.sites().get(a.site).cloned();
            }
            Err(e) => {
                line.outcome = Outcome::Failed;
                line.error = Some(e.to_string());
            }
        }
        records.lock().unwrap_or_else(|p| p.into_inner()).push(line);
        // Behind schedule after a stall: do not burst to catch up.
        next = next.max(tokio::time::Instant::now());
    }
}
