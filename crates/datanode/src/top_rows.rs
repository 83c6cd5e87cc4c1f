//! A chunk scan's top k (`ScanChunkRequest.top_k`, `ORDER BY … LIMIT k`): the replica keeps
//! the best k rows that pass the request's filters, sends only those, and tells the store how
//! far it got ([`Bar`]) so that it reads its best row groups first and stops once none left
//! can beat the k-th row (`shoal_storage::ReadOrder`). The coordinator sorts and limits again,
//! so only the number of rows changes.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::{
    SortColumn, SortOptions, concat_batches, lexsort_to_indices, take_record_batch,
};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use shoal_proto::ScanChunkRequest;
use shoal_storage::{Bar, ReadOrder};

use crate::scan_messages::Rows;

/// What a request's `top_k` asks, checked against the chunk.
pub(crate) struct TopRows {
    /// Column names and how each sorts, most significant first.
    columns: Vec<(String, SortOptions)>,
    k: usize,
    /// How the store reads by the first column, when its values are ranked.
    order: Option<ReadOrder>,
}

impl TopRows {
    /// The top k `req` asks of a chunk of `schema` whose answer has the columns `sent`, if it
    /// asks one that can be kept: a limit, columns the answer holds, no aggregate over the
    /// rows (which needs them all). Otherwise every row is sent, which is never wrong.
    pub(crate) fn of(req: &ScanChunkRequest, schema: &SchemaRef, sent: &[String]) -> Option<Self> {
        let top = req.top_k.as_ref()?;
        let k = usize::try_from(top.limit).ok().filter(|k| *k > 0)?;
        let known = |c: &str| sent.iter().any(|s| s == c) && schema.index_of(c).is_ok();
        if req.aggregate.is_some()
            || top.columns.is_empty()
            || !top.columns.iter().all(|c| known(&c.name))
        {
            return None;
        }
        let columns: Vec<(String, SortOptions)> = top
            .columns
            .iter()
            .map(|c| {
                let options = SortOptions {
                    descending: c.descending,
                    nulls_first: c.nulls_first,
                };
                (c.name.clone(), options)
            })
            .collect();
        let (first, options) = &columns[0];
        let ranked = schema
            .field_with_name(first)
            .is_ok_and(|f| ReadOrder::ranks(f.data_type()));
        let order = ranked.then(|| ReadOrder {
            column: first.clone(),
            descending: options.descending,
            nulls_first: options.nulls_first,
            bar: Arc::new(Bar::default()),
            rows_count: None,
        });
        Some(Self { columns, k, order })
    }

    /// How the store reads for it; `rows_count` when every row the store yields is a
    /// candidate (no filter after it).
    pub(crate) fn read_order(&self, rows_count: bool) -> Option<ReadOrder> {
        self.order.clone().map(|o| ReadOrder {
            rows_count: rows_count.then_some(self.k),
            ..o
        })
    }

    /// The best k of `rows` (of `schema`), as one batch once `rows` end; the store's bar raised
    /// to the k-th as they come.
    pub(crate) fn of_rows(self, schema: SchemaRef, rows: Rows) -> Rows {
        let mut rows = Some(rows);
        Box::new(std::iter::from_fn(move || {
            let rows = rows.take()?;
            Some(self.best(&schema, rows))
        }))
    }

    fn best(&self, schema: &SchemaRef, rows: Rows) -> Result<RecordBatch, String> {
        let mut best = RecordBatch::new_empty(Arc::clone(schema));
        for batch in rows {
            let all = concat_batches(schema, [&best, &batch?]).map_err(|e| e.to_string())?;
            best = self.top(&all).map_err(|e| e.to_string())?;
        }
        Ok(best)
    }

