//! What the cluster holds once the faults are healed (`shoal chaos final`, in the client
//! namespace): it waits (bounded) until every chunk of the run's database is COMPLETE with one
//! checksum across its in-sync replicas, then records each chunk's state, a `SELECT id` through
//! every data node, every replica of every chunk read directly (`ScanChunk` pinned to it), and
//! how many replicas each data node had repaired (its `/metrics`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use arrow::array::{Int64Array, RecordBatch, StringArray, UInt64Array};
use futures::TryStreamExt;
use shoal_chaos::history::{F, Kind, Op, Recorder};
use shoal_client::channel::Channels;
use shoal_client::record::now_ms;
use shoal_common::config::ClusterCfg;
use shoal_proto::data_node_client::DataNodeClient;
use shoal_proto::{MAX_MESSAGE, ScanChunkRequest};
use shoal_server::http::http_addr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::cluster::ChunkRow;
use super::workload::{DB, READ_TIMEOUT, read_ids};
use crate::cli::ChaosFinalArgs;
use crate::target::Target;

const POLL: Duration = Duration::from_secs(1);

pub async fn run(args: ChaosFinalArgs) -> anyhow::Result<()> {
    let target = Target::resolve(&args.target)?;
    let nodes = target
        .nodes
        .clone()
        .context("the final read needs --dir (cluster.nodes)")?;
    let sites: Vec<String> = nodes.datanodes().map(|n| n.site.addr()).collect();
    let mut recorder = Recorder::create(&args.out)?;
    let chunks = wait_recovered(&target.channels, &sites, args.timeout).await?;
    for c in &chunks {
        let mut op = Op::new("final", Kind::Ok, F::ChunkState, now_ms());
        op.chunk = Some(c.chunk_id);
        op.state = Some(c.state.clone());
        let in_sync = c.in_sync();
        op.checksums = c
            .checksums()
            .into_iter()
            .filter(|(n, _)| in_sync.contains(n))
            .collect();
        recorder.record(&op)?;
    }
    for site in &sites {
        let invoke = Op::new("final", Kind::Invoke, F::FinalRead, now_ms());
        recorder.record(&invoke)?;
        recorder.record(&read_ids(&invoke, &target.channels, site).await)?;
    }
    for c in &chunks {
        for (alias, in_sync) in c.replicas() {
            let mut op = Op::new("final", Kind::Ok, F::ReplicaRead, now_ms());
            (op.chunk, op.node, op.in_sync) =
                (Some(c.chunk_id), Some(alias.clone()), Some(in_sync));
            let addr = nodes
                .by_alias(&alias)
                .map(|n| n.site.addr())
                .with_context(|| format!("chunk {} names unknown node {alias}", c.chunk_id))?;
            match scan(&target.channels, &addr, c).await {
                Ok(pairs) => op.pairs = pairs,
                Err(e) => (op.kind, op.code) = (Kind::Fail, Some(e)),
            }
            op.t = now_ms();
            recorder.record(&op)?;
        }
    }
    let dir = args
        .target
        .dir
        .as_deref()
        .context("the final read needs --dir")?;
    for n in nodes.datanodes() {
        let mut op = Op::new("final", Kind::Ok, F::Repairs, now_ms());
        op.node = Some(n.site.alias.clone());
        // Each machine's files are in DIR/<host>/ (`shoal local up`).
        let cfg = ClusterCfg::load(&dir.join(&n.site.host).join("cluster.cfg"))?;
        let addr = http_addr(&n.site.addr(), cfg.for_node(&n.site.alias)?.http_port)
            .map_err(anyhow::Error::msg)?;
        match repairs(&addr).await {
            Ok(r) => op.repairs = r,
            Err(e) => (op.kind, op.code) = (Kind::Fail, Some(format!("{e:#}"))),
        }
        recorder.record(&op)?;
    }
    Ok(())
}

/// `shoal_replica_repairs_total` by `how`, from the data node's `/metrics` at `addr`.
async fn repairs(addr: &str) -> anyhow::Result<BTreeMap<String, u64>> {
    let get = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        let req = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut body = String::new();
        s.read_to_string(&mut body).await?;
        anyhow::Ok(body)
    };
    let body = tokio::time::timeout(READ_TIMEOUT, get)
        .await
        .with_context(|| format!("GET {addr}/metrics timed out"))??;
    let mut out = BTreeMap::new();
    for line in body.lines() {
        let Some(rest) = line.strip_prefix("shoal_replica_repairs_total{how=\"") else {
            continue;
        };
        let (how, value) = rest
            .split_once("\"} ")
            .with_context(|| format!("{addr}: unreadable sample {line:?}"))?;
        let n: f64 = value.parse().with_context(|| format!("{addr}: {line:?}"))?;
        out.insert(how.to_owned(), n as u64);
    }
    Ok(out)
}

