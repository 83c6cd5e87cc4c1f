//! The cluster secret: a shared token every node and operator tool presents on every call
//! (`authorization: Bearer <secret>`). There is no built-in default: a node without a secret
//! refuses to start.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// File name of the secret, beside `cluster.nodes`.
pub const SECRET_FILE: &str = "cluster.secret";

/// Environment variable that may carry the secret instead of a file.
pub const SECRET_ENV: &str = "SHOAL_CLUSTER_SECRET";

/// Shorter secrets are refused: they can be guessed.
pub const MIN_SECRET_LEN: usize = 16;

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

/// Reads the secret from `path`.
pub fn load(path: &Path) -> Result<String, SecretError> {
    let text = fs::read_to_string(path).map_err(|source| SecretError::Read {
        path: path.to_owned(),
        source,
    })?;
    validate(text.trim().to_owned(), &path.display().to_string())
}

/// The secret in `$SHOAL_CLUSTER_SECRET`, if that is set.
pub fn from_env() -> Option<Result<String, SecretError>> {
    let s = std::env::var(SECRET_ENV).ok()?;
    Some(validate(s.trim().to_owned(), SECRET_ENV))
}

/// The secret in `path` if that file exists, else `$SHOAL_CLUSTER_SECRET`: an explicit file
/// always wins over the environment.
pub fn load_file_or_env(path: &Path) -> Result<String, SecretError> {
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
    f.write_all(b"\n")
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
        assert_eq!(load(&path).unwrap(), s);

        fs::write(&path, "short\n").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("at least 16"), "{err}");

        let err = load(&dir.path().join("missing")).unwrap_err().to_string();
        assert!(err.contains("missing"), "{err}");
    }
}
