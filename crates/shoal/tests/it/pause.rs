//! A data node paused (SIGSTOP: the kernel still accepts its connections, the process answers
//! nothing) for 10 s under the seed's writer, in each role it can have for the writer: the
//! writer's coordinator, its chunk's primary, its chunk's other replica. No append may fail,
//! the writer may not stall for long, and every acknowledged row is on every replica exactly
//! once afterwards. And a primary that is slow but alive (its WAL commit threads frozen, as a
//! stuck disk would hold them) is waited for, not deposed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use shoal_client::record::{self, WindowStats, now_ms};
use shoal_proto::ChunkInfo;

use crate::data::{Data, create_seed_table, runtime, wait_all_complete_and_identical};
use crate::harness::{
    Frozen, FrozenThreads, LocalCluster, Spawned, node, shoal_bin, stderr, stdout,
};

const PAUSE: Duration = Duration::from_secs(10);
/// The longest gap between acknowledgements allowed while a node is paused. The benchmark
/// (`shoal-bench pause`) measures well under 1 s; this leaves room for a loaded CI machine and
/// is still far below the pause.
const MAX_STALL_MS: u64 = 3_000;
/// The writer runs this long: the fault starts after [`WARM_ACKS`] and is over well before.
const WRITE_FOR: Duration = Duration::from_secs(22);
const RATE: &str = "200";
/// Acknowledged appends before the fault (a second's worth): the writer is connected and warm.
const WARM_ACKS: usize = 200;
const RECORD: &str = "record.jsonl";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Role {
    Coordinator,
    Primary,
    Replica,
}

#[test]
fn a_paused_coordinator_is_left_for_another_data_node_at_once() {
    paused_under_writes(Role::Coordinator);
}

#[test]
fn a_paused_primary_is_deposed_at_once() {
    paused_under_writes(Role::Primary);
}

#[test]
fn a_paused_replica_leaves_the_in_sync_set_at_once() {
    paused_under_writes(Role::Replica);
}

/// Today's chunk of the seed's table, created before the writer starts, and who is who for it.
struct Layout {
    cluster: LocalCluster,
    /// One runtime for the data client: its channels live on it.
    rt: tokio::runtime::Runtime,
    data: Data,
    chunk: ChunkInfo,
    /// The data node holding no replica of the chunk: the writer's coordinator.
    coordinator: String,
    primary: String,
    replica: String,
}

impl Layout {
    fn new() -> Self {
        let cluster = LocalCluster::start();
        create_seed_table(&cluster);
        let data = Data::connect(&cluster);
        let rt = runtime();
        let today = shoal_catalog::PartitionKey::Date((now_ms() / 86_400_000) as i32).to_string();
        let chunk = rt
            .block_on(data.controllers.ensure_chunks(
                shoal_client::seed::DB,
                shoal_client::seed::TABLE,
                &[&today],
            ))
            .unwrap()
            .remove(0);
        let [primary, replica] = &chunk.replicas[..] else {
            panic!("expected 2 replicas: {chunk:?}");
        };
        let (primary, replica) = (primary.node.clone(), replica.node.clone());
        let coordinator = data
            .datanodes
            .keys()
            .find(|a| **a != primary && **a != replica)
            .unwrap()
            .clone();
        Self {
            cluster,
            rt,
            data,
            chunk,
            coordinator,
            primary,
            replica,
        }
    }

    fn alias(&self, role: Role) -> &str {
        match role {
            Role::Coordinator => &self.coordinator,
            Role::Primary => &self.primary,
            Role::Replica => &self.replica,
        }
    }

    fn pid(&self, alias: &str) -> u64 {
        node(&self.cluster.status(), alias)["pid"].as_u64().unwrap()
    }

    fn chunk_now(&self) -> ChunkInfo {
        let chunks = self.rt.block_on(self.data.chunks());
        chunks.into_iter().find(|c| c.id == self.chunk.id).unwrap()
    }

