//! [`PushTopK`]: the physical optimizer rule that gives a `ChunkScanExec` under a top-k sort
//! (`ORDER BY … LIMIT k`, DataFusion's `SortExec` with a fetch) that order and limit, which
//! each replica then keeps (`ScanChunkRequest.top_k`): it reads its best row groups first and
//! sends at most k rows instead of every one. The sort stays: it merges the chunks' rows, and
//! a replica that ignores the request (a release before it) sends every row, still sorted and
//! cut here.
//!
//! ```text
//!   SortExec: TopK(fetch=10)             SortExec: TopK(fetch=10)
//!     [Repartition/Coalesce]       =>      [Repartition/Coalesce]
//!       [FilterExec]                         [FilterExec]
//!         ChunkScanExec                        ChunkScanExec ... top_k=10 by [time DESC]
//! ```
//!
//! Only a round-robin repartition, the merge of partitions into one, DataFusion's cooperative
//! scheduling wrapper (over a single chunk) and a filter the replicas apply themselves may lie
//! between (a filter applied only here would drop some of a replica's k rows, which the next
//! ones would have replaced).

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, ExecutionPlan, Partitioning, ReplaceChildrenOptions,
};
use shoal_proto::{SortColumn, TopK};

use crate::scan::ChunkScanExec;

#[derive(Debug)]
pub(crate) struct PushTopK;

impl PhysicalOptimizerRule for PushTopK {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_down(|node| {
            let Some(sort) = node.downcast_ref::<SortExec>() else {
                return Ok(Transformed::no(node));
            };
            let top = sort.fetch().and_then(|k| {
                let columns = sort
                    .expr()
                    .iter()
                    .map(|e| {
                        e.expr.downcast_ref::<Column>().map(|c| SortColumn {
                            name: c.name().to_owned(),
                            descending: e.options.descending,
                            nulls_first: e.options.nulls_first,
                        })
                    })
                    .collect::<Option<Vec<_>>>()?;
                Some(TopK {
                    columns,
                    limit: k as u64,
                })
            });
            let Some(input) = top.and_then(|top| with_top_k(sort.input(), top)) else {
                return Ok(Transformed::no(node));
            };
            let input = input?;
            Ok(Transformed::yes(with_child(&node, input)?))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "push_top_k"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `node` with the chunk scan under it given `top`, if only what may lie between does (see the
/// module docs) and the scan has no limit of its own.
fn with_top_k(node: &Arc<dyn ExecutionPlan>, top: TopK) -> Option<Result<Arc<dyn ExecutionPlan>>> {
    let through =
        |child: &Arc<dyn ExecutionPlan>, top| with_top_k(child, top).map(|c| with_child(node, c?));
    if let Some(child) = passed(node) {
        return through(child, top);
    }
    if let Some(f) = node.downcast_ref::<FilterExec>() {
        let scan = scan_under(f.input())?;
        // Its projection only drops columns: the sort's still name the scan's.
        let exact = scan.filters().applies(f.predicate());
        return exact.then(|| through(f.input(), top)).flatten();
    }
    let scan = node.downcast_ref::<ChunkScanExec>()?;
    let names_columns = top
        .columns
        .iter()
        .all(|c| scan.schema().field_with_name(&c.name).is_ok());
    (scan.limit().is_none() && names_columns)
        .then(|| Ok(Arc::new(scan.clone().with_top_k(top)) as Arc<dyn ExecutionPlan>))
}

/// `node` over `child` instead of its one child.
fn with_child(
    node: &Arc<dyn ExecutionPlan>,
    child: Arc<dyn ExecutionPlan>,
) -> Result<Arc<dyn ExecutionPlan>> {
    Arc::clone(node).replace_children(
        vec![child],
        ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
    )
}

/// The input of `node` if it passes every row of it on as they are (a round-robin
/// repartition, a merge of partitions, the cooperative scheduling wrapper).
fn passed(node: &Arc<dyn ExecutionPlan>) -> Option<&Arc<dyn ExecutionPlan>> {
    if let Some(r) = node.downcast_ref::<RepartitionExec>() {
        let round_robin = matches!(r.partitioning(), Partitioning::RoundRobinBatch(_));
        return round_robin.then(|| r.input());
    }
    if let Some(c) = node.downcast_ref::<CoalescePartitionsExec>() {
        return Some(c.input());
    }
    node.downcast_ref::<CooperativeExec>().map(|c| c.input())
}

/// The chunk scan under `node` and what [`passed`] lets through.
fn scan_under(node: &Arc<dyn ExecutionPlan>) -> Option<&ChunkScanExec> {
    match passed(node) {
        Some(child) => scan_under(child),
        None => node.downcast_ref::<ChunkScanExec>(),
    }
}
