//! `ShoalTable`: a distributed table as DataFusion sees it.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use shoal_catalog::partition::KeyKind;
use shoal_catalog::{PartitionKey, TableDef};
use shoal_proto::ChunkInfo;

use crate::local::Replicas;
use crate::prune::PartitionColumn;
use crate::pushdown;
use crate::scan::ChunkScanExec;

pub struct ShoalTable {
    /// `dfs://db.table`.
    name: String,
    schema: SchemaRef,
    partition: PartitionColumn,
    /// The table's chunks, as the catalog listed them when the query began.
    chunks: Vec<ChunkInfo>,
    /// `sortColumns`: each chunk file's rows are in this order.
    sort_columns: Vec<String>,
    replicas: Replicas,
}

impl ShoalTable {
    pub fn new(
        db: &str,
        def: &TableDef,
        kind: KeyKind,
        chunks: Vec<ChunkInfo>,
        replicas: Replicas,
    ) -> Self {
        let schema = def.schema();
        // The schema's spelling of the partition column (the definition may differ in case).
        let name = def
            .column(&def.partition_column)
            .map_or_else(|| def.partition_column.clone(), |c| c.name.clone());
        Self {
            name: format!("{db}.{}", def.name),
            schema,
            partition: PartitionColumn { name, kind },
            chunks,
            sort_columns: def.sort_columns.clone(),
            replicas,
        }
    }

    /// The chunks whose partition may hold rows matching every filter.
    fn chunks_to_read(&self, filters: &[Expr]) -> Vec<ChunkInfo> {
        self.chunks
            .iter()
            .filter(
                |c| match PartitionKey::parse(self.partition.kind, &c.partition_key) {
                    Ok(key) => self.partition.may_match(filters, key),
                    // A key that does not parse cannot be reasoned about: keep its chunk.
                    Err(_) => true,
                },
            )
            .cloned()
            .collect()
    }
}

impl fmt::Debug for ShoalTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShoalTable")
            .field("name", &self.name)
            .field("chunks", &self.chunks.len())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl TableProvider for ShoalTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// Filters on the partition column alone come to `scan` to prune chunks, and every filter a
    /// replica can evaluate goes to the replicas; DataFusion still applies them all to the rows
    /// (`Inexact`), so a replica that ignores them changes no answer.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if self.partition.is_only_column_of(f) || pushdown::can_push(f) {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => Arc::clone(&self.schema),
        };
        let pushed = pushdown::Pushed::new(state, filters, &schema)?;
        let scan = ChunkScanExec::new(
            self.name.clone(),
            self.chunks.len(),
            self.chunks_to_read(filters),
            schema,
            pushed,
            limit,
            self.replicas.clone(),
        );
        Ok(Arc::new(scan.sorted_by(self.sort_columns.clone())))
    }
}
