//! `cluster.cfg`: data node settings, shared by all data nodes with
//! per-node overrides (DolphinDB style).
//!
//! ```text
//! workerNum=8
//! volumes=/data/<ALIAS>/volumes
//! node43.volumes=/ssd1,/ssd2
//! ```
//!
//! A plain `key=value` applies to every data node; `ALIAS.key=value`
//! overrides it for the node with that alias. The macro `<ALIAS>` inside a
//! value is replaced by the node's alias. Relative paths are relative to the
//! directory holding `cluster.cfg` (the cluster "home"); by default
//! `chunkMetaDir` is `<home>/<ALIAS>/storage` and `volumes` is
//! `<home>/<ALIAS>/volumes`. `volumes` is comma-separated.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::cluster_nodes::ClusterNodes;
use super::kv::{
    Entry, Key, KvFile, common, fmt_bool, fmt_millis, fmt_path, fmt_paths, parse_non_negative_f64,
    parse_path, parse_path_list, parse_positive_millis, resolve_path, suggest, unknown_key,
};
use super::site::validate_alias;
use super::tls::{self, KeySource, TlsFiles};
use super::{ConfigError, config_dir, read_config_file};

/// The macro replaced by the node's alias inside values.
pub const ALIAS_MACRO: &str = "<ALIAS>";

const CHUNK_META_DIR: Key<PathBuf> =
    Key::with_default("chunkMetaDir", "<ALIAS>/storage", parse_path);
const VOLUMES: Key<Vec<PathBuf>> = Key::with_default("volumes", "<ALIAS>/volumes", parse_path_list);
const HEARTBEAT_INTERVAL: Key<Duration> =
    Key::with_default("heartbeatInterval", "500", parse_positive_millis);
/// DolphinDB's TSDB cache engine size, GB: rows held in memory before they are flushed to
/// chunk files. 0 (default): a quarter of `maxMemSize`, or 1 GB when that is 0 (no limit).
const CACHE_ENGINE_SIZE: Key<f64> =
    Key::with_default("TSDBCacheEngineSize", "0", parse_non_negative_f64);
/// DolphinDB's per-query memory limit, GB: what one query may hold on the data node that
/// coordinates it (sorts, aggregations, joins); a sort spills to the first volume past it, and
/// what cannot spill fails with RESOURCE_EXHAUSTED. 0 (default): half of `maxMemSize`, at most
/// 8 GB (DolphinDB's default), or 8 GB when that is 0 (no limit).
const QUERY_MEMORY: Key<f64> =
    Key::with_default("memLimitOfQueryResult", "0", parse_non_negative_f64);
/// A replica with rows in memory and no append for this long (ms) is flushed to a file.
const FLUSH_IDLE_TIME: Key<Duration> =
    Key::with_default("flushIdleTime", "60000", parse_positive_millis);

/// Every key `cluster.cfg` may set (globally or as `ALIAS.key`), in
/// `entries()` order.
pub const KEYS: &[&str] = &[
    CHUNK_META_DIR.name,
    VOLUMES.name,
    common::DATA_SYNC.name,
    common::WORKER_NUM.name,
    common::MAX_CONNECTIONS.name,
    common::MAX_MEM_SIZE.name,
    HEARTBEAT_INTERVAL.name,
    CACHE_ENGINE_SIZE.name,
    FLUSH_IDLE_TIME.name,
    QUERY_MEMORY.name,
    common::HTTP_PORT.name,
    tls::KEYS[0],
    tls::KEYS[1],
    tls::KEYS[2],
    tls::KEYS[3],
    tls::KEYS[4],
];

