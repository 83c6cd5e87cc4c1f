//! Conversions between the wire enums and the configuration's types.

use shoal_common::config::NodeMode as ConfigMode;

use crate::v1::NodeMode;

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
