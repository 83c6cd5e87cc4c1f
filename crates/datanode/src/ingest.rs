//! Gives the Flight SQL service (bulk ingest) the coordinator's appends.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use shoal_query::{AppendOutcome, Appender};
use tonic::Status;

use crate::node::Node;

pub struct CoordinatorAppender(pub Arc<Node>);

#[async_trait::async_trait]
impl Appender for CoordinatorAppender {
    async fn append(
        &self,
        db: &str,
        table: &str,
        writer_id: u64,
        seq: u64,
        batch: RecordBatch,
    ) -> Result<AppendOutcome, Status> {
        let r =
            crate::coordinator::append_batch(&self.0, db, table, writer_id, seq, &batch).await?;
        Ok(AppendOutcome {
            rows: r.rows,
            duplicate: r.duplicate,
        })
    }
}
