//! Shoal's configuration files, in DolphinDB's formats.
//!
//! | file            | format        | type                |
//! |-----------------|---------------|---------------------|
//! | `controller.cfg`| `key=value`   | [`ControllerConfig`]|
//! | `cluster.nodes` | CSV           | [`ClusterNodes`]    |
//! | `cluster.cfg`   | `key=value`   | [`ClusterCfg`] → [`DataNodeConfig`] |
//! | `agent.cfg`     | `key=value`   | [`AgentConfig`]     |
//!
//! The three `key=value` files share the TLS keys of [`tls`].
//!
//! Every loader returns `Result<_, ConfigError>`: a file is either loaded
//! completely and validated, or not at all. Errors name the file, the line
//! and the key, e.g.
//! `controller.cfg:7: dfsReplicationFactor: expected a positive integer, got "two"`.

pub mod agent;
pub mod cluster_cfg;
pub mod cluster_nodes;
pub mod controller;
pub mod kv;
pub mod site;
pub mod tls;

use std::path::{Path, PathBuf};

pub use agent::AgentConfig;
pub use cluster_cfg::{ClusterCfg, DataNodeConfig};
pub use cluster_nodes::{ClusterNodes, NodeEntry};
pub use controller::{ControllerConfig, ReliabilityLevel};
pub use kv::{Entry, Key, KvFile, ValueError};
pub use site::{NodeMode, Site};
pub use tls::TlsFiles;

/// An error in a configuration file.
///
/// Displays as `<file>:<line>: <key>: <message>`; the line and key parts are
/// omitted when unknown (e.g. a missing required key has no line, an
/// unreadable file has neither).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigError {
    /// The file, as the caller named it.
    pub file: PathBuf,
    /// 1-based line number, when the error is tied to a line.
    pub line: Option<usize>,
    /// The offending key (or CSV column), when there is one.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// An error about `file` as a whole.
    pub fn new(file: &Path, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            line: None,
            key: None,
            message: message.into(),
        }
    }

    /// Attach a line number.
    #[must_use]
    pub fn at_line(mut self, line: usize) -> Self {
        self.line = Some(line);
        self
    }

    /// Attach a line number, if there is one.
    #[must_use]
    pub fn at(mut self, line: Option<usize>) -> Self {
        self.line = line;
        self
    }

    /// Attach the key (or CSV column) the error is about.
    #[must_use]
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    fn render(&self) -> String {
        let mut out = self.file.display().to_string();
        if let Some(line) = self.line {
            out.push_str(&format!(":{line}"));
        }
        if let Some(key) = &self.key {
            out.push_str(&format!(": {key}"));
        }
        out.push_str(&format!(": {}", self.message));
        out
    }
}

/// Read a whole configuration file; an I/O failure becomes a [`ConfigError`]
/// naming the file.
pub fn read_config_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(path, format!("cannot read file: {e}")))
}

/// The directory relative paths in `file` are resolved against: the file's
/// own directory (empty, i.e. the current directory, for a bare file name).
pub(crate) fn config_dir(file: &Path) -> PathBuf {
    file.parent().map(Path::to_path_buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_omits_missing_parts() {
        let e = ConfigError::new(Path::new("controller.cfg"), "boom");
        assert_eq!(e.to_string(), "controller.cfg: boom");
        let e = e.with_key("workerNum");
        assert_eq!(e.to_string(), "controller.cfg: workerNum: boom");
        let e = e.at_line(7);
        assert_eq!(e.to_string(), "controller.cfg:7: workerNum: boom");
        let e = ConfigError::new(Path::new("cluster.nodes"), "bad header").at_line(1);
        assert_eq!(e.to_string(), "cluster.nodes:1: bad header");
    }

    #[test]
    fn missing_file_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nope.cfg");
        let e = read_config_file(&path).expect_err("missing file");
        assert_eq!(e.file, path);
        assert!(e.to_string().contains("nope.cfg"), "{e}");
        assert!(e.message.contains("cannot read"), "{e}");
    }
}
