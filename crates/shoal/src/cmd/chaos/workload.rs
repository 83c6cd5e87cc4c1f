//! The clients of a run (`shoal chaos workload`, in the client namespace): writers appending
//! rows with unique ids, readers reading every id, each operation recorded as it is invoked and
//! as it completes.
//!
//! Writers each have their own writer id and send one append at a time (seq 1, 2, ...) of 1-5
//! rows, all of one date: one of the two current dates, which move on every [`DATE_EVERY`]. New
//! dates create chunks on the fly and older ones go cold (no more appends), as in a time series:
//! a cold chunk is where a restarted, emptied primary goes unnoticed (F1). An append is
//! `fail` only when refused for a reason that means nothing was written; a timeout or retries
//! exhausted is `info`. Readers `SELECT id` through a random data node every `--read-every`.
//! Both stop at `--duration` or after `--max-appends` per writer.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use arrow::array::{Array, Int64Array, RecordBatch, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal_chaos::history::{F, Kind, Op, Recorder};
use shoal_client::ClientError;
use shoal_client::channel::Channels;
use shoal_client::data::DataClient;
use shoal_client::record::now_ms;

use crate::cli::ChaosWorkloadArgs;
use crate::target::Target;

pub const DB: &str = "dfs://chaos";
pub const TABLE: &str = "events";

/// The DDL of a database like the workload's (`DB`; the churn's are others), partitioned by
/// date.
pub fn create_db(db: &str) -> String {
    format!(r#"CREATE DATABASE "{db}" PARTITIONED BY VALUE(2024.01.01..2024.01.02), ENGINE='TSDB'"#)
}

/// The DDL of [`TABLE`] in `db`: the rows [`rows`] makes.
pub fn create_table(db: &str) -> String {
    format!(
        r#"create table "{db}"."{TABLE}"(time TIMESTAMP, writer LONG, seq LONG, id LONG) partitioned by time, sortColumns=[`writer], keepDuplicates=ALL"#
    )
}
pub const SELECT_IDS: &str = r#"SELECT id FROM "dfs://chaos".events"#;
/// How long a date stays current.
const DATE_EVERY: Duration = Duration::from_secs(6);
const DAY_MS: i64 = 86_400_000;
/// 2024-01-01T00:00:00Z.
const FIRST_DAY_MS: i64 = 1_704_067_200_000;
/// Writer `w`'s ids are `w * ID_SPACE + 1, + 2, ...`: unique across writers.
const ID_SPACE: u64 = 1_000_000_000;
/// How long one append keeps trying (failing over) before its outcome is unknown: longer than
/// the 17 s a coordinator waits before moving a primary.
const APPEND_DEADLINE: Duration = Duration::from_secs(30);
/// A read taking longer is recorded as failed.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

type Shared = Arc<Mutex<Recorder>>;

pub async fn run(args: ChaosWorkloadArgs) -> anyhow::Result<()> {
    let target = Target::resolve(&args.target)?;
    let nodes = target
        .nodes
        .as_ref()
        .context("the workload needs --dir (cluster.nodes)")?;
    let sites: Vec<String> = nodes.datanodes().map(|n| n.site.addr()).collect();
    let recorder: Shared = Arc::new(Mutex::new(Recorder::create(&args.out)?));
    let started = Instant::now();
    let end = started + args.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..args.writers {
        let mut rotated = sites.clone();
        rotated.rotate_left(w as usize % sites.len().max(1));
        let client = DataClient::new(rotated, target.channels.clone());
        let rng = StdRng::seed_from_u64(args.seed.wrapping_add(u64::from(w)));
        let writer = Writer {
            id: u64::from(w) + 1,
            client,
            rng,
            recorder: recorder.clone(),
        };
        tasks.spawn(writer.run(started..end, args.max_appends, args.pause));
    }
    for r in 0..args.readers {
        let reader = Reader {
            process: format!("r{}", r + 1),
            sites: sites.clone(),
            channels: target.channels.clone(),
            rng: StdRng::seed_from_u64(args.seed.wrapping_add(1000 + u64::from(r))),
            recorder: recorder.clone(),
        };
        tasks.spawn(reader.run(end, args.read_every));
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

fn record(recorder: &Shared, op: &Op) -> anyhow::Result<()> {
    recorder
        .lock()
        .map_err(|_| anyhow::anyhow!("the history recorder is poisoned"))?
        .record(op)?;
    Ok(())
}

struct Writer {
    id: u64,
    client: DataClient,
    rng: StdRng,
    recorder: Shared,
}

impl Writer {
    async fn run(
        mut self,
        time: std::ops::Range<Instant>,
        max_appends: u64,
        pause: Duration,
    ) -> anyhow::Result<()> {
        self.client.deadline = APPEND_DEADLINE;
        let process = format!("w{}", self.id);
        let mut next_id = self.id * ID_SPACE + 1;
        for seq in 1..=max_appends {
            if Instant::now() >= time.end {
                break;
            }
            let n = self.rng.random_range(1..=5u64);
            let ids: Vec<u64> = (next_id..next_id + n).collect();
            next_id += n;
            let current = time.start.elapsed().as_secs() / DATE_EVERY.as_secs();
            let day = i64::try_from(current)? + self.rng.random_range(0..2);
            let batch = rows(self.id, seq, &ids, day)?;
            let mut invoke = Op::new(&process, Kind::Invoke, F::Append, now_ms());
            (invoke.writer, invoke.seq, invoke.ids) = (Some(self.id), Some(seq), ids);
            record(&self.recorder, &invoke)?;
            let result = self.client.append(DB, TABLE, self.id, seq, &batch).await;
            let done = match result {
                Ok(a) => {
                    let mut op = invoke.complete(Kind::Ok, now_ms());
                    op.node = self.client.sites().get(a.site).cloned();
                    op
                }
                Err(e) => {
                    let mut op = invoke.complete(outcome_of(&e), now_ms());
                    op.code = Some(e.to_string());
                    op
                }
            };
            record(&self.recorder, &done)?;
            tokio::time::sleep(pause).await;
        }
        Ok(())
    }
}

/// `fail` only for refusals that happen before anything is written; anything else may have
/// been applied (in part: a data node failing mid-write answers INTERNAL or UNAVAILABLE).
fn outcome_of(e: &ClientError) -> Kind {
    use tonic::Code::*;
    match e {
        ClientError::Rpc {
            code: InvalidArgument | NotFound | AlreadyExists | PermissionDenied | Unimplemented,
            ..
        } => Kind::Fail,
        ClientError::Unauthenticated { .. }
        | ClientError::BadInput(_)
        | ClientError::BadAddress { .. }
        | ClientError::BadSecret(_) => Kind::Fail,
        _ => Kind::Info,
    }
}

/// One row per id on day `day` (0: 2024-01-01), stamped with the writer and seq that sent it.
pub fn rows(writer: u64, seq: u64, ids: &[u64], day: i64) -> anyhow::Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("writer", DataType::Int64, false),
        Field::new("seq", DataType::Int64, false),
        Field::new("id", DataType::Int64, false),
    ]));
    let long = |v: u64| i64::try_from(v).context("beyond LONG");
    let time = FIRST_DAY_MS + day * DAY_MS + long(seq)? % DAY_MS;
    let ids: Vec<i64> = ids
        .iter()
        .map(|i| long(*i))
        .collect::<anyhow::Result<_>>()?;
    let n = ids.len();
    Ok(RecordBatch::try_new(
        schema,
        vec![
            Arc::new(TimestampMillisecondArray::from(vec![time; n])),
            Arc::new(Int64Array::from(vec![long(writer)?; n])),
            Arc::new(Int64Array::from(vec![long(seq)?; n])),
            Arc::new(Int64Array::from(ids)),
        ],
    )?)
}

