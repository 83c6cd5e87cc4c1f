//! `shoal host init`: the first install of one machine, run once on each host of a cluster.
//!
//! ```text
//! HOME/versions/<v>/shoal   this binary, the machine's first installed version
//! HOME/current -> versions/<v>    what the agent (and its nodes) start from
//! HOME/{controller,agent,cluster}.cfg, cluster.nodes, cluster.secret, cluster.users
//! HOME/tls/{ca.pem,node.pem,node.key}   with --tls-dir: the machine's certificate
//! ```
//!
//! The agent runs as `HOME/current/shoal agent --home HOME` (see `deploy/systemd/`), so after
//! `shoal upgrade` switches `current` a reboot starts the new version, and the version installed
//! here is what the first upgrade keeps as its rollback target. `shoal local up` initialises
//! each of its simulated machines through [`init`] too.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use shoal_agent::install::{self, Placement};
use shoal_common::config::TlsFiles;
use shoal_common::config::{ClusterNodes, NodeMode};
use shoal_common::secret::{self, SECRET_FILE};
use shoal_common::tls::{LOCAL_CA, LOCAL_DIR, NODE_CERT, NODE_KEY, ServerTls};
use shoal_common::users::{USERS_FILE, Users};

use crate::cli::HostInitArgs;
use crate::cmd::machine_config::{self, TlsMode};

/// What a machine's home holds once initialised: any of them present means it was.
const INSTALLED: [&str; 8] = [
    "current",
    "versions",
    "controller.cfg",
    "agent.cfg",
    "cluster.cfg",
    "cluster.nodes",
    SECRET_FILE,
    USERS_FILE,
];

/// deploy/systemd/shoal-agent.service, compiled in, and the home its paths name.
const AGENT_UNIT: &str = include_str!("../../../../deploy/systemd/shoal-agent.service");
const AGENT_UNIT_HOME: &str = "/var/lib/shoal";

/// The agent's systemd unit for `home` (absolute, without whitespace, which `ExecStart` would
/// split).
fn agent_unit(home: &Path) -> anyhow::Result<String> {
    let home = home.to_str().context("the home is not UTF-8")?;
    if home.chars().any(char::is_whitespace) {
        bail!("--systemd-unit: the home {home:?} has whitespace, which ExecStart would split");
    }
    Ok(AGENT_UNIT.replace(AGENT_UNIT_HOME, home))
}

/// One machine's share of the cluster's files.
pub(crate) struct Machine<'a> {
    /// The cluster's `cluster.nodes`, as the operator wrote it (copied verbatim).
    pub nodes_text: &'a str,
    /// Where that text came from, for errors.
    pub nodes_origin: &'a Path,
    /// The machine: its address in `cluster.nodes`, or its agent's alias.
    pub host: &'a str,
    pub secret: &'a str,
    /// The users file's text (empty: only the cluster secret logs in).
    pub users: &'a str,
    /// `--set KEY=VALUE` overrides of controller.cfg / cluster.cfg keys.
    pub set: &'a [String],
    /// TLS: every config file names `HOME/tls/` (which `local up --tls` fills itself).
    pub tls: Option<TlsMode>,
    /// The certificate to put in `HOME/tls/` (`host init --tls-dir`).
    pub tls_files: Option<&'a NodeTlsFiles>,
}

/// A machine's certificate, key and CA as `shoal cert create-node` writes them, read and
/// checked.
pub(crate) struct NodeTlsFiles {
    server: ServerTls,
}

impl NodeTlsFiles {
    /// Reads `dir/{ca.pem,node.pem,node.key}`: PEM, the key belonging to the certificate.
    pub fn load(dir: &Path, mutual: bool) -> anyhow::Result<Self> {
        let files = TlsFiles {
            config: dir.to_path_buf(),
            cert: dir.join(NODE_CERT),
            key: dir.join(NODE_KEY),
            ca: dir.join(LOCAL_CA),
            mutual,
        };
        let server = ServerTls::load(&files).context("--tls-dir")?;
        Ok(NodeTlsFiles { server })
    }