    /// `shoal write` sending to the coordinator first, then the primary, then the replica.
    fn start_writer(&self, dir: &Path) -> Writer {
        let sites: Vec<&str> = [&self.coordinator, &self.primary, &self.replica]
            .iter()
            .map(|a| self.data.datanodes[*a].as_str())
            .collect();
        let record = dir.join(RECORD);
        let summary = dir.join("summary.json");
        let log = dir.join("writer.log");
        let child = Command::new(shoal_bin())
            .args(["write", "--sites", &sites.join(","), "--secret-file"])
            .arg(self.cluster.dir.join(shoal_common::secret::SECRET_FILE))
            .args(["--rate", RATE, "--duration"])
            .arg(format!("{}s", WRITE_FOR.as_secs()))
            .args(["--json", "--progress", "--record"])
            .arg(&record)
            .env_remove("SHOAL_CLUSTER_SECRET")
            .stdout(std::fs::File::create(&summary).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Writer {
            child: Spawned(child),
            started: Instant::now(),
            record,
            summary,
            log,
        }
    }

    /// Every chunk COMPLETE with identical replicas, each holding exactly the acknowledged ids
    /// once; `shoal verify` agrees through a query.
    fn check_rows(&self, record: &Path, acked: &[record::AppendRecord]) {
        let rt = &self.rt;
        rt.block_on(wait_all_complete_and_identical(
            &self.data,
            Duration::from_secs(60),
        ));
        let mut expected: Vec<i32> = acked
            .iter()
            .flat_map(|a| a.first_id as i32..=a.last_id as i32)
            .collect();
        expected.sort_unstable();
        let chunk = self.chunk_now();
        for r in &chunk.replicas {
            let mut ids = rt.block_on(self.data.replica_ids(&chunk, &r.node));
            ids.sort_unstable();
            assert!(
                ids == expected,
                "replica on {}: ids differ from the acked ones",
                r.node
            );
        }
        let verify = self
            .cluster
            .run(&["verify", "--json", "--record", record.to_str().unwrap()]);
        assert!(
            verify.status.success(),
            "verify: {}\n{}",
            stdout(&verify),
            stderr(&verify)
        );
    }
}

struct Writer {
    child: Spawned,
    started: Instant,
    record: PathBuf,
    summary: PathBuf,
    log: PathBuf,
}

impl Writer {
    /// Until the writer has acknowledged `n` appends.
    fn wait_acks(&self, n: usize) {
        let timeout = Duration::from_secs(60);
        while record::load(&self.record).map_or(0, |r| r.len()) < n {
            assert!(
                self.started.elapsed() < timeout,
                "the writer acknowledged fewer than {n} appends in {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the writer's exit; asserts it failed nothing and returns its record and the
    /// stats over the whole run.
    fn finish(mut self) -> (Vec<record::AppendRecord>, WindowStats) {
        let exit = self.child.wait(WRITE_FOR + Duration::from_secs(60));
        let log = std::fs::read_to_string(&self.log).unwrap();
        assert!(exit.success(), "writer failed ({exit}): {log}");
        let summary: Value = serde_json::from_slice(&std::fs::read(&self.summary).unwrap())
            .unwrap_or_else(|e| panic!("writer summary: {e}; log: {log}"));
        assert_eq!(summary["appends_failed"], 0, "{summary:#}");
        let records = record::load(&self.record).unwrap();
        assert!(records.iter().all(|r| r.outcome == record::Outcome::Ok));
        let stats = record::window_stats(&records, 0, u64::MAX);
        eprintln!("writer: {stats:?}");
        (records, stats)
    }
}

fn paused_under_writes(role: Role) {
    let layout = Layout::new();
    let victim = layout.alias(role).to_owned();
    let pid = layout.pid(&victim);
    let tmp = tempfile::tempdir().unwrap();
    let writer = layout.start_writer(tmp.path());
    writer.wait_acks(WARM_ACKS);
    let version_before = layout.chunk_now().version;
    {
        let _paused = Frozen::new(pid);
        // The fault's length, not a wait for a condition.
        std::thread::sleep(PAUSE);
    }
    let (records, stats) = writer.finish();
    assert!(
        stats.longest_gap_ms.is_some_and(|g| g < MAX_STALL_MS),
        "{role:?} {victim} paused for {PAUSE:?}: the writer stalled {:?} ms\n{}",
        stats.longest_gap_ms,
        layout.cluster.logs()
    );
    // The pause was felt where it should have been.
    match role {
        Role::Coordinator => assert!(
            records.iter().any(|r| r.retries > 0),
            "no append left the paused coordinator"
        ),
        Role::Primary | Role::Replica => assert!(
            layout.chunk_now().version > version_before,
            "{victim} was never taken out of the in-sync set"
        ),
    }
    layout.check_rows(&tmp.path().join(RECORD), &records);
}

#[test]
fn a_slow_but_alive_primary_is_waited_for_not_deposed() {
    const SLOW_FOR: Duration = Duration::from_secs(4);
    let layout = Layout::new();
    let pid = layout.pid(&layout.primary);
    let tmp = tempfile::tempdir().unwrap();
    let writer = layout.start_writer(tmp.path());
    writer.wait_acks(WARM_ACKS);
    // Its first write made the chunk COMPLETE (a version change of its own); wait for that.
    let started = Instant::now();
    let before = loop {
        let chunk = layout.chunk_now();
        if chunk.state == "COMPLETE" {
            break chunk;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{chunk:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    {
        // Its appends wait for the disk; its runtime, health service included, runs on.
        let _stuck_disk = FrozenThreads::new(pid, "shoal-wal-commi");
        std::thread::sleep(SLOW_FOR);
    }
    let (records, stats) = writer.finish();
    let after = layout.chunk_now();
    assert_eq!(
        (after.version, &after.replicas),
        (before.version, &before.replicas),
        "the slow primary was deposed or its replica dropped\n{}",
        layout.cluster.logs()
    );
    // The primary really was slow: appends waited for it.
    assert!(
        stats
            .longest_gap_ms
            .is_some_and(|g| g > SLOW_FOR.as_millis() as u64 / 2),
        "{stats:?}"
    );
    layout.check_rows(&tmp.path().join(RECORD), &records);
}

/// F9: an append still waiting for the primary's disk when its table is dropped is never
/// acknowledged after the DROP returned. The DROP answers only once every data node's catalog
/// lease has run out, and the primary checks, right before acknowledging, that a catalog within
/// its lease still holds the chunk. (Before, the primary acknowledged as soon as its disk woke,
/// a moment after the DROP had returned.)
#[test]
fn an_append_in_flight_when_its_table_is_dropped_is_not_acknowledged_after_the_drop() {
    let layout = Layout::new();
    let day = now_ms() as i64 / crate::data::DAY_MS - crate::data::JAN1_MS / crate::data::DAY_MS;
    let append = |data: &Data, rt: &tokio::runtime::Runtime, seq: u64| {
        let ids: Vec<i32> = (1..=100).map(|k| seq as i32 * 1_000 + k).collect();
        let batch = crate::data::seed_rows(&ids, day);
        rt.block_on(data.client.append(
            shoal_client::seed::DB,
            shoal_client::seed::TABLE,
            1,
            seq,
            &batch,
        ))
    };
    append(&layout.data, &layout.rt, 1).expect("the first append");
    let pid = layout.pid(&layout.primary);
    let lsn = |layout: &Layout| {
        layout
            .rt
            .block_on(layout.data.positions())
            .get(&(layout.chunk.id, layout.primary.clone()))
            .map_or(0, |p| p.last_lsn)
    };
    assert_eq!(lsn(&layout), 1);
    std::thread::scope(|s| {
        // Its disk stuck, the primary takes the append but cannot write it.
        let stuck_disk = FrozenThreads::new(pid, "shoal-wal-commi");
        let in_flight = s.spawn(|| {
            let data = Data::connect(&layout.cluster);
            let outcome = append(&data, &runtime(), 2);
            (outcome, Instant::now())
        });
        // Time for the append to reach the primary's store: with the commit thread frozen
        // nothing outside the process shows it queued. Were it late, the DROP would come first
        // and the append fail plainly, which passes without proving anything; so generous.
        std::thread::sleep(Duration::from_millis(700));
        let drop_started = Instant::now();
        let out = layout
            .cluster
            .run(&["sql", r#"DROP TABLE "dfs://stock"."stock""#]);
        assert!(out.status.success(), "{}", stderr(&out));
        let dropped = Instant::now();
        eprintln!("DROP TABLE took {:?}", dropped - drop_started);
        drop(stuck_disk);
        let (outcome, answered) = in_flight.join().unwrap();
        assert!(
            outcome.is_err() || answered < dropped,
            "the append was acknowledged {:?} after its table's DROP returned: {outcome:?}\n{}",
            answered - dropped,
            layout.cluster.logs()
        );
    });
}
