//! Filters evaluated where the rows are: the coordinator sends a query's filters to the replica
//! as SQL text ([`encode`]), the replica compiles them against the chunk's schema ([`Filter`])
//! and sends only the rows that pass.
//!
//! A compiled [`Filter`] also prunes: as a [`Prune`] it tells the chunk store which files and
//! row groups cannot hold a row it keeps, from their min/max and null counts (DataFusion's
//! [`PruningPredicate`], as its own Parquet source uses it), so those are never decoded.
//!
//! Correctness never depends on it: the table answers `Inexact`, so DataFusion applies every
//! filter again above the scan. A filter that does not unparse stays on the coordinator alone;
//! a replica of a release before pushdown ignores the field and sends every row.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::utils::{collect_columns, reassign_expr_columns};
use datafusion::physical_expr::{PhysicalExpr, conjunction, split_conjunction};
use datafusion::physical_optimizer::pruning::{PruningPredicate, PruningPredicateBuilder};
use datafusion::prelude::SessionContext;
use datafusion::sql::unparser::expr_to_sql;
use shoal_storage::{ContainerStats, Prune};

/// Whether the replica can evaluate `filter`: deterministic, and expressible as SQL.
pub fn can_push(filter: &Expr) -> bool {
    !filter.is_volatile() && expr_to_sql(filter).is_ok()
}

/// The filters a replica can evaluate, as SQL text.
pub fn encode(filters: &[Expr]) -> Vec<String> {
    encodable(filters).map(|(_, sql)| sql).collect()
}

/// The filters a replica can evaluate, each with its SQL text.
fn encodable(filters: &[Expr]) -> impl Iterator<Item = (&Expr, String)> {
    filters
        .iter()
        .filter(|f| !f.is_volatile())
        .filter_map(|f| expr_to_sql(f).ok().map(|sql| (f, sql.to_string())))
}

/// The filters a scan sends its replicas.
#[derive(Clone, Default)]
pub(crate) struct Pushed {
    /// As SQL text, what the request carries.
    pub sql: Vec<String>,
    /// The same filters as DataFusion plans them over the scan's output, as it plans the
    /// filter it keeps above the scan: a conjunct equal to one of these is one the replicas
    /// apply.
    planned: Vec<Arc<dyn PhysicalExpr>>,
}

impl Pushed {
    /// What a scan of `output` (which holds every column an `Inexact` filter reads) sends of
    /// `filters`. A filter that does not plan here is only not known as applied.
    pub fn new(state: &dyn Session, filters: &[Expr], output: &SchemaRef) -> Result<Self> {
        let schema = DFSchema::try_from(Arc::clone(output))?;
        let mut pushed = Self::default();
        for (f, sql) in encodable(filters) {
            // The filters name the table's columns qualified; the scan's output does not.
            let unqualified = f.clone().transform(|e| {
                Ok(match e {
                    Expr::Column(c) => Transformed::yes(Expr::Column(Column::from_name(c.name))),
                    e => Transformed::no(e),
                })
            })?;
            if let Ok(p) = state.create_physical_expr(unqualified.data, &schema) {
                pushed.planned.push(p);
            }
            pushed.sql.push(sql);
        }
        Ok(pushed)
    }

    /// Whether the replicas apply every condition of `predicate` (a filter over the scan's
    /// output): then the rows they keep are exactly those it keeps.
    pub fn applies(&self, predicate: &Arc<dyn PhysicalExpr>) -> bool {
        split_conjunction(predicate)
            .into_iter()
            .all(|p| self.planned.iter().any(|q| q.as_ref() == p.as_ref()))
    }
}

/// A conjunction of filters compiled for one chunk's schema.
pub struct Filter {
    /// The schema the predicates are bound to.
    schema: SchemaRef,
    predicates: Vec<Arc<dyn PhysicalExpr>>,
    /// The conjunction over min/max statistics; `None` when nothing can be pruned on.
    pruning: Option<Arc<PruningPredicate>>,
}

impl Filter {
    /// Compiles `filters` (SQL boolean expressions over `schema`'s columns). An error names the
    /// filter that does not compile.
    pub fn compile(schema: &SchemaRef, filters: &[String]) -> Result<Self> {
        let ctx = SessionContext::new();
        let df_schema = DFSchema::try_from(Arc::clone(schema))?;
        let predicates = filters
            .iter()
            .map(|sql| {
                let expr = ctx.parse_sql_expr(sql, &df_schema).map_err(|e| {
                    DataFusionError::Plan(format!("filter `{sql}` does not parse: {e}"))
                })?;
                ctx.create_physical_expr(expr, &df_schema)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self::of(Arc::clone(schema), predicates))
    }

    fn of(schema: SchemaRef, predicates: Vec<Arc<dyn PhysicalExpr>>) -> Self {
        // Reads statistics by column name, so it holds for the same columns in any order.
        let pruning = PruningPredicateBuilder::new()
            .with_file_schema(Arc::clone(&schema))
            .build(conjunction(predicates.clone()));
        Self {
            schema,
            predicates,
            pruning,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.predicates.is_empty()
    }

    /// The columns the filters read.
    pub fn columns(&self) -> BTreeSet<String> {
        self.predicates
            .iter()
            .flat_map(collect_columns)
            .map(|c| c.name().to_owned())
            .collect()
    }

    /// The same filters over `schema`, which holds at least [`Filter::columns`] (by name, in
    /// any order): for rows read with only some of the chunk's columns.
    pub fn on(&self, schema: &SchemaRef) -> Result<Self> {
        let predicates = self
            .predicates
            .iter()
            .map(|p| reassign_expr_columns(Arc::clone(p), schema))
            .collect::<Result<_>>()?;
        Ok(Self {
            schema: Arc::clone(schema),
            predicates,
            pruning: self.pruning.clone(),
        })
    }

    /// The rows of `batch` every filter keeps (a NULL outcome drops the row, as in WHERE).
    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let mut batch = batch.clone();
        for p in &self.predicates {
            if batch.num_rows() == 0 {
                break;
            }
            let mask = p.evaluate(&batch)?.into_array(batch.num_rows())?;
            if mask.data_type() != &DataType::Boolean {
                return Err(DataFusionError::Plan(format!(
                    "filter {p} is not a condition: it gives {}",
                    mask.data_type()
                )));
            }
            batch = filter_record_batch(&batch, mask.as_boolean())?;
        }
        Ok(batch)
    }
}

impl Prune for Filter {
    /// Every container when nothing can be pruned on, or when evaluating fails (pruning is only
    /// ever an optimisation).
    fn may_match(&self, stats: &ContainerStats) -> Vec<bool> {
        let all = || vec![true; stats.containers()];
        let Some(p) = &self.pruning else {
            return all();
        };
        p.prune(&Statistics(stats)).unwrap_or_else(|e| {
            tracing::debug!(error = %e, "pruning skipped");
            all()
        })
    }

