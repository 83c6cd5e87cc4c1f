//! The Shoal data node: holds chunk replicas (durable WAL stores), coordinates appends from
//! clients, replicates each chunk from its primary to its other replicas, catches up replicas
//! that fell behind (record by record, or by a copy of the primary's chunk files), and serves chunk reads for queries. See `replication` for the protocol.

mod catalog_cache;
mod chunk_scan;
mod common_prefix;
mod coordinator;
mod drain;
mod error;
mod flush_policy;
mod ingest;
mod metrics;
mod node;
mod primary;
mod replicas;
mod replication;
mod restart;
mod scan_messages;
pub mod server;
mod service;
mod snapshot;
mod store_failure;
mod top_rows;

pub use server::{DataNodeError, DataNodeOptions, run};
