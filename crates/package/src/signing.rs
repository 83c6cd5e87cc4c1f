//! Ed25519 release-signing keys, stored as hex text files: the secret seed in `<path>`
//! (mode 0600) and the public key in `<path>.pub`, which is what nodes are configured with.

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{SECRET_KEY_LENGTH, Signature, Signer, SigningKey, VerifyingKey};
use rand::TryRngCore;
use rand::rngs::OsRng;

use crate::error::PackageError;

/// `<path>.pub`: where [`generate_key`] puts the public half.
pub(crate) fn public_key_path(path: &Path) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(".pub");
    PathBuf::from(name)
}

/// Creates a new signing key at `path` and its public key at `<path>.pub`. Refuses to
/// overwrite either file: replacing a release key silently would make every node that
/// trusts the old one refuse the next release.
pub fn generate_key(path: &Path) -> Result<VerifyingKey, PackageError> {
    let pub_path = public_key_path(path);
    for p in [path, pub_path.as_path()] {
        if p.symlink_metadata().is_ok() {
            return Err(PackageError::KeyExists { path: p.to_owned() });
        }
    }
    let mut seed = [0u8; SECRET_KEY_LENGTH];
    OsRng
        .try_fill_bytes(&mut seed)
        .map_err(|e| PackageError::Random {
            detail: e.to_string(),
        })?;
    let key = SigningKey::from_bytes(&seed);
    seed.fill(0);

    write_new(path, 0o600, &hex::encode(key.to_bytes()))?;
    let public = key.verifying_key();
    if let Err(e) = write_new(&pub_path, 0o644, &hex::encode(public.to_bytes())) {
        // Half a key pair is worse than none: the next attempt would refuse to overwrite.
        let _ = fs::remove_file(path);
        return Err(e);
    }
    Ok(public)
}

/// Writes `text` to a file that must not exist yet, with exactly `mode`, and syncs it.
fn write_new(path: &Path, mode: u32, text: &str) -> Result<(), PackageError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source| {
            if source.kind() == io::ErrorKind::AlreadyExists {
                PackageError::KeyExists {
                    path: path.to_owned(),
                }
            } else {
                PackageError::Io {
                    action: "cannot create",
                    path: path.to_owned(),
                    source,
                }
            }
        })?;
    // The umask may have cleared bits from `mode`; the public key should stay readable.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .and_then(|()| writeln!(file, "{text}"))
        .and_then(|()| file.sync_all())
        .map_err(PackageError::io("cannot write", path))
}

/// Loads the secret key written by [`generate_key`].
pub fn load_signing_key(path: &Path) -> Result<SigningKey, PackageError> {
    let bytes: [u8; SECRET_KEY_LENGTH] = read_hex_key(path)?;
    Ok(SigningKey::from_bytes(&bytes))
}

/// Loads a public key (`<path>.pub` of [`generate_key`]) that packages must be signed with.
pub fn load_verifying_key(path: &Path) -> Result<VerifyingKey, PackageError> {
    let bytes = read_hex_key(path)?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| PackageError::BadKey {
        path: path.to_owned(),
        problem: format!("not a valid Ed25519 public key: {e}"),
    })
}

fn read_hex_key(path: &Path) -> Result<[u8; 32], PackageError> {
    let text = fs::read_to_string(path).map_err(PackageError::io("cannot read key file", path))?;
    let text = text.trim();
    let mut bytes = [0u8; 32];
    if text.len() != bytes.len() * 2 {
        return Err(PackageError::BadKey {
            path: path.to_owned(),
            problem: format!(
                "expected {} hex characters, found {}",
                bytes.len() * 2,
                text.len()
            ),
        });
    }
    hex::decode_to_slice(text, &mut bytes).map_err(|e| PackageError::BadKey {
        path: path.to_owned(),
        problem: format!("not hex: {e}"),
    })?;
    Ok(bytes)
}

/// The text stored as `manifest.sig`.
pub(crate) fn sign_manifest(key: &SigningKey, manifest: &[u8]) -> String {
    hex::encode(key.sign(manifest).to_bytes())
}

/// Parses `manifest.sig` of the package at `path`.
pub(crate) fn parse_signature(path: &Path, text: &[u8]) -> Result<Signature, PackageError> {
    let malformed = |detail: String| PackageError::MalformedSignature {
        path: path.to_owned(),
        detail,
    };
    let text = std::str::from_utf8(text)
        .map_err(|_| malformed("not text".to_owned()))?
        .trim();
    let mut bytes = [0u8; 64];
    hex::decode_to_slice(text, &mut bytes)
        .map_err(|e| malformed(format!("expected {} hex characters ({e})", bytes.len() * 2)))?;
    Ok(Signature::from_bytes(&bytes))
}

/// Checks `signature` over the exact manifest bytes. Strict verification rejects the
/// malleable encodings plain Ed25519 tolerates.
pub(crate) fn check_signature(
    path: &Path,
    trusted: &VerifyingKey,
    manifest: &[u8],
    signature: Option<&Signature>,
) -> Result<(), PackageError> {
    let signature = signature.ok_or_else(|| PackageError::NotSigned {
        path: path.to_owned(),
    })?;
    trusted
        .verify_strict(manifest, signature)
        .map_err(|_| PackageError::BadSignature {
            path: path.to_owned(),
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn generate_load_and_refuse_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("release.key");
        let public = generate_key(&path).unwrap();

        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let secret = load_signing_key(&path).unwrap();
        assert_eq!(secret.verifying_key(), public);
        assert_eq!(load_verifying_key(&public_key_path(&path)).unwrap(), public);

        let before = fs::read(&path).unwrap();
        let err = generate_key(&path).unwrap_err().to_string();
        assert!(
            err.contains("already exists") && err.contains("release.key"),
            "{err}"
        );
        assert_eq!(fs::read(&path).unwrap(), before, "existing key left alone");

        // A stray public key also blocks generation: it would be overwritten.
        let other = dir.path().join("other.key");
        fs::write(public_key_path(&other), "x").unwrap();
        let err = generate_key(&other).unwrap_err().to_string();
        assert!(err.contains("other.key.pub"), "{err}");
        assert!(!other.exists());
    }

    #[test]
    fn bad_key_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short.pub");
        fs::write(&short, "abcd\n").unwrap();
        let err = load_verifying_key(&short).unwrap_err().to_string();
        assert!(
            err.contains("short.pub") && err.contains("64 hex characters"),
            "{err}"
        );

        let not_hex = dir.path().join("nothex.key");
        fs::write(&not_hex, "zz".repeat(32)).unwrap();
        let err = load_signing_key(&not_hex).unwrap_err().to_string();
        assert!(
            err.contains("nothex.key") && err.contains("not hex"),
            "{err}"
        );

        let missing = dir.path().join("missing.key");
        let err = load_signing_key(&missing).unwrap_err().to_string();
        assert!(err.contains("missing.key"), "{err}");
    }
}
