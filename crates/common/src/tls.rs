//! TLS material, read and checked once: what a node serves with ([`ServerTls`]) and what any
//! client connects with ([`ClientTls`]). rustls with the ring provider throughout.
//!
//! Everything is checked when loaded (PEM readable, a certificate and a key present, the key
//! belonging to the certificate, the CA usable as a trust root), so a bad file stops a role
//! at start-up with an error naming the key and the file, before it binds or writes anything.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::config::tls::{SSL_CA_FILE, SSL_CERT_FILE, SSL_KEY_FILE};
use crate::config::{ConfigError, TlsFiles};

/// The CA file a client trusts, when no flag names one.
pub const CA_ENV: &str = "SHOAL_TLS_CA";
/// The certificate a client presents to a cluster with `sslMutualAuth=1`.
pub const CERT_ENV: &str = "SHOAL_TLS_CERT";
/// Its private key.
pub const KEY_ENV: &str = "SHOAL_TLS_KEY";

/// Where `shoal local up --tls` puts, under the cluster directory, the CA clients trust and the
/// certificate and key they present to a cluster with `sslMutualAuth=1`.
pub const LOCAL_DIR: &str = "tls";
pub const LOCAL_CA: &str = "ca.pem";
pub const LOCAL_CLIENT_CERT: &str = "client.pem";
pub const LOCAL_CLIENT_KEY: &str = "client.key";
/// A machine's certificate and key in its home's `tls` directory (beside `ca.pem`).
pub const NODE_CERT: &str = "node.pem";
pub const NODE_KEY: &str = "node.key";

/// The crypto provider every TLS config here uses (the process default is not relied on:
/// tonic, axum and the CLI would each have to install it first).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A PEM certificate and its private key, checked to belong together.
#[derive(Clone)]
pub struct Identity {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    certified: Arc<CertifiedKey>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").finish_non_exhaustive()
    }
}

/// What a node with `enableSSL=1` serves with.
#[derive(Clone, Debug)]
pub struct ServerTls {
    pub identity: Identity,
    /// The CA every node's certificate is signed by (clients of this node trust it too).
    pub ca_pem: Vec<u8>,
    /// `sslMutualAuth`: every connection must present a certificate signed by the CA.
    pub mutual: bool,
    http: Arc<rustls::ServerConfig>,
}

impl ServerTls {
    /// Reads and checks the files `files` names; errors name the key and the file.
    pub fn load(files: &TlsFiles) -> Result<Self, ConfigError> {
        let at = |key: &str, path: &Path, message: String| {
            ConfigError::new(&files.config, format!("{}: {message}", path.display())).with_key(key)
        };
        let cert = read(&files.cert).map_err(|m| at(SSL_CERT_FILE.name, &files.cert, m))?;
        let key = read(&files.key).map_err(|m| at(SSL_KEY_FILE.name, &files.key, m))?;
        let ca_pem = read(&files.ca).map_err(|m| at(SSL_CA_FILE.name, &files.ca, m))?;
        let identity = Identity::from_pem(cert, key).map_err(|e| match e {
            IdentityError::Cert(m) => at(SSL_CERT_FILE.name, &files.cert, m),
            IdentityError::Key(m) => at(SSL_KEY_FILE.name, &files.key, m),
        })?;
        let roots = roots(&ca_pem).map_err(|m| at(SSL_CA_FILE.name, &files.ca, m))?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| at(SSL_CA_FILE.name, &files.ca, e.to_string()))?;
        let builder = if files.mutual {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider())
                .build()
                .map_err(|e| at(SSL_CA_FILE.name, &files.ca, e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder
            .with_cert_resolver(Arc::new(SingleCertAndKey::from(identity.certified.clone())));
        // Only the HTTP endpoints use this config (tonic builds its own from the PEMs), and
        // they speak HTTP/1.1 only.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ServerTls {
            identity,
            ca_pem,
            mutual: files.mutual,
            http: Arc::new(config),
        })
    }

    /// Whether clients dialling `host` (an address or a DNS name) accept this node: its
    /// certificate chains to the CA and names `host`. Checked when a machine is installed, so a
    /// wrong certificate is refused there rather than by every client later.
    pub fn check_serves(&self, host: &str) -> Result<(), String> {
        let roots = roots(&self.ca_pem)?;
        let verifier = WebPkiServerVerifier::builder_with_provider(roots.into(), provider())
            .build()
            .map_err(|e| e.to_string())?;
        let (end_entity, intermediates) = self
            .identity
            .certified
            .cert
            .split_first()
            .ok_or("holds no certificate")?;
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| format!("`{host}` is not an address or a host name: {e}"))?;
        verifier
            .verify_server_cert(end_entity, intermediates, &name, &[], UnixTime::now())
            .map_err(|e| format!("clients dialling {host} would refuse it: {e}"))?;
        Ok(())
    }

    /// The rustls configuration of the HTTP endpoints (served outside tonic).
    pub fn http_config(&self) -> Arc<rustls::ServerConfig> {
        self.http.clone()
    }

    /// How this node connects to the other nodes: trusting the cluster's CA, and presenting its
    /// own certificate (servers ask for it only with `sslMutualAuth=1`).
    pub fn client(&self) -> ClientTls {
        ClientTls {
            ca_pem: self.ca_pem.clone(),
            identity: Some(self.identity.clone()),
        }
    }
}

