//! `cluster.nodes`: the CSV list of every node in the cluster.
//!
//! ```text
//! localSite,mode
//! 10.10.11.1:8920:HActl43,controller
//! 10.10.11.1:8921:agent43,agent
//! 10.10.11.1:8922:node43,datanode
//! ```
//!
//! Blank lines and `#` comment lines are ignored. Validation: the header is
//! `localSite,mode`; each row has exactly two fields; aliases and
//! `host:port` addresses are unique; there is an odd number (1, 3, 5) of
//! controllers; every machine with a controller or data node has exactly one
//! agent, and no machine has more than one.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::site::{NodeMode, Site};
use super::{ConfigError, read_config_file};

/// The expected header line.
pub const HEADER: &str = "localSite,mode";

const COL_SITE: &str = "localSite";
const COL_MODE: &str = "mode";

/// One row of `cluster.nodes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEntry {
    /// The node's `host:port:alias`.
    pub site: Site,
    /// Its mode.
    pub mode: NodeMode,
    /// 1-based line in the file it came from.
    pub line: usize,
}

/// The parsed, validated `cluster.nodes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNodes {
    /// Rows in file order.
    pub nodes: Vec<NodeEntry>,
}

impl ClusterNodes {
    /// Read and validate `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::parse(path, &read_config_file(path)?)
    }

    /// Parse and validate `text`; `file` is used in errors.
    pub fn parse(file: &Path, text: &str) -> Result<Self, ConfigError> {
        let err = |line: usize, message: String| ConfigError::new(file, message).at_line(line);
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));

        let Some((hline, header)) = lines.next() else {
            return Err(ConfigError::new(
                file,
                format!("empty file; expected the header line {HEADER:?}"),
            ));
        };
        let header_fields: Vec<&str> = header.split(',').map(str::trim).collect();
        if header_fields != [COL_SITE, COL_MODE] {
            return Err(err(
                hline,
                format!("expected the header line {HEADER:?}, got {header:?}"),
            ));
        }

        let mut nodes: Vec<NodeEntry> = Vec::new();
        for (line, row) in lines {
            let fields: Vec<&str> = row.split(',').map(str::trim).collect();
            let [site, mode] = fields[..] else {
                return Err(err(
                    line,
                    format!(
                        "expected 2 fields ({HEADER}), got {} in {row:?}",
                        fields.len()
                    ),
                ));
            };
            let site: Site = site
                .parse()
                .map_err(|e| err(line, format!("{e}")).with_key(COL_SITE))?;
            let mode: NodeMode = mode
                .parse()
                .map_err(|e| err(line, format!("{e}")).with_key(COL_MODE))?;
            if let Some(first) = nodes.iter().find(|n| n.site.alias == site.alias) {
                return Err(err(
                    line,
                    format!(
                        "duplicate alias {:?} (first on line {})",
                        site.alias, first.line
                    ),
                )
                .with_key(COL_SITE));
            }
            if let Some(first) = nodes.iter().find(|n| n.site.addr() == site.addr()) {
                return Err(err(
                    line,
                    format!(
                        "duplicate address {} (first on line {}, alias {})",
                        site.addr(),
                        first.line,
                        first.site.alias
                    ),
                )
                .with_key(COL_SITE));
            }
            if mode == NodeMode::Agent
                && let Some(first) = nodes
                    .iter()
                    .find(|n| n.mode == NodeMode::Agent && n.site.host == site.host)
            {
                return Err(err(
                    line,
                    format!(
                        "second agent on machine {} (first is {} on line {}); at most one agent per machine",
                        site.host, first.site.alias, first.line
                    ),
                )
                .with_key(COL_MODE));
            }
            nodes.push(NodeEntry { site, mode, line });
        }

        let cluster = ClusterNodes { nodes };
        cluster.validate(file)?;
        Ok(cluster)
    }

    /// Cluster-wide checks, after every row parsed.
    fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        let err = |message: String| ConfigError::new(file, message).with_key(COL_MODE);
        for host in self.machines() {
            if self.agent_of(&host).is_none()
                && let Some(first) = self.on_machine(&host).next()
            {
                return Err(err(format!(
                    "machine {host} has no agent (every machine with a controller or data node needs exactly one agent; {} is on it)",
                    first.site.alias
                ))
                .at_line(first.line));
            }
        }
        let controllers: Vec<&NodeEntry> = self.controllers().collect();
        match controllers.last() {
            None => Err(err(
                "no controller; at least one row must have mode controller".to_string(),
            )),
            Some(last) if controllers.len().is_multiple_of(2) => Err(err(format!(
                "{} controllers: use an odd number of controllers (1, 3, 5)",
                controllers.len()
            ))
            .at_line(last.line)),
            Some(_) => Ok(()),
        }
    }

    fn with_mode(&self, mode: NodeMode) -> impl Iterator<Item = &NodeEntry> {
        self.nodes.iter().filter(move |n| n.mode == mode)
    }

    /// Controller rows, in file order.
    pub fn controllers(&self) -> impl Iterator<Item = &NodeEntry> {
        self.with_mode(NodeMode::Controller)
    }

    /// Agent rows, in file order.
    pub fn agents(&self) -> impl Iterator<Item = &NodeEntry> {
        self.with_mode(NodeMode::Agent)
    }

    /// Data node rows, in file order.
    pub fn datanodes(&self) -> impl Iterator<Item = &NodeEntry> {
        self.with_mode(NodeMode::DataNode)
    }

    /// The node with this alias.
    pub fn by_alias(&self, alias: &str) -> Option<&NodeEntry> {
        self.nodes.iter().find(|n| n.site.alias == alias)
    }

    /// Distinct hosts, in first-appearance order.
    pub fn machines(&self) -> Vec<String> {
        let mut seen: HashSet<&str> = HashSet::new();
        let mut out = Vec::new();
        for n in &self.nodes {
            if seen.insert(n.site.host.as_str()) {
                out.push(n.site.host.clone());
            }
        }
        out
    }

    /// Every node on `host`, in file order.
    pub fn on_machine<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a NodeEntry> {
        self.nodes.iter().filter(move |n| n.site.host == host)
    }

    /// The agent on `host`.
    pub fn agent_of(&self, host: &str) -> Option<&NodeEntry> {
        self.agents().find(|n| n.site.host == host)
    }

    /// The file text: header plus one row per node. Parsing it gives back
    /// the same nodes (line numbers renumbered if the original had comments
    /// or blank lines).
    pub fn to_text(&self) -> String {
        let mut out = format!("{HEADER}\n");
        for n in &self.nodes {
            out.push_str(&format!("{},{}\n", n.site, n.mode));
        }
        out
    }

    /// One `(localSite, mode)` pair per row, in file order.
    pub fn entries(&self) -> Vec<(String, String)> {
        self.nodes
            .iter()
            .map(|n| (n.site.to_string(), n.mode.to_string()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "localSite,mode
10.10.11.1:8920:HActl43,controller
10.10.11.2:8920:HActl44,controller
10.10.11.3:8920:HActl45,controller
10.10.11.1:8921:agent43,agent
10.10.11.2:8921:agent44,agent
10.10.11.3:8921:agent45,agent
10.10.11.1:8922:node43,datanode
10.10.11.2:8922:node44,datanode
10.10.11.3:8922:node45,datanode
";

    fn parse(text: &str) -> Result<ClusterNodes, ConfigError> {
        ClusterNodes::parse(Path::new("cluster.nodes"), text)
    }

    fn parse_err(text: &str) -> String {
        parse(text).expect_err("should fail").to_string()
    }

    #[test]
    fn seed_file_parses() {
        let c = parse(SEED).expect("seed");
        assert_eq!(c.nodes.len(), 9);
        assert_eq!(c.controllers().count(), 3);
        assert_eq!(c.agents().count(), 3);
        assert_eq!(c.datanodes().count(), 3);
        assert_eq!(c.machines(), ["10.10.11.1", "10.10.11.2", "10.10.11.3"]);
        assert_eq!(
            c.agent_of("10.10.11.2").map(|n| n.site.alias.as_str()),
            Some("agent44")
        );
        assert!(c.agent_of("10.10.11.9").is_none());
        let n44 = c.by_alias("node44").expect("node44");
        assert_eq!(n44.site.addr(), "10.10.11.2:8922");
        assert_eq!(n44.mode, NodeMode::DataNode);
        assert_eq!(n44.line, 9);
        let on2: Vec<&str> = c
            .on_machine("10.10.11.2")
            .map(|n| n.site.alias.as_str())
            .collect();
        assert_eq!(on2, ["HActl44", "agent44", "node44"]);
        assert_eq!(c.to_text(), SEED);
        assert_eq!(parse(&c.to_text()).expect("round trip"), c);
        assert_eq!(
            c.entries()[0],
            (
                "10.10.11.1:8920:HActl43".to_string(),
                "controller".to_string()
            )
        );
    }

    #[test]
    fn comments_blank_lines_and_spaces_are_ok() {
        let c = parse("# cluster\n\n localSite , mode \nh:1:c1, Controller\n\nh:2:a1 ,agent\n")
            .expect("parse");
        assert_eq!(c.nodes.len(), 2);
        assert_eq!(c.nodes[1].line, 6);
    }

    #[test]
    fn unknown_mode() {
        let e = parse_err("localSite,mode\nh:1:c1,controller\nh:2:a1,agent\nh:3:n1,computenode\n");
        assert!(
            e.starts_with("cluster.nodes:4: mode: unknown node mode \"computenode\""),
            "{e}"
        );
        assert!(e.contains("controller, agent, datanode"), "{e}");
    }

    #[test]
    fn duplicate_alias_names_both_lines() {
        let e = parse_err("localSite,mode\nh:1:c1,controller\nh:2:a1,agent\ng:3:c1,datanode\n");
        assert_eq!(
            e,
            "cluster.nodes:4: localSite: duplicate alias \"c1\" (first on line 2)"
        );
    }

    #[test]
    fn duplicate_address() {
        let e = parse_err("localSite,mode\nh:1:c1,controller\nh:2:a1,agent\nh:1:n1,datanode\n");
        assert_eq!(
            e,
            "cluster.nodes:4: localSite: duplicate address h:1 (first on line 2, alias c1)"
        );
    }

    #[test]
    fn missing_or_wrong_header() {
        let e = parse_err("h:1:c1,controller\nh:2:a1,agent\n");
        assert_eq!(
            e,
            "cluster.nodes:1: expected the header line \"localSite,mode\", got \"h:1:c1,controller\""
        );
        let e = parse_err("\n# nothing\n");
        assert!(e.starts_with("cluster.nodes: empty file"), "{e}");
    }

    #[test]
    fn wrong_field_count_and_bad_site() {
        let e = parse_err("localSite,mode\nh:1:c1,controller,extra\n");
        assert!(e.starts_with("cluster.nodes:2: expected 2 fields"), "{e}");
        let e = parse_err("localSite,mode\nh:1,controller\n");
        assert!(
            e.starts_with("cluster.nodes:2: localSite: expected a site"),
            "{e}"
        );
    }

    #[test]
    fn machine_without_agent() {
        let e = parse_err(
            "localSite,mode\nh:1:c1,controller\nh:2:a1,agent\ng:3:n1,datanode\ng:4:n2,datanode\n",
        );
        assert!(
            e.starts_with("cluster.nodes:4: mode: machine g has no agent"),
            "{e}"
        );
        assert!(e.contains("n1"), "{e}");
    }

    #[test]
    fn two_agents_on_one_machine() {
        let e = parse_err("localSite,mode\nh:1:c1,controller\nh:2:a1,agent\nh:3:a2,agent\n");
        assert!(
            e.starts_with(
                "cluster.nodes:4: mode: second agent on machine h (first is a1 on line 3)"
            ),
            "{e}"
        );
    }

    #[test]
    fn controller_count() {
        let e = parse_err("localSite,mode\nh:1:c1,controller\nh:2:c2,controller\nh:3:a1,agent\n");
        assert_eq!(
            e,
            "cluster.nodes:3: mode: 2 controllers: use an odd number of controllers (1, 3, 5)"
        );
        let e = parse_err("localSite,mode\nh:3:a1,agent\ng:1:a2,agent\n");
        assert_eq!(
            e,
            "cluster.nodes: mode: no controller; at least one row must have mode controller"
        );
        let c = parse("localSite,mode\nh:1:c1,controller\nh:3:a1,agent\n").expect("one");
        assert_eq!(c.controllers().count(), 1);
    }
}
