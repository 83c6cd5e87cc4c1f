//! `ChunkAggregateExec`: an aggregate's Partial phase run by the replicas, one output partition
//! per chunk, each the partial states one replica computed over its rows (see
//! `partial_aggregate`); and [`PushPartialAggregates`], the physical optimizer rule that puts
//! it in place of a Partial `AggregateExec` over a `ChunkScanExec`. DataFusion's Final
//! aggregate above it merges the states, as it merges those of its own Partial aggregate, so a
//! GROUP BY ships groups, not rows.
//!
//! ```text
//!   AggregateExec Final               AggregateExec Final
//!     RepartitionExec / Coalesce        RepartitionExec / Coalesce
//!       AggregateExec Partial     =>      ChunkAggregateExec (states from each replica)
//!         [RepartitionExec]
//!           [FilterExec]
//!             ChunkScanExec
//! ```

use std::fmt;
use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::AggregateExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning,
    PlanProperties, ReplaceChildrenOptions, SendableRecordBatchStream,
};
use futures::stream::{self, StreamExt, TryStreamExt};
use shoal_proto::{PartialAggregate, ScanChunkRequest};

use crate::leaf::leaf_node;
use crate::partial_aggregate;
use crate::scan::{Answer, ChunkScanExec, fitted, open, reads_locally};

/// Replaces each Partial aggregate the replicas can compute with a [`ChunkAggregateExec`].
/// Added to a query's session only when every data node understands the request (see
/// `QueryEngine`).
#[derive(Debug)]
pub(crate) struct PushPartialAggregates;

impl PhysicalOptimizerRule for PushPartialAggregates {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            Ok(match ChunkAggregateExec::replacing(&node)? {
                Some(pushed) => Transformed::yes(Arc::new(pushed) as Arc<dyn ExecutionPlan>),
                None => Transformed::no(node),
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "push_partial_aggregates"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

pub struct ChunkAggregateExec {
    /// The chunks, the filters the replicas apply, the ways to the replicas.
    scan: Arc<ChunkScanExec>,
    aggregate: PartialAggregate,
    /// The Partial aggregate over the scan alone, one partition per chunk: what computes a
    /// chunk's states here when its replica sends rows instead (a release before this request)
    /// and for the chunks this node reads in-process.
    fallback: Arc<dyn ExecutionPlan>,
}

impl ChunkAggregateExec {
    /// What replaces `node`, if it is a Partial aggregate over a chunk scan that the replicas
    /// can compute: only a round-robin repartition (dropped: one partial per chunk is parallel
    /// enough) and a filter the replicas apply themselves may sit between.
    fn replacing(node: &Arc<dyn ExecutionPlan>) -> Result<Option<Self>> {
        let Some(agg) = node.downcast_ref::<AggregateExec>() else {
            return Ok(None);
        };
        let Some(aggregate) = partial_aggregate::request_of(agg) else {
            return Ok(None);
        };
        let mut input = Arc::clone(agg.input());
        if let Some(r) = input.downcast_ref::<RepartitionExec>() {
            if !matches!(r.partitioning(), Partitioning::RoundRobinBatch(_)) {
                return Ok(None);
            }
            input = Arc::clone(r.input());
        }
        let (scan_node, filter) = match input.downcast_ref::<FilterExec>() {
            Some(f) => (Arc::clone(f.input()), Some(Arc::clone(f.predicate()))),
            None => (Arc::clone(&input), None),
        };
        let Some(scan) = scan_node.downcast_ref::<ChunkScanExec>() else {
            return Ok(None);
        };
        // A limit on the scan would count only some rows; a filter the replicas do not apply
        // exactly would count others.
        let applied = |p: &Arc<dyn PhysicalExpr>| scan.filters().applies(p);
        if scan.limit().is_some() || filter.as_ref().is_some_and(|p| !applied(p)) {
            return Ok(None);
        }
        let scan = Arc::new(scan.clone());
        let fallback = Arc::clone(node).replace_children(
            vec![input],
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )?;
        Ok(Some(Self {
            scan,
            aggregate,
            fallback,
        }))
    }
}

impl ChunkAggregateExec {
    /// Whether the replicas may answer from their chunk files' statistics: an aggregate of
    /// that shape over every row (no filter).
    fn may_use_statistics(&self) -> bool {
        self.scan.filters().sql.is_empty() && partial_aggregate::may_use_statistics(&self.aggregate)
    }

    /// Whether the groups are the first sort columns (in any order): the chunk files then hold
    /// each group's rows together.
    fn groups_sorted_columns(&self) -> bool {
        let groups = &self.aggregate.group_by;
        let sorted = self.scan.sort_columns();
        !groups.is_empty()
            && groups.len() <= sorted.len()
            && groups.iter().all(|g| {
                sorted[..groups.len()]
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(g))
            })
    }
}

impl fmt::Debug for ChunkAggregateExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunkAggregateExec")
            .field("aggregate", &self.aggregate)
            .finish_non_exhaustive()
    }
}

