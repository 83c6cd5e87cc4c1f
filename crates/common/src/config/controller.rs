//! `controller.cfg`: settings of one controller node.
//!
//! ```text
//! mode=controller
//! localSite=10.10.11.2:8920:HActl44
//! dfsHAMode=Raft
//! dfsReplicationFactor=2
//! dfsReplicaReliabilityLevel=1
//! dfsRecoveryWaitTime=30000
//! ```
//!
//! Besides DolphinDB's keys, Shoal reads `dfsMetaDir`, `raftElectionTimeout`,
//! `raftHeartbeatInterval` and `nodeHeartbeatTimeout` (all durations in ms).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::kv::{
    Key, KvFile, ValueError, common, fmt_bool, fmt_millis, fmt_path, parse_choice, parse_millis,
    parse_path, parse_positive_millis, parse_u32_in, resolve_path,
};
use super::site::{NodeMode, Site};
use super::tls::{self, TlsFiles};
use super::{ConfigError, config_dir, read_config_file};

/// `dfsReplicaReliabilityLevel`: may replicas of a chunk share a machine?
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReliabilityLevel {
    /// 0: replicas may be on the same machine.
    SameMachineAllowed = 0,
    /// 1: replicas must be on different machines.
    MustDiffer = 1,
    /// 2: different machines when there are enough, else the same is allowed.
    DifferWhenPossible = 2,
}

impl ReliabilityLevel {
    /// The level's number as written in the file.
    pub fn level(self) -> u32 {
        self as u32
    }

    /// The level for a number, if valid (0, 1 or 2).
    pub fn from_level(level: u32) -> Option<Self> {
        match level {
            0 => Some(ReliabilityLevel::SameMachineAllowed),
            1 => Some(ReliabilityLevel::MustDiffer),
            2 => Some(ReliabilityLevel::DifferWhenPossible),
            _ => None,
        }
    }

    fn parse(value: &str) -> Result<Self, ValueError> {
        let n = parse_u32_in(value, 0, 2).map_err(|e| {
            ValueError(format!(
                "{e} (0 = same machine allowed, 1 = must differ, 2 = differ when possible)"
            ))
        })?;
        Self::from_level(n).ok_or_else(|| ValueError(format!("invalid level {n}")))
    }
}

const DFS_HA_MODE: Key<String> =
    Key::with_default("dfsHAMode", "Raft", |v| parse_choice(v, &["Raft"]));
const DFS_REPLICATION_FACTOR: Key<u32> =
    Key::with_default("dfsReplicationFactor", "2", |v| parse_u32_in(v, 1, 5));
const DFS_REPLICA_RELIABILITY_LEVEL: Key<ReliabilityLevel> =
    Key::with_default("dfsReplicaReliabilityLevel", "0", ReliabilityLevel::parse);
const DFS_RECOVERY_WAIT_TIME: Key<Duration> =
    Key::with_default("dfsRecoveryWaitTime", "0", parse_millis);
const DFS_META_DIR: Key<PathBuf> = Key::with_default("dfsMetaDir", "dfsMeta", parse_path);
const RAFT_ELECTION_TIMEOUT: Key<Duration> =
    Key::with_default("raftElectionTimeout", "1000", parse_positive_millis);
const RAFT_HEARTBEAT_INTERVAL: Key<Duration> =
    Key::with_default("raftHeartbeatInterval", "200", parse_positive_millis);
const NODE_HEARTBEAT_TIMEOUT: Key<Duration> =
    Key::with_default("nodeHeartbeatTimeout", "3000", parse_positive_millis);

/// Every key `controller.cfg` may contain, in `entries()` order.
pub const KEYS: &[&str] = &[
    common::MODE.name,
    common::LOCAL_SITE.name,
    DFS_HA_MODE.name,
    DFS_REPLICATION_FACTOR.name,
    DFS_REPLICA_RELIABILITY_LEVEL.name,
    common::DATA_SYNC.name,
    common::WORKER_NUM.name,
    common::MAX_CONNECTIONS.name,
    common::MAX_MEM_SIZE.name,
    common::LAN_CLUSTER.name,
    DFS_RECOVERY_WAIT_TIME.name,
    DFS_META_DIR.name,
    RAFT_ELECTION_TIMEOUT.name,
    RAFT_HEARTBEAT_INTERVAL.name,
    NODE_HEARTBEAT_TIMEOUT.name,
    common::HTTP_PORT.name,
    tls::KEYS[0],
    tls::KEYS[1],
    tls::KEYS[2],
    tls::KEYS[3],
    tls::KEYS[4],
];

