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
use std::path::Path;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use shoal_common::secret::write_private;
use shoal_common::tls::{LOCAL_CA, LOCAL_CLIENT_CERT, LOCAL_CLIENT_KEY, LOCAL_DIR};

/// TLS for a new local cluster.
#[derive(Clone, Copy, Debug)]
pub struct LocalTls {
    /// `sslMutualAuth=1`: every connection presents a certificate of the cluster's CA.
    pub mutual: bool,
}

/// The TLS keys of every machine's files (paths relative to the machine's home); nothing
/// without TLS, so a plaintext cluster's files stay readable by releases without TLS.
pub fn config_lines(tls: Option<LocalTls>) -> String {
    match tls {
        None => String::new(),
        Some(t) => format!(
            "enableSSL=1\nsslCertFile={LOCAL_DIR}/node.pem\nsslKeyFile={LOCAL_DIR}/node.key\nsslCAFile={LOCAL_DIR}/{LOCAL_CA}\nsslMutualAuth={}\n",
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

    let tls = dir.join(LOCAL_DIR);
    fs::create_dir_all(&tls).with_context(|| format!("cannot create {}", tls.display()))?;
    fs::write(tls.join(LOCAL_CA), &ca_pem)?;
    issue(
        &ca,
        "shoal client",
        &[],
        &tls.join(LOCAL_CLIENT_CERT),
        &tls.join(LOCAL_CLIENT_KEY),
    )?;
    for host in machines {
        let home_tls = dir.join(host).join(LOCAL_DIR);
        fs::create_dir_all(&home_tls)?;
        fs::write(home_tls.join(LOCAL_CA), &ca_pem)?;
        let (cert, key) = (home_tls.join("node.pem"), home_tls.join("node.key"));
        issue(&ca, host, std::slice::from_ref(host), &cert, &key)?;
    }
    Ok(())
}

/// A certificate signed by `ca` for `names` (addresses become IP subject alternative names),
/// written to `cert_file`, and its key to the private `key_file`.
fn issue(
    ca: &Issuer<'_, KeyPair>,
    common_name: &str,
    names: &[String],
    cert_file: &Path,
    key_file: &Path,
) -> anyhow::Result<()> {
    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name = name(common_name);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, ca)?;
    fs::write(cert_file, cert.pem())?;
    write_private(key_file, &key.serialize_pem())?;
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
        let client = ClientTls::of_local_cluster(dir.path()).unwrap().unwrap();
        assert!(client.identity.is_some());
    }
}
