//! Partial aggregate states over rows that come in runs of equal group keys, as a chunk file
//! sorted by the grouped columns gives them: one key lookup and one accumulator update per run
//! instead of a hash and a key comparison per row, which were about half of a GROUP BY's time
//! over sorted files (DataFusion's hash aggregate does not use the order).
//!
//! [`RunStates::absorb`] takes a batch whose runs are long enough and leaves the others to
//! DataFusion's Partial aggregate (see `partial_aggregate::states`); both answer states of the
//! same shape from the same accumulators, and the Final aggregate merges them wherever a group
//! appears more than once.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::{cast, partition};
use arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

/// A batch is taken only when its runs average this many rows: below, a lookup and an update
/// per run cost more than DataFusion's per-row hashing.
const MIN_RUN_ROWS: usize = 64;
/// Groups held at most; a batch that could add more is left to DataFusion (which spills), so
/// this path needs no memory accounting.
const MAX_GROUPS: usize = 4096;

pub(crate) struct RunStates {
    /// The group columns' indices in the input.
    group_by: Vec<usize>,
    calls: Vec<Arc<AggregateFunctionExpr>>,
    index: HashMap<Vec<ScalarValue>, usize>,
    groups: Vec<Group>,
}

/// A group's key and one accumulator per call.
struct Group {
    key: Vec<ScalarValue>,
    accumulators: Vec<Box<dyn Accumulator>>,
}

impl RunStates {
    pub(crate) fn new(group_by: Vec<usize>, calls: Vec<Arc<AggregateFunctionExpr>>) -> Self {
        Self {
            group_by,
            calls,
            index: HashMap::new(),
            groups: Vec::new(),
        }
    }

    /// Adds `batch`'s rows to the states if they come in runs of [`MIN_RUN_ROWS`] on average
    /// and their groups fit; `false` when it is left to the caller (nothing of it was taken).
    pub(crate) fn absorb(&mut self, batch: &RecordBatch) -> Result<bool> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(true);
        }
        let runs: Vec<Range<usize>> = if self.group_by.is_empty() {
            std::iter::once(0..rows).collect()
        } else {
            let keys: Vec<ArrayRef> = self
                .group_by
                .iter()
                .map(|&i| Arc::clone(batch.column(i)))
                .collect();
            // A key type the comparison lacks: DataFusion's aggregate takes the batch.
            let Ok(runs) = partition(&keys) else {
                return Ok(false);
            };
            runs.ranges()
        };
        if runs.len() * MIN_RUN_ROWS > rows.max(MIN_RUN_ROWS)
            || self.groups.len() + runs.len() > MAX_GROUPS
        {
            return Ok(false);
        }
        // Each call's arguments over the whole batch, sliced per run.
        let args = self
            .calls
            .iter()
            .map(|c| {
                c.expressions()
                    .iter()
                    .map(|e| e.evaluate(batch)?.into_array(rows))
                    .collect::<Result<Vec<ArrayRef>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        for run in runs {
            let key = self
                .group_by
                .iter()
                .map(|&i| ScalarValue::try_from_array(batch.column(i), run.start))
                .collect::<Result<Vec<_>>>()?;
            let group = match self.index.get(&key) {
                Some(&g) => g,
                None => self.add_group(key)?,
            };
            let accumulators = &mut self.groups[group].accumulators;
            for (acc, args) in accumulators.iter_mut().zip(&args) {
                let slices: Vec<ArrayRef> =
                    args.iter().map(|a| a.slice(run.start, run.len())).collect();
                acc.update_batch(&slices)?;
            }
        }
        Ok(true)
    }

    fn add_group(&mut self, key: Vec<ScalarValue>) -> Result<usize> {
        let accumulators = self
            .calls
            .iter()
            .map(|c| c.create_accumulator())
            .collect::<Result<Vec<_>>>()?;
        let group = self.groups.len();
        self.index.insert(key.clone(), group);
        self.groups.push(Group { key, accumulators });
        Ok(group)
    }

    /// The states of the groups taken, as rows of `out`, the Partial aggregate's output (group
    /// columns, then each call's state fields); `None` when no batch was taken.
    pub(crate) fn finish(&mut self, out: &SchemaRef) -> Result<Option<RecordBatch>> {
        let groups = std::mem::take(&mut self.groups);
        self.index.clear();
        if groups.is_empty() {
            return Ok(None);
        }
        let fields = out.fields().len();
        let mut columns: Vec<Vec<ScalarValue>> = vec![Vec::with_capacity(groups.len()); fields];
        for mut group in groups {
            let mut values = group.key;
            for acc in &mut group.accumulators {
                values.extend(acc.state()?);
            }
            if values.len() != fields {
                return Err(DataFusionError::Internal(format!(
                    "run states: {} values for {fields} state columns",
                    values.len()
                )));
            }
            for (column, v) in columns.iter_mut().zip(values) {
                column.push(v);
            }
        }
        let arrays = columns
            .into_iter()
            .zip(out.fields())
            .map(|(values, field)| {
                let array = ScalarValue::iter_to_array(values)?;
                if array.data_type() == field.data_type() {
                    Ok(array)
                } else {
                    Ok(cast(&array, field.data_type())?)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(RecordBatch::try_new(Arc::clone(out), arrays)?))
    }
}
