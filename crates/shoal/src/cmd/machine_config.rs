//! The files of one machine, from the seed's defaults (DolphinDB-style `key=value`) with the
//! operator's `--set KEY=VALUE` overrides applied to whichever file knows each key, every
//! file checked the way the process reading it will check it before anything is written.
//! Shared by `shoal host init` and `shoal local up` (which initialises each simulated machine
//! the same way).

use std::path::Path;

use anyhow::bail;
use shoal_common::config::{ClusterCfg, ControllerConfig, cluster_cfg, controller};
use shoal_common::tls::{LOCAL_CA, LOCAL_DIR, NODE_CERT, NODE_KEY};

/// The seed's controller.cfg for one machine, with the `--set KEY=VALUE` overrides of its keys
/// applied and the result checked like the controller will check it (a bad value writes
/// nothing).
pub(crate) fn controller_cfg(site: &str, overrides: &[String]) -> anyhow::Result<String> {
    let base = format!(
        "mode=controller\nlocalSite={site}\ndfsHAMode=Raft\ndfsReplicationFactor=2\n\
         dfsReplicaReliabilityLevel=1\ndataSync=1\nworkerNum=4\nmaxConnections=512\nmaxMemSize=8\n\
         lanCluster=0\ndfsRecoveryWaitTime=30000\ndfsMetaDir=dfsMeta\n"
    );
    let text = with_overrides(&base, overrides, controller::KEYS)?;
    ControllerConfig::parse(Path::new("controller.cfg (with --set)"), &text)?;
    Ok(text)
}

/// The local cluster's cluster.cfg with the `--set` overrides of its keys, checked like a data
/// node will check it.
pub(crate) fn cluster_cfg(overrides: &[String]) -> anyhow::Result<String> {
    let text = with_overrides(CLUSTER_CFG, overrides, cluster_cfg::KEYS)?;
    ClusterCfg::parse(Path::new("cluster.cfg (with --set)"), &text)?;
    Ok(text)
}

/// `text` with each override whose key is one of `keys` replacing that key's line (or added).
fn with_overrides(text: &str, overrides: &[String], keys: &[&str]) -> anyhow::Result<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for o in overrides {
        let key = override_key(o)?;
        if !keys.contains(&key) {
            continue;
        }
        let prefix = format!("{key}=");
        match lines.iter_mut().find(|l| l.starts_with(&prefix)) {
            Some(line) => *line = o.clone(),
            None => lines.push(o.clone()),
        }
    }
    Ok(lines.join("\n") + "\n")
}

fn override_key(o: &str) -> anyhow::Result<&str> {
    match o.split_once('=') {
        Some((key, _)) => Ok(key),
        None => bail!("--set {o}: expected KEY=VALUE"),
    }
}

/// Refuses an override no file of a machine knows, or a value its file would refuse.
pub(crate) fn check_overrides(overrides: &[String]) -> anyhow::Result<()> {
    for o in overrides {
        let key = override_key(o)?;
        // agent.cfg takes no overrides: TLS set here would leave the agent plaintext, unable
        // to reach its own controller.
        if shoal_common::config::tls::KEYS.contains(&key) {
            bail!(
                "--set {o}: TLS keys go in every file of a machine (agent.cfg too), not through \
                 --set: use `shoal local up --tls`, or edit controller.cfg, agent.cfg and \
                 cluster.cfg (docs/DEPLOY.md)"
            );
        }
        if !controller::KEYS.contains(&key) && !cluster_cfg::KEYS.contains(&key) {
            bail!(
                "--set {o}: `{key}` is not a key of controller.cfg ({}) or cluster.cfg ({})",
                controller::KEYS.join(", "),
                cluster_cfg::KEYS.join(", ")
            );
        }
    }
    controller_cfg("127.0.0.1:1:check", overrides)?;
    cluster_cfg(overrides)?;
    Ok(())
}

/// The seed's agent.cfg, `controllerSite` naming `controller` (the cluster's first controller).
pub(crate) fn agent_cfg(site: &str, controller: &str) -> String {
    format!(
        "mode=agent\nlocalSite={site}\ncontrollerSite={controller}\nworkerNum=4\nmaxMemSize=4\nlanCluster=0\n"
    )
}

const CLUSTER_CFG: &str = "# Data nodes; <ALIAS> is replaced by each node's alias.\n\
    chunkMetaDir=<ALIAS>/storage\nvolumes=<ALIAS>/volumes\ndataSync=1\nworkerNum=4\nmaxMemSize=8\n";

/// A machine's TLS: its home's `tls/` holds `ca.pem`, `node.pem` and `node.key`.
#[derive(Clone, Copy, Debug)]
pub struct TlsMode {
    /// `sslMutualAuth=1`: every connection presents a certificate of the cluster's CA.
    pub mutual: bool,
}

/// The TLS keys of every file of a machine (paths relative to its home); nothing without TLS,
/// so a plaintext cluster's files stay readable by releases without TLS.
pub fn tls_lines(tls: Option<TlsMode>) -> String {
    match tls {
        None => String::new(),
        Some(t) => format!(
            "enableSSL=1\nsslCertFile={LOCAL_DIR}/{NODE_CERT}\nsslKeyFile={LOCAL_DIR}/{NODE_KEY}\nsslCAFile={LOCAL_DIR}/{LOCAL_CA}\nsslMutualAuth={}\n",
            u8::from(t.mutual)
        ),
    }
}
