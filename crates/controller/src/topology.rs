//! What `cluster.nodes` declares, as the controller needs it: Raft ids of the controllers and
//! the nodes to seed the metadata with.

use std::collections::BTreeMap;

use openraft::BasicNode;
use shoal_common::config::ClusterNodes;

use crate::command::DeclaredNode;
use crate::raft_types::NodeId;

pub struct Topology {
    /// Controllers by Raft id: 1, 2, 3... in `cluster.nodes` order.
    controllers: BTreeMap<NodeId, (String, String)>,
    declared: Vec<DeclaredNode>,
}

impl Topology {
    pub fn new(nodes: &ClusterNodes) -> Self {
        let controllers = nodes
            .controllers()
            .zip(1..)
            .map(|(n, id)| (id, (n.site.alias.clone(), n.site.addr())))
            .collect();
        let declared = nodes
            .nodes
            .iter()
            .map(|n| DeclaredNode {
                alias: n.site.alias.clone(),
                mode: n.mode,
                machine: n.site.host.clone(),
                addr: n.site.addr(),
            })
            .collect();
        Self {
            controllers,
            declared,
        }
    }

    pub fn controller_id(&self, alias: &str) -> Option<NodeId> {
        self.controllers
            .iter()
            .find(|(_, (a, _))| a == alias)
            .map(|(id, _)| *id)
    }

    pub fn controller_alias(&self, id: NodeId) -> Option<String> {
        self.controllers.get(&id).map(|(a, _)| a.clone())
    }

    /// The initial Raft membership: every declared controller as a voter.
    pub fn raft_members(&self) -> BTreeMap<NodeId, BasicNode> {
        self.controllers
            .iter()
            .map(|(id, (_, addr))| (*id, BasicNode::new(addr.clone())))
            .collect()
    }

    /// Every declared controller: Raft id, alias, address.
    pub fn controllers(&self) -> impl Iterator<Item = (NodeId, (String, String))> + '_ {
        self.controllers.iter().map(|(id, c)| (*id, c.clone()))
    }

    pub fn controller_addrs(&self) -> Vec<String> {
        self.controllers.values().map(|(_, a)| a.clone()).collect()
    }

    pub fn declared(&self) -> &[DeclaredNode] {
        &self.declared
    }
}