/// The effective settings of one data node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataNodeConfig {
    /// The node's alias.
    pub alias: String,
    /// `chunkMetaDir`: where chunk metadata lives.
    pub chunk_meta_dir: PathBuf,
    /// `volumes`: where chunk data lives (one or more directories).
    pub volumes: Vec<PathBuf>,
    /// `dataSync` 0|1 (default 0).
    pub data_sync: bool,
    /// `workerNum` (default 4).
    pub worker_num: u32,
    /// `maxConnections` (default 512).
    pub max_connections: u32,
    /// `maxMemSize` in GB; 0 = no limit (default 0).
    pub max_mem_size_gb: f64,
    /// `heartbeatInterval` in ms (default 500): how often the node
    /// heartbeats to the controller.
    pub heartbeat_interval: Duration,
    /// `TSDBCacheEngineSize` in GB, effective (the default resolved): the memory budget of
    /// rows not yet flushed to chunk files and flushes in progress.
    pub cache_engine_gb: f64,
    /// `flushIdleTime` in ms (default 60000): how long a replica with rows in memory may go
    /// without appends before they are flushed.
    pub flush_idle_time: Duration,
    /// `memLimitOfQueryResult` in GB, effective (the default resolved): the memory one query
    /// may use on the node coordinating it.
    #[serde(default = "default_query_memory_gb")]
    pub query_memory_gb: f64,
    /// `httpPort`: metrics and health endpoints; 0 (default): the node's port + 1000.
    #[serde(default)]
    pub http_port: u16,
    /// The TLS keys (`enableSSL`, ...); `None`: plaintext.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
}

fn default_query_memory_gb() -> f64 {
    MAX_QUERY_MEMORY_GB
}

/// DolphinDB's cap on the default per-query memory, GB.
const MAX_QUERY_MEMORY_GB: f64 = 8.0;

impl DataNodeConfig {
    /// The memory budget of rows not yet flushed, in bytes.
    pub fn cache_engine_bytes(&self) -> u64 {
        gb_to_bytes(self.cache_engine_gb)
    }

    /// The memory one query may use, in bytes.
    pub fn query_memory_bytes(&self) -> u64 {
        gb_to_bytes(self.query_memory_gb)
    }

    /// Every key with its effective value, in [`KEYS`] order (durations in
    /// ms, bools 0/1, `volumes` comma-separated).
    pub fn entries(&self) -> Vec<(String, String)> {
        let values = [
            fmt_path(&self.chunk_meta_dir),
            fmt_paths(&self.volumes),
            fmt_bool(self.data_sync),
            self.worker_num.to_string(),
            self.max_connections.to_string(),
            self.max_mem_size_gb.to_string(),
            fmt_millis(self.heartbeat_interval),
            self.cache_engine_gb.to_string(),
            fmt_millis(self.flush_idle_time),
            self.query_memory_gb.to_string(),
            self.http_port.to_string(),
        ];
        let values = values
            .into_iter()
            .chain(TlsFiles::entries(self.tls.as_ref()));
        KEYS.iter().map(|k| k.to_string()).zip(values).collect()
    }
}

fn gb_to_bytes(gb: f64) -> u64 {
    (gb * f64::from(1u32 << 30)) as u64
}

/// The parsed, validated `cluster.cfg`. Use [`ClusterCfg::for_node`] to get
/// one data node's effective settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterCfg {
    kv: KvFile,
    home: PathBuf,
}