impl DisplayAs for ChunkAggregateExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let calls: Vec<String> = self
            .aggregate
            .calls
            .iter()
            .map(|c| {
                let column = if c.column.is_empty() { "*" } else { &c.column };
                format!("{}({column})", c.function)
            })
            .collect();
        write!(
            f,
            "ChunkAggregateExec: gby=[{}] aggr=[{}] on ",
            self.aggregate.group_by.join(", "),
            calls.join(", ")
        )?;
        self.scan.fmt_as(t, f)
    }
}

impl ExecutionPlan for ChunkAggregateExec {
    fn name(&self) -> &str {
        "ChunkAggregateExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        // The Partial aggregate's own: the same columns, partitions and orderings.
        self.fallback.properties()
    }

    leaf_node!();

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let schema = self.schema();
        let Some(chunk) = self.scan.chunks().get(partition).cloned() else {
            return Ok(Box::pin(RecordBatchStreamAdapter::new(
                schema,
                stream::empty(),
            )));
        };
        let ask = ScanChunkRequest {
            columns: partial_aggregate::columns(&self.aggregate),
            project: true,
            filters: self.scan.filters().sql.clone(),
            aggregate: Some(self.aggregate.clone()),
            ..ScanChunkRequest::default()
        };
        let fallback = Arc::clone(&self.fallback);
        // This node's own replica is read in-process: its rows cross no wire, and aggregated
        // here their reading and aggregating overlap (on the replica they would not); unless
        // the replica answers from its files' statistics, reading no row, or groups by the
        // columns its files are sorted by (then it aggregates runs of rows, not each row).
        if reads_locally(&chunk, self.scan.replicas()) && !self.groups_sorted_columns() {
            let local = self.scan.replicas().local.clone();
            let Some(local) = local.filter(|_| self.may_use_statistics()) else {
                return self.fallback.execute(partition, context);
            };
            let req = ScanChunkRequest {
                chunk_id: chunk.id,
                chunk_version: chunk.version,
                ..ask
            };
            let states = async move {
                let from_statistics = local.states_from_statistics(req).await.ok().flatten();
                Ok::<_, DataFusionError>(match from_statistics {
                    Some(states) => fitted(states.map_err(local_failed), fallback.schema(), true),
                    // Refused too: the fallback's scan tries the other replicas.
                    None => fallback.execute(partition, context)?.boxed(),
                })
            };
            let states = stream::once(states).try_flatten();
            return Ok(Box::pin(RecordBatchStreamAdapter::new(schema, states)));
        }
        let replicas = self.scan.replicas().clone();
        let states = async move {
            Ok::<_, DataFusionError>(
                match open(chunk, replicas, ask, Arc::clone(&fallback.schema())).await? {
                    Answer::Rows(states) => states,
                    Answer::RowsNotStates => fallback.execute(partition, context)?.boxed(),
                },
            )
        };
        let states = stream::once(states).try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, states)))
    }
}

/// This node's replica failing once it started sending states.
fn local_failed(s: tonic::Status) -> DataFusionError {
    DataFusionError::Execution(format!(
        "this node's replica failed while sending states: {}: {}",
        s.code(),
        s.message()
    ))
}
