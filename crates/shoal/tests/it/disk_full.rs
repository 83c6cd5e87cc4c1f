//! A data node's volume runs out of space under writes (a small tmpfs filled with ballast; the
//! test mounts it, so it runs as root): the failed write poisons the replica's store, the node
//! stops with an error and its agent restarts it, appends go on through the other replica, and
//! once space is freed the replica catches up.

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::data::{Data, create_seed_table, runtime, seed_rows, wait_all_complete_and_identical};
use crate::harness::{LocalCluster, node, stderr};

const DB: &str = "dfs://stock";
const TABLE: &str = "stock";

/// A tmpfs mounted over a directory, unmounted (lazily: processes may still hold files) on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` over `dir`, holding copies of what `dir` held.
    fn mount_over(dir: &Path, size: &str) -> Self {
        let saved = dir.with_extension("before-tmpfs");
        std::fs::rename(dir, &saved).unwrap();
        std::fs::create_dir(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mounted = Self(dir.to_path_buf());
        let copied = Command::new("cp")
            .arg("-a")
            .arg(saved.join("."))
            .arg(dir)
            .status()
            .unwrap();
        assert!(copied.success());
        mounted
    }

    /// Writes a ballast file until the file system is full; returns its path.
    fn fill(&self) -> PathBuf {
        let path = self.0.join("ballast");
        let mut f = File::create(&path).unwrap();
        // Smaller and smaller writes, so that not even a byte is left.
        for block in [1 << 20, 4096, 1] {
            let bytes = vec![0u8; block];
            loop {
                match f.write(&bytes) {
                    Ok(n) if n == block => {}
                    Ok(_) => break,
                    Err(e) if e.kind() == ErrorKind::StorageFull => break,
                    Err(e) => panic!("filling {}: {e}", path.display()),
                }
            }
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_stops_the_data_node_its_agent_restarts_it_and_the_replica_recovers() {
    let cluster = LocalCluster::start();
    create_seed_table(&cluster);
    let rt = runtime();
    let data = Data::connect(&cluster);
    let writer = 21;
    // Ten rows per append, one day: one chunk.
    let append = |seq: u64| {
        let ids: Vec<i32> = (0..10).map(|k| (seq as i32 - 1) * 10 + k + 1).collect();
        let data = &data;
        async move {
            data.client
                .append(DB, TABLE, writer, seq, &seed_rows(&ids, 4))
                .await
                .unwrap_or_else(|e| panic!("append {seq}: {e}"))
        }
    };
    rt.block_on(append(1));
    let chunk = rt.block_on(data.chunks()).remove(0);
    // The replica that is not the primary: its store fails when the primary ships to it.
    let victim = chunk
        .replicas
        .iter()
        .filter(|r| r.in_sync)
        .nth(1)
        .unwrap_or_else(|| panic!("two replicas in sync: {chunk:?}"))
        .node
        .clone();
    let status = cluster.status();
    let host = node(&status, &victim)["machine"]
        .as_str()
        .unwrap()
        .to_owned();
    let home = cluster.dir.join(&host);

    let out = cluster.run(&["host", "stop", &host]);
    assert!(out.status.success(), "{}", stderr(&out));
    let volume = Tmpfs::mount_over(&home.join(&victim).join("volumes"), "16m");
    let out = cluster.run(&["host", "start", &host]);
    assert!(out.status.success(), "{}", stderr(&out));
    rt.block_on(wait_all_complete_and_identical(
        &data,
        Duration::from_secs(60),
    ));
    let pid_before = node(&cluster.status(), &victim)["pid"].as_u64().unwrap();

    let ballast = volume.fill();
    rt.block_on(async {
        for seq in 2..=30 {
            append(seq).await;
        }
    });
    let log = home.join("log").join(format!("{victim}.log"));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("WAL write failed") && text.contains("stopping this data node"),
        "{} does not say why the node stopped:\n{}",
        log.display(),
        cluster.logs()
    );
    // Its agent restarts it (every time it meets the full disk again).
    cluster.wait_status(
        "the data node restarted by its agent",
        Duration::from_secs(30),
        |s| {
            let n = node(s, &victim);
            n["state"] == "UP" && n["pid"].as_u64() != Some(pid_before)
        },
    );

    std::fs::remove_file(ballast).unwrap();
    rt.block_on(async {
        wait_all_complete_and_identical(&data, Duration::from_secs(90)).await;
        assert_eq!(data.table_ids().await, (1..=300).collect::<Vec<_>>());
    });
}
