//! SQL over Shoal's distributed tables, with DataFusion: every data node plans a query against
//! the catalog the controllers hold, reads the chunks the query needs from in-sync replicas,
//! and serves it over Arrow Flight SQL.
//!
//! - `engine`: `QueryEngine`, one DataFusion session per query over the current catalog.
//! - `table` / `prune` / `scan`: a distributed table, which chunks a filter rules out, and the
//!   plan node reading the others (`ChunkScanExec`, shown by EXPLAIN); `pushdown`: the filters
//!   a replica applies before sending rows; `local`: how a scan reaches a replica (gRPC, or
//!   in-process for the coordinator's own).
//! - `partial_aggregate` / `chunk_aggregate`: a GROUP BY's Partial phase computed by the
//!   replicas (`ChunkAggregateExec`, placed by the `PushPartialAggregates` optimizer rule).
//! - `system`: the `cluster` schema (`nodes`, `chunks`, `config`).
//! - `script`: DolphinDB scripts (`shoal_script`), run with this node's engine and the
//!   controllers, on the same path as SQL.
//! - `flight`: the Flight SQL service; `ingest`: its bulk ingest (ADBC's `adbc_ingest`) into
//!   an `Appender` the data node provides; `params`: prepared statements' parameters, bound
//!   by DoPut into the handle; `client`: a client for one query; `observe`: what the service
//!   reports of each statement it answers (the data node's query metrics).

mod chunk_aggregate;
mod client;
mod ddl;
mod engine;
mod error;
mod flight;
mod ingest;
mod leaf;
mod local;
mod metadata;
mod observe;
mod params;
pub mod partial_aggregate;
mod prune;
#[cfg(test)]
mod pruning_tests;
pub mod pushdown;
mod run_states;
mod scan;
mod script;
mod system;
mod table;
mod top_k;

pub use client::{login, query, query_with_headers};
pub use engine::{QueryEngine, QueryMemory, QueryOptions};
pub use error::{Unavailable, is_unavailable};
pub use flight::{Login, PUSH_AGGREGATES_HEADER, ShoalFlightSqlService, flight_service};
pub use ingest::{AppendOutcome, Appender, SEQ_HEADER, WRITER_ID_HEADER};
pub use local::{LocalReplicas, LocalRows, Replicas};
pub use observe::{Outcome, QueryObserver, StatementKind};
