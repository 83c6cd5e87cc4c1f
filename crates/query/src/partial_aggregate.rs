//! An aggregate's first phase computed where the rows are: the coordinator describes
//! DataFusion's Partial `AggregateExec` as a [`PartialAggregate`] ([`request_of`]), the replica
//! runs the same Partial aggregate over the rows it would have sent ([`states`]) and sends its
//! output, groups and accumulator states instead of rows; the coordinator's Final aggregate
//! merges them as it would merge its own partial states.
//!
//! The request names functions and columns, not plan bytes, so both sides build the aggregate
//! with their own DataFusion: only the answer's column types must agree, which the coordinator
//! checks on every batch (see `scan::fit`).
//!
//! Some aggregates a replica answers from its chunk files' statistics instead, plus the rows
//! still in memory ([`may_use_statistics`], [`from_statistics`]): the same states, no file read.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, RecordBatchOptions};
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{FunctionRegistry, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateExprBuilder;
use datafusion::physical_expr::expressions::{CastExpr, Column, Literal, cast, col, lit};
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode, PhysicalGroupBy};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;
use shoal_proto::{AggregateCall, PartialAggregate};
use shoal_storage::ContainerStats;

use crate::engine::QueryMemory;
use crate::run_states::RunStates;

/// The aggregate functions a replica computes: their states merge exactly whatever the
/// split of the rows (an approximate or order-sensitive one would not).
const FUNCTIONS: [&str; 5] = ["count", "sum", "min", "max", "avg"];

