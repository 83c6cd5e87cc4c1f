//! `shoal cert`: certificates for a cluster on real hosts (CockroachDB's `cockroach cert` does
//! the same). The CA's key stays with the operator; each machine gets a certificate naming its
//! address, laid out as `shoal host init --tls-dir` reads it.
//!
//! ```text
//! CA_DIR/ca.pem, CA_DIR/ca.key (0600)           create-ca
//! OUT/ca.pem, OUT/node.pem, OUT/node.key       create-node --host ADDRESS
//! OUT/ca.pem, OUT/client.pem, OUT/client.key   create-client
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use shoal_common::tls::{LOCAL_CA, LOCAL_CLIENT_CERT, LOCAL_CLIENT_KEY, NODE_CERT, NODE_KEY};

use crate::cli::{CertCaArgs, CertClientArgs, CertNodeArgs};
use crate::cmd::pki::Ca;

const CA_KEY: &str = "ca.key";

pub fn create_ca(args: CertCaArgs) -> anyhow::Result<()> {
    let [cert, key] = new_files(&args.ca_dir, [LOCAL_CA, CA_KEY])?;
    Ca::generate("Shoal cluster CA")?.write(&cert, &key)?;
    println!(
        "CA certificate {}, its key {} (keep the key off the cluster's machines)",
        cert.display(),
        key.display()
    );
    Ok(())
}

pub fn create_node(args: CertNodeArgs) -> anyhow::Result<()> {
    if let Some(bad) = args
        .hosts
        .iter()
        .find(|h| h.trim().is_empty() || h.contains('/'))
    {
        bail!("--host {bad:?}: not an address or a host name");
    }
    let ca = load_ca(&args.ca_dir)?;
    let [ca_copy, cert, key] = new_files(&args.out, [LOCAL_CA, NODE_CERT, NODE_KEY])?;
    std::fs::write(&ca_copy, &ca.cert_pem)?;
    ca.issue(&args.hosts[0], &args.hosts, &cert, &key)?;
    println!(
        "certificate for {} in {} (give it to `shoal host init --tls-dir`)",
        args.hosts.join(", "),
        args.out.display()
    );
    Ok(())
}

pub fn create_client(args: CertClientArgs) -> anyhow::Result<()> {
    let ca = load_ca(&args.ca_dir)?;
    let [ca_copy, cert, key] =
        new_files(&args.out, [LOCAL_CA, LOCAL_CLIENT_CERT, LOCAL_CLIENT_KEY])?;
    std::fs::write(&ca_copy, &ca.cert_pem)?;
    ca.issue("shoal client", &[], &cert, &key)?;
    println!(
        "client certificate in {} (--tls-ca {}, --tls-cert {}, --tls-key {})",
        args.out.display(),
        ca_copy.display(),
        cert.display(),
        key.display()
    );
    Ok(())
}

fn load_ca(dir: &Path) -> anyhow::Result<Ca> {
    Ca::load(&dir.join(LOCAL_CA), &dir.join(CA_KEY)).with_context(|| {
        format!(
            "--ca-dir {}: no CA made by `shoal cert create-ca`",
            dir.display()
        )
    })
}

/// The paths of `names` in `dir` (created if missing), none of which may exist: a certificate
/// or key is never overwritten.
fn new_files<const N: usize>(dir: &Path, names: [&str; N]) -> anyhow::Result<[PathBuf; N]> {
    let paths = names.map(|n| dir.join(n));
    if let Some(found) = paths.iter().find(|p| p.symlink_metadata().is_ok()) {
        bail!("{} exists already: not overwritten", found.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(paths)
}
