//! The cluster secret: a shared token every node and operator tool presents on every call
//! (`authorization: Bearer <secret>`), and the key that signs users' tokens. There is no
//! built-in default: a node without a secret refuses to start.
//!
//! The file may hold several secrets, one per line ([`Keys`]): the first is sent and signs,
//! every one is accepted. That is how the secret is rotated with nobody logged out: add the new
//! secret as a second line on every machine (restarting each machine's nodes), then make it the
//! first (restarting again), then, once the tokens signed by the old one have expired
//! ([`crate::users::TOKEN_TTL`]), remove the old one. The previous release reads one line only:
//! rotate once every node runs this one.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// File name of the secret, beside `cluster.nodes`.
pub const SECRET_FILE: &str = "cluster.secret";

/// Environment variable that may carry the secret instead of a file.
pub const SECRET_ENV: &str = "SHOAL_CLUSTER_SECRET";

/// Shorter secrets are refused: they can be guessed.
pub const MIN_SECRET_LEN: usize = 16;

/// The cluster's secrets: the first is sent to other nodes and signs tokens; all are accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    keys: Vec<String>,
}

impl Keys {
    /// One secret (already checked).
    pub fn single(secret: String) -> Self {
        Self { keys: vec![secret] }
    }

    /// The secrets of a file's text: one per line, blank lines and `#` comments skipped.
    pub fn parse(text: &str, origin: &str) -> Result<Self, SecretError> {
        let keys = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i, l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
            .map(|(i, l)| validate(l.to_owned(), &format!("{origin} line {}", i + 1)))
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(SecretError::TooShort {
                origin: origin.to_owned(),
                len: 0,
            });
        }
        Ok(Self { keys })
    }

    /// What this node sends and signs with.
    pub fn signing(&self) -> &str {
        &self.keys[0]
    }

    pub fn all(&self) -> &[String] {
        &self.keys
    }

    /// The secret whose [`key_id`] is `id`.
    pub fn by_id(&self, id: &str) -> Option<&str> {
        self.keys
            .iter()
            .find(|k| key_id(k) == id)
            .map(String::as_str)
    }

    /// The file's text (one secret per line).
    pub fn file_text(&self) -> String {
        self.keys.join("\n")
    }
}

/// A short public name of a secret (the first 8 hex digits of its SHA-256): tokens carry it so
/// a node knows which of its secrets signed one.
pub fn key_id(secret: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(secret.as_bytes())
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read cluster secret {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cluster secret {origin} is {len} characters; at least {MIN_SECRET_LEN} are required")]
    TooShort { origin: String, len: usize },
    #[error("cluster secret {origin} must be printable ASCII without spaces")]
    NotPrintable { origin: String },
    #[error("cannot write cluster secret {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// Reads the secrets from `path`.
pub fn load(path: &Path) -> Result<Keys, SecretError> {
    let text = fs::read_to_string(path).map_err(|source| SecretError::Read {
        path: path.to_owned(),
        source,
    })?;
    Keys::parse(&text, &path.display().to_string())
}

/// The secret in `$SHOAL_CLUSTER_SECRET`, if that is set.
pub fn from_env() -> Option<Result<Keys, SecretError>> {
    let s = std::env::var(SECRET_ENV).ok()?;
    Some(validate(s.trim().to_owned(), SECRET_ENV).map(Keys::single))
}

/// The secrets in `path` if that file exists, else `$SHOAL_CLUSTER_SECRET`: an explicit file
/// always wins over the environment.
pub fn load_file_or_env(path: &Path) -> Result<Keys, SecretError> {
    match (path.exists(), from_env()) {
        (false, Some(env)) => env,
        _ => load(path),
    }
}

fn validate(secret: String, origin: &str) -> Result<String, SecretError> {
    if secret.len() < MIN_SECRET_LEN {
        return Err(SecretError::TooShort {
            origin: origin.to_owned(),
            len: secret.len(),
        });
    }
    if !secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(SecretError::NotPrintable {
            origin: origin.to_owned(),
        });
    }
    Ok(secret)
}

/// Writes a fresh random secret (32 hex characters from the OS) readable by the owner only.
pub fn generate(path: &Path) -> Result<String, SecretError> {
    let write_err = |source| SecretError::Write {
        path: path.to_owned(),
        source,
    };
    let mut bytes = [0u8; 16];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(write_err)?;
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_private(path, &secret).map_err(write_err)?;
    Ok(secret)
}

/// Writes `text` (plus a newline) to a file only its owner can read (mode 0600).
#[cfg(unix)]
pub fn write_private(path: &Path, secret: &str) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(secret.as_bytes())?;
    f.write_all(b"\n")?;
    // On disk before the caller renames it into place or reports it written.
    f.sync_all()
}

/// Replaces `path` with `text` (mode 0600) so that a crash leaves the old file or the new one,
/// whole: written to `path.tmp` and synced, renamed over `path`, the directory synced.
pub fn replace_private(path: &Path, text: &str) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    write_private(&tmp, text)?;
    fs::rename(&tmp, path)?;
    match path.parent() {
        Some(dir) => fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secret_loads_back_and_short_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SECRET_FILE);
        let s = generate(&path).unwrap();
        assert_eq!(s.len(), 32);
        assert_eq!(load(&path).unwrap(), Keys::single(s.clone()));

        fs::write(&path, "short\n").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("at least 16"), "{err}");

        let err = load(&dir.path().join("missing")).unwrap_err().to_string();
        assert!(err.contains("missing"), "{err}");
    }

    #[test]
    fn a_file_of_several_secrets_signs_with_the_first_and_names_a_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SECRET_FILE);
        fs::write(
            &path,
            "# rotating\nnew-secret-0123456789\n\nold-secret-0123456789\n",
        )
        .unwrap();
        let keys = load(&path).unwrap();
        assert_eq!(keys.signing(), "new-secret-0123456789");
        assert_eq!(keys.all().len(), 2);
        assert_eq!(
            keys.by_id(&key_id("old-secret-0123456789")),
            Some("old-secret-0123456789")
        );
        assert_eq!(key_id("old-secret-0123456789").len(), 8);
        assert_eq!(keys.by_id("00000000"), None);

        fs::write(&path, "new-secret-0123456789\nshort\n").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("line 2 is 5 characters"), "{err}");
        fs::write(&path, "\n# nothing\n").unwrap();
        assert!(load(&path).is_err());
    }
}