/// How a client connects to a TLS cluster.
#[derive(Clone, Debug)]
pub struct ClientTls {
    /// The CA the servers' certificates must be signed by.
    pub ca_pem: Vec<u8>,
    /// The certificate to present, for a cluster with `sslMutualAuth=1`.
    pub identity: Option<Identity>,
}

/// A client's TLS files could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct ClientTlsError {
    pub path: PathBuf,
    pub message: String,
}

impl ClientTls {
    /// Reads and checks `ca` and, if given, the certificate and key to present.
    pub fn load(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<Self, ClientTlsError> {
        let err = |path: &Path| {
            let path = path.to_path_buf();
            move |message| ClientTlsError { path, message }
        };
        let ca_pem = read(ca).map_err(err(ca))?;
        roots(&ca_pem).map_err(err(ca))?;
        let identity = match identity {
            None => None,
            Some((cert, key)) => {
                let cert_pem = read(cert).map_err(err(cert))?;
                let key_pem = read(key).map_err(err(key))?;
                Some(Identity::from_pem(cert_pem, key_pem).map_err(|e| match e {
                    IdentityError::Cert(m) => err(cert)(m),
                    IdentityError::Key(m) => err(key)(m),
                })?)
            }
        };
        Ok(ClientTls { ca_pem, identity })
    }

    /// How a client reaches the local cluster in `dir` (`shoal local up --dir`): `None` if it
    /// was made without `--tls`; else its CA, and its client certificate when present.
    pub fn of_local_cluster(dir: &Path) -> Result<Option<Self>, ClientTlsError> {
        let tls = dir.join(LOCAL_DIR);
        let ca = tls.join(LOCAL_CA);
        if !ca.exists() {
            return Ok(None);
        }
        let (cert, key) = (tls.join(LOCAL_CLIENT_CERT), tls.join(LOCAL_CLIENT_KEY));
        let identity = (cert.exists() && key.exists()).then_some((cert.as_path(), key.as_path()));
        Self::load(&ca, identity).map(Some)
    }
}

enum IdentityError {
    Cert(String),
    Key(String),
}

impl Identity {
    fn from_pem(cert_pem: Vec<u8>, key_pem: Vec<u8>) -> Result<Self, IdentityError> {
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| IdentityError::Cert(format!("not a PEM certificate: {e}")))?;
        if chain.is_empty() {
            return Err(IdentityError::Cert("holds no PEM certificate".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| IdentityError::Key(format!("not a PEM private key: {e}")))?;
        let certified = CertifiedKey::from_der(chain, key, &provider())
            .map_err(|e| IdentityError::Key(format!("does not belong to the certificate ({e})")))?;
        Ok(Identity {
            cert_pem,
            key_pem,
            certified: Arc::new(certified),
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read: {e}"))
}

fn roots(ca_pem: &[u8]) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| format!("not a PEM certificate: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("not usable as a CA certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Files {
        dir: tempfile::TempDir,
        files: TlsFiles,
    }

    /// A CA, a certificate it signed for 127.0.0.1 and its key, as `sslCAFile`,
    /// `sslCertFile` and `sslKeyFile` of `home/agent.cfg`.
    fn files() -> Files {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
        let ca = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let at = |name: &str| dir.path().join(name);
        std::fs::write(at("ca.pem"), ca_pem).unwrap();
        std::fs::write(at("node.pem"), cert.pem()).unwrap();
        std::fs::write(at("node.key"), key.serialize_pem()).unwrap();
        let files = TlsFiles {
            config: PathBuf::from("home/agent.cfg"),
            cert: at("node.pem"),
            key: at("node.key"),
            ca: at("ca.pem"),
            mutual: true,
        };
        Files { dir, files }
    }

    fn error(files: &TlsFiles) -> String {
        ServerTls::load(files).unwrap_err().to_string()
    }

    #[test]
    fn good_files_load_for_the_server_and_its_client_side() {
        let f = files();
        let tls = ServerTls::load(&f.files).unwrap();
        assert!(tls.mutual);
        assert!(tls.client().identity.is_some());
        let client = ClientTls::load(&f.files.ca, Some((&f.files.cert, &f.files.key))).unwrap();
        assert_eq!(client.ca_pem, tls.ca_pem);
    }

    #[test]
    fn a_certificate_serves_the_names_it_holds_under_its_ca_only() {
        let f = files();
        let tls = ServerTls::load(&f.files).unwrap();
        tls.check_serves("127.0.0.1").unwrap();
        let e = tls.check_serves("127.0.0.2").unwrap_err();
        assert!(
            e.contains("clients dialling 127.0.0.2 would refuse it"),
            "{e}"
        );
        // The same certificate checked against another CA.
        let other = files();
        let foreign = ServerTls::load(&TlsFiles {
            ca: other.files.ca.clone(),
            mutual: false,
            ..f.files.clone()
        })
        .unwrap();
        let e = foreign.check_serves("127.0.0.1").unwrap_err();
        assert!(e.contains("would refuse it"), "{e}");
    }

    #[test]
    fn a_missing_file_names_the_key_and_the_file() {
        let f = files();
        let missing = f.dir.path().join("nope.pem");
        let e = error(&TlsFiles {
            ca: missing.clone(),
            ..f.files.clone()
        });
        assert!(
            e.starts_with(&format!(
                "home/agent.cfg: sslCAFile: {}: cannot read",
                missing.display()
            )),
            "{e}"
        );
    }

    #[test]
    fn a_file_that_is_not_pem_is_refused() {
        let f = files();
        let junk = f.dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let e = error(&TlsFiles {
            cert: junk.clone(),
            ..f.files.clone()
        });
        assert!(
            e.contains("sslCertFile") && e.contains("holds no PEM certificate"),
            "{e}"
        );
        let e = error(&TlsFiles {
            key: junk,
            ..f.files.clone()
        });
        assert!(
            e.contains("sslKeyFile") && e.contains("not a PEM private key"),
            "{e}"
        );
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let f = files();
        let other = f.dir.path().join("other.key");
        std::fs::write(&other, rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
        let e = error(&TlsFiles {
            key: other,
            ..f.files.clone()
        });
        assert!(
            e.contains("sslKeyFile") && e.contains("does not belong to the certificate"),
            "{e}"
        );
    }
}
