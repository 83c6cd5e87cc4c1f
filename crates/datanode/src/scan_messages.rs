//! The answer to a chunk scan: what the store reads for it ([`plan`]: the projected and filtered
//! columns, pruned by the filters), the rows the request's filters keep, its columns, at most its
//! limit ([`rows`]), cut into messages bounded by bytes ([`messages`]). Everything is lazy: a
//! batch is read, filtered, projected and encoded only when the transport asks for it, so a
//! scan of any size holds about one store batch and one message, and a limit met early stops
//! the reading; each message is one Arrow IPC stream of about [`MESSAGE_BYTES`], under every
//! receiver's limit. Counting
//! batches instead (as the previous release did) made a message of 256 appends of 10,000 rows
//! 56 MB, which every query refused.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::ipc::writer::StreamWriter;
use shoal_proto::ScanChunkRequest;
use shoal_query::pushdown::Filter;
use shoal_storage::{Prune, ScanOptions};

use crate::top_rows::TopRows;

/// Bytes of one scan message, give or take one batch piece: large enough that per-message
/// overhead is negligible, small enough to stay under every gRPC default limit (4 MiB).
pub(crate) const MESSAGE_BYTES: usize = 1 << 20;

/// Batches of an answer, produced as they are asked for; an error ends the answer.
pub(crate) type Rows = Box<dyn Iterator<Item = Result<RecordBatch, String>> + Send>;

/// What a request asks of a chunk: its filters (compiled for the chunk's schema, also used to
/// prune), its columns (`None`: all), at most how many rows.
pub(crate) struct Plan {
    filter: Arc<Filter>,
    columns: Option<Vec<String>>,
    limit: usize,
    top: Option<TopRows>,
}

/// The plan of `req` over a chunk of `schema`; a filter that does not compile or a column the
/// chunk lacks is refused here, before anything is read.
pub(crate) fn plan(schema: &SchemaRef, req: &ScanChunkRequest) -> Result<Plan, String> {
    let filter = Filter::compile(schema, &req.filters).map_err(|e| e.to_string())?;
    let columns = if req.project {
        if let Some(c) = req.columns.iter().find(|c| schema.index_of(c).is_err()) {
            return Err(no_column(schema, req.chunk_id, c));
        }
        Some(req.columns.clone())
    } else {
        None
    };
    let limit = match usize::try_from(req.limit) {
        Ok(0) | Err(_) => usize::MAX,
        Ok(n) => n,
    };
    let sent: Vec<String> = match &columns {
        Some(c) => c.clone(),
        None => schema.fields().iter().map(|f| f.name().clone()).collect(),
    };
    let top = TopRows::of(req, schema, &sent);
    Ok(Plan {
        filter: Arc::new(filter),
        columns,
        limit,
        top,
    })
}

impl Plan {
    /// What the store reads: the projected columns and those the filters need, files and row
    /// groups the filters rule out skipped.
    pub(crate) fn read(&self) -> ScanOptions {
        let columns = self.columns.as_ref().map(|projected| {
            let mut all: Vec<String> = projected.clone();
            all.extend(self.filter.columns());
            all
        });
        let prune = (!self.filter.is_empty()).then(|| Arc::clone(&self.filter) as Arc<dyn Prune>);
        let order = self
            .top
            .as_ref()
            .and_then(|t| t.read_order(self.filter.is_empty()));
        ScanOptions {
            columns,
            prune,
            order,
        }
    }
}