    /// The conditions of the conjunction (each filter split at its ANDs) that read only
    /// `columns`.
    fn only(&self, columns: &[String]) -> Option<Arc<dyn Prune>> {
        let within = |p: &Arc<dyn PhysicalExpr>| {
            collect_columns(p)
                .iter()
                .all(|c| columns.iter().any(|k| k == c.name()))
        };
        let kept: Vec<Arc<dyn PhysicalExpr>> = self
            .predicates
            .iter()
            .flat_map(split_conjunction)
            .filter(|p| within(p))
            .cloned()
            .collect();
        let only = Self::of(Arc::clone(&self.schema), kept);
        only.pruning
            .is_some()
            .then(|| Arc::new(only) as Arc<dyn Prune>)
    }
}

/// The chunk store's statistics as DataFusion's pruning reads them.
struct Statistics<'a>(&'a ContainerStats);

impl PruningStatistics for Statistics<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.0.column(column.name()).map(|c| Arc::clone(&c.min))
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.0.column(column.name()).map(|c| Arc::clone(&c.max))
    }

    fn num_containers(&self) -> usize {
        self.0.containers()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        self.0
            .column(column.name())
            .map(|c| Arc::new(c.nulls.clone()) as ArrayRef)
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        Some(Arc::new(self.0.rows().clone()))
    }

    fn contained(&self, _: &Column, _: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::{col, lit};
    use shoal_client::seed;

    use super::*;

    const JAN1_MS: i64 = 1_672_531_200_000;

    fn schema() -> SchemaRef {
        seed::schema()
    }

    /// Ids 1..=100, one minute apart from 2023-01-01; names cycle through `seed::NAMES` by id
    /// (Apple for multiples of 5).
    fn batch() -> RecordBatch {
        let ids: Vec<i32> = (1..=100).collect();
        seed::rows(&ids, |i| JAN1_MS + i64::from(i) * 60_000)
    }

    fn ids(b: &RecordBatch) -> Vec<i32> {
        b.column(2)
            .as_primitive::<arrow::datatypes::Int32Type>()
            .values()
            .to_vec()
    }

    /// What the coordinator sends is what the replica evaluates, for the usual shapes.
    fn round_trip(filters: &[Expr]) -> Vec<i32> {
        let sql = encode(filters);
        assert_eq!(sql.len(), filters.len(), "{sql:?}");
        ids(&Filter::compile(&schema(), &sql)
            .unwrap()
            .apply(&batch())
            .unwrap())
    }

    #[test]
    fn comparisons_in_lists_and_ranges_on_any_column_travel_and_filter() {
        let apple_between = col("name")
            .eq(lit("Apple"))
            .and(col("id").between(lit(10), lit(30)));
        assert_eq!(round_trip(&[apple_between]), vec![10, 15, 20, 25, 30]);
        let in_list = col("id").in_list(vec![lit(3), lit(5), lit(500)], false);
        assert_eq!(round_trip(&[in_list, col("id").gt(lit(4))]), vec![5]);
        let modulo = (col("id") % lit(7)).eq(lit(3)).or(col("id").is_null());
        assert_eq!(
            round_trip(&[modulo]),
            (1..=100).filter(|i| i % 7 == 3).collect::<Vec<_>>()
        );
        // A time range, as `time >= TIMESTAMP '...'` plans it.
        let after = col("time").gt_eq(lit(datafusion::scalar::ScalarValue::TimestampMillisecond(
            Some(JAN1_MS + 95 * 60_000),
            None,
        )));
        assert_eq!(round_trip(&[after]), vec![95, 96, 97, 98, 99, 100]);
    }

    #[test]
    fn nothing_to_push_keeps_every_row_and_a_bad_filter_is_named() {
        let none = Filter::compile(&schema(), &[]).unwrap();
        assert!(none.is_empty());
        assert_eq!(none.apply(&batch()).unwrap().num_rows(), 100);
        let err = Filter::compile(&schema(), &["nope > 1".into()])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("nope"), "{err}");
        let err = Filter::compile(&schema(), &["id + 1".into()])
            .unwrap()
            .apply(&batch())
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a condition"), "{err}");
    }

    #[test]
    fn volatile_filters_stay_on_the_coordinator() {
        let random = datafusion::functions::math::expr_fn::random().lt(lit(0.5));
        assert!(!can_push(&random));
        assert!(encode(&[random]).is_empty());
    }
}