    fn write(&self, home: &Path) -> anyhow::Result<()> {
        let dir = home.join(LOCAL_DIR);
        std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::write(dir.join(LOCAL_CA), &self.server.ca_pem)?;
        std::fs::write(dir.join(NODE_CERT), &self.server.identity.cert_pem)?;
        let key = std::str::from_utf8(&self.server.identity.key_pem)?;
        secret::write_private(&dir.join(NODE_KEY), key)?;
        Ok(())
    }
}

/// The files [`init`] writes, by name, for `machine` (every input checked; nothing written).
fn files(machine: &Machine) -> anyhow::Result<(String, Vec<(&'static str, String)>)> {
    let nodes = ClusterNodes::parse(machine.nodes_origin, machine.nodes_text)?;
    let host = machine_of(&nodes, machine.host)?;
    let controller = nodes
        .controllers()
        .next()
        .map(|n| n.site.to_string())
        .with_context(|| format!("{} declares no controller", machine.nodes_origin.display()))?;
    Users::parse(Path::new(USERS_FILE), machine.users).map_err(anyhow::Error::msg)?;
    machine_config::check_overrides(machine.set)?;
    if let Some(tls) = machine.tls_files {
        tls.server
            .check_serves(&host)
            .map_err(|e| anyhow::anyhow!("--tls-dir: {}: {e}", NODE_CERT))?;
    }
    let config_lines = machine_config::tls_lines(machine.tls);
    let config_lines = config_lines.as_str();
    let mut files = Vec::new();
    for n in nodes.on_machine(&host) {
        match n.mode {
            NodeMode::Controller => files.push((
                "controller.cfg",
                machine_config::controller_cfg(&n.site.to_string(), machine.set)? + config_lines,
            )),
            NodeMode::Agent => files.push((
                "agent.cfg",
                machine_config::agent_cfg(&n.site.to_string(), &controller) + config_lines,
            )),
            NodeMode::DataNode => {}
        }
    }
    files.push((
        "cluster.cfg",
        machine_config::cluster_cfg(machine.set)? + config_lines,
    ));
    files.push(("cluster.nodes", machine.nodes_text.to_owned()));
    Ok((host, files))
}

/// The machine `host` names (an address or an agent's alias); it must run an agent, which
/// starts everything else on it.
fn machine_of(nodes: &ClusterNodes, host: &str) -> anyhow::Result<String> {
    let machines = nodes.machines();
    let found = nodes
        .agents()
        .find(|n| n.site.host == host || n.site.alias == host)
        .map(|n| n.site.host.clone());
    match found {
        Some(m) => Ok(m),
        None if machines.iter().any(|m| m == host) => {
            bail!("machine {host} has no agent in cluster.nodes: every machine needs one")
        }
        None => bail!(
            "no machine `{host}` in cluster.nodes (machines: {})",
            machines.join(", ")
        ),
    }
}

/// Refuses a home that was initialised already (a machine is installed once; later versions
/// come through `shoal upgrade`) or that is not a directory.
fn check_fresh(home: &Path) -> anyhow::Result<()> {
    if home.exists() && !home.is_dir() {
        bail!("{} exists and is not a directory", home.display());
    }
    if let Some(found) = INSTALLED
        .iter()
        .find(|name| home.join(name).symlink_metadata().is_ok())
    {
        bail!(
            "{} is already initialised (it has {found}): a machine is initialised once; \
             install later versions with `shoal upgrade`",
            home.display()
        );
    }
    Ok(())
}

/// Lays out `home` for `machine`: its config files, then `exe` as its first installed
/// version and `current` (last: a home counts as initialised once `current` exists). Every
/// input is checked before anything is written; a failure while writing removes what this
/// call wrote. Answers the machine's address.
pub(crate) fn init(
    home: &Path,
    machine: &Machine,
    exe: &Path,
    placement: Placement,
) -> anyhow::Result<String> {
    check_fresh(home)?;
    let tls_dir = home.join(LOCAL_DIR);
    if machine.tls_files.is_some() && tls_dir.symlink_metadata().is_ok() {
        bail!(
            "{} exists already: --tls-dir puts the machine's certificate there",
            tls_dir.display()
        );
    }
    let (host, files) = files(machine)?;
    let existed = home.exists();
    let written = write(home, &files, machine, exe, placement);
    if written.is_err() {
        let _ = remove(home, existed, machine.tls_files.is_some());
    }
    written.with_context(|| format!("cannot initialise {}", home.display()))?;
    Ok(host)
}

fn write(
    home: &Path,
    files: &[(&str, String)],
    machine: &Machine,
    exe: &Path,
    placement: Placement,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(home)?;
    for (name, text) in files {
        std::fs::write(home.join(name), text)?;
    }
    secret::write_private(&home.join(SECRET_FILE), machine.secret)?;
    secret::write_private(&home.join(USERS_FILE), machine.users.trim_end())?;
    if let Some(tls) = machine.tls_files {
        tls.write(home)?;
    }
    install::install_first(home, exe, crate::VERSION, placement)?;
    Ok(())
}

/// Undoes a failed [`write`]: what it may have created in `home` (all of it if `home` was
/// created too).
fn remove(home: &Path, existed: bool, wrote_tls: bool) -> std::io::Result<()> {
    if !existed {
        return std::fs::remove_dir_all(home);
    }
    if wrote_tls && home.join(LOCAL_DIR).is_dir() {
        std::fs::remove_dir_all(home.join(LOCAL_DIR))?;
    }
    for name in INSTALLED {
        let p = home.join(name);
        if p.is_dir() && !p.is_symlink() {
            std::fs::remove_dir_all(&p)?;
        } else if p.symlink_metadata().is_ok() {
            std::fs::remove_file(&p)?;
        }
    }
    Ok(())
}

pub fn run(args: HostInitArgs) -> anyhow::Result<()> {
    let nodes_text = std::fs::read_to_string(&args.cluster_nodes)
        .with_context(|| format!("cannot read {}", args.cluster_nodes.display()))?;
    let secret = secret::load(&args.secret_file)?;
    let users = match &args.users_file {
        Some(f) => {
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?
        }
        None => String::new(),
    };
    // Absolute: the agent, its nodes and the systemd unit name the home from anywhere.
    let home: PathBuf = std::path::absolute(&args.home)?;
    let exe = std::env::current_exe().context("cannot find the shoal executable")?;
    let tls_files = args
        .tls_dir
        .as_deref()
        .map(|dir| NodeTlsFiles::load(dir, args.mutual_tls))
        .transpose()?;
    let machine = Machine {
        nodes_text: &nodes_text,
        nodes_origin: &args.cluster_nodes,
        host: &args.host,
        secret: &secret.file_text(),
        users: &users,
        set: &args.set,
        tls: tls_files.as_ref().map(|f| TlsMode {
            mutual: f.server.mutual,
        }),
        tls_files: tls_files.as_ref(),
    };
    // Checked with the rest, before anything is written.
    let unit = match &args.systemd_unit {
        Some(file) if file.symlink_metadata().is_ok() => {
            bail!("--systemd-unit {}: exists already", file.display())
        }
        Some(file) => Some((file, agent_unit(&home)?)),
        None => None,
    };
    let host = init(&home, &machine, &exe, Placement::Copy)?;
    println!(
        "initialised {} as machine {host}, version {} in {}\nstart its agent with: {} agent --home {0}",
        home.display(),
        crate::VERSION,
        home.join("versions").join(crate::VERSION).display(),
        home.join("current").join(install::BINARY).display(),
    );
    if let Some((file, text)) = unit {
        std::fs::write(file, text).with_context(|| {
            format!(
                "{} is initialised, but its systemd unit could not be written to {}",
                home.display(),
                file.display()
            )
        })?;
        println!("systemd unit: {}", file.display());
    }
    Ok(())
}
