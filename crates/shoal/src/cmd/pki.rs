//! Certificates for a cluster with TLS: a CA, a certificate per machine (its address as the
//! subject alternative name; nodes present it as clients of each other too) and one for
//! clients. `shoal local up --tls` ([`super::local_tls`]) and `shoal cert` ([`super::cert`])
//! both make them here.

use std::fs;
use std::path::Path;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use shoal_common::secret::write_private;

/// A certificate authority that can sign: its certificate (PEM) and signing key.
pub struct Ca {
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// A new self-signed CA named `common_name`, allowed to sign end-entity certificates only.
    pub fn generate(common_name: &str) -> anyhow::Result<Ca> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate()?;
        let cert_pem = params.self_signed(&key)?.pem();
        Ok(Ca {
            cert_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// A CA read back from its certificate and key files (as [`Ca::write`] left them).
    pub fn load(cert_file: &Path, key_file: &Path) -> anyhow::Result<Ca> {
        let cert_pem = fs::read_to_string(cert_file)
            .with_context(|| format!("cannot read {}", cert_file.display()))?;
        let key_pem = fs::read_to_string(key_file)
            .with_context(|| format!("cannot read {}", key_file.display()))?;
        let key = KeyPair::from_pem(&key_pem)
            .with_context(|| format!("{}: not a PEM private key", key_file.display()))?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)
            .with_context(|| format!("{}: not a CA certificate", cert_file.display()))?;
        Ok(Ca { cert_pem, issuer })
    }

    /// Writes the certificate to `cert_file` and the key to the private `key_file`.
    pub fn write(&self, cert_file: &Path, key_file: &Path) -> anyhow::Result<()> {
        fs::write(cert_file, &self.cert_pem)
            .with_context(|| format!("cannot write {}", cert_file.display()))?;
        write_private(key_file, &self.issuer.key().serialize_pem())
            .with_context(|| format!("cannot write {}", key_file.display()))
    }

    /// A certificate signed by this CA for `names` (addresses become IP subject alternative
    /// names, anything else DNS names), written to `cert_file`, and its key to the private
    /// `key_file`.
    pub fn issue(
        &self,
        common_name: &str,
        names: &[String],
        cert_file: &Path,
        key_file: &Path,
    ) -> anyhow::Result<()> {
        let mut params = CertificateParams::new(names.to_vec())?;
        params.distinguished_name = name(common_name);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        fs::write(cert_file, cert.pem())
            .with_context(|| format!("cannot write {}", cert_file.display()))?;
        write_private(key_file, &key.serialize_pem())
            .with_context(|| format!("cannot write {}", key_file.display()))
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}
