//! The TLS keys every role's file shares (`controller.cfg`, `agent.cfg`, `cluster.cfg`):
//!
//! ```text
//! enableSSL=1            # 0 (default): plaintext; 1: TLS on every gRPC, Flight SQL and HTTP port
//! sslCertFile=tls/node.pem   # this machine's certificate chain (PEM), leaf first
//! sslKeyFile=tls/node.key    # its private key (PEM: PKCS#8, PKCS#1 or SEC1)
//! sslCAFile=tls/ca.pem       # the CA that signed every node's certificate (PEM)
//! sslMutualAuth=0        # 1: every connection must present a certificate signed by sslCAFile
//! ```
//!
//! Relative paths are relative to the file's directory. Parsing only checks that the keys
//! agree (the three files named when `enableSSL=1`); the files themselves are read and checked
//! by [`crate::tls::ServerTls::load`] when the role starts.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::kv::{Key, fmt_bool, fmt_path, parse_bool, parse_optional_path, resolve_path};

pub const ENABLE_SSL: Key<bool> = Key::with_default("enableSSL", "0", parse_bool);
pub const SSL_CERT_FILE: Key<Option<PathBuf>> =
    Key::with_default("sslCertFile", "", parse_optional_path);
pub const SSL_KEY_FILE: Key<Option<PathBuf>> =
    Key::with_default("sslKeyFile", "", parse_optional_path);
pub const SSL_CA_FILE: Key<Option<PathBuf>> =
    Key::with_default("sslCAFile", "", parse_optional_path);
pub const SSL_MUTUAL_AUTH: Key<bool> = Key::with_default("sslMutualAuth", "0", parse_bool);

/// The TLS keys, in the order every file's `entries()` lists them (after its own keys).
pub const KEYS: [&str; 5] = [
    ENABLE_SSL.name,
    SSL_CERT_FILE.name,
    SSL_KEY_FILE.name,
    SSL_CA_FILE.name,
    SSL_MUTUAL_AUTH.name,
];

/// Where a file's values come from: a plain `key=value` file, or one data node's view of
/// `cluster.cfg` (its `ALIAS.key` overrides first).
pub trait KeySource {
    /// The value of `key` (its default when unset), or an error naming file, line and key.
    fn value<T>(&self, key: &Key<T>) -> Result<T, ConfigError>;
    /// The file, for errors.
    fn file(&self) -> &Path;
    /// The directory relative paths start from.
    fn home(&self) -> PathBuf;
}

/// The TLS settings of a node with `enableSSL=1`: paths resolved, not yet read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsFiles {
    /// The configuration file that named them (errors about the files name it too).
    pub config: PathBuf,
    /// `sslCertFile`.
    pub cert: PathBuf,
    /// `sslKeyFile`.
    pub key: PathBuf,
    /// `sslCAFile`.
    pub ca: PathBuf,
    /// `sslMutualAuth`.
    pub mutual: bool,
}

impl TlsFiles {
    /// The TLS keys of `src`: `None` with `enableSSL=0`; with `enableSSL=1` each of the three
    /// files must be named. `sslMutualAuth=1` without `enableSSL=1` is refused rather than
    /// ignored (it would promise what a plaintext port cannot do).
    pub fn parse(src: &impl KeySource) -> Result<Option<Self>, ConfigError> {
        let enabled = src.value(&ENABLE_SSL)?;
        let mutual = src.value(&SSL_MUTUAL_AUTH)?;
        let path = |key: &Key<Option<PathBuf>>| -> Result<PathBuf, ConfigError> {
            match src.value(key)? {
                Some(p) => Ok(resolve_path(&src.home(), p)),
                None => Err(
                    ConfigError::new(src.file(), "must name a file when enableSSL=1")
                        .with_key(key.name),
                ),
            }
        };
        if !enabled {
            if mutual {
                return Err(ConfigError::new(src.file(), "needs enableSSL=1")
                    .with_key(SSL_MUTUAL_AUTH.name));
            }
            return Ok(None);
        }
        Ok(Some(TlsFiles {
            config: src.file().to_path_buf(),
            cert: path(&SSL_CERT_FILE)?,
            key: path(&SSL_KEY_FILE)?,
            ca: path(&SSL_CA_FILE)?,
            mutual,
        }))
    }

    /// The values of [`KEYS`] for `tls` (empty paths when off).
    pub fn entries(tls: Option<&TlsFiles>) -> [String; 5] {
        match tls {
            None => [
                fmt_bool(false),
                String::new(),
                String::new(),
                String::new(),
                fmt_bool(false),
            ],
            Some(t) => [
                fmt_bool(true),
                fmt_path(&t.cert),
                fmt_path(&t.key),
                fmt_path(&t.ca),
                fmt_bool(t.mutual),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AgentConfig, ClusterCfg, ControllerConfig};

    const AGENT: &str =
        "mode=agent\nlocalSite=127.0.0.1:8921:agent1\ncontrollerSite=127.0.0.1:8920:ctl1\n";

    #[test]
    fn off_by_default_and_paths_resolved_against_the_file() {
        let cfg = AgentConfig::parse(Path::new("home/agent.cfg"), AGENT).unwrap();
        assert_eq!(cfg.tls, None);
        let text = format!(
            "{AGENT}enableSSL=1\nsslCertFile=tls/node.pem\nsslKeyFile=/abs/node.key\nsslCAFile=tls/ca.pem\n"
        );
        let tls = AgentConfig::parse(Path::new("home/agent.cfg"), &text)
            .unwrap()
            .tls
            .unwrap();
        assert_eq!(tls.cert, Path::new("home/tls/node.pem"));
        assert_eq!(tls.key, Path::new("/abs/node.key"));
        assert_eq!(tls.ca, Path::new("home/tls/ca.pem"));
        assert!(!tls.mutual);
    }

    #[test]
    fn every_file_needs_each_path_when_enabled() {
        let ctl = "mode=controller\nlocalSite=127.0.0.1:8920:ctl1\nenableSSL=1\nsslCertFile=a\nsslKeyFile=b\n";
        let e = ControllerConfig::parse(Path::new("controller.cfg"), ctl).unwrap_err();
        assert_eq!(
            e.to_string(),
            "controller.cfg: sslCAFile: must name a file when enableSSL=1"
        );
        let e = ClusterCfg::parse(Path::new("cluster.cfg"), "enableSSL=1\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "cluster.cfg: sslCertFile: must name a file when enableSSL=1"
        );
    }

    #[test]
    fn mutual_auth_without_tls_is_refused() {
        let e = AgentConfig::parse(Path::new("agent.cfg"), &format!("{AGENT}sslMutualAuth=1\n"))
            .unwrap_err();
        assert_eq!(e.to_string(), "agent.cfg: sslMutualAuth: needs enableSSL=1");
    }

    #[test]
    fn a_data_node_may_override_its_files() {
        let cfg = ClusterCfg::parse(
            Path::new("home/cluster.cfg"),
            "enableSSL=1\nsslCertFile=tls/<ALIAS>.pem\nsslKeyFile=tls/<ALIAS>.key\nsslCAFile=tls/ca.pem\nnode2.sslMutualAuth=1\n",
        )
        .unwrap();
        let one = cfg.for_node("node1").unwrap().tls.unwrap();
        assert_eq!(one.cert, Path::new("home/tls/node1.pem"));
        assert!(!one.mutual);
        assert!(cfg.for_node("node2").unwrap().tls.unwrap().mutual);
    }
}