/// `agg` (a Partial aggregate) as replicas compute it, if they can: every group expression a
/// column, every aggregate one of [`FUNCTIONS`] over one column (maybe widened, see
/// [`widened`]) or `count(*)`, without
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
            let [arg] = a.expressions().try_into().ok()?;
            let (column, cast) = match (column_name(&arg), widened(&arg)) {
                (Some(c), _) => (c, String::new()),
                (None, Some((c, to))) => (c, to.to_string()),
                // `count(*)`, which DataFusion plans as a count of a non-null literal.
                (None, None) if function == "count" && is_non_null_literal(&arg) => {
                    (String::new(), String::new())
                }
                (None, None) => return None,
            };
            Some(AggregateCall {
                function: function.to_owned(),
                column,
                name: a.name().to_owned(),
                cast,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(PartialAggregate { group_by, calls })
}

/// The chunk columns a replica reads to compute `agg` (before its filters' own).
pub fn columns(agg: &PartialAggregate) -> Vec<String> {
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

/// The column and type of a cast that widens a number (what DataFusion puts in `sum` or `avg`
/// of a narrower column): it gives the same values on both sides, whatever its options.
fn widened(e: &Arc<dyn PhysicalExpr>) -> Option<(String, DataType)> {
    let cast = e.downcast_ref::<CastExpr>()?;
    let to = cast.cast_type();
    let widening = matches!(to, DataType::Int64 | DataType::Float64);
    let read_back = DataType::from_str(&to.to_string()).ok().as_ref() == Some(to);
    (widening && read_back)
        .then(|| column_name(cast.expr()).map(|c| (c, to.clone())))
        .flatten()
}

fn is_non_null_literal(e: &Arc<dyn PhysicalExpr>) -> bool {
    e.downcast_ref::<Literal>()
        .is_some_and(|l| !l.value().is_null())
}

/// Whether statistics may answer `agg`: no group, every call `count(*)`, or `count`, `min` or
/// `max` of a column as it is. The replica decides on its chunk ([`from_statistics`]).
pub fn may_use_statistics(agg: &PartialAggregate) -> bool {
    agg.group_by.is_empty()
        && agg.calls.iter().all(|c| {
            c.cast.is_empty()
                && match c.function.as_str() {
                    "count" => true,
                    "min" | "max" => !c.column.is_empty(),
                    _ => false,
                }
        })
}

/// `agg`'s partial states over chunk files, one row per file, as columns of `out` (the states'
/// schema, see [`states`]), from the files' statistics alone; `None` where they do not answer
/// exactly. `count(*)` is a file's rows, `count(c)` its rows less its NULLs of `c`, `min(c)`
/// and `max(c)` the file's; a file that does not know one of those (a column added after it
/// was written, a type whose statistics are not kept) answers nothing. When the table drops
/// duplicates, `key` is its sort key: dropping changes counts and the other columns' values,
/// but keeps at least one row of every key, so a key column's values, hence their min and
/// max, stay the same; only those are answered.
pub fn from_statistics(
    agg: &PartialAggregate,
    files: &ContainerStats,
    key: Option<&[String]>,
    out: &SchemaRef,
) -> Option<RecordBatch> {
    if !may_use_statistics(agg) {
        return None;
    }
    let rows = files.rows();
    let each = || 0..files.containers();
    let calls = agg.calls.iter().map(|c| -> Option<ArrayRef> {
        if key.is_some_and(|key| c.function == "count" || !key.contains(&c.column)) {
            return None;
        }
        if c.column.is_empty() {
            return Some(Arc::new(Int64Array::from_iter_values(
                rows.values().iter().map(|&n| n as i64),
            )));
        }
        let stats = files.column(&c.column)?;
        let nulls = |i: usize| stats.nulls.is_valid(i).then(|| stats.nulls.value(i));
        match c.function.as_str() {
            "count" => {
                let counts = each()
                    .map(|i| nulls(i).map(|n| rows.value(i).saturating_sub(n) as i64))
                    .collect::<Option<Vec<i64>>>()?;
                Some(Arc::new(Int64Array::from(counts)))
            }
            function => {
                let values = if function == "min" {
                    &stats.min
                } else {
                    &stats.max
                };
                // An unknown value is NULL too: only a file of NULLs alone may have one.
                each()
                    .all(|i| values.is_valid(i) || nulls(i) == Some(rows.value(i)))
                    .then(|| Arc::clone(values))
            }
        }
    });
    let columns = calls.collect::<Option<Vec<_>>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(files.containers()));
    RecordBatch::try_new_with_options(Arc::clone(out), columns, &options).ok()
}

/// The replica's side: `agg`'s partial states over `rows` (of `schema`, already filtered),
/// with their schema; batches whose rows come in runs of equal keys are aggregated per run
/// ([`RunStates`]), the others by DataFusion's Partial aggregate. The aggregation runs as the returned iterator is pulled, on the caller's
/// thread (a blocking one: it reads the rows), through `runtime`, within `memory` (the data
/// node's `memLimitOfQueryResult`, spilling to its spill directory).
pub fn states<I>(
    schema: &SchemaRef,
    rows: I,
    agg: &PartialAggregate,
    memory: &QueryMemory,
    runtime: tokio::runtime::Handle,
) -> Result<(
    SchemaRef,
    impl Iterator<Item = Result<RecordBatch>> + Send + 'static,
)>
where
    I: Iterator<Item = Result<RecordBatch, String>> + Send + 'static,
{
    // Bounded as the query's own plan is on its coordinator: a GROUP BY of many groups spills
    // or fails alone, it does not grow without bound on every replica.
    let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), memory.runtime()?);
    let group_by = agg
        .group_by
        .iter()
        .map(|c| Ok((col(c, schema)?, c.clone())))
        .collect::<Result<Vec<_>>>()?;
    let calls = agg
        .calls
        .iter()
        .map(|c| {
            let args = match (c.column.as_str(), c.cast.as_str()) {
                ("", _) => vec![lit(ScalarValue::Int64(Some(1)))],
                (column, "") => vec![col(column, schema)?],
                (column, to) => vec![cast(col(column, schema)?, schema, DataType::from_str(to)?)?],
            };
            AggregateExprBuilder::new(ctx.udaf(&c.function)?, args)
                .schema(Arc::clone(schema))
                .alias(&c.name)
                .build()
                .map(Arc::new)
        })
        .collect::<Result<Vec<_>>>()?;
    // Batches in runs of equal keys (sorted chunk files) are aggregated per run; DataFusion's
    // aggregate gets the others, and its states come first, then the runs'.
    let group_indices = group_by
        .iter()
        .map(|(_, name)| schema.index_of(name))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let runs = Arc::new(Mutex::new(RunStates::new(group_indices, calls.clone())));
    let absorbing = Arc::clone(&runs);
    let rows = rows.filter_map(move |b| {
        let Ok(batch) = b else { return Some(b) };
        let Ok(mut runs) = absorbing.lock() else {
            return Some(Err("run states poisoned".into()));
        };
        match runs.absorb(&batch) {
            Ok(true) => None,
            Ok(false) => Some(Ok(batch)),
            Err(e) => Some(Err(e.to_string())),
        }
    });
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
        calls.clone(),
        filters,
        Arc::new(input),
        Arc::clone(schema),
    )?;
    let out = exec.schema();
    let mut stream = exec.execute(0, ctx.task_ctx())?;
    let batches = std::iter::from_fn(move || runtime.block_on(stream.next()));
    let states = Arc::clone(&out);
    let of_runs = std::iter::once_with(move || match runs.lock() {
        Ok(mut runs) => runs.finish(&states).transpose(),
        Err(_) => Some(Err(DataFusionError::Internal("run states poisoned".into()))),
    })
    .flatten();
    Ok((out, batches.chain(of_runs)))
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

