//! The Shoal controller: a Raft group (openraft) whose state machine is the cluster metadata —
//! machines, nodes, their versions and liveness. Only the leader decides; followers redirect.
//!
//! Layout: [`raft_types`] declares openraft's types, [`command`] the replicated commands and
//! [`cluster_meta`] how they change the metadata; [`raft_network`] / [`raft_service`] carry
//! Raft RPCs over tonic; [`controller_service`] answers nodes and operators; [`leader_duties`]
//! runs the leader's periodic work; [`server`] assembles it all. [`admission`] keeps a
//! controller whose store is new from voting until it is admitted; [`bootstrap`] forms the
//! group once, on a new cluster; [`readmission`] has the leader add controllers as learners and
//! make them voters once caught up (finding F7, a lost store). [`drop_holds`] keeps a dropped
//! name from reuse for a while, on this controller's own clock (finding F9).

pub mod admission;
pub mod bootstrap;
pub mod catalog;
pub mod chunks;
pub mod cluster_meta;
pub mod command;
mod console;
pub mod controller_service;
pub mod ddl;
pub mod drop_holds;
pub mod leader_duties;
pub mod liveness;
mod metrics;
pub mod peer_identity;
pub mod placement;
pub mod raft_network;
pub mod raft_service;
pub mod raft_types;
pub mod re_replication;
pub mod readmission;
pub mod server;
pub mod topology;
pub mod upgrade;
pub mod user_admin;
pub mod user_table;

mod error;

pub use error::ControllerError;
pub use server::{ControllerOptions, run};