impl ClusterCfg {
    /// Read and validate `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::parse(path, &read_config_file(path)?)
    }

    /// Parse and validate `text`; `file` names it in errors and its
    /// directory is the home relative paths are resolved against. Every
    /// value is checked here, so [`ClusterCfg::for_node`] only fails for an
    /// invalid alias.
    pub fn parse(file: &Path, text: &str) -> Result<Self, ConfigError> {
        let kv = KvFile::parse(file, text)?;
        for e in kv.entries() {
            let (alias, name) = split_key(&e.key);
            if let Some(alias) = alias {
                validate_alias(alias).map_err(|err| {
                    ConfigError::new(file, format!("override for {err}"))
                        .at_line(e.line)
                        .with_key(&e.key)
                })?;
            }
            if !KEYS.contains(&name) {
                return Err(unknown_key(file, e.line, &e.key, name, KEYS));
            }
        }
        let cfg = ClusterCfg {
            kv,
            home: config_dir(file),
        };
        // Check every value: the shared ones (with the macro left in place)
        // and each overridden node's.
        cfg.build(ALIAS_MACRO)?;
        for alias in cfg.overridden_aliases() {
            cfg.build(alias)?;
        }
        Ok(cfg)
    }

    /// The file name used in errors.
    pub fn file(&self) -> &Path {
        self.kv.file()
    }

    /// The directory holding `cluster.cfg`; relative paths start here.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Aliases with at least one `ALIAS.key` override, in first-appearance
    /// order.
    pub fn overridden_aliases(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for (alias, _) in self.overrides() {
            if !out.contains(&alias) {
                out.push(alias);
            }
        }
        out
    }

    /// The effective settings of the data node `alias`.
    pub fn for_node(&self, alias: &str) -> Result<DataNodeConfig, ConfigError> {
        validate_alias(alias).map_err(|e| ConfigError::new(self.file(), e.0))?;
        self.build(alias)
    }

    /// Reject overrides for aliases that are not data nodes in `nodes`,
    /// naming the line and the alias.
    pub fn check_aliases(&self, nodes: &ClusterNodes) -> Result<(), ConfigError> {
        let datanodes: Vec<&str> = nodes.datanodes().map(|n| n.site.alias.as_str()).collect();
        for (alias, e) in self.overrides() {
            if datanodes.contains(&alias) {
                continue;
            }
            let mut message = match nodes.by_alias(alias) {
                Some(n) => format!(
                    "{alias:?} is not a datanode in cluster.nodes (its mode is {})",
                    n.mode
                ),
                None => format!("{alias:?} is not a datanode in cluster.nodes"),
            };
            if let Some(s) = suggest(alias, &datanodes) {
                message.push_str(&format!("; did you mean `{s}`?"));
            }
            return Err(ConfigError::new(self.file(), message)
                .at_line(e.line)
                .with_key(&e.key));
        }
        Ok(())
    }

    /// The shared settings with the `<ALIAS>` macro unexpanded (defaults
    /// included, paths resolved against home), followed by every
    /// `ALIAS.key` override as written.
    pub fn entries(&self) -> Vec<(String, String)> {
        let mut out = match self.build(ALIAS_MACRO) {
            Ok(template) => template.entries(),
            // Unreachable: `parse` already built the template successfully.
            Err(_) => Vec::new(),
        };
        out.extend(
            self.overrides()
                .map(|(_, e)| (e.key.clone(), e.value.clone())),
        );
        out
    }

    /// `(alias, entry)` for every `ALIAS.key` line.
    fn overrides(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.kv
            .entries()
            .iter()
            .filter_map(|e| split_key(&e.key).0.map(|alias| (alias, e)))
    }

    fn build(&self, alias: &str) -> Result<DataNodeConfig, ConfigError> {
        let home = &self.home;
        Ok(DataNodeConfig {
            alias: alias.to_string(),
            chunk_meta_dir: resolve_path(home, self.get(&CHUNK_META_DIR, alias)?),
            volumes: self
                .get(&VOLUMES, alias)?
                .into_iter()
                .map(|p| resolve_path(home, p))
                .collect(),
            data_sync: self.get(&common::DATA_SYNC, alias)?,
            worker_num: self.get(&common::WORKER_NUM, alias)?,
            max_connections: self.get(&common::MAX_CONNECTIONS, alias)?,
            max_mem_size_gb: self.get(&common::MAX_MEM_SIZE, alias)?,
            heartbeat_interval: self.get(&HEARTBEAT_INTERVAL, alias)?,
            cache_engine_gb: match self.get(&CACHE_ENGINE_SIZE, alias)? {
                0.0 => match self.get(&common::MAX_MEM_SIZE, alias)? {
                    0.0 => 1.0,
                    max => max / 4.0,
                },
                gb => gb,
            },
            flush_idle_time: self.get(&FLUSH_IDLE_TIME, alias)?,
            query_memory_gb: match self.get(&QUERY_MEMORY, alias)? {
                0.0 => match self.get(&common::MAX_MEM_SIZE, alias)? {
                    0.0 => MAX_QUERY_MEMORY_GB,
                    max => (max / 2.0).min(MAX_QUERY_MEMORY_GB),
                },
                gb => gb,
            },
            http_port: self.get(&common::HTTP_PORT, alias)?,
            tls: TlsFiles::parse(&NodeKeys { cfg: self, alias })?,
        })
    }

    /// `key` for `alias`: its override, else the shared value, else the
    /// default; `<ALIAS>` expanded.
    fn get<T>(&self, key: &Key<T>, alias: &str) -> Result<T, ConfigError> {
        let file = self.file();
        let entry = self
            .kv
            .find(&format!("{alias}.{}", key.name))
            .or_else(|| self.kv.find(key.name));
        match entry {
            Some(e) => key
                .parse_at(file, Some(e.line), &e.value.replace(ALIAS_MACRO, alias))
                .map_err(|err| err.with_key(&e.key)),
            None => match key.default {
                Some(text) => key.parse_at(file, None, &text.replace(ALIAS_MACRO, alias)),
                None => Err(key.missing(file)),
            },
        }
    }
}

