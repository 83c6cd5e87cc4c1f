//! The data plane with real processes: replicated appends through any data node, a machine lost
//! and regained under writes (RECOVERING → COMPLETE, identical replicas), a data node killed
//! mid-stream (every acknowledged row exactly once), retried appends applied once, a seq older
//! than the dedup window refused, bad input refused.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use shoal_client::ClientError;

use crate::data::{Data, create_seed_table, runtime, seed_rows, wait_all_complete_and_identical};
use crate::harness::{LocalCluster, Spawned, kill9, shoal_bin, stderr};

const DB: &str = "dfs://stock";
const TABLE: &str = "stock";

/// The data node alias running on `host`, and its pid.
pub(crate) fn datanode_on(cluster: &LocalCluster, host: &str) -> (String, u64) {
    let status = cluster.status();
    let n = crate::harness::nodes(&status)
        .iter()
        .find(|n| n["mode"] == "datanode" && n["machine"] == host)
        .unwrap_or_else(|| panic!("no data node on {host}"))
        .clone();
    (
        n["alias"].as_str().unwrap().to_owned(),
        n["pid"].as_u64().unwrap(),
    )
}

#[test]
fn appends_go_on_while_a_machine_is_down_and_its_replicas_recover() {
    let cluster = LocalCluster::start();
    create_seed_table(&cluster);
    let rt = runtime();
    let data = Data::connect(&cluster);
    let writer = 7;
    // 20 appends of 10 rows over three days; the first half before the machine goes away.
    let append = |seq: u64| {
        let ids: Vec<i32> = (0..10).map(|k| (seq as i32 - 1) * 10 + k + 1).collect();
        let batch = seed_rows(&ids, (seq % 3) as i64);
        let data = &data;
        async move {
            let r = data
                .client
                .append(DB, TABLE, writer, seq, &batch)
                .await
                .unwrap();
            assert_eq!((r.rows, r.duplicate), (10, false));
        }
    };
    rt.block_on(async {
        for seq in 1..=10 {
            append(seq).await;
        }
    });
    let chunks = rt.block_on(data.chunks());
    assert_eq!(chunks.len(), 3);
    for c in &chunks {
        assert_eq!(c.state, "COMPLETE", "{c:?}");
        let machines: BTreeSet<&str> = c.replicas.iter().map(|r| r.node.as_str()).collect();
        assert_eq!(machines.len(), 2, "two replicas on distinct nodes: {c:?}");
    }

    let host = cluster.hosts[1].clone();
    let (down, _) = datanode_on(&cluster, &host);
    let out = cluster.run(&["host", "stop", &host]);
    assert!(out.status.success(), "{}", stderr(&out));
    rt.block_on(async {
        for seq in 11..=20 {
            append(seq).await;
        }
    });
    // Every chunk with a replica on the stopped machine lost it from the in-sync set.
    let chunks = rt.block_on(data.chunks());
    let affected: Vec<_> = chunks
        .iter()
        .filter(|c| c.replicas.iter().any(|r| r.node == down))
        .collect();
    assert!(!affected.is_empty());
    for c in &affected {
        assert_eq!(c.state, "RECOVERING", "{c:?}");
        assert!(
            c.replicas.iter().any(|r| r.node == down && !r.in_sync),
            "{c:?}"
        );
    }

    let out = cluster.run(&["host", "start", &host]);
    assert!(out.status.success(), "{}", stderr(&out));
    rt.block_on(async {
        wait_all_complete_and_identical(&data, Duration::from_secs(60)).await;
        assert_eq!(data.table_ids().await, (1..=200).collect::<Vec<_>>());
        // Whichever replica serves, the answer is the same.
        data.assert_replicas_agree().await;
    });
}

