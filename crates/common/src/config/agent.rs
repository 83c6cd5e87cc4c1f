//! `agent.cfg`: settings of one agent (the per-machine supervisor that
//! starts and restarts the machine's controller and data nodes).
//!
//! ```text
//! mode=agent
//! localSite=10.10.11.1:8921:agent43
//! controllerSite=10.10.11.1:8920:HActl43
//! sites=10.10.11.1:8921:agent43:agent,10.10.11.1:8920:HActl43:controller
//! ```
//!
//! Besides DolphinDB's keys, Shoal reads `restartOnCrash` (0|1),
//! `restartBackoff` (ms) and `packageVerifyKey` (the Ed25519 public key file
//! release packages must be signed with; empty: checksums only).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::kv::{
    Key, KvFile, ValueError, common, fmt_bool, fmt_millis, parse_bool, parse_millis, parse_mode,
    parse_optional_path, parse_site, resolve_path,
};
use super::site::{NodeMode, Site};
use super::tls::{self, TlsFiles};
use super::{ConfigError, config_dir, read_config_file};

const CONTROLLER_SITE: Key<Site> = Key::required("controllerSite", parse_site);
const SITES: Key<Vec<Site>> = Key::with_default("sites", "", parse_sites);
const RESTART_ON_CRASH: Key<bool> = Key::with_default("restartOnCrash", "1", parse_bool);
const RESTART_BACKOFF: Key<Duration> = Key::with_default("restartBackoff", "500", parse_millis);
const PACKAGE_VERIFY_KEY: Key<Option<PathBuf>> =
    Key::with_default("packageVerifyKey", "", parse_optional_path);

/// Every key `agent.cfg` may contain, in `entries()` order.
pub const KEYS: &[&str] = &[
    common::MODE.name,
    common::LOCAL_SITE.name,
    CONTROLLER_SITE.name,
    SITES.name,
    common::WORKER_NUM.name,
    common::MAX_MEM_SIZE.name,
    common::LAN_CLUSTER.name,
    RESTART_ON_CRASH.name,
    RESTART_BACKOFF.name,
    PACKAGE_VERIFY_KEY.name,
    common::HTTP_PORT.name,
    tls::KEYS[0],
    tls::KEYS[1],
    tls::KEYS[2],
    tls::KEYS[3],
    tls::KEYS[4],
];

/// `sites`: comma-separated `host:port:alias:mode` entries as DolphinDB
/// writes them (the trailing `:mode` may be omitted); empty means none.
fn parse_sites(value: &str) -> Result<Vec<Site>, ValueError> {
    if value.is_empty() {
        return Ok(Vec::new());
    }
    value
        .split(',')
        .map(str::trim)
        .map(|item| {
            if item.is_empty() {
                return Err(ValueError(format!(
                    "expected comma-separated \"host:port:alias:mode\" entries, got {value:?}"
                )));
            }
            let site = match item.matches(':').count() {
                3 => match item.rsplit_once(':') {
                    Some((site, mode)) => {
                        parse_mode(mode)?;
                        site
                    }
                    None => item,
                },
                _ => item,
            };
            parse_site(site)
        })
        .collect()
}

/// The parsed, validated `agent.cfg`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentConfig {
    /// `localSite` (required).
    pub local_site: Site,
    /// `controllerSite`: the controller to register with (required).
    pub controller_site: Site,
    /// `sites`: the agent itself and the controllers (default empty). The
    /// `:mode` suffix of each entry is validated but not kept.
    pub sites: Vec<Site>,
    /// `workerNum` (default 4).
    pub worker_num: u32,
    /// `maxMemSize` in GB; 0 = no limit (default 0).
    pub max_mem_size_gb: f64,
    /// `lanCluster` 0|1 (default 1).
    pub lan_cluster: bool,
    /// `restartOnCrash` 0|1 (default 1): restart a node that exits unexpectedly.
    pub restart_on_crash: bool,
    /// `restartBackoff` in ms (default 500): wait before a restart.
    pub restart_backoff: Duration,
    /// `packageVerifyKey`: packages must carry a signature by this key (resolved against
    /// the file's directory); `None`: checksums only.
    pub package_verify_key: Option<PathBuf>,
    /// `httpPort`: metrics and health endpoints; 0 (default): the node's port + 1000.
    #[serde(default)]
    pub http_port: u16,
    /// The TLS keys (`enableSSL`, ...); `None`: plaintext.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
}

