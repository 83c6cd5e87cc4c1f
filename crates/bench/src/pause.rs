//! `shoal-bench pause`: what the seed's writer (one row per append) feels while one data node is
//! paused (SIGSTOP: it accepts connections but answers nothing) and then resumed, for each role
//! the node can have for the writer's chunk:
//!
//! - the writer's coordinator (the data node it sends its appends to), holding no replica;
//! - the chunk's primary (the coordinator writes through it);
//! - the chunk's other in-sync replica (the primary waits for it).
//!
//! The reference, in the same run and on the same cluster, is the same writer while nothing
//! happens. Before each scenario every chunk is COMPLETE again, and the roles are read afresh
//! (a deposed primary that rejoined may be primary again).

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use shoal_client::record::now_ms;
use shoal_proto::ChunkInfo;

use crate::cluster::{Cluster, Conn};
use crate::writer::{Measured, measure, table, wait_complete};

#[derive(Clone, Copy, Debug)]
enum Role {
    Coordinator,
    Primary,
    Replica,
}

/// The writer's chunk (today's partition) and who is who for it.
struct Roles {
    /// The data node holding no replica of the chunk: the writer's coordinator.
    coordinator: String,
    primary: String,
    replica: String,
}

pub fn run(
    cluster: &Cluster,
    conn: &Conn,
    rt: &tokio::runtime::Runtime,
    rate: f64,
    pause: Duration,
) -> Result<()> {
    // The writer's chunk (today's partition), created and written once before any writer runs,
    // so its replicas are known when the writer is started.
    let now = now_ms();
    let today = shoal_catalog::PartitionKey::Date((now / 86_400_000) as i32).to_string();
    let row = shoal_client::seed::rows(&[0], |_| now as i64);
    let db = shoal_client::seed::DB;
    rt.block_on(
        conn.data_client(0)
            .append(db, shoal_client::seed::TABLE, 1, 1, &row),
    )?;
    let chunk_id = rt
        .block_on(conn.chunks())?
        .iter()
        .find(|c| c.partition_key == today)
        .context("no chunk for today's partition")?
        .id;
    let scenarios: [(String, Option<Role>); 4] = [
        (format!("(0) nothing paused ({} s)", pause.as_secs()), None),
        ("(1) coordinator paused".into(), Some(Role::Coordinator)),
        ("(2) primary paused".into(), Some(Role::Primary)),
        ("(3) replica paused".into(), Some(Role::Replica)),
    ];
    let mut results = Vec::new();
    for (i, (name, role)) in scenarios.iter().enumerate() {
        wait_complete(cluster)?;
        let chunks = rt.block_on(conn.chunks())?;
        let roles = roles(conn, &chunks, chunk_id)?;
        let victim = role.map(|r| match r {
            Role::Coordinator => roles.coordinator.clone(),
            Role::Primary => roles.primary.clone(),
            Role::Replica => roles.replica.clone(),
        });
        let pid = match &victim {
            Some(alias) => Some(datanode_pid(cluster, alias)?),
            None => None,
        };
        let sites: Vec<String> = [&roles.coordinator, &roles.primary, &roles.replica]
            .iter()
            .map(|a| conn.datanodes[*a].clone())
            .collect();
        let record = cluster.dir.join(format!("pause-{i}.jsonl"));
        let m = measure(cluster, &record, rate, &sites, || {
            let _frozen = pid.map(Frozen::new).transpose()?;
            // The fault's length, not a wait for a condition.
            std::thread::sleep(pause);
            Ok(())
        })
        .with_context(|| name.clone())?;
        let label = match &victim {
            Some(v) => format!("{name}: {v}"),
            None => name.clone(),
        };
        eprintln!("{label}: {:.1} s, {:?}", m.elapsed.as_secs_f64(), m.stats);
        results.push((label, m));
    }
    let rows: Vec<(String, &Measured)> = results.iter().map(|(n, m)| (n.clone(), m)).collect();
    println!(
        "\n## pause: one data node stopped (SIGSTOP) for {} s under the seed's writer, \
         1 row per append at {rate}/s, 3 machines\n",
        pause.as_secs()
    );
    println!("{}\n", table(&rows, 0, "(0)"));
    Ok(())
}

fn roles(conn: &Conn, chunks: &[ChunkInfo], chunk_id: u64) -> Result<Roles> {
    let chunk = chunks
        .iter()
        .find(|c| c.id == chunk_id)
        .context("the writer's chunk is gone")?;
    let in_sync: Vec<&str> = chunk
        .replicas
        .iter()
        .filter(|r| r.in_sync)
        .map(|r| r.node.as_str())
        .collect();
    let [primary, replica] = in_sync[..] else {
        bail!("expected 2 in-sync replicas of chunk {chunk_id}: {chunk:?}");
    };
    let coordinator = conn
        .datanodes
        .keys()
        .find(|a| chunk.replicas.iter().all(|r| &r.node != *a))
        .context("every data node holds a replica: no pure coordinator")?;
    Ok(Roles {
        coordinator: coordinator.clone(),
        primary: primary.to_owned(),
        replica: replica.to_owned(),
    })
}

fn datanode_pid(cluster: &Cluster, alias: &str) -> Result<u64> {
    let status = cluster.status()?;
    status["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["alias"] == alias)
        .and_then(|n| n["pid"].as_u64())
        .with_context(|| format!("no pid for {alias} in status"))
}

/// A process stopped with SIGSTOP until dropped (SIGCONT), also on error.
struct Frozen(u64);

impl Frozen {
    fn new(pid: u64) -> Result<Self> {
        signal("-STOP", pid)?;
        Ok(Self(pid))
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if let Err(e) = signal("-CONT", self.0) {
            eprintln!("{e:#}");
        }
    }
}

fn signal(sig: &str, pid: u64) -> Result<()> {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()?
        .success();
    if !ok {
        bail!("kill {sig} {pid} failed");
    }
    Ok(())
}
