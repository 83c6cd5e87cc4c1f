//! The cluster as a script sees it: SQL queries (the `cluster` system tables and the `dfs://`
//! tables) and Shoal's DDL. The data node implements it over its query engine and the
//! controllers; tests implement it in memory.

use arrow::array::RecordBatch;
use async_trait::async_trait;

#[async_trait]
pub trait Host: Send + Sync {
    /// The alias of the node running the script: what `version()` and `getConfig(...)` answer
    /// for outside `pnodeRun` and `rpc`.
    fn local_node(&self) -> &str;

    /// Runs one read-only SQL query and collects its rows into one batch.
    async fn query(&self, sql: &str) -> Result<RecordBatch, HostError>;

    /// Runs one statement of Shoal's DDL (`shoal_catalog::ddl`) on the controller leader;
    /// its answer (SHOW's table, or one `message` column).
    async fn ddl(&self, statement: &str) -> Result<RecordBatch, HostError>;
}

/// Why the host could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// Not reachable now: the same script may work later or on another node.
    #[error("{0}")]
    Unavailable(String),
    /// The caller's role does not allow it.
    #[error("{0}")]
    Denied(String),
    /// The statement's own fault (a refused DDL, an unknown table, ...).
    #[error("{0}")]
    Refused(String),
}
