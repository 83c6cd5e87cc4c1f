//! The answer to a chunk scan: the requested columns ([`shape`]), at most the requested rows,
//! cut into messages bounded by bytes ([`messages`]): each message is one Arrow IPC stream of
//! about [`MESSAGE_BYTES`], encoded only when the transport asks for it, so a scan of any size
//! neither exceeds a receiver's message limit nor holds a second, encoded copy of the chunk.
//! Counting batches instead (as the previous release did) made a message of 256 appends of
//! 10,000 rows 56 MB, which every query refused.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::ipc::writer::StreamWriter;
use shoal_proto::ScanChunkRequest;

/// The batches' rows as the request wants them: only its columns (by name, in its order) when
/// it projects, and no more than its limit. A column the chunk lacks is named in the error.
pub(crate) fn shape(
    schema: &SchemaRef,
    batches: Vec<RecordBatch>,
    req: &ScanChunkRequest,
) -> Result<(SchemaRef, Vec<RecordBatch>), String> {
    let (schema, batches) = if req.project {
        let indices = req
            .columns
            .iter()
            .map(|c| {
                schema.index_of(c).map_err(|_| {
                    format!(
                        "chunk {} has no column `{c}` (columns: {})",
                        req.chunk_id,
                        schema
                            .fields()
                            .iter()
                            .map(|f| f.name().as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let projected = Arc::new(schema.project(&indices).map_err(|e| e.to_string())?);
        let batches = batches
            .iter()
            .map(|b| {
                // The row count is explicit so that a batch of no column still counts rows.
                let columns = indices.iter().map(|i| Arc::clone(b.column(*i))).collect();
                let options = RecordBatchOptions::new().with_row_count(Some(b.num_rows()));
                RecordBatch::try_new_with_options(Arc::clone(&projected), columns, &options)
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        (projected, batches)
    } else {
        (Arc::clone(schema), batches)
    };
    Ok((schema, limited(batches, req.limit)))
}

/// The first `limit` rows of `batches` (all of them for 0).
fn limited(batches: Vec<RecordBatch>, limit: u64) -> Vec<RecordBatch> {
    let mut left = match usize::try_from(limit) {
        Ok(0) | Err(_) => return batches,
        Ok(n) => n,
    };
    let mut out = Vec::new();
    for b in batches {
        if left == 0 {
            break;
        }
        let n = b.num_rows().min(left);
        left -= n;
        out.push(if n == b.num_rows() { b } else { b.slice(0, n) });
    }
    out
}

/// Bytes of one scan message, give or take one batch piece: large enough that per-message
/// overhead is negligible, small enough to stay under every gRPC default limit (4 MiB).
pub(crate) const MESSAGE_BYTES: usize = 1 << 20;

/// The messages of a scan of `batches`, each about `target` bytes of Arrow IPC.
pub(crate) fn messages(
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    target: usize,
) -> impl Iterator<Item = Result<Vec<u8>, ArrowError>> + Send + 'static {
    let mut pieces = Pieces {
        source: batches.into(),
        split: VecDeque::new(),
        target,
    };
    std::iter::from_fn(move || {
        let first = pieces.next()?;
        Some(encode_message(&schema, first, &mut pieces, target))
    })
}

/// Encodes `first` and as many following pieces as fit in `target` bytes.
fn encode_message(
    schema: &SchemaRef,
    first: RecordBatch,
    pieces: &mut Pieces,
    target: usize,
) -> Result<Vec<u8>, ArrowError> {
    let mut w = StreamWriter::try_new(Vec::with_capacity(target + target / 4), schema)?;
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
    w.finish()?;
    w.into_inner()
}

/// The scan's batches in order, a batch larger than the target cut into row ranges that fit.
struct Pieces {
    source: VecDeque<RecordBatch>,
    /// Row ranges of the batch being cut, with their estimated size.
    split: VecDeque<(RecordBatch, usize)>,
    target: usize,
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
        while self.split.is_empty() {
            let Some(batch) = self.source.pop_front() else {
                return;
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

/// Bytes the batch's buffers hold: close to its IPC size for a batch as appended (not a slice).
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

    fn request(columns: &[&str], limit: u64) -> ScanChunkRequest {
        ScanChunkRequest {
            chunk_id: 9,
            chunk_version: 1,
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            project: true,
            limit,
        }
    }

    #[test]
    fn a_scan_sends_the_requested_columns_and_at_most_the_limit() {
        let batches: Vec<RecordBatch> = (0..10).map(|i| batch(i * 100, 100)).collect();
        let (projected, out) =
            shape(&schema(), batches.clone(), &request(&["name", "id"], 250)).unwrap();
        let names: Vec<&str> = projected
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(names, ["name", "id"]);
        assert_eq!(out.iter().map(RecordBatch::num_rows).sum::<usize>(), 250);
        let encoded: Vec<Vec<u8>> = messages(projected, out, MESSAGE_BYTES)
            .collect::<Result<_, _>>()
            .unwrap();
        let got = decode_ipc(&encoded[0]).unwrap();
        let ids = got.column(1).as_any().downcast_ref::<Int32Array>().unwrap();
        assert_eq!(ids.values().to_vec(), (0..250).collect::<Vec<_>>());

        // No column at all (a count): only row counts travel, and they survive the encoding.
        let (projected, out) = shape(&schema(), batches.clone(), &request(&[], 0)).unwrap();
        let encoded: Vec<Vec<u8>> = messages(projected, out, MESSAGE_BYTES)
            .collect::<Result<_, _>>()
            .unwrap();
        let rows: usize = encoded
            .iter()
            .map(|m| decode_ipc(m).unwrap().num_rows())
            .sum();
        assert_eq!(rows, 1_000);
        assert!(encoded.iter().map(Vec::len).sum::<usize>() < 4_000);

        // A request of a release before projection gets every column, every row.
        let old = ScanChunkRequest {
            chunk_id: 9,
            chunk_version: 1,
            ..ScanChunkRequest::default()
        };
        let (schema2, out) = shape(&schema(), batches.clone(), &old).unwrap();
        assert_eq!(schema2.fields().len(), 3);
        assert_eq!(out.iter().map(RecordBatch::num_rows).sum::<usize>(), 1_000);

        let err = shape(&schema(), batches, &request(&["nope"], 0)).unwrap_err();
        assert!(err.contains("no column `nope`"), "{err}");
    }

    #[test]
    fn many_appends_become_messages_under_the_target_with_every_row_once_in_order() {
        // 300 appends of 10,000 rows: about 60 MB, the shape that failed as one message.
        let batches: Vec<RecordBatch> = (0..300).map(|i| batch(i * 10_000, 10_000)).collect();
        let target = MESSAGE_BYTES;
        let out: Vec<Vec<u8>> = messages(schema(), batches, target)
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
        let out: Vec<Vec<u8>> = messages(schema(), vec![batch(0, 1_000_000)], 256 << 10)
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(out.len() >= 40, "{} messages", out.len());
        for m in &out {
            assert!(m.len() <= 512 << 10, "a message of {} bytes", m.len());
        }
        assert_eq!(ids(&out), (0..1_000_000).collect::<Vec<_>>());
    }

    #[test]
    fn small_appends_share_a_message_and_an_empty_scan_sends_none() {
        let batches: Vec<RecordBatch> = (0..100).map(|i| batch(i * 10, 10)).collect();
        let out: Vec<Vec<u8>> = messages(schema(), batches, MESSAGE_BYTES)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(ids(&out), (0..1_000).collect::<Vec<_>>());
        assert_eq!(messages(schema(), Vec::new(), MESSAGE_BYTES).count(), 0);
    }
}
