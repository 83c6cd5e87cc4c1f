//! Network faults as nftables rules inside a machine's (or the client's) namespace: packets
//! arriving there are dropped silently, so connections time out rather than fail, as in a real
//! partition. Each namespace gets one table, replaced whole when its rules change, deleted to
//! heal.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use shoal_netns::Topology;

const TABLE: &str = "inet shoalchaos";

/// Drop arriving packets matching every given field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Block {
    pub from: Option<String>,
    /// To this local TCP port (a request to a server here).
    pub dport: Option<u16>,
    /// From this remote TCP port (an answer from a server there).
    pub sport: Option<u16>,
    /// Only this percentage of them, at random.
    pub percent: Option<u8>,
}

impl Block {
    pub fn from(addr: &str) -> Self {
        Self {
            from: Some(addr.to_owned()),
            ..Self::default()
        }
    }

    fn rule(&self) -> String {
        let mut r = String::new();
        if let Some(a) = &self.from {
            r.push_str(&format!("ip saddr {a} "));
        }
        if let Some(p) = self.dport {
            r.push_str(&format!("tcp dport {p} "));
        }
        if let Some(p) = self.sport {
            r.push_str(&format!("tcp sport {p} "));
        }
        if let Some(n) = self.percent {
            r.push_str(&format!("numgen random mod 100 < {n} "));
        }
        r.push_str("drop");
        r
    }
}

/// The nft script giving a namespace exactly `blocks` (none: only removes the table). Adding
/// the table first makes the delete succeed when there is none.
pub fn script(blocks: &[Block]) -> String {
    let mut s = format!("table {TABLE} {{}}\ndelete table {TABLE}\n");
    if blocks.is_empty() {
        return s;
    }
    s.push_str(&format!(
        "table {TABLE} {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n"
    ));
    for d in blocks {
        s.push_str(&format!("    {}\n", d.rule()));
    }
    s.push_str("  }\n}\n");
    s
}

/// Replaces namespace `ns`'s rules with `blocks`.
pub fn apply(ns: &str, blocks: &[Block]) -> anyhow::Result<()> {
    let text = script(blocks);
    let mut child: std::process::Child = Topology::command_in(ns, "nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run nft (apt-get install nftables)")?;
    child
        .stdin
        .take()
        .context("nft stdin")?
        .write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "nft in {ns}: {}\n{text}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// True if nft runs here.
pub fn available() -> bool {
    Command::new("nft")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_every_given_field_and_the_table_is_replaced_whole() {
        let blocks = [
            Block::from("10.77.0.2"),
            Block {
                from: Some("10.77.0.3".into()),
                dport: Some(8922),
                ..Block::default()
            },
            Block {
                sport: Some(8920),
                ..Block::default()
            },
            Block {
                percent: Some(5),
                ..Block::default()
            },
        ];
        assert_eq!(
            script(&blocks),
            "table inet shoalchaos {}\ndelete table inet shoalchaos\n\
             table inet shoalchaos {\n  chain input {\n    type filter hook input priority 0; policy accept;\n\
             \x20   ip saddr 10.77.0.2 drop\n\
             \x20   ip saddr 10.77.0.3 tcp dport 8922 drop\n\
             \x20   tcp sport 8920 drop\n\
             \x20   numgen random mod 100 < 5 drop\n  }\n}\n"
        );
        assert_eq!(
            script(&[]),
            "table inet shoalchaos {}\ndelete table inet shoalchaos\n"
        );
    }
}