#[cfg(test)]
mod tests {
    use arrow::array::{AsArray, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::datasource::MemTable;

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("sym", DataType::Utf8, true),
            Field::new("qty", DataType::Int64, true),
        ]))
    }

    /// Six rows, two symbols; one NULL quantity.
    fn batch() -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from(vec!["a", "b", "a", "b", "a", "b"])),
                Arc::new(Int64Array::from(vec![
                    Some(1),
                    Some(2),
                    None,
                    Some(4),
                    Some(5),
                    Some(6),
                ])),
            ],
        )
        .unwrap()
    }

    /// The request for the Partial aggregate DataFusion plans for `sql` over table `t`.
    async fn request_for(sql: &str) -> Option<PartialAggregate> {
        let ctx = SessionContext::new();
        let t = MemTable::try_new(schema(), vec![vec![batch()], vec![batch()]]).unwrap();
        ctx.register_table("t", Arc::new(t)).unwrap();
        let plan = ctx
            .sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let mut found = None;
        plan.apply(|node| {
            if let Some(agg) = node.downcast_ref::<AggregateExec>()
                && *agg.mode() == AggregateMode::Partial
            {
                found = Some(request_of(agg));
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .unwrap();
        found.expect("a Partial aggregate")
    }

    #[tokio::test]
    async fn plain_aggregates_of_columns_travel_and_others_stay() {
        let got = request_for("SELECT sym, count(*), count(qty), sum(qty) FROM t GROUP BY sym")
            .await
            .unwrap();
        assert_eq!(got.group_by, ["sym"]);
        let calls: Vec<(&str, &str)> = got
            .calls
            .iter()
            .map(|c| (c.function.as_str(), c.column.as_str()))
            .collect();
        assert_eq!(calls, [("count", ""), ("count", "qty"), ("sum", "qty")]);
        // DataFusion averages a BIGINT cast to DOUBLE: the cast travels with the column.
        let avg = request_for("SELECT avg(qty) FROM t").await.unwrap();
        assert_eq!(
            (avg.calls[0].column.as_str(), avg.calls[0].cast.as_str()),
            ("qty", "Float64")
        );
        assert_eq!(columns(&got), ["sym", "qty"]);
        // DataFusion plans a lone DISTINCT as a GROUP BY of its column first: that travels.
        let distinct = request_for("SELECT count(DISTINCT qty) FROM t")
            .await
            .unwrap();
        assert_eq!(
            (distinct.group_by, distinct.calls),
            (vec!["qty".into()], vec![])
        );
        for other in [
            "SELECT count(DISTINCT qty), count(DISTINCT sym) FROM t",
            "SELECT sum(qty) FILTER (WHERE qty > 1) FROM t",
            "SELECT upper(sym), count(*) FROM t GROUP BY upper(sym)",
            "SELECT sym, median(qty) FROM t GROUP BY sym",
            "SELECT sum(qty + 1) FROM t",
        ] {
            assert_eq!(request_for(other).await, None, "{other}");
        }
    }

    fn call(function: &str, column: &str) -> AggregateCall {
        AggregateCall {
            function: function.into(),
            column: column.into(),
            name: format!("{function}({column})"),
            ..AggregateCall::default()
        }
    }

    /// `agg`'s states over `batches` (of `schema()`) and their schema, as a replica computes
    /// them (on a blocking thread).
    async fn states_over(
        agg: &PartialAggregate,
        batches: Vec<RecordBatch>,
    ) -> (SchemaRef, Vec<RecordBatch>) {
        let (agg, runtime) = (agg.clone(), tokio::runtime::Handle::current());
        let spill = tempfile::tempdir().unwrap();
        let memory = QueryMemory {
            limit: 64 << 20,
            spill_dir: spill.path().to_owned(),
        };
        tokio::task::spawn_blocking(move || {
            let rows = batches.into_iter().map(Ok);
            let (out, states) = states(&schema(), rows, &agg, &memory, runtime).unwrap();
            (out, states.collect::<Result<Vec<_>>>().unwrap())
        })
        .await
        .unwrap()
    }

    /// The states' schema of `agg` over `schema()`, as a replica computes it.
    async fn states_schema(agg: &PartialAggregate) -> SchemaRef {
        states_over(agg, Vec::new()).await.0
    }

    /// Two files: 10 rows (`qty` 1..=9, 2 NULLs; `sym` a..c), 5 rows (`qty` all NULL; b..d).
    fn two_files(qty_min: Option<i64>) -> ContainerStats {
        use shoal_storage::ColumnStats;
        let qty = ColumnStats {
            min: Arc::new(Int64Array::from(vec![qty_min, None])),
            max: Arc::new(Int64Array::from(vec![Some(9), None])),
            nulls: vec![Some(2), Some(5)].into(),
        };
        let sym = ColumnStats {
            min: Arc::new(StringArray::from(vec!["a", "b"])),
            max: Arc::new(StringArray::from(vec!["c", "d"])),
            nulls: vec![Some(0), Some(0)].into(),
        };
        let columns = [("qty".to_owned(), qty), ("sym".to_owned(), sym)].into();
        ContainerStats::new(vec![10, 5].into(), columns)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn counts_and_extremes_come_from_the_files_statistics_where_exact() {
        let agg = PartialAggregate {
            group_by: vec![],
            calls: vec![
                call("count", ""),
                call("count", "qty"),
                call("min", "qty"),
                call("max", "sym"),
            ],
        };
        let out = states_schema(&agg).await;
        let got = from_statistics(&agg, &two_files(Some(1)), None, &out).unwrap();
        assert_eq!(got.schema(), out);
        let int = |i: usize| {
            got.column(i)
                .as_primitive::<Int64Type>()
                .iter()
                .collect::<Vec<_>>()
        };
        assert_eq!(int(0), [Some(10), Some(5)]);
        assert_eq!(int(1), [Some(8), Some(0)]);
        assert_eq!(int(2), [Some(1), None], "a file of NULLs alone has no min");
        let sym: Vec<_> = got.column(3).as_string::<i32>().iter().collect();
        assert_eq!(sym, [Some("c"), Some("d")]);

        // A value the statistics do not know, where the file holds some: not answered.
        assert_eq!(from_statistics(&agg, &two_files(None), None, &out), None);
        // A table dropping duplicates: no count, no min or max of a column off its key.
        let key = ["sym".to_owned()];
        assert_eq!(
            from_statistics(&agg, &two_files(Some(1)), Some(&key), &out),
            None
        );
        let of_key = PartialAggregate {
            group_by: vec![],
            calls: vec![call("min", "sym"), call("max", "sym")],
        };
        let out = states_schema(&of_key).await;
        assert!(from_statistics(&of_key, &two_files(Some(1)), Some(&key), &out).is_some());
        let off_key = PartialAggregate {
            group_by: vec![],
            calls: vec![call("max", "qty")],
        };
        let out = states_schema(&off_key).await;
        assert_eq!(
            from_statistics(&off_key, &two_files(Some(1)), Some(&key), &out),
            None
        );
        // Not of the shape at all: grouped, or a sum.
        for other in [
            PartialAggregate {
                group_by: vec!["sym".into()],
                calls: vec![call("count", "")],
            },
            PartialAggregate {
                group_by: vec![],
                calls: vec![call("sum", "qty")],
            },
        ] {
            assert!(!may_use_statistics(&other), "{other:?}");
        }
        assert!(may_use_statistics(&agg));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replica_answers_one_row_of_states_per_group() {
        let agg = PartialAggregate {
            group_by: vec!["sym".into()],
            calls: vec![
                AggregateCall {
                    function: "count".into(),
                    column: String::new(),
                    name: "n".into(),
                    ..AggregateCall::default()
                },
                AggregateCall {
                    function: "sum".into(),
                    column: "qty".into(),
                    name: "total".into(),
                    ..AggregateCall::default()
                },
            ],
        };
        let (out, batches) = states_over(&agg, vec![batch(), batch()]).await;
        let names: Vec<&str> = out.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["sym", "n[count]", "total[sum]"]);
        let merged = arrow::compute::concat_batches(&out, &batches).unwrap();
        let mut groups: Vec<(String, i64, i64)> = (0..merged.num_rows())
            .map(|r| {
                (
                    merged.column(0).as_string::<i32>().value(r).to_owned(),
                    merged.column(1).as_primitive::<Int64Type>().value(r),
                    merged.column(2).as_primitive::<Int64Type>().value(r),
                )
            })
            .collect();
        groups.sort();
        assert_eq!(groups, [("a".into(), 6, 12), ("b".into(), 6, 24)]);
    }

    /// Rows sorted by `sym`: 100 of `a` (`qty` 0..100, 50 NULL), 200 of `b` (100..300).
    fn sorted_batch() -> RecordBatch {
        let sym = (0..300).map(|i| if i < 100 { "a" } else { "b" });
        let qty = (0..300).map(|i| (i != 50).then_some(i));
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from_iter_values(sym)),
                Arc::new(Int64Array::from_iter(qty)),
            ],
        )
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rows_in_runs_of_a_group_give_the_same_states_per_run() {
        let agg = PartialAggregate {
            group_by: vec!["sym".into()],
            calls: vec![
                call("count", ""),
                call("count", "qty"),
                call("min", "qty"),
                call("max", "qty"),
                call("sum", "qty"),
            ],
        };
        // Runs of one row (left to DataFusion) and long runs (taken per run), mixed.
        let (out, batches) = states_over(&agg, vec![batch(), sorted_batch(), batch()]).await;
        let merged = arrow::compute::concat_batches(&out, &batches).unwrap();
        // Each group twice: once from DataFusion's aggregate, once from the runs.
        assert_eq!(merged.num_rows(), 4);
        let mut groups = std::collections::BTreeMap::<String, [i64; 5]>::new();
        for r in 0..merged.num_rows() {
            let sym = merged.column(0).as_string::<i32>().value(r).to_owned();
            let v = |c: usize| merged.column(c).as_primitive::<Int64Type>().value(r);
            let g = groups.entry(sym).or_insert([0, 0, i64::MAX, i64::MIN, 0]);
            *g = [
                g[0] + v(1),
                g[1] + v(2),
                g[2].min(v(3)),
                g[3].max(v(4)),
                g[4] + v(5),
            ];
        }
        assert_eq!(groups["a"], [106, 103, 0, 99, 4912]);
        assert_eq!(groups["b"], [206, 206, 2, 299, 39924]);
    }
}