impl AgentConfig {
    /// Read and validate `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::parse(path, &read_config_file(path)?)
    }

    /// Parse and validate `text`; `file` names it in errors.
    pub fn parse(file: &Path, text: &str) -> Result<Self, ConfigError> {
        let kv = KvFile::parse(file, text)?;
        kv.check_known(KEYS)?;
        kv.expect_mode(&common::MODE, NodeMode::Agent)?;
        Ok(AgentConfig {
            local_site: kv.get(&common::LOCAL_SITE)?,
            controller_site: kv.get(&CONTROLLER_SITE)?,
            sites: kv.get(&SITES)?,
            worker_num: kv.get(&common::WORKER_NUM)?,
            max_mem_size_gb: kv.get(&common::MAX_MEM_SIZE)?,
            lan_cluster: kv.get(&common::LAN_CLUSTER)?,
            restart_on_crash: kv.get(&RESTART_ON_CRASH)?,
            restart_backoff: kv.get(&RESTART_BACKOFF)?,
            package_verify_key: kv
                .get(&PACKAGE_VERIFY_KEY)?
                .map(|p| resolve_path(&config_dir(file), p)),
            http_port: kv.get(&common::HTTP_PORT)?,
            tls: TlsFiles::parse(&kv)?,
        })
    }

    /// Every key with its effective value, defaults included, in [`KEYS`]
    /// order (durations in ms, bools 0/1, `sites` as comma-separated
    /// `host:port:alias`).
    pub fn entries(&self) -> Vec<(String, String)> {
        let values = [
            NodeMode::Agent.to_string(),
            self.local_site.to_string(),
            self.controller_site.to_string(),
            self.sites
                .iter()
                .map(Site::to_string)
                .collect::<Vec<_>>()
                .join(","),
            self.worker_num.to_string(),
            self.max_mem_size_gb.to_string(),
            fmt_bool(self.lan_cluster),
            fmt_bool(self.restart_on_crash),
            fmt_millis(self.restart_backoff),
            self.package_verify_key
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
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

    const AGENT: &str = "mode=agent
localSite=10.10.11.1:8921:agent43
controllerSite=10.10.11.1:8920:HActl43
sites=10.10.11.1:8921:agent43:agent,10.10.11.1:8920:HActl43:controller,10.10.11.2:8920:HActl44:controller
workerNum=4
maxMemSize=4
lanCluster=0
";

    fn parse(text: &str) -> Result<AgentConfig, ConfigError> {
        AgentConfig::parse(Path::new("agent.cfg"), text)
    }

    #[test]
    fn parses_dolphindb_agent_cfg() {
        let a = parse(AGENT).expect("agent");
        assert_eq!(a.local_site, Site::new("10.10.11.1", 8921, "agent43"));
        assert_eq!(a.controller_site.alias, "HActl43");
        let aliases: Vec<&str> = a.sites.iter().map(|s| s.alias.as_str()).collect();
        assert_eq!(aliases, ["agent43", "HActl43", "HActl44"]);
        assert_eq!(a.worker_num, 4);
        assert_eq!(a.max_mem_size_gb, 4.0);
        assert!(!a.lan_cluster);
        assert!(a.restart_on_crash);
        assert_eq!(a.restart_backoff, Duration::from_millis(500));
    }

    #[test]
    fn entries_round_trip() {
        let a = parse(&format!("{AGENT}restartOnCrash=0\nrestartBackoff=1500\n")).expect("agent");
        let entries = a.entries();
        let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, KEYS);
        assert!(entries.contains(&("restartBackoff".to_string(), "1500".to_string())));
        assert!(entries.contains(&("restartOnCrash".to_string(), "0".to_string())));
        let text: String = entries.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        assert_eq!(parse(&text).expect("reparse"), a);
    }

    #[test]
    fn package_verify_key_is_resolved_against_the_file() {
        let a = AgentConfig::parse(
            Path::new("/etc/shoal/agent.cfg"),
            "mode=agent\nlocalSite=h:1:a\ncontrollerSite=h:2:c\npackageVerifyKey=keys/release.pub\n",
        )
        .expect("agent");
        assert_eq!(
            a.package_verify_key,
            Some(std::path::PathBuf::from("/etc/shoal/keys/release.pub"))
        );
        let none = parse("mode=agent\nlocalSite=h:1:a\ncontrollerSite=h:2:c\n").expect("agent");
        assert_eq!(none.package_verify_key, None);
    }

    #[test]
    fn minimal_and_errors() {
        let a = parse("mode=agent\nlocalSite=h:1:a\ncontrollerSite=h:2:c\n").expect("minimal");
        assert!(a.sites.is_empty());
        let e = parse("mode=agent\nlocalSite=h:1:a\n").expect_err("no controller");
        assert_eq!(
            e.to_string(),
            "agent.cfg: controllerSite: missing required key"
        );
        let e = parse("mode=datanode\nlocalSite=h:1:a\ncontrollerSite=h:2:c\n").expect_err("mode");
        assert_eq!(
            e.to_string(),
            "agent.cfg:1: mode: expected `agent` in this file, got `datanode`"
        );
        let e =
            parse("mode=agent\nlocalSite=h:1:a\ncontrollerSite=h:2:c\nsites=h:1:a:computenode\n")
                .expect_err("bad site mode");
        assert!(
            e.to_string()
                .starts_with("agent.cfg:4: sites: unknown node mode"),
            "{e}"
        );
        let e = parse("mode=agent\nlocalSite=h:1:a\ncontrollerSite=h:2:c\nsites=h:1:a:agent,,\n")
            .expect_err("empty item");
        assert!(e.to_string().starts_with("agent.cfg:4: sites:"), "{e}");
        let e = parse("mode=agent\nlocalSite=h:1:a\ncontrollerSite=h:2:c\nrestartOnCrash=yes\n")
            .expect_err("bool");
        assert_eq!(
            e.to_string(),
            "agent.cfg:4: restartOnCrash: expected 0, 1, true or false, got \"yes\""
        );
    }
}
