//! `shoal local up --tls`: a CA made for the local cluster and a certificate per machine, so
//! the demo runs encrypted.
//!
//! ```text
//! DIR/tls/ca.pem                       the CA clients trust (`--dir` finds it)
//! DIR/tls/client.{pem,key}             what the CLI presents to a cluster with sslMutualAuth=1
//! DIR/<host>/tls/{ca.pem,node.pem,node.key}   the machine's, named by its three files
//! ```
//!
//! The CA's private key is never written: it signs these certificates and is dropped, so a
//! copy of the directory cannot mint more. A machine's certificate names its address (the
//! host clients dial), and serves as its client certificate between nodes too.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use shoal_common::secret::write_private;

/// TLS for a new local cluster.
#[derive(Clone, Copy, Debug)]
pub struct LocalTls {
    /// `sslMutualAuth=1`: every connection presents a certificate of the cluster's CA.
    pub mutual: bool,
}

/// Where the CA and the client's certificate go, under the cluster directory.
const DIR: &str = "tls";
const CA_FILE: &str = "ca.pem";
const CLIENT_CERT: &str = "client.pem";
const CLIENT_KEY: &str = "client.key";

/// The CA certificate of a local cluster in `dir`, if it was made with `--tls`.
pub fn ca_file(dir: &Path) -> Option<PathBuf> {
    Some(dir.join(DIR).join(CA_FILE)).filter(|p| p.exists())
}

/// The client certificate and key of a local cluster in `dir`, if it was made with `--tls`.
pub fn client_identity(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let tls = dir.join(DIR);
    let (cert, key) = (tls.join(CLIENT_CERT), tls.join(CLIENT_KEY));
    (cert.exists() && key.exists()).then_some((cert, key))
}

/// The TLS keys of every machine's files (paths relative to the machine's home); nothing
/// without TLS, so a plaintext cluster's files stay readable by releases without TLS.
pub fn config_lines(tls: Option<LocalTls>) -> String {
    match tls {
        None => String::new(),
        Some(t) => format!(
            "enableSSL=1\nsslCertFile={DIR}/node.pem\nsslKeyFile={DIR}/node.key\nsslCAFile={DIR}/{CA_FILE}\nsslMutualAuth={}\n",
            u8::from(t.mutual)
        ),
    }
}

/// Makes the CA, the client's certificate and one certificate per machine in `machines`
/// (each named by its address), written as the module docs lay out.
pub fn generate(dir: &Path, machines: &[String]) -> anyhow::Result<()> {
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = name("Shoal local cluster CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate()?;
    let ca_pem = ca_params.self_signed(&ca_key)?.pem();
    let ca = Issuer::new(ca_params, ca_key);

    let tls = dir.join(DIR);
    fs::create_dir_all(&tls).with_context(|| format!("cannot create {}", tls.display()))?;
    fs::write(tls.join(CA_FILE), &ca_pem)?;
    issue(&ca, "shoal client", &[], &tls, "client")?;
    for host in machines {
        let home_tls = dir.join(host).join(DIR);
        fs::create_dir_all(&home_tls)?;
        fs::write(home_tls.join(CA_FILE), &ca_pem)?;
        issue(&ca, host, std::slice::from_ref(host), &home_tls, "node")?;
    }
    Ok(())
}

/// A certificate signed by `ca` for `names` (addresses become IP subject alternative names),
/// written as `<dir>/<stem>.pem` and a private `<stem>.key`.
fn issue(
    ca: &Issuer<'_, KeyPair>,
    common_name: &str,
    names: &[String],
    dir: &Path,
    stem: &str,
) -> anyhow::Result<()> {
    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name = name(common_name);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, ca)?;
    fs::write(dir.join(format!("{stem}.pem")), cert.pem())?;
    write_private(&dir.join(format!("{stem}.key")), &key.serialize_pem())?;
    Ok(())
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

#[cfg(test)]
mod tests {
    use shoal_common::config::TlsFiles;
    use shoal_common::tls::{ClientTls, ServerTls};

    use super::*;

    #[test]
    fn generated_files_load_as_a_node_and_a_client() {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path(), &["127.71.0.1".to_owned()]).unwrap();
        let home = dir.path().join("127.71.0.1");
        let files = TlsFiles {
            config: home.join("agent.cfg"),
            cert: home.join("tls/node.pem"),
            key: home.join("tls/node.key"),
            ca: home.join("tls/ca.pem"),
            mutual: true,
        };
        ServerTls::load(&files).unwrap();
        let (cert, key) = client_identity(dir.path()).unwrap();
        let ca = ca_file(dir.path()).unwrap();
        assert!(
            ClientTls::load(&ca, Some((&cert, &key)))
                .unwrap()
                .identity
                .is_some()
        );
    }
}