/// The store's batches (of schema `read`, holding at least what [`Plan::read`] asked for) as
/// the request wants them: the rows its filters keep, only its columns (by name, in its
/// order) when it projects, no more rows than its limit. Answers the schema of what follows.
pub(crate) fn rows(
    read: &SchemaRef,
    batches: Rows,
    plan: Plan,
) -> Result<(SchemaRef, Rows), String> {
    let filter = plan.filter.on(read).map_err(|e| e.to_string())?;
    let indices = match &plan.columns {
        Some(columns) => columns
            .iter()
            .map(|c| read.index_of(c).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?,
        None => (0..read.fields().len()).collect(),
    };
    let projected = Arc::new(read.project(&indices).map_err(|e| e.to_string())?);
    let out = Arc::clone(&projected);
    let mut left = plan.limit;
    let rows = batches
        .map(move |b| {
            let kept = filter.apply(&b?).map_err(|e| e.to_string())?;
            // The row count is explicit so that a batch of no column still counts rows.
            let columns = indices
                .iter()
                .map(|i| Arc::clone(kept.column(*i)))
                .collect();
            let options = RecordBatchOptions::new().with_row_count(Some(kept.num_rows()));
            RecordBatch::try_new_with_options(Arc::clone(&projected), columns, &options)
                .map_err(|e| e.to_string())
        })
        .map_while(move |b| match b {
            _ if left == 0 => None,
            Ok(b) => {
                let n = b.num_rows().min(left);
                left -= n;
                Some(Ok(if n == b.num_rows() { b } else { b.slice(0, n) }))
            }
            Err(e) => Some(Err(e)),
        })
        .filter(|b| b.as_ref().map_or(true, |b| b.num_rows() > 0));
    let rows: Rows = Box::new(rows);
    Ok(match plan.top {
        Some(top) => (Arc::clone(&out), top.of_rows(out, rows)),
        None => (out, rows),
    })
}

fn no_column(schema: &SchemaRef, chunk: u64, column: &str) -> String {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    format!(
        "chunk {chunk} has no column `{column}` (columns: {})",
        names.join(", ")
    )
}

/// The messages of an answer, each about `target` bytes of Arrow IPC.
pub(crate) fn messages(
    schema: SchemaRef,
    rows: Rows,
    target: usize,
) -> impl Iterator<Item = Result<Vec<u8>, String>> + Send + 'static {
    let mut pieces = Pieces {
        source: rows,
        split: VecDeque::new(),
        target,
        failed: None,
    };
    // The first message holds the schema alone, sent at once: the receiver learns the
    // replica serves the chunk even when a filter lets no row through for a long time.
    let header = std::iter::once(ipc(&schema, 0, |_| Ok(())));
    let mut ended = false;
    let body = std::iter::from_fn(move || {
        if ended {
            return None;
        }
        let message = match pieces.next() {
            Some(first) => ipc(&schema, target, |w| {
                write_pieces(w, first, &mut pieces, target)
            }),
            None => {
                ended = true;
                return pieces.failed.take().map(Err);
            }
        };
        // An error met while filling this message ends the answer: the receiver must learn
        // that rows are missing, not see a short answer.
        match (message, pieces.failed.take()) {
            (Ok(m), None) => Some(Ok(m)),
            (Err(e), _) | (Ok(_), Some(e)) => {
                ended = true;
                Some(Err(e))
            }
        }
    });
    header.chain(body)
}

/// One Arrow IPC stream of `schema` with the batches `write` puts in it (none: every reader
/// takes the stream as no rows).
fn ipc(
    schema: &SchemaRef,
    capacity: usize,
    write: impl FnOnce(&mut StreamWriter<Vec<u8>>) -> Result<(), ArrowError>,
) -> Result<Vec<u8>, String> {
    let encode = || {
        let mut w = StreamWriter::try_new(Vec::with_capacity(capacity), schema)?;
        write(&mut w)?;
        w.finish()?;
        w.into_inner()
    };
    encode().map_err(|e| format!("encode rows: {e}"))
}

/// Writes `first` and as many following pieces as fit in `target` bytes.
fn write_pieces(
    w: &mut StreamWriter<Vec<u8>>,
    first: RecordBatch,
    pieces: &mut Pieces,
    target: usize,
) -> Result<(), ArrowError> {
    w.write(&first)?;
    let mut estimated = estimated_bytes(&first);
    while let Some(next) = pieces.peek_size() {
        if estimated + next > target || w.get_ref().len() >= target {
            break;
        }
        let Some(piece) = pieces.next() else { break };
        w.write(&piece)?;
        estimated += next;
    }
    Ok(())
}

/// The answer's batches in order, a batch larger than the target cut into row ranges that fit.
struct Pieces {
    source: Rows,
    /// Row ranges of the batch being cut, with their estimated size.
    split: VecDeque<(RecordBatch, usize)>,
    target: usize,
    /// The error that ended the source.
    failed: Option<String>,
}

