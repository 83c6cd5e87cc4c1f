//! Talking to a test cluster's data plane from the test itself: the Rust client for appends,
//! and direct replica reads so each replica's content can be checked on its own.

use arrow::array::{Int32Array, RecordBatch};
use shoal_client::channel::Channels;
use shoal_client::controller::ControllerClient;
use shoal_client::data::DataClient;
use shoal_common::config::ClusterNodes;
use shoal_proto::data_node_client::DataNodeClient;
use shoal_proto::{ChunkInfo, ListReplicasRequest, ReplicaPosition, ScanChunkRequest};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::harness::{LocalCluster, stderr};

pub use shoal_client::seed::{CREATE_DB, CREATE_TABLE};

/// Milliseconds of 2023-01-01T00:00:00Z.
pub const JAN1_MS: i64 = 19_358 * 86_400_000;
pub const DAY_MS: i64 = 86_400_000;

pub struct Data {
    pub controllers: ControllerClient,
    pub channels: Channels,
    pub client: DataClient,
    /// alias → address of every data node.
    pub datanodes: BTreeMap<String, String>,
}

impl Data {
    pub fn connect(cluster: &LocalCluster) -> Self {
        let nodes = ClusterNodes::load(&cluster.dir.join("cluster.nodes")).unwrap();
        let secret =
            shoal_common::secret::load(&cluster.dir.join(shoal_common::secret::SECRET_FILE))
                .unwrap();
        let channels = Channels::new(secret.signing())
            .unwrap()
            .with_tls(cluster.client_tls());
        let datanodes: BTreeMap<String, String> = nodes
            .datanodes()
            .map(|n| (n.site.alias.clone(), n.site.addr()))
            .collect();
        Self {
            controllers: ControllerClient::new(
                nodes.controllers().map(|n| n.site.addr()).collect(),
                channels.clone(),
            ),
            client: DataClient::new(datanodes.values().cloned().collect(), channels.clone()),
            channels,
            datanodes,
        }
    }

    pub async fn chunks(&self) -> Vec<ChunkInfo> {
        self.controllers.get_catalog().await.unwrap().chunks
    }

    /// Every replica's position, by (chunk id, node alias); nodes that do not answer are left
    /// out.
    pub async fn positions(&self) -> BTreeMap<(u64, String), ReplicaPosition> {
        let mut all = BTreeMap::new();
        for (alias, addr) in &self.datanodes {
            let mut c = DataNodeClient::new(self.channels.get(addr).unwrap());
            if let Ok(resp) = c.list_replicas(ListReplicasRequest {}).await {
                for p in resp.into_inner().replicas {
                    all.insert((p.chunk_id, alias.clone()), p);
                }
            }
        }
        all
    }

    /// The ids one replica of a chunk holds (the replica must be in sync).
    pub async fn replica_ids(&self, chunk: &ChunkInfo, node: &str) -> Vec<i32> {
        let addr = &self.datanodes[node];
        let mut c = DataNodeClient::new(self.channels.get(addr).unwrap());
        let mut stream = c
            .scan_chunk(ScanChunkRequest {
                chunk_id: chunk.id,
                chunk_version: chunk.version,
                columns: vec!["id".into()],
                project: true,
                ..ScanChunkRequest::default()
            })
            .await
            .unwrap_or_else(|e| panic!("scan chunk {} on {node}: {e}", chunk.id))
            .into_inner();
        let mut ids = Vec::new();
        while let Some(msg) = stream.message().await.unwrap() {
            let batch = shoal_catalog::rows::decode_ipc(&msg.arrow_ipc).unwrap();
            let col = batch
                .column_by_name("id")
                .unwrap()
                .as_any()
                .downcast_ref::<Int32Array>()
                .unwrap()
                .clone();
            ids.extend(col.values().iter().copied());
        }
        ids
    }

    /// Every replica of each chunk holds the same ids.
    pub async fn assert_replicas_agree(&self) {
        for c in self.chunks().await {
            let mut answers = Vec::new();
            for r in &c.replicas {
                let mut ids = self.replica_ids(&c, &r.node).await;
                ids.sort_unstable();
                answers.push(ids);
            }
            assert!(answers.windows(2).all(|w| w[0] == w[1]), "chunk {}", c.id);
        }
    }

    /// Every id of the table, read from the first in-sync replica of each chunk.
    pub async fn table_ids(&self) -> Vec<i32> {
        let mut ids = Vec::new();
        for c in self.chunks().await {
            let r = c.replicas.iter().find(|r| r.in_sync).unwrap();
            ids.extend(self.replica_ids(&c, &r.node).await);
        }
        ids.sort_unstable();
        ids
    }
}

/// A chunk's primary (its first in-sync replica) and another of its replicas, by node alias.
pub fn primary_and_other(chunk: &ChunkInfo) -> (String, String) {
    let primary = &chunk.replicas.iter().find(|r| r.in_sync).unwrap().node;
    let other = &chunk
        .replicas
        .iter()
        .find(|r| r.node != *primary)
        .unwrap()
        .node;
    (primary.clone(), other.clone())
}

/// Waits until every chunk is COMPLETE and all replicas of each chunk hold the same records
/// (same last lsn and checksum); returns the positions.
pub async fn wait_all_complete_and_identical(data: &Data, timeout: Duration) {
    let started = Instant::now();
    loop {
        let chunks = data.chunks().await;
        let positions = data.positions().await;
        let settled = chunks.iter().all(|c| {
            let of_chunk: Vec<_> = c
                .replicas
                .iter()
                .map(|r| positions.get(&(c.id, r.node.clone())))
                .collect();
            c.state == "COMPLETE"
                && of_chunk.iter().all(|p| {
                    p.is_some_and(|p| {
                        of_chunk[0]
                            .is_some_and(|q| (p.last_lsn, p.checksum) == (q.last_lsn, q.checksum))
                    })
                })
        });
        if settled {
            return;
        }
        assert!(
            started.elapsed() < timeout,
            "chunks not COMPLETE and identical after {timeout:?}:\n{chunks:#?}\n{positions:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The seed's rows: `time` on `day` (days after 2023-01-01) plus the id in ms, names cycling.
pub fn seed_rows(ids: &[i32], day: i64) -> RecordBatch {
    shoal_client::seed::rows(ids, |i| JAN1_MS + day * DAY_MS + i64::from(i))
}

/// Creates the seed's database and table through `shoal sql`.
pub fn create_seed_table(cluster: &LocalCluster) {
    for sql in [CREATE_DB, CREATE_TABLE] {
        let out = cluster.run(&["sql", sql]);
        assert!(out.status.success(), "{sql}: {}", stderr(&out));
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
