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
use shoal_common::tls::{
    LOCAL_CA, LOCAL_CLIENT_CERT, LOCAL_CLIENT_KEY, LOCAL_DIR, NODE_CERT, NODE_KEY,
};

use crate::cmd::pki::Ca;

/// Makes the CA, the client's certificate and one certificate per machine in `machines`
/// (each named by its address), written as the module docs lay out.
pub fn generate(dir: &Path, machines: &[String]) -> anyhow::Result<()> {
    let ca = Ca::generate("Shoal local cluster CA")?;
    let tls = dir.join(LOCAL_DIR);
    fs::create_dir_all(&tls).with_context(|| format!("cannot create {}", tls.display()))?;
    fs::write(tls.join(LOCAL_CA), &ca.cert_pem)?;
    ca.issue(
        "shoal client",
        &[],
        &tls.join(LOCAL_CLIENT_CERT),
        &tls.join(LOCAL_CLIENT_KEY),
    )?;
    for host in machines {
        let home_tls = dir.join(host).join(LOCAL_DIR);
        fs::create_dir_all(&home_tls)?;
        fs::write(home_tls.join(LOCAL_CA), &ca.cert_pem)?;
        let (cert, key) = (home_tls.join(NODE_CERT), home_tls.join(NODE_KEY));
        ca.issue(host, std::slice::from_ref(host), &cert, &key)?;
    }
    Ok(())
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