/// The parsed, validated `controller.cfg`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ControllerConfig {
    /// `localSite` (required).
    pub local_site: Site,
    /// `dfsHAMode`: only `Raft` is supported (default `Raft`).
    pub dfs_ha_mode: String,
    /// `dfsReplicationFactor`: replicas per chunk, 1..=5 (default 2).
    pub dfs_replication_factor: u32,
    /// `dfsReplicaReliabilityLevel` (default 0).
    pub dfs_replica_reliability_level: ReliabilityLevel,
    /// `dataSync` 0|1 (default 0).
    pub data_sync: bool,
    /// `workerNum` (default 4).
    pub worker_num: u32,
    /// `maxConnections` (default 512).
    pub max_connections: u32,
    /// `maxMemSize` in GB; 0 = no limit (default 0).
    pub max_mem_size_gb: f64,
    /// `lanCluster` 0|1 (default 1).
    pub lan_cluster: bool,
    /// `dfsRecoveryWaitTime` in ms; 0 (default) = never re-replicate a dead
    /// node's chunks.
    pub dfs_recovery_wait_time: Duration,
    /// `dfsMetaDir` (default `<config dir>/dfsMeta`); relative paths are
    /// relative to the config file's directory.
    pub dfs_meta_dir: PathBuf,
    /// `raftElectionTimeout` in ms (default 1000); at least 3 × heartbeat.
    pub raft_election_timeout: Duration,
    /// `raftHeartbeatInterval` in ms (default 200).
    pub raft_heartbeat_interval: Duration,
    /// `nodeHeartbeatTimeout` in ms (default 3000): a node is marked down
    /// after this long without a heartbeat.
    pub node_heartbeat_timeout: Duration,
    /// `httpPort`: metrics and health endpoints; 0 (default): the node's port + 1000.
    #[serde(default)]
    pub http_port: u16,
    /// The TLS keys (`enableSSL`, ...); `None`: plaintext.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
}

