//! Resolving `--sites` / `--dir` (and `--tls-*`) into an authenticated connection to the
//! cluster.

use anyhow::{Context, bail};
use shoal_client::channel::Channels;
use shoal_client::controller::ControllerClient;
use shoal_common::config::ClusterNodes;
use shoal_common::secret::{self, SECRET_ENV, SECRET_FILE};
use shoal_common::tls::ClientTls;

use crate::cli::TargetArgs;

pub struct Target {
    pub channels: Channels,
    pub controllers: ControllerClient,
    /// The cluster's `cluster.nodes` when known locally (`--dir`): lets machine-level commands
    /// reach an agent even while the controllers have no quorum.
    pub nodes: Option<ClusterNodes>,
}

impl Target {
    pub fn resolve(args: &TargetArgs) -> anyhow::Result<Self> {
        let mut nodes_file = None;
        let (sites, secret) = match (&args.dir, args.sites.is_empty()) {
            (Some(dir), _) => {
                let nodes = ClusterNodes::load(&dir.join("cluster.nodes")).with_context(|| {
                    format!("{} is not a local cluster directory", dir.display())
                })?;
                let sites = nodes.controllers().map(|n| n.site.addr()).collect();
                nodes_file = Some(nodes);
                let secret_path = args
                    .secret_file
                    .clone()
                    .unwrap_or_else(|| dir.join(SECRET_FILE));
                (sites, secret::load(&secret_path)?)
            }
            (None, false) => {
                let secret = match (&args.secret_file, secret::from_env()) {
                    (Some(path), _) => secret::load(path)?,
                    (None, Some(env)) => env?,
                    (None, None) => bail!(
                        "--sites needs the cluster secret: pass --secret-file FILE or set ${SECRET_ENV}"
                    ),
                };
                (args.sites.clone(), secret)
            }
            (None, true) => bail!("say where the cluster is: --sites host:port,... or --dir DIR"),
        };
        let channels = Channels::new(secret.signing())?.with_tls(client_tls(args)?);
        Ok(Self {
            controllers: ControllerClient::new(sites, channels.clone()),
            channels,
            nodes: nodes_file,
        })
    }
}

/// How to reach the cluster: TLS trusting `--tls-ca` (`$SHOAL_TLS_CA`) and presenting
/// `--tls-cert` when given, else as the local cluster of `--dir` says (its CA and client
/// certificate if it was made with `--tls`); `None`: plaintext.
pub fn client_tls(args: &TargetArgs) -> anyhow::Result<Option<ClientTls>> {
    if let Some(ca) = &args.tls_ca {
        let identity = args.tls_cert.as_deref().zip(args.tls_key.as_deref());
        return Ok(Some(ClientTls::load(ca, identity)?));
    }
    match &args.dir {
        Some(dir) => Ok(ClientTls::of_local_cluster(dir)?),
        None => Ok(None),
    }
}

/// A login password: the first line of `file`, else `$SHOAL_PASSWORD` (`option` names the
/// option that needs it, for the error).
pub fn password(file: Option<&std::path::Path>, option: &str) -> anyhow::Result<String> {
    match file {
        Some(path) => Ok(std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .trim_end_matches(['\r', '\n'])
            .to_owned()),
        None => std::env::var("SHOAL_PASSWORD")
            .with_context(|| format!("{option} needs a password file or $SHOAL_PASSWORD")),
    }
}
