//! Shoal's integration tests: one binary (each test binary that links the whole stack is large),
//! real `shoal` processes on real loopback sockets.

#![allow(clippy::unwrap_used)]

mod aggregate_pushdown;
mod auth;
mod chaos;
mod chunk_files;
mod cluster;
mod config_files;
mod controller_amnesia;
mod data;
mod ddl;
mod disk_full;
mod disk_loss;
mod diverged_replica;
mod ha_write;
mod harness;
mod host_init;
mod hosts;
mod keep_duplicates;
mod large_chunk;
mod memory_budget;
mod metrics;
mod pause;
mod query;
mod reads;
mod retention;
mod script;
mod snapshot_install;
mod storage;
mod tls;
mod top_k;
mod upgrade;
mod upgrade_watch;
mod users;