impl ControllerConfig {
    /// Read and validate `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::parse(path, &read_config_file(path)?)
    }

    /// Parse and validate `text`; `file` names it in errors and its
    /// directory anchors relative paths.
    pub fn parse(file: &Path, text: &str) -> Result<Self, ConfigError> {
        let kv = KvFile::parse(file, text)?;
        kv.check_known(KEYS)?;
        kv.expect_mode(&common::MODE, NodeMode::Controller)?;
        let cfg = ControllerConfig {
            local_site: kv.get(&common::LOCAL_SITE)?,
            dfs_ha_mode: kv.get(&DFS_HA_MODE)?,
            dfs_replication_factor: kv.get(&DFS_REPLICATION_FACTOR)?,
            dfs_replica_reliability_level: kv.get(&DFS_REPLICA_RELIABILITY_LEVEL)?,
            data_sync: kv.get(&common::DATA_SYNC)?,
            worker_num: kv.get(&common::WORKER_NUM)?,
            max_connections: kv.get(&common::MAX_CONNECTIONS)?,
            max_mem_size_gb: kv.get(&common::MAX_MEM_SIZE)?,
            lan_cluster: kv.get(&common::LAN_CLUSTER)?,
            dfs_recovery_wait_time: kv.get(&DFS_RECOVERY_WAIT_TIME)?,
            dfs_meta_dir: resolve_path(&config_dir(file), kv.get(&DFS_META_DIR)?),
            raft_election_timeout: kv.get(&RAFT_ELECTION_TIMEOUT)?,
            raft_heartbeat_interval: kv.get(&RAFT_HEARTBEAT_INTERVAL)?,
            node_heartbeat_timeout: kv.get(&NODE_HEARTBEAT_TIMEOUT)?,
            http_port: kv.get(&common::HTTP_PORT)?,
            tls: TlsFiles::parse(&kv)?,
        };
        let min_election = cfg.raft_heartbeat_interval * 3;
        if cfg.raft_election_timeout < min_election {
            return Err(kv.error(
                RAFT_ELECTION_TIMEOUT.name,
                format!(
                    "must be at least 3 × raftHeartbeatInterval ({} ms), got {} ms",
                    min_election.as_millis(),
                    cfg.raft_election_timeout.as_millis()
                ),
            ));
        }
        Ok(cfg)
    }

    /// Every key with its effective value, defaults included, in [`KEYS`]
    /// order (durations in ms, bools 0/1).
    pub fn entries(&self) -> Vec<(String, String)> {
        let values = [
            NodeMode::Controller.to_string(),
            self.local_site.to_string(),
            self.dfs_ha_mode.clone(),
            self.dfs_replication_factor.to_string(),
            self.dfs_replica_reliability_level.level().to_string(),
            fmt_bool(self.data_sync),
            self.worker_num.to_string(),
            self.max_connections.to_string(),
            self.max_mem_size_gb.to_string(),
            fmt_bool(self.lan_cluster),
            fmt_millis(self.dfs_recovery_wait_time),
            fmt_path(&self.dfs_meta_dir),
            fmt_millis(self.raft_election_timeout),
            fmt_millis(self.raft_heartbeat_interval),
            fmt_millis(self.node_heartbeat_timeout),
            self.http_port.to_string(),
        ];
        let values = values
            .into_iter()
            .chain(TlsFiles::entries(self.tls.as_ref()));
        KEYS.iter().map(|k| k.to_string()).zip(values).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "mode=controller
localSite=10.10.11.2:8920:HActl44
dfsHAMode=Raft
dfsReplicationFactor=2
dfsReplicaReliabilityLevel=1
dataSync=1
workerNum=4
maxConnections=512
maxMemSize=8
lanCluster=0
dfsRecoveryWaitTime=30000
";

    fn parse(text: &str) -> Result<ControllerConfig, ConfigError> {
        ControllerConfig::parse(Path::new("/etc/shoal/controller.cfg"), text)
    }

    fn parse_err(text: &str) -> String {
        let e =
            ControllerConfig::parse(Path::new("controller.cfg"), text).expect_err("should fail");
        e.to_string()
    }

    #[test]
    fn seed_file_parses() {
        let c = parse(SEED).expect("seed");
        assert_eq!(c.local_site, Site::new("10.10.11.2", 8920, "HActl44"));
        assert_eq!(c.dfs_ha_mode, "Raft");
        assert_eq!(c.dfs_replication_factor, 2);
        assert_eq!(
            c.dfs_replica_reliability_level,
            ReliabilityLevel::MustDiffer
        );
        assert!(c.data_sync);
        assert_eq!(c.worker_num, 4);
        assert_eq!(c.max_connections, 512);
        assert_eq!(c.max_mem_size_gb, 8.0);
        assert!(!c.lan_cluster);
        assert_eq!(c.dfs_recovery_wait_time, Duration::from_secs(30));
        assert_eq!(c.dfs_meta_dir, PathBuf::from("/etc/shoal/dfsMeta"));
        assert_eq!(c.raft_election_timeout, Duration::from_millis(1000));
        assert_eq!(c.raft_heartbeat_interval, Duration::from_millis(200));
        assert_eq!(c.node_heartbeat_timeout, Duration::from_millis(3000));
    }

    #[test]
    fn defaults() {
        let c = parse("mode=controller\nlocalSite=h:1:c1\n").expect("minimal");
        assert_eq!(c.dfs_ha_mode, "Raft");
        assert_eq!(c.dfs_replication_factor, 2);
        assert_eq!(
            c.dfs_replica_reliability_level,
            ReliabilityLevel::SameMachineAllowed
        );
        assert!(!c.data_sync);
        assert_eq!(c.dfs_recovery_wait_time, Duration::ZERO);
    }

    #[test]
    fn relative_and_absolute_meta_dir() {
        let c = parse("mode=controller\nlocalSite=h:1:c1\ndfsMetaDir=meta/x\n").expect("rel");
        assert_eq!(c.dfs_meta_dir, PathBuf::from("/etc/shoal/meta/x"));
        let c = parse("mode=controller\nlocalSite=h:1:c1\ndfsMetaDir=/data/meta\n").expect("abs");
        assert_eq!(c.dfs_meta_dir, PathBuf::from("/data/meta"));
    }

    #[test]
    fn entries_round_trip() {
        let c = parse(SEED).expect("seed");
        let entries = c.entries();
        let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, KEYS);
        let get = |k: &str| {
            entries
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("dfsRecoveryWaitTime"), Some("30000"));
        assert_eq!(get("dataSync"), Some("1"));
        assert_eq!(get("maxMemSize"), Some("8"));
        assert_eq!(get("dfsReplicaReliabilityLevel"), Some("1"));
        assert_eq!(get("dfsMetaDir"), Some("/etc/shoal/dfsMeta"));
        let text: String = entries.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        assert_eq!(parse(&text).expect("reparse"), c);
    }

    #[test]
    fn bad_integer() {
        let text = SEED.replace("dfsReplicationFactor=2", "dfsReplicationFactor=two");
        assert_eq!(
            parse_err(&text),
            "controller.cfg:4: dfsReplicationFactor: expected a positive integer, got \"two\""
        );
        let text = SEED.replace("dfsReplicationFactor=2", "dfsReplicationFactor=6");
        assert_eq!(
            parse_err(&text),
            "controller.cfg:4: dfsReplicationFactor: expected an integer from 1 to 5, got 6"
        );
    }

    #[test]
    fn reliability_level_out_of_range() {
        let text = SEED.replace(
            "dfsReplicaReliabilityLevel=1",
            "dfsReplicaReliabilityLevel=3",
        );
        let e = parse_err(&text);
        assert!(
            e.starts_with(
                "controller.cfg:5: dfsReplicaReliabilityLevel: expected an integer from 0 to 2, got 3"
            ),
            "{e}"
        );
    }

    #[test]
    fn unknown_key_with_hint() {
        let text = format!("{SEED}dfsReplicatonFactor=3\n");
        assert_eq!(
            parse_err(&text),
            "controller.cfg:12: dfsReplicatonFactor: unknown key; did you mean `dfsReplicationFactor`?"
        );
        let text = format!("{SEED}localsite=h:1:x\n");
        assert!(parse_err(&text).contains("did you mean `localSite`?"));
    }

    #[test]
    fn duplicate_key() {
        let text = format!("{SEED}workerNum=8\n");
        assert_eq!(
            parse_err(&text),
            "controller.cfg:12: workerNum: duplicate key (first set on line 7)"
        );
    }

    #[test]
    fn malformed_line() {
        let text = SEED.replace("dataSync=1", "dataSync");
        assert_eq!(
            parse_err(&text),
            "controller.cfg:6: expected `key=value`, got \"dataSync\""
        );
    }

    #[test]
    fn missing_local_site_and_mode() {
        let text = SEED.replace("localSite=10.10.11.2:8920:HActl44\n", "");
        assert_eq!(
            parse_err(&text),
            "controller.cfg: localSite: missing required key"
        );
        let text = SEED.replace("mode=controller\n", "");
        assert_eq!(
            parse_err(&text),
            "controller.cfg: mode: missing required key"
        );
    }

    #[test]
    fn wrong_mode() {
        let text = SEED.replace("mode=controller", "mode=agent");
        assert_eq!(
            parse_err(&text),
            "controller.cfg:1: mode: expected `controller` in this file, got `agent`"
        );
        let text = SEED.replace("mode=controller", "mode=computenode");
        let e = parse_err(&text);
        assert!(
            e.starts_with("controller.cfg:1: mode: unknown node mode"),
            "{e}"
        );
    }

    #[test]
    fn ha_mode_and_timeouts() {
        let text = SEED.replace("dfsHAMode=Raft", "dfsHAMode=Paxos");
        let e = parse_err(&text);
        assert!(
            e.starts_with("controller.cfg:3: dfsHAMode: unsupported value"),
            "{e}"
        );
        let text = format!("{SEED}raftElectionTimeout=500\n");
        assert_eq!(
            parse_err(&text),
            "controller.cfg:12: raftElectionTimeout: must be at least 3 × raftHeartbeatInterval (600 ms), got 500 ms"
        );
        let text = format!("{SEED}raftHeartbeatInterval=400\n");
        let e = parse_err(&text);
        assert!(
            e.starts_with("controller.cfg: raftElectionTimeout: must be at least"),
            "{e}"
        );
        let text = format!("{SEED}nodeHeartbeatTimeout=0\n");
        let e = parse_err(&text);
        assert!(
            e.starts_with("controller.cfg:12: nodeHeartbeatTimeout:"),
            "{e}"
        );
    }
}