#[test]
fn a_data_node_killed_mid_stream_loses_no_acknowledged_row_and_duplicates_none() {
    let cluster = LocalCluster::start();
    create_seed_table(&cluster);
    let rt = runtime();
    let data = std::sync::Arc::new(Data::connect(&cluster));
    // The client's first site is the first data node: kill the node coordinating the writes.
    let (victim, pid) = datanode_on(&cluster, &cluster.hosts[0]);
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let outcomes = rt.block_on(async {
        let writers: Vec<_> = (1..=4u64)
            .map(|w| {
                let data = data.clone();
                let acked = acked.clone();
                tokio::spawn(async move {
                    let mut told = Vec::new();
                    for seq in 1..=120u64 {
                        let ids: Vec<i32> =
                            (0..5).map(|k| (w * 10_000 + seq * 5 + k) as i32).collect();
                        let batch = seed_rows(&ids, (seq % 2) as i64);
                        let r = data.client.append(DB, TABLE, w, seq, &batch).await;
                        if r.is_ok() {
                            acked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        told.push((ids, r.map_err(|e| e.to_string())));
                    }
                    told
                })
            })
            .collect();
        // Kill in the middle of the stream.
        while acked.load(std::sync::atomic::Ordering::SeqCst) < 100 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        kill9(pid);
        let mut all = Vec::new();
        for w in writers {
            all.extend(w.await.unwrap());
        }
        all
    });
    let failed: Vec<_> = outcomes.iter().filter(|(_, r)| r.is_err()).collect();
    assert!(failed.is_empty(), "appends failed: {failed:?}");
    let retried = outcomes
        .iter()
        .filter(|(_, r)| r.as_ref().is_ok_and(|a| a.retries > 0))
        .count();
    assert!(
        retried > 0,
        "the kill of {victim} was not noticed by any append"
    );

    rt.block_on(async {
        wait_all_complete_and_identical(&data, Duration::from_secs(60)).await;
        let present = data.table_ids().await;
        let mut expected: Vec<i32> = outcomes.iter().flat_map(|(ids, _)| ids.clone()).collect();
        expected.sort_unstable();
        // Every acknowledged row exactly once, nothing that was never sent.
        assert_eq!(present.len(), expected.len(), "row count");
        assert_eq!(present, expected);
    });
}

#[test]
fn a_retried_append_is_applied_once_and_bad_input_is_refused() {
    let cluster = LocalCluster::start();
    create_seed_table(&cluster);
    let rt = runtime();
    let data = Data::connect(&cluster);
    // The same append through another coordinator: a retry after a lost acknowledgement.
    let mut sites: Vec<String> = data.datanodes.values().cloned().collect();
    sites.reverse();
    let other = shoal_client::data::DataClient::new(sites, data.channels.clone());
    rt.block_on(async {
        let batch = seed_rows(&[1, 2, 3], 4);
        let first = data.client.append(DB, TABLE, 1, 1, &batch).await.unwrap();
        assert!(!first.duplicate);
        let again = other.append(DB, TABLE, 1, 1, &batch).await.unwrap();
        assert!(again.duplicate);
        // A new seq is new data, a new writer with the same seq too.
        data.client
            .append(DB, TABLE, 1, 2, &seed_rows(&[4], 4))
            .await
            .unwrap();
        data.client
            .append(DB, TABLE, 2, 1, &seed_rows(&[5], 4))
            .await
            .unwrap();
        assert_eq!(data.table_ids().await, vec![1, 2, 3, 4, 5]);

        // A date outside the initial range creates its partition on the fly.
        data.client
            .append(DB, TABLE, 1, 3, &seed_rows(&[6], 400))
            .await
            .unwrap();
        let chunks = data.chunks().await;
        assert!(
            chunks.iter().any(|c| c.partition_key == "2024.02.05"),
            "{chunks:?}"
        );

        let refused = |r: Result<_, ClientError>| match r {
            Err(ClientError::Rpc { code, message, .. }) => (code, message),
            other => panic!("expected a refusal, got {other:?}"),
        };
        let wrong_type = arrow::array::RecordBatch::try_new(
            std::sync::Arc::new(arrow::datatypes::Schema::new(vec![
                arrow::datatypes::Field::new("time", arrow::datatypes::DataType::Utf8, false),
                arrow::datatypes::Field::new("name", arrow::datatypes::DataType::Utf8, false),
                arrow::datatypes::Field::new("id", arrow::datatypes::DataType::Int32, false),
            ])),
            vec![
                std::sync::Arc::new(arrow::array::StringArray::from(vec!["today"])),
                std::sync::Arc::new(arrow::array::StringArray::from(vec!["Apple"])),
                std::sync::Arc::new(arrow::array::Int32Array::from(vec![9])),
            ],
        )
        .unwrap();
        let (code, msg) = refused(data.client.append(DB, TABLE, 1, 4, &wrong_type).await);
        assert_eq!(code, tonic::Code::InvalidArgument);
        assert!(msg.contains("`time` is TIMESTAMP"), "{msg}");
        let (code, msg) = refused(
            data.client
                .append(DB, "nope", 1, 5, &seed_rows(&[9], 0))
                .await,
        );
        assert_eq!(code, tonic::Code::NotFound);
        assert!(msg.contains("table `nope` does not exist"), "{msg}");
        let (code, msg) = refused(
            data.client
                .append("dfs://nope", TABLE, 1, 6, &seed_rows(&[9], 0))
                .await,
        );
        assert_eq!(code, tonic::Code::NotFound);
        assert!(
            msg.contains("database `dfs://nope` does not exist"),
            "{msg}"
        );
        // Nothing of the refused appends was written.
        assert_eq!(data.table_ids().await, vec![1, 2, 3, 4, 5, 6]);
    });
}

#[test]
fn a_seq_older_than_the_dedup_window_is_refused_and_a_retry_in_it_is_a_duplicate() {
    let cluster = LocalCluster::start();
    create_seed_table(&cluster);
    let rt = runtime();
    let data = Data::connect(&cluster);
    let (writer, window) = (11, shoal_storage::DEDUP_WINDOW);
    // The window is over seq values, not appends: seq 1 then seq `newest` moves the writer's
    // window to start at `newest - window`, as 1..=newest in order would.
    let newest = 2 * window;
    rt.block_on(async {
        for (seq, id) in [(1, 1), (newest, 2)] {
            let r = data
                .client
                .append(DB, TABLE, writer, seq, &seed_rows(&[id], 4))
                .await
                .unwrap();
            assert!(!r.duplicate);
        }
        // Below the window, never sent or sent (seq 1): refused alike, and at once (no
        // coordinator retries it until its deadline).
        for (seq, id) in [(newest - window - 1, 3), (1, 4)] {
            let started = Instant::now();
            match data
                .client
                .append(DB, TABLE, writer, seq, &seed_rows(&[id], 4))
                .await
            {
                Err(ClientError::Rpc { code, message, .. }) => {
                    assert_eq!(code, tonic::Code::FailedPrecondition, "{message}");
                    let named = format!("writer {writer} seq {seq} is older than");
                    assert!(message.contains(&named), "{message}");
                    assert!(message.contains(&format!("window {window}")), "{message}");
                }
                other => panic!("seq {seq}: expected a refusal, got {other:?}"),
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{:?}",
                started.elapsed()
            );
        }
        // A retry inside the window is still acknowledged as a duplicate.
        let again = data
            .client
            .append(DB, TABLE, writer, newest, &seed_rows(&[2], 4))
            .await
            .unwrap();
        assert!(again.duplicate);
        // The refused rows are on no replica.
        let chunks = data.chunks().await;
        assert_eq!(chunks.len(), 1, "{chunks:?}");
        for r in &chunks[0].replicas {
            let mut ids = data.replica_ids(&chunks[0], &r.node).await;
            ids.sort_unstable();
            assert_eq!(ids, vec![1, 2], "replica on {}", r.node);
        }
    });
}

#[test]
fn replicas_of_a_machine_down_past_dfs_recovery_wait_time_are_recreated_elsewhere() {
    let cluster = LocalCluster::start_with(&["--set", "dfsRecoveryWaitTime=1500"]);
    create_seed_table(&cluster);
    let rt = runtime();
    let data = Data::connect(&cluster);
    let append = |seq: u64| {
        let ids: Vec<i32> = (0..10).map(|k| (seq as i32 - 1) * 10 + k + 1).collect();
        let batch = seed_rows(&ids, (seq % 3) as i64);
        let data = &data;
        async move {
            data.client.append(DB, TABLE, 3, seq, &batch).await.unwrap();
        }
    };
    rt.block_on(async {
        for seq in 1..=6 {
            append(seq).await;
        }
    });
    let host = cluster.hosts[1].clone();
    let (gone, _) = datanode_on(&cluster, &host);
    let moved: Vec<u64> = rt
        .block_on(data.chunks())
        .iter()
        .filter(|c| c.replicas.iter().any(|r| r.node == gone))
        .map(|c| c.id)
        .collect();
    assert!(!moved.is_empty());
    let out = cluster.run(&["host", "stop", &host]);
    assert!(out.status.success(), "{}", stderr(&out));
    rt.block_on(async {
        for seq in 7..=12 {
            append(seq).await;
        }
        // Down for longer than the wait: its replicas are re-created on the third machine and
        // filled from the primaries.
        let started = Instant::now();
        loop {
            let chunks = data.chunks().await;
            if chunks
                .iter()
                .all(|c| c.replicas.iter().all(|r| r.node != gone))
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "replicas on {gone} not moved: {chunks:#?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        wait_all_complete_and_identical(&data, Duration::from_secs(60)).await;
        assert_eq!(data.table_ids().await, (1..=120).collect::<Vec<_>>());
    });
    let status = cluster.status();
    let machine_of = |alias: &str| {
        crate::harness::node(&status, alias)["machine"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    for c in rt.block_on(data.chunks()) {
        let machines: BTreeSet<String> = c.replicas.iter().map(|r| machine_of(&r.node)).collect();
        assert_eq!(machines.len(), 2, "replicas on distinct machines: {c:?}");
    }

    // The machine returns: the replicas it no longer holds are deleted there.
    let out = cluster.run(&["host", "start", &host]);
    assert!(out.status.success(), "{}", stderr(&out));
    rt.block_on(async {
        let started = Instant::now();
        loop {
            let held: Vec<u64> = data
                .positions()
                .await
                .keys()
                .filter(|(_, node)| *node == gone)
                .map(|(id, _)| *id)
                .collect();
            if !moved.iter().any(|id| held.contains(id)) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{gone} still holds {held:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

#[test]
fn a_table_dropped_and_created_again_gets_every_row_written_after() {
    let cluster = LocalCluster::start();
    create_seed_table(&cluster);
    let rt = runtime();
    let data = Data::connect(&cluster);
    rt.block_on(async {
        data.client
            .append(DB, TABLE, 1, 1, &seed_rows(&[1, 2], 0))
            .await
            .unwrap();
    });
    let mut dropping = Spawned(
        std::process::Command::new(shoal_bin())
            .args([
                "sql",
                r#"DROP TABLE "dfs://stock"."stock""#,
                "--dir",
                cluster.dir_str(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Committed, the DROP waits out the data nodes' catalog leases before it answers; all that
    // time the name is refused: data nodes may still route writes by the old table.
    let started = Instant::now();
    while rt
        .block_on(data.controllers.get_catalog())
        .unwrap()
        .chunks
        .iter()
        .any(|c| c.table == TABLE)
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the DROP never committed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = cluster.run(&["sql", crate::data::CREATE_TABLE]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("dropped moments ago"),
        "{}",
        stderr(&out)
    );
    assert!(
        dropping.0.try_wait().unwrap().is_none(),
        "the DROP answered before the data nodes' leases ran out"
    );
    assert!(dropping.wait(Duration::from_secs(30)).success());
    // Once allowed, writes made at once all land in the new table.
    let started = Instant::now();
    loop {
        let out = cluster.run(&["sql", crate::data::CREATE_TABLE]);
        if out.status.success() {
            break;
        }
        assert!(
            stderr(&out).contains("dropped moments ago"),
            "{}",
            stderr(&out)
        );
        assert!(started.elapsed() < Duration::from_secs(15), "never allowed");
        std::thread::sleep(Duration::from_millis(200));
    }
    rt.block_on(async {
        for seq in 1..=20u64 {
            let id = seq as i32 + 100;
            data.client
                .append(DB, TABLE, 2, seq, &seed_rows(&[id], 0))
                .await
                .unwrap();
        }
        assert_eq!(data.table_ids().await, (101..=120).collect::<Vec<_>>());
    });
}
