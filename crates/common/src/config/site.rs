//! Node addresses (`host:port:alias`, DolphinDB's "site") and node modes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::kv::ValueError;

/// A node's address and alias, written `host:port:alias`
/// (e.g. `10.10.11.2:8920:HActl44`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Site {
    /// Host name or IPv4 address.
    pub host: String,
    /// TCP port, 1..=65535.
    pub port: u16,
    /// Node alias: `[A-Za-z][A-Za-z0-9_]*`, unique in the cluster.
    pub alias: String,
}

impl Site {
    /// A site from its parts (not validated; use `parse` for untrusted text).
    pub fn new(host: impl Into<String>, port: u16, alias: impl Into<String>) -> Self {
        Site {
            host: host.into(),
            port,
            alias: alias.into(),
        }
    }

    /// `host:port`, the address to connect to.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.host, self.port, self.alias)
    }
}

impl FromStr for Site {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, ValueError> {
        let s = s.trim();
        let parts: Vec<&str> = s.split(':').collect();
        let [host, port, alias] = parts[..] else {
            return Err(ValueError(format!(
                "expected a site \"host:port:alias\", got {s:?}"
            )));
        };
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == ',') {
            return Err(ValueError(format!("invalid host {host:?} in site {s:?}")));
        }
        let port: u16 = match port.parse() {
            Ok(p) if p != 0 => p,
            _ => {
                return Err(ValueError(format!(
                    "invalid port {port:?} in site {s:?}: expected 1 to 65535"
                )));
            }
        };
        validate_alias(alias).map_err(|e| ValueError(format!("{e} in site {s:?}")))?;
        Ok(Site::new(host, port, alias))
    }
}

/// Check an alias is `[A-Za-z][A-Za-z0-9_]*`.
pub fn validate_alias(alias: &str) -> Result<(), ValueError> {
    let mut chars = alias.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ValueError(format!(
            "invalid alias {alias:?}: must start with a letter and contain only letters, digits and '_'"
        )))
    }
}

/// What a node is: `controller`, `agent` or `datanode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
// Serialized as in cluster.nodes; it is stored in Raft commands, so the spelling is fixed.
#[serde(rename_all = "lowercase")]
pub enum NodeMode {
    // The aliases read metadata written before the spelling was fixed to lowercase.
    /// Cluster metadata (Raft group member).
    #[serde(alias = "Controller")]
    Controller,
    /// Per-machine process supervisor.
    #[serde(alias = "Agent")]
    Agent,
    /// Stores chunks and runs queries.
    #[serde(alias = "DataNode")]
    DataNode,
}

impl NodeMode {
    /// Every mode, in the order they are listed in errors.
    pub const ALL: [NodeMode; 3] = [NodeMode::Controller, NodeMode::Agent, NodeMode::DataNode];

    /// The lowercase word used in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeMode::Controller => "controller",
            NodeMode::Agent => "agent",
            NodeMode::DataNode => "datanode",
        }
    }
}

impl fmt::Display for NodeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NodeMode {
    type Err = ValueError;

    /// Case-insensitive; anything else is an error listing the valid modes.
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let s = s.trim();
        NodeMode::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                ValueError(format!(
                    "unknown node mode {s:?}; valid modes are controller, agent, datanode"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_round_trips() {
        let s: Site = "10.10.11.2:8920:HActl44".parse().expect("site");
        assert_eq!(s, Site::new("10.10.11.2", 8920, "HActl44"));
        assert_eq!(s.addr(), "10.10.11.2:8920");
        assert_eq!(s.to_string(), "10.10.11.2:8920:HActl44");
        let s: Site = " localhost:1:a_1 ".parse().expect("site");
        assert_eq!(s.alias, "a_1");
    }

    #[test]
    fn site_errors_are_clear() {
        let err = |s: &str| s.parse::<Site>().expect_err(s).to_string();
        assert!(err("10.10.11.2:8920").contains("expected a site \"host:port:alias\""));
        assert!(err("a:b:c:d").contains("expected a site"));
        assert!(err(":8920:x").contains("invalid host"));
        assert!(err("h:http:x").contains("invalid port \"http\""));
        assert!(err("h:0:x").contains("invalid port"));
        assert!(err("h:70000:x").contains("invalid port"));
        assert!(err("h:1:9lives").contains("invalid alias \"9lives\""));
        assert!(err("h:1:a-b").contains("invalid alias"));
        assert!(err("h:1:").contains("invalid alias"));
    }

    #[test]
    fn modes_parse_case_insensitively() {
        assert_eq!("DataNode".parse::<NodeMode>(), Ok(NodeMode::DataNode));
        assert_eq!("controller".parse::<NodeMode>(), Ok(NodeMode::Controller));
        assert_eq!("AGENT".parse::<NodeMode>(), Ok(NodeMode::Agent));
        assert_eq!(NodeMode::DataNode.to_string(), "datanode");
        for bad in ["computenode", "datnode", ""] {
            let e = bad.parse::<NodeMode>().expect_err(bad).to_string();
            assert!(e.contains("controller, agent, datanode"), "{e}");
        }
    }
}