    /// The best k rows of `all`; raises the bar when there are k.
    fn top(&self, all: &RecordBatch) -> Result<RecordBatch, ArrowError> {
        let by = self
            .columns
            .iter()
            .map(|(name, options)| {
                let values = all
                    .column_by_name(name)
                    .ok_or_else(|| ArrowError::SchemaError(format!("no column {name}")))?;
                Ok(SortColumn {
                    values: Arc::clone(values),
                    options: Some(*options),
                })
            })
            .collect::<Result<Vec<_>, ArrowError>>()?;
        let indices = lexsort_to_indices(&by, Some(self.k))?;
        let top = take_record_batch(all, &indices)?;
        if let Some(order) = &self.order
            && top.num_rows() == self.k
        {
            let kth = top
                .column_by_name(&order.column)
                .map(|v| v.slice(self.k - 1, 1));
            if let Some(&rank) = kth
                .map(|v| order.rank_all(&v))
                .transpose()?
                .iter()
                .flatten()
                .next()
            {
                order.bar.raise(rank);
            }
        }
        Ok(top)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{AsArray, Int64Array, StringArray, TimestampMillisecondArray};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit};
    use shoal_proto::{PartialAggregate, SortColumn, TopK};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(
                "time",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
            Field::new("sym", DataType::Utf8, true),
            Field::new("id", DataType::Int64, false),
        ]))
    }

    fn batch(ids: &[i64]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(TimestampMillisecondArray::from_iter_values(
                    ids.iter().map(|i| i * 10),
                )),
                Arc::new(StringArray::from_iter_values(
                    ids.iter().map(|i| format!("s{}", i % 3)),
                )),
                Arc::new(Int64Array::from(ids.to_vec())),
            ],
        )
        .unwrap()
    }

    fn asking(columns: &[(&str, bool)], limit: u64) -> ScanChunkRequest {
        let columns = columns
            .iter()
            .map(|(name, descending)| SortColumn {
                name: (*name).into(),
                descending: *descending,
                nulls_first: *descending,
            })
            .collect();
        ScanChunkRequest {
            top_k: Some(TopK { columns, limit }),
            ..ScanChunkRequest::default()
        }
    }

    fn all() -> Vec<String> {
        ["time", "sym", "id"].map(String::from).to_vec()
    }

    #[test]
    fn a_replica_sends_its_best_k_rows_and_raises_the_stores_bar() {
        let top = TopRows::of(&asking(&[("time", true)], 3), &schema(), &all()).unwrap();
        let order = top.read_order(true).unwrap();
        assert_eq!(order.rows_count, Some(3));
        let rows: Rows = Box::new(
            [batch(&[5, 1, 9]), batch(&[7, 2]), batch(&[8, 3])]
                .into_iter()
                .map(Ok),
        );
        let out: Vec<RecordBatch> = top
            .of_rows(schema(), rows)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(out.len(), 1);
        let ids: Vec<i64> = out[0]
            .column(2)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec();
        assert_eq!(ids, [9, 8, 7]);
        // The third best time: 70 ms, ranked as itself (descending).
        assert_eq!(order.bar.get(), Some(70));

        // By an unranked column first: the rows still, the store reading as it would.
        let by_sym = TopRows::of(
            &asking(&[("sym", false), ("id", true)], 2),
            &schema(),
            &all(),
        );
        let by_sym = by_sym.unwrap();
        assert!(by_sym.read_order(false).is_none());
        let rows: Rows = Box::new(std::iter::once(Ok(batch(&[1, 2, 3, 4, 6]))));
        let out: Vec<RecordBatch> = by_sym
            .of_rows(schema(), rows)
            .collect::<Result<_, _>>()
            .unwrap();
        let ids: Vec<i64> = out[0]
            .column(2)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec();
        assert_eq!(ids, [6, 3], "s0 first, the larger id first");
    }

    #[test]
    fn a_top_k_that_cannot_be_kept_is_ignored_and_every_row_sent() {
        let ok = asking(&[("time", true)], 3);
        assert!(TopRows::of(&ok, &schema(), &all()).is_some());
        // A column the answer does not hold, none at all, no limit, an aggregate over the rows.
        let only_id = ["id".to_owned()];
        assert!(TopRows::of(&ok, &schema(), &only_id).is_none());
        assert!(TopRows::of(&asking(&[("nope", true)], 3), &schema(), &all()).is_none());
        assert!(TopRows::of(&asking(&[], 3), &schema(), &all()).is_none());
        assert!(TopRows::of(&asking(&[("time", true)], 0), &schema(), &all()).is_none());
        let aggregated = ScanChunkRequest {
            aggregate: Some(PartialAggregate::default()),
            ..ok
        };
        assert!(TopRows::of(&aggregated, &schema(), &all()).is_none());
    }
}
