//! An aggregate's first phase computed where the rows are: the coordinator describes
//! DataFusion's Partial `AggregateExec` as a [`PartialAggregate`] ([`request_of`]), the replica
//! runs the same Partial aggregate over the rows it would have sent ([`states`]) and sends its
//! output, groups and accumulator states instead of rows; the coordinator's Final aggregate
//! merges them as it would merge its own partial states.
//!
//! The request names functions and columns, not plan bytes, so both sides build the aggregate
//! with their own DataFusion: only the answer's column types must agree, which the coordinator
//! checks on every batch (see `scan::fit`).

use std::fmt;
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{FunctionRegistry, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateExprBuilder;
use datafusion::physical_expr::expressions::{Column, Literal, col, lit};
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode, PhysicalGroupBy};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use shoal_proto::{AggregateCall, PartialAggregate};

/// The aggregate functions a replica computes: their states merge exactly whatever the
/// split of the rows (an approximate or order-sensitive one would not).
const FUNCTIONS: [&str; 5] = ["count", "sum", "min", "max", "avg"];

/// `agg` (a Partial aggregate) as replicas compute it, if they can: every group expression a
/// column, every aggregate one of [`FUNCTIONS`] over one column (or `count(*)`), without
/// DISTINCT, FILTER or ORDER BY. Columns are named as `agg`'s input names them, which must be
/// the chunk's names (the caller checks what lies between the aggregate and the scan).
pub(crate) fn request_of(agg: &AggregateExec) -> Option<PartialAggregate> {
    if *agg.mode() != AggregateMode::Partial || !agg.group_expr().is_single() {
        return None;
    }
    let group_by = agg
        .group_expr()
        .expr()
        .iter()
        .map(|(e, _)| column_name(e))
        .collect::<Option<Vec<_>>>()?;
    if agg.filter_expr().iter().any(Option::is_some) {
        return None;
    }
    let calls = agg
        .aggr_expr()
        .iter()
        .map(|a| {
            let function = a.fun().name();
            if !FUNCTIONS.contains(&function) || a.is_distinct() || !a.order_bys().is_empty() {
                return None;
            }
            let column = match a.expressions().as_slice() {
                [arg] => match column_name(arg) {
                    Some(c) => c,
                    // `count(*)`, which DataFusion plans as a count of a non-null literal.
                    None if function == "count" && is_non_null_literal(arg) => String::new(),
                    None => return None,
                },
                _ => return None,
            };
            Some(AggregateCall {
                function: function.to_owned(),
                column,
                name: a.name().to_owned(),
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(PartialAggregate { group_by, calls })
}

/// The chunk columns a replica reads to compute `agg` (before its filters' own).
pub(crate) fn columns(agg: &PartialAggregate) -> Vec<String> {
    let mut columns: Vec<String> = agg.group_by.clone();
    for c in &agg.calls {
        if !c.column.is_empty() && !columns.contains(&c.column) {
            columns.push(c.column.clone());
        }
    }
    columns
}

fn column_name(e: &Arc<dyn PhysicalExpr>) -> Option<String> {
    e.downcast_ref::<Column>().map(|c| c.name().to_owned())
}

fn is_non_null_literal(e: &Arc<dyn PhysicalExpr>) -> bool {
    e.downcast_ref::<Literal>()
        .is_some_and(|l| !l.value().is_null())
}

/// The replica's side: `agg`'s partial states over `rows` (of `schema`, already filtered),
/// with their schema. The aggregation runs as the returned iterator is pulled, on the caller's
/// thread (a blocking one: it reads the rows), through `runtime`.
pub fn states<I>(
    schema: &SchemaRef,
    rows: I,
    agg: &PartialAggregate,
    runtime: tokio::runtime::Handle,
) -> Result<(
    SchemaRef,
    impl Iterator<Item = Result<RecordBatch>> + Send + 'static,
)>
where
    I: Iterator<Item = Result<RecordBatch, String>> + Send + 'static,
{
    let ctx = SessionContext::new();
    let group_by = agg
        .group_by
        .iter()
        .map(|c| Ok((col(c, schema)?, c.clone())))
        .collect::<Result<Vec<_>>>()?;
    let calls = agg
        .calls
        .iter()
        .map(|c| {
            let args = if c.column.is_empty() {
                vec![lit(ScalarValue::Int64(Some(1)))]
            } else {
                vec![col(&c.column, schema)?]
            };
            AggregateExprBuilder::new(ctx.udaf(&c.function)?, args)
                .schema(Arc::clone(schema))
                .alias(&c.name)
                .build()
                .map(Arc::new)
        })
        .collect::<Result<Vec<_>>>()?;
    let input = StreamingTableExec::try_new(
        Arc::clone(schema),
        vec![Arc::new(Once::new(Arc::clone(schema), rows))],
        None,
        vec![],
        false,
        None,
    )?;
    let filters = vec![None; calls.len()];
    let exec = AggregateExec::try_new(
        AggregateMode::Partial,
        PhysicalGroupBy::new_single(group_by),
        calls,
        filters,
        Arc::new(input),
        Arc::clone(schema),
    )?;
    let out = exec.schema();
    let mut stream = exec.execute(0, ctx.task_ctx())?;
    let batches = std::iter::from_fn(move || runtime.block_on(stream.next()));
    Ok((out, batches))
}

/// Rows that can be read once, as a DataFusion partition.
struct Once {
    schema: SchemaRef,
    rows: Mutex<Option<SendableRecordBatchStream>>,
}

impl Once {
    fn new<I>(schema: SchemaRef, rows: I) -> Self
    where
        I: Iterator<Item = Result<RecordBatch, String>> + Send + 'static,
    {
        let batches = futures::stream::iter(rows.map(|b| b.map_err(DataFusionError::Execution)));
        let stream = RecordBatchStreamAdapter::new(Arc::clone(&schema), batches);
        Self {
            schema,
            rows: Mutex::new(Some(Box::pin(stream))),
        }
    }
}

impl fmt::Debug for Once {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Once").finish_non_exhaustive()
    }
}

impl PartitionStream for Once {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let taken = self.rows.lock().ok().and_then(|mut r| r.take());
        taken.unwrap_or_else(|| {
            let again = futures::stream::once(async {
                Err(DataFusionError::Internal(
                    "a chunk's rows were read twice".into(),
                ))
            });
            Box::pin(RecordBatchStreamAdapter::new(
                Arc::clone(&self.schema),
                again,
            ))
        })
    }
}
