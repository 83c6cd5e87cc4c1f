//! `QueryEngine`: SQL over the cluster's tables. Each query plans against the catalog as the
//! controllers hold it when the query starts, so new tables and moved chunks are seen at once.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::catalog::{
    CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider,
};
use datafusion::dataframe::DataFrame;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::SQLOptions;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use shoal_catalog::DatabaseDef;
use shoal_client::controller::ControllerClient;
use shoal_common::version::{AGGREGATE_PUSHDOWN_CLUSTER_VERSION, TOP_K_CLUSTER_VERSION};
use shoal_proto::ChunkInfo;

use crate::chunk_aggregate::PushPartialAggregates;
use crate::error::unavailable;
use crate::local::Replicas;
use crate::system::{self, SystemSchema};
use crate::table::ShoalTable;
use crate::top_k::PushTopK;

/// The one DataFusion catalog: its schemas are the databases (`dfs://stock`) and `cluster`.
/// The one catalog: its schemas are the `dfs://` databases, `cluster` and `information_schema`.
pub const CATALOG: &str = "shoal";

/// A table as Flight SQL's `GetTables` lists it.
pub struct TableEntry {
    /// The schema it is in: a `dfs://` database, `cluster` or `information_schema`.
    pub schema: String,
    pub name: String,
    /// `TABLE`, `SYSTEM TABLE` (the `cluster` schema) or `VIEW` (`information_schema`).
    pub kind: &'static str,
    pub columns: SchemaRef,
}

pub struct QueryEngine {
    controllers: ControllerClient,
    replicas: Replicas,
    memory: QueryMemory,
}

/// What one query may hold in memory on the node that coordinates it, and where it spills.
#[derive(Clone, Debug)]
pub struct QueryMemory {
    /// Bytes (`memLimitOfQueryResult`).
    pub limit: usize,
    /// Sorts and aggregations past the limit write temporary files here (on a data volume,
    /// not the OS temp directory, which may be small or in memory).
    pub spill_dir: PathBuf,
}

impl QueryMemory {
    /// A runtime for one query (or one replica's share of it): its own pool of `limit` bytes,
    /// fair between a plan's spilling operators, so one query over its limit fails alone, with
    /// DataFusion's "Resources exhausted" naming what asked for how much.
    pub fn runtime(&self) -> Result<Arc<RuntimeEnv>> {
        RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(self.limit)))
            .with_temp_file_path(&self.spill_dir)
            .build_arc()
    }
}

/// What a client chooses for one query (Flight SQL call headers, see `flight`).
#[derive(Clone, Copy, Debug)]
pub struct QueryOptions {
    /// Whether replicas may compute aggregates' Partial phase (`ChunkAggregateExec`), when
    /// every data node understands it; off, they send rows (a check of the pushdown itself).
    pub push_aggregates: bool,
}

impl Default for QueryOptions {
    fn default() -> Self {
        Self {
            push_aggregates: true,
        }
    }
}

impl QueryEngine {
    pub fn new(controllers: ControllerClient, replicas: Replicas, memory: QueryMemory) -> Self {
        Self {
            controllers,
            replicas,
            memory,
        }
    }

    /// The controller group (DDL goes there).
    pub fn controllers(&self) -> &ControllerClient {
        &self.controllers
    }

    /// Plans a read-only statement (queries, EXPLAIN, SHOW); DDL, DML and SET are refused.
    /// The plan's schema is known before anything runs; `execute_stream` runs it.
    pub async fn plan(&self, sql: &str, options: QueryOptions) -> Result<DataFrame> {
        let read_only = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        self.session(options)
            .await?
            .sql_with_options(sql, read_only)
            .await
    }

    /// Runs a statement and collects its result.
    pub async fn execute(&self, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let df = self.plan(sql, QueryOptions::default()).await?;
        let schema = Arc::clone(df.schema().inner());
        Ok((schema, df.collect().await?))
    }

    /// Every table a query can name, as committed now: what Flight SQL's catalog calls list.
    pub async fn tables(&self) -> Result<Vec<TableEntry>> {
        let ctx = self.session(QueryOptions::default()).await?;
        let Some(catalog) = ctx.catalog(CATALOG) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for schema_name in catalog.schema_names() {
            let Some(schema) = catalog.schema(&schema_name) else {
                continue;
            };
            for name in schema.table_names() {
                if let Some(table) = schema.table(&name).await? {
                    let kind = match table.table_type() {
                        _ if schema_name == system::SCHEMA => "SYSTEM TABLE",
                        TableType::Base => "TABLE",
                        TableType::View => "VIEW",
                        TableType::Temporary => "LOCAL TEMPORARY",
                    };
                    out.push(TableEntry {
                        schema: schema_name.clone(),
                        name,
                        kind,
                        columns: table.schema(),
                    });
                }
            }
        }
        out.sort_by(|a, b| (&a.schema, &a.name).cmp(&(&b.schema, &b.name)));
        Ok(out)
    }

    /// A session whose catalog is the cluster's catalog as committed now.
    async fn session(&self, options: QueryOptions) -> Result<SessionContext> {
        let catalog = self
            .controllers
            .get_catalog()
            .await
            .map_err(|e| unavailable(format!("cannot read the catalog: {e}")))?;
        let databases: BTreeMap<String, DatabaseDef> =
            serde_json::from_slice(&catalog.databases_json)
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let mut chunks: HashMap<(String, String), Vec<ChunkInfo>> = HashMap::new();
        for c in &catalog.chunks {
            chunks
                .entry((c.db.clone(), c.table.clone()))
                .or_default()
                .push(c.clone());
        }

        let shoal = MemoryCatalogProvider::new();
        for (path, db) in &databases {
            let schema = MemorySchemaProvider::new();
            for (name, def) in &db.tables {
                let table_chunks = chunks
                    .remove(&(path.clone(), name.clone()))
                    .unwrap_or_default();
                let table = ShoalTable::new(
                    path,
                    def,
                    db.scheme.kind(),
                    table_chunks,
                    self.replicas.clone(),
                );
                schema.register_table(name.clone(), Arc::new(table))?;
            }
            shoal.register_schema(path, Arc::new(schema))?;
        }
        let system = SystemSchema::new(
            self.controllers.clone(),
            self.replicas.channels.clone(),
            catalog.chunks,
        );
        shoal.register_schema(system::SCHEMA, Arc::new(system))?;

        let config = SessionConfig::new()
            .with_create_default_catalog_and_schema(false)
            .with_default_catalog_and_schema(CATALOG, system::SCHEMA)
            .with_information_schema(true);
        let runtime = self.memory.runtime()?;
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features();
        // A data node of a release before partial aggregation would send rows for states.
        let understood =
            *self.replicas.cluster_version.borrow() >= AGGREGATE_PUSHDOWN_CLUSTER_VERSION;
        if options.push_aggregates && understood {
            state = state.with_physical_optimizer_rule(Arc::new(PushPartialAggregates));
        }
        if *self.replicas.cluster_version.borrow() >= TOP_K_CLUSTER_VERSION {
            state = state.with_physical_optimizer_rule(Arc::new(PushTopK));
        }
        let ctx = SessionContext::new_with_state(state.build());
        ctx.register_catalog(CATALOG, Arc::new(shoal));
        Ok(ctx)
    }
}
