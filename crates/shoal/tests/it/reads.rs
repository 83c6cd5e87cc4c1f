//! Reads see only rows that cannot disappear: a chunk's primary serves a record only once
//! every in-sync replica holds it (finding F3: a primary used to serve rows it had written but
//! not yet replicated, which a failover would then lose).

use std::io::Cursor;
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use arrow::ipc::reader::StreamReader;

use shoal_client::data::DataClient;
use shoal_proto::data_node_client::DataNodeClient;
use shoal_proto::{
    AggregateCall, ChunkInfo, ListReplicasRequest, ListReplicasResponse, PartialAggregate,
    ScanChunkRequest,
};

use crate::data::{Data, create_seed_table, runtime, seed_rows, wait_all_complete_and_identical};
use crate::harness::{Frozen, LocalCluster, node};

const DB: &str = "dfs://stock";
const TABLE: &str = "stock";

#[test]
fn the_primary_never_serves_a_row_an_in_sync_replica_lacks() {
    let cluster = LocalCluster::start();
    create_seed_table(&cluster);
    let rt = runtime();
    let data = Data::connect(&cluster);
    let first: Vec<i32> = (1..=10).collect();
    let later: Vec<i32> = (11..=20).collect();
    rt.block_on(data.client.append(DB, TABLE, 1, 1, &seed_rows(&first, 0)))
        .unwrap();
    let chunk = rt.block_on(data.chunks()).pop().unwrap();
    let (primary, replica) = crate::data::primary_and_other(&chunk);
    let status = cluster.status();
    let frozen = Frozen::new(node(&status, &replica)["pid"].as_u64().unwrap());

    // The second append, coordinated by the primary itself, reaches its log but not the
    // frozen replica.
    let append = rt.spawn({
        let client = DataClient::new(
            vec![data.datanodes[&primary].clone()],
            data.channels.clone(),
        );
        let batch = seed_rows(&later, 0);
        async move { client.append(DB, TABLE, 1, 2, &batch).await }
    });
    rt.block_on(async {
        let started = Instant::now();
        // Only the primary is asked: a frozen node never answers.
        let mut at_primary =
            DataNodeClient::new(data.channels.get(&data.datanodes[&primary]).unwrap());
        let held = |resp: ListReplicasResponse| {
            resp.replicas
                .iter()
                .any(|p| p.chunk_id == chunk.id && p.last_lsn >= 2)
        };
        while !held(
            at_primary
                .list_replicas(ListReplicasRequest {})
                .await
                .unwrap()
                .into_inner(),
        ) {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the append never reached the primary"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let ids = rt.block_on(data.replica_ids(&chunk, &primary));
    if ids.contains(&11) {
        // Served only after the replica that lacks it left the in-sync set.
        let now = rt.block_on(data.chunks()).pop().unwrap();
        assert!(
            now.replicas.iter().any(|r| r.node == replica && !r.in_sync),
            "the primary served rows the in-sync replica on {replica} does not hold: {now:?}"
        );
    } else {
        assert_eq!(ids, first);
    }
    // A count answered from metadata (the rows are in memory, the request has no filter)
    // stops at the same position.
    let counted = rt.block_on(count_on(&data, &chunk, &primary));
    if counted == 20 {
        let now = rt.block_on(data.chunks()).pop().unwrap();
        assert!(
            now.replicas.iter().any(|r| r.node == replica && !r.in_sync),
            "the primary counted rows the in-sync replica on {replica} does not hold: {now:?}"
        );
    } else {
        assert_eq!(counted, 10);
    }
    drop(frozen);
    let acked = rt.block_on(append).unwrap().unwrap();
    assert_eq!(acked.rows, 10);
    rt.block_on(async {
        wait_all_complete_and_identical(&data, Duration::from_secs(60)).await;
        assert_eq!(data.table_ids().await, (1..=20).collect::<Vec<_>>());
    });
}

/// `count(*)` of a chunk as one replica answers it: partial aggregate states, summed.
async fn count_on(data: &Data, chunk: &ChunkInfo, node: &str) -> i64 {
    let mut c = DataNodeClient::new(data.channels.get(&data.datanodes[node]).unwrap());
    let count = AggregateCall {
        function: "count".into(),
        name: "n".into(),
        ..AggregateCall::default()
    };
    let mut stream = c
        .scan_chunk(ScanChunkRequest {
            chunk_id: chunk.id,
            chunk_version: chunk.version,
            project: true,
            aggregate: Some(PartialAggregate {
                group_by: vec![],
                calls: vec![count],
            }),
            ..ScanChunkRequest::default()
        })
        .await
        .unwrap_or_else(|e| panic!("count chunk {} on {node}: {e}", chunk.id))
        .into_inner();
    let mut total = 0;
    while let Some(msg) = stream.message().await.unwrap() {
        assert!(msg.partial_aggregate, "{node} sent rows, not states");
        for batch in StreamReader::try_new(Cursor::new(msg.arrow_ipc), None).unwrap() {
            let states = batch.unwrap();
            total += states
                .column(0)
                .as_primitive::<Int64Type>()
                .iter()
                .flatten()
                .sum::<i64>();
        }
    }
    total
}
