//! Conversions between the wire enums and the configuration's types, and the states carried both
//! as strings (for 0.1 readers) and as enums.

use shoal_common::config::NodeMode as ConfigMode;

use crate::v1::{ChunkInfo, ChunkState, NodeMode, NodeState, NodeStatus, RaftRole};

impl From<ConfigMode> for NodeMode {
    fn from(mode: ConfigMode) -> Self {
        match mode {
            ConfigMode::Controller => NodeMode::Controller,
            ConfigMode::Agent => NodeMode::Agent,
            ConfigMode::DataNode => NodeMode::Datanode,
        }
    }
}

impl TryFrom<NodeMode> for ConfigMode {
    type Error = String;

    fn try_from(mode: NodeMode) -> Result<Self, String> {
        match mode {
            NodeMode::Controller => Ok(ConfigMode::Controller),
            NodeMode::Agent => Ok(ConfigMode::Agent),
            NodeMode::Datanode => Ok(ConfigMode::DataNode),
            NodeMode::Unspecified => Err("no node mode given".into()),
        }
    }
}

impl NodeState {
    /// The name `shoal status`, `cluster.nodes` and the console show.
    pub fn name(self) -> &'static str {
        match self {
            NodeState::Up => "UP",
            NodeState::Down => "DOWN",
            NodeState::Stopping => "STOPPING",
            NodeState::Unknown | NodeState::Unspecified => "UNKNOWN",
        }
    }
}

impl NodeMode {
    /// The mode as `cluster.nodes` spells it (`cluster.nodes` file's names).
    pub fn name(self) -> &'static str {
        ConfigMode::try_from(self).map_or("?", |m| m.as_str())
    }
}

impl ChunkState {
    /// DolphinDB's name, as `cluster.chunks` shows it and the string field carries it.
    pub fn name(self) -> &'static str {
        match self {
            ChunkState::Constructing => "CONSTRUCTING",
            ChunkState::Recovering => "RECOVERING",
            ChunkState::Complete => "COMPLETE",
            ChunkState::Unspecified => "",
        }
    }

    fn from_name(name: &str) -> Self {
        match name {
            "CONSTRUCTING" => ChunkState::Constructing,
            "RECOVERING" => ChunkState::Recovering,
            "COMPLETE" => ChunkState::Complete,
            _ => ChunkState::Unspecified,
        }
    }
}

impl ChunkInfo {
    /// The chunk's state: the enum, or the string a controller older than 0.2 sent.
    pub fn current_state(&self) -> ChunkState {
        match self.chunk_state() {
            ChunkState::Unspecified => ChunkState::from_name(&self.state),
            s => s,
        }
    }
}

impl RaftRole {
    /// The name `raft_role` carries and `shoal status` shows.
    pub fn name(self) -> &'static str {
        match self {
            RaftRole::Leader => "leader",
            RaftRole::Follower => "follower",
            RaftRole::Unreachable => "unreachable",
            RaftRole::Learner => "learner",
            RaftRole::Unspecified => "",
        }
    }

    fn from_name(name: &str) -> Self {
        match name {
            "leader" => RaftRole::Leader,
            "follower" => RaftRole::Follower,
            "unreachable" => RaftRole::Unreachable,
            "learner" => RaftRole::Learner,
            _ => RaftRole::Unspecified,
        }
    }
}

impl NodeStatus {
    /// A controller's Raft role: the enum, or the string a controller older than 0.2 sent.
    pub fn current_role(&self) -> RaftRole {
        match self.role() {
            RaftRole::Unspecified => RaftRole::from_name(&self.raft_role),
            r => r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_sent_only_as_strings_by_older_controllers_are_read() {
        for s in [
            ChunkState::Constructing,
            ChunkState::Recovering,
            ChunkState::Complete,
        ] {
            let old = ChunkInfo {
                state: s.name().into(),
                ..Default::default()
            };
            assert_eq!(old.current_state(), s);
            let mut new = old.clone();
            new.set_chunk_state(s);
            assert_eq!(new.current_state(), s);
        }
        for r in [
            RaftRole::Leader,
            RaftRole::Follower,
            RaftRole::Unreachable,
            RaftRole::Learner,
        ] {
            let old = NodeStatus {
                raft_role: r.name().into(),
                ..Default::default()
            };
            assert_eq!(old.current_role(), r);
        }
        assert_eq!(NodeStatus::default().current_role(), RaftRole::Unspecified);
    }
}