/// Polls `cluster.chunks` until the run's chunks are all COMPLETE with equal in-sync
/// checksums, or `timeout` passes; returns the last answer either way (the checker judges it).
async fn wait_recovered(
    channels: &Channels,
    sites: &[String],
    timeout: Duration,
) -> anyhow::Result<Vec<ChunkRow>> {
    let started = Instant::now();
    let mut last: anyhow::Result<Vec<ChunkRow>> = Err(anyhow::anyhow!("not asked yet"));
    while started.elapsed() < timeout {
        last = chunk_rows(channels, sites).await;
        if last.as_ref().is_ok_and(|rows| rows.iter().all(recovered)) {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    last.context("cluster.chunks could not be read")
}

fn recovered(c: &ChunkRow) -> bool {
    let in_sync = c.in_sync();
    let sums: Vec<String> = c
        .checksums()
        .into_iter()
        .filter(|(n, _)| in_sync.contains(n))
        .map(|(_, s)| s)
        .collect();
    c.state == "COMPLETE" && !sums.is_empty() && sums.iter().all(|s| *s == sums[0] && s != "?")
}

/// The run's chunks from `cluster.chunks` through the first data node that answers.
async fn chunk_rows(channels: &Channels, sites: &[String]) -> anyhow::Result<Vec<ChunkRow>> {
    let sql = r#"SELECT chunk_id, db, state, version, replicas, checksums FROM cluster.chunks"#;
    let mut last = String::new();
    for site in sites {
        let query = shoal_query::query(channels.get(site)?, sql);
        match tokio::time::timeout(READ_TIMEOUT, query).await {
            Ok(Ok((_, batches))) => {
                let rows = batches
                    .iter()
                    .map(rows_of)
                    .collect::<anyhow::Result<Vec<_>>>()?;
                return Ok(rows.into_iter().flatten().filter(|c| c.db == DB).collect());
            }
            Ok(Err(s)) => last = format!("{site}: {}: {}", s.code(), s.message()),
            Err(_) => last = format!("{site}: no answer within {READ_TIMEOUT:?}"),
        }
    }
    bail!("no data node answered: {last}")
}

fn rows_of(b: &RecordBatch) -> anyhow::Result<Vec<ChunkRow>> {
    fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> anyhow::Result<&'a T> {
        b.column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<T>())
            .with_context(|| format!("cluster.chunks: unexpected column `{name}`"))
    }
    let id = col::<UInt64Array>(b, "chunk_id")?;
    let db = col::<StringArray>(b, "db")?;
    let state = col::<StringArray>(b, "state")?;
    let version = col::<UInt64Array>(b, "version")?;
    let replicas = col::<StringArray>(b, "replicas")?;
    let checksums = col::<StringArray>(b, "checksums")?;
    Ok((0..b.num_rows())
        .map(|i| ChunkRow {
            chunk_id: id.value(i),
            db: db.value(i).to_owned(),
            state: state.value(i).to_owned(),
            version: version.value(i),
            replicas: replicas.value(i).to_owned(),
            checksums: checksums.value(i).to_owned(),
        })
        .collect())
}

/// The `(writer, seq)` of each row of `chunk`'s replica at `addr`, in its log order.
async fn scan(
    channels: &Channels,
    addr: &str,
    chunk: &ChunkRow,
) -> Result<Vec<(u64, u64)>, String> {
    let mut client = DataNodeClient::new(channels.get(addr).map_err(|e| e.to_string())?)
        .max_decoding_message_size(MAX_MESSAGE);
    let req = ScanChunkRequest {
        chunk_id: chunk.chunk_id,
        chunk_version: chunk.version,
        ..ScanChunkRequest::default()
    };
    let messages = async {
        let stream = client.scan_chunk(req).await?.into_inner();
        stream.try_collect::<Vec<_>>().await
    };
    let messages = tokio::time::timeout(READ_TIMEOUT, messages)
        .await
        .map_err(|_| format!("no answer within {READ_TIMEOUT:?}"))?
        .map_err(|s| format!("{}: {}", s.code(), s.message()))?;
    let mut pairs = Vec::new();
    for m in messages {
        let b = shoal_catalog::rows::decode_ipc(&m.arrow_ipc).map_err(|e| e.to_string())?;
        let long = |name: &str| {
            b.column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
                .cloned()
                .ok_or(format!("the replica's rows have no LONG column `{name}`"))
        };
        let (writer, seq) = (long("writer")?, long("seq")?);
        pairs.extend((0..b.num_rows()).map(|i| (writer.value(i) as u64, seq.value(i) as u64)));
    }
    Ok(pairs)
}