impl Pieces {
    fn next(&mut self) -> Option<RecordBatch> {
        self.fill();
        self.split.pop_front().map(|(b, _)| b)
    }

    /// The estimated size of the next piece.
    fn peek_size(&mut self) -> Option<usize> {
        self.fill();
        self.split.front().map(|(_, size)| *size)
    }

    fn fill(&mut self) {
        while self.split.is_empty() && self.failed.is_none() {
            let batch = match self.source.next() {
                Some(Ok(b)) => b,
                Some(Err(e)) => {
                    self.failed = Some(e);
                    return;
                }
                None => return,
            };
            let (rows, size) = (batch.num_rows(), estimated_bytes(&batch));
            if size <= self.target || rows <= 1 {
                self.split.push_back((batch, size));
                continue;
            }
            let per_piece = (rows * self.target / size).max(1);
            let mut offset = 0;
            while offset < rows {
                let len = per_piece.min(rows - offset);
                self.split
                    .push_back((batch.slice(offset, len), size * len / rows));
                offset += len;
            }
        }
    }
}

/// Bytes the batch's buffers hold: close to its IPC size for a batch as appended. A filtered
/// batch is a copy of its rows, so this holds for it too; a slice overcounts, which only makes
/// messages smaller.
fn estimated_bytes(batch: &RecordBatch) -> usize {
    batch.get_array_memory_size()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int32Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use shoal_catalog::rows::decode_ipc;

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int32, false),
            Field::new("time", DataType::Int64, false),
            Field::new("name", DataType::Utf8, false),
        ]))
    }

    fn batch(first: i32, rows: i32) -> RecordBatch {
        let ids: Vec<i32> = (first..first + rows).collect();
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int32Array::from(ids.clone())),
                Arc::new(Int64Array::from_iter_values(
                    ids.iter().map(|&i| i64::from(i)),
                )),
                Arc::new(StringArray::from_iter_values(
                    ids.iter().map(|i| format!("symbol-{}", i % 7)),
                )),
            ],
        )
        .unwrap()
    }

    fn ids(messages: &[Vec<u8>]) -> Vec<i32> {
        messages
            .iter()
            .flat_map(|m| {
                let b = decode_ipc(m).unwrap();
                let col = b.column(0).as_any().downcast_ref::<Int32Array>().unwrap();
                col.values().to_vec()
            })
            .collect()
    }

    fn all(batches: Vec<RecordBatch>) -> Rows {
        Box::new(batches.into_iter().map(Ok))
    }

    fn request(columns: &[&str], limit: u64, filters: &[&str]) -> ScanChunkRequest {
        ScanChunkRequest {
            chunk_id: 9,
            chunk_version: 1,
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            project: true,
            limit,
            filters: filters.iter().map(|f| (*f).to_owned()).collect(),
            ..ScanChunkRequest::default()
        }
    }

    fn answer(req: &ScanChunkRequest) -> Result<Vec<RecordBatch>, String> {
        let batches: Vec<RecordBatch> = (0..10).map(|i| batch(i * 100, 100)).collect();
        let plan = plan(&schema(), req)?;
        let (projected, rows) = rows(&schema(), all(batches), plan)?;
        messages(projected, rows, 4 << 10)
            .map(|m| m.map(|m| decode_ipc(&m).unwrap()))
            .collect()
    }

    #[test]
    fn a_scan_sends_the_rows_its_filters_keep_its_columns_and_at_most_its_limit() {
        let got = answer(&request(&["name", "id"], 250, &[])).unwrap();
        let names: Vec<&str> = got[0]
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(names, ["name", "id"]);
        assert_eq!(ids_of(&got, 1), (0..250).collect::<Vec<_>>());

        let got = answer(&request(
            &["id"],
            0,
            &["id % 100 = 7", "name <> 'symbol-0'"],
        ))
        .unwrap();
        let want: Vec<i32> = (0..1000).filter(|i| i % 100 == 7 && i % 7 != 0).collect();
        assert_eq!(ids_of(&got, 0), want);

        // No column at all (a count): only row counts travel, and they survive the encoding.
        let got = answer(&request(&[], 0, &["id < 500"])).unwrap();
        assert_eq!(got.iter().map(RecordBatch::num_rows).sum::<usize>(), 500);

        // A request of a release before these fields gets every column, every row.
        let old = ScanChunkRequest {
            chunk_id: 9,
            chunk_version: 1,
            ..ScanChunkRequest::default()
        };
        let got = answer(&old).unwrap();
        assert_eq!(got[0].num_columns(), 3);
        assert_eq!(ids_of(&got, 0), (0..1000).collect::<Vec<_>>());

        let err = answer(&request(&["nope"], 0, &[])).unwrap_err();
        assert!(err.contains("no column `nope`"), "{err}");
        let err = answer(&request(&["id"], 0, &["nope = 1"])).unwrap_err();
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn the_store_reads_the_projected_and_filtered_columns_and_prunes_only_with_filters() {
        let read = |req: &ScanChunkRequest| plan(&schema(), req).unwrap().read();
        let opts = read(&request(&["name"], 0, &["id < 5"]));
        let mut columns = opts.columns.unwrap();
        columns.sort();
        assert_eq!(columns, ["id", "name"]);
        assert!(opts.prune.is_some());
        let opts = read(&request(&[], 10, &[]));
        assert_eq!(opts.columns, Some(Vec::new()), "a count reads no column");
        assert!(opts.prune.is_none());
        let old = read(&ScanChunkRequest::default());
        assert!(
            old.columns.is_none() && old.prune.is_none(),
            "an old request reads all"
        );
    }

    #[test]
    fn an_error_midway_ends_the_answer_with_that_error() {
        let rows: Rows = Box::new(
            vec![
                Ok(batch(0, 10)),
                Err("disk gone".to_owned()),
                Ok(batch(10, 10)),
            ]
            .into_iter(),
        );
        let mut out = messages(schema(), rows, MESSAGE_BYTES);
        assert!(out.next().unwrap().is_ok(), "the schema first");
        assert_eq!(out.next(), Some(Err("disk gone".to_owned())));
        assert_eq!(out.next(), None);
    }

    fn ids_of(batches: &[RecordBatch], column: usize) -> Vec<i32> {
        batches
            .iter()
            .flat_map(|b| {
                let col = b
                    .column(column)
                    .as_any()
                    .downcast_ref::<Int32Array>()
                    .unwrap();
                col.values().to_vec()
            })
            .collect()
    }

    #[test]
    fn many_appends_become_messages_under_the_target_with_every_row_once_in_order() {
        // 300 appends of 10,000 rows: about 60 MB, the shape that failed as one message.
        let batches: Vec<RecordBatch> = (0..300).map(|i| batch(i * 10_000, 10_000)).collect();
        let target = MESSAGE_BYTES;
        let out: Vec<Vec<u8>> = messages(schema(), all(batches), target)
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(out.len() > 30, "{} messages", out.len());
        for m in &out {
            assert!(m.len() <= target * 2, "a message of {} bytes", m.len());
        }
        assert_eq!(ids(&out), (0..3_000_000).collect::<Vec<_>>());
    }

    #[test]
    fn one_batch_larger_than_the_target_is_cut_into_row_ranges() {
        let out: Vec<Vec<u8>> = messages(schema(), all(vec![batch(0, 1_000_000)]), 256 << 10)
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(out.len() >= 40, "{} messages", out.len());
        for m in &out {
            assert!(m.len() <= 512 << 10, "a message of {} bytes", m.len());
        }
        assert_eq!(ids(&out), (0..1_000_000).collect::<Vec<_>>());
    }

    #[test]
    fn small_appends_share_a_message_and_every_answer_starts_with_the_schema_alone() {
        let batches: Vec<RecordBatch> = (0..100).map(|i| batch(i * 10, 10)).collect();
        let out: Vec<Vec<u8>> = messages(schema(), all(batches), MESSAGE_BYTES)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(decode_ipc(&out[0]).unwrap().num_rows(), 0);
        assert_eq!(ids(&out), (0..1_000).collect::<Vec<_>>());
        let empty: Vec<Vec<u8>> = messages(schema(), all(Vec::new()), MESSAGE_BYTES)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(empty.len(), 1);
        assert_eq!(decode_ipc(&empty[0]).unwrap().num_rows(), 0);
    }
}