struct Reader {
    process: String,
    sites: Vec<String>,
    channels: Channels,
    rng: StdRng,
    recorder: Shared,
}

impl Reader {
    async fn run(mut self, end: Instant, every: Duration) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while Instant::now() < end {
            tick.tick().await;
            let site = self.sites[self.rng.random_range(0..self.sites.len())].clone();
            let invoke = Op::new(&self.process, Kind::Invoke, F::Read, now_ms());
            record(&self.recorder, &invoke)?;
            let done = read_ids(&invoke, &self.channels, &site).await;
            record(&self.recorder, &done)?;
        }
        Ok(())
    }
}

/// `SELECT id` through data node `site`, as the completion of `invoke` (`ok` with the ids, or
/// `fail`: a read changes nothing).
pub async fn read_ids(invoke: &Op, channels: &Channels, site: &str) -> Op {
    let result = match channels.get(site) {
        Ok(channel) => tokio::time::timeout(READ_TIMEOUT, shoal_query::query(channel, SELECT_IDS))
            .await
            .map_err(|_| format!("no answer within {READ_TIMEOUT:?}"))
            .and_then(|r| r.map_err(|s| format!("{}: {}", s.code(), s.message())))
            .and_then(|(_, batches)| ids_of(&batches)),
        Err(e) => Err(e.to_string()),
    };
    let mut op = match result {
        Ok(ids) => {
            let mut op = invoke.complete(Kind::Ok, now_ms());
            op.ids = ids;
            op
        }
        Err(e) => {
            let mut op = invoke.complete(Kind::Fail, now_ms());
            op.code = Some(e);
            op
        }
    };
    op.node = Some(site.to_owned());
    op
}

fn ids_of(batches: &[RecordBatch]) -> Result<Vec<u64>, String> {
    let mut ids = Vec::new();
    for b in batches {
        let col = b
            .column_by_name("id")
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
            .ok_or("the result has no LONG column `id`")?;
        ids.extend(col.iter().flatten().map(|v| v as u64));
    }
    Ok(ids)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rows_carry_writer_seq_and_ids_on_one_date() {
        let b = rows(3, 7, &[3_000_000_001, 3_000_000_002], 2).unwrap();
        assert_eq!(b.num_rows(), 2);
        let time = b
            .column(0)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap();
        assert_eq!(time.value(0), FIRST_DAY_MS + 2 * DAY_MS + 7);
        assert_eq!(ids_of(&[b]).unwrap(), vec![3_000_000_001, 3_000_000_002]);
    }

    #[test]
    fn only_refusals_before_writing_are_failures() {
        let rpc = |code| ClientError::Rpc {
            addr: "a".into(),
            code,
            message: String::new(),
        };
        assert_eq!(outcome_of(&rpc(tonic::Code::InvalidArgument)), Kind::Fail);
        assert_eq!(outcome_of(&rpc(tonic::Code::Internal)), Kind::Info);
        assert_eq!(
            outcome_of(&rpc(tonic::Code::FailedPrecondition)),
            Kind::Info
        );
        let timeout = ClientError::Unavailable {
            what: "append".into(),
            waited: APPEND_DEADLINE,
            last: String::new(),
        };
        assert_eq!(outcome_of(&timeout), Kind::Info);
    }
}