/// One data node's view of `cluster.cfg`, for keys parsed elsewhere ([`TlsFiles`]).
struct NodeKeys<'a> {
    cfg: &'a ClusterCfg,
    alias: &'a str,
}

impl KeySource for NodeKeys<'_> {
    fn value<T>(&self, key: &Key<T>) -> Result<T, ConfigError> {
        self.cfg.get(key, self.alias)
    }

    fn file(&self) -> &Path {
        self.cfg.file()
    }

    fn home(&self) -> PathBuf {
        self.cfg.home.clone()
    }
}

/// `"node43.volumes"` → `(Some("node43"), "volumes")`; `"volumes"` →
/// `(None, "volumes")`.
fn split_key(key: &str) -> (Option<&str>, &str) {
    match key.split_once('.') {
        Some((alias, name)) => (Some(alias), name),
        None => (None, key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "localSite,mode
10.10.11.1:8920:HActl43,controller
10.10.11.1:8921:agent43,agent
10.10.11.1:8922:node43,datanode
10.10.11.2:8921:agent44,agent
10.10.11.2:8922:node44,datanode
";

    fn parse(text: &str) -> Result<ClusterCfg, ConfigError> {
        ClusterCfg::parse(Path::new("/srv/shoal/cluster.cfg"), text)
    }

    fn nodes() -> ClusterNodes {
        ClusterNodes::parse(Path::new("cluster.nodes"), NODES).expect("nodes")
    }

    #[test]
    fn defaults_under_home() {
        let cfg = parse("").expect("empty");
        let n = cfg.for_node("node43").expect("node43");
        assert_eq!(n.alias, "node43");
        assert_eq!(n.chunk_meta_dir, PathBuf::from("/srv/shoal/node43/storage"));
        assert_eq!(n.volumes, vec![PathBuf::from("/srv/shoal/node43/volumes")]);
        assert!(!n.data_sync);
        assert_eq!(n.worker_num, 4);
        assert_eq!(n.heartbeat_interval, Duration::from_millis(500));
        assert_eq!(cfg.home(), Path::new("/srv/shoal"));
    }

    #[test]
    fn overrides_and_alias_macro() {
        let cfg = parse(
            "workerNum=8\nvolumes=/data/<ALIAS>/v1, /data/<ALIAS>/v2\nchunkMetaDir=meta/<ALIAS>\n\
             node43.volumes=/ssd1,/ssd2\nnode43.workerNum=16\nnode44.heartbeatInterval=250\n",
        )
        .expect("parse");
        let n43 = cfg.for_node("node43").expect("node43");
        assert_eq!(
            n43.volumes,
            vec![PathBuf::from("/ssd1"), PathBuf::from("/ssd2")]
        );
        assert_eq!(n43.worker_num, 16);
        assert_eq!(n43.chunk_meta_dir, PathBuf::from("/srv/shoal/meta/node43"));
        let n44 = cfg.for_node("node44").expect("node44");
        assert_eq!(
            n44.volumes,
            vec![
                PathBuf::from("/data/node44/v1"),
                PathBuf::from("/data/node44/v2")
            ]
        );
        assert_eq!(n44.worker_num, 8);
        assert_eq!(n44.heartbeat_interval, Duration::from_millis(250));
        assert_eq!(cfg.overridden_aliases(), ["node43", "node44"]);
        cfg.check_aliases(&nodes()).expect("aliases ok");
    }

    #[test]
    fn entries_contain_chunk_meta_dir() {
        let cfg = parse("node43.workerNum=16\n").expect("parse");
        let n = cfg.for_node("node43").expect("node43");
        let e = n.entries();
        assert!(
            e.contains(&(
                "chunkMetaDir".to_string(),
                "/srv/shoal/node43/storage".to_string()
            )),
            "{e:?}"
        );
        assert!(e.contains(&("workerNum".to_string(), "16".to_string())));
        assert!(e.contains(&("heartbeatInterval".to_string(), "500".to_string())));
        let all = cfg.entries();
        assert!(all.contains(&(
            "chunkMetaDir".to_string(),
            "/srv/shoal/<ALIAS>/storage".to_string()
        )));
        assert!(all.contains(&("node43.workerNum".to_string(), "16".to_string())));
    }

    #[test]
    fn override_for_unknown_alias_rejected() {
        let cfg = parse("workerNum=8\nnode99.volumes=/x\n").expect("parse");
        let e = cfg.check_aliases(&nodes()).expect_err("unknown alias");
        assert_eq!(
            e.to_string(),
            "/srv/shoal/cluster.cfg:2: node99.volumes: \"node99\" is not a datanode in cluster.nodes; did you mean `node43`?"
        );
        let cfg = parse("agent43.workerNum=8\n").expect("parse");
        let e = cfg.check_aliases(&nodes()).expect_err("agent alias");
        assert!(
            e.to_string()
                .contains("\"agent43\" is not a datanode in cluster.nodes (its mode is agent)"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_fail_at_load() {
        let e = parse("workerNum=8\nnode43.workerNum=lots\n").expect_err("bad override");
        assert_eq!(
            e.to_string(),
            "/srv/shoal/cluster.cfg:2: node43.workerNum: expected a positive integer, got \"lots\""
        );
        let e = parse("\nheartbeatInterval=0\n").expect_err("bad shared");
        assert!(
            e.to_string()
                .starts_with("/srv/shoal/cluster.cfg:2: heartbeatInterval:"),
            "{e}"
        );
        let e = parse("volumes=/a,,/b\n").expect_err("bad list");
        assert!(
            e.to_string()
                .starts_with("/srv/shoal/cluster.cfg:1: volumes:"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_and_bad_aliases() {
        let e = parse("node43.volume=/x\n").expect_err("unknown");
        assert_eq!(
            e.to_string(),
            "/srv/shoal/cluster.cfg:1: node43.volume: unknown key; did you mean `volumes`?"
        );
        let e = parse("chunkMetaDirs=/x\n").expect_err("unknown");
        assert!(
            e.to_string().contains("did you mean `chunkMetaDir`?"),
            "{e}"
        );
        let e = parse("9node.volumes=/x\n").expect_err("bad alias");
        assert!(
            e.to_string()
                .starts_with("/srv/shoal/cluster.cfg:1: 9node.volumes: override for invalid alias"),
            "{e}"
        );
        let e = parse("")
            .expect("empty")
            .for_node("bad-alias")
            .expect_err("alias");
        assert!(e.to_string().contains("invalid alias"), "{e}");
    }
}
