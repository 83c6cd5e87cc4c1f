//! A Flight SQL client for one query: what the CLI and tests use.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use shoal_client::channel::AuthChannel;
use std::sync::Arc;
use tonic::Status;

/// Runs `sql` on the data node behind `channel` (which carries the cluster secret) and
/// collects the result. An `Unavailable` status means another data node may answer.
pub async fn query(
    channel: AuthChannel,
    sql: &str,
) -> Result<(SchemaRef, Vec<RecordBatch>), Status> {
    let mut client = FlightSqlServiceClient::new(channel);
    let info = client.execute(sql.to_owned(), None).await?;
    let schema = info
        .clone()
        .try_decode_schema()
        .map_err(|e| Status::internal(format!("unreadable result schema: {e}")))?;
    let schema = Arc::new(schema);
    let mut batches = Vec::new();
    for endpoint in info.endpoint {
        let ticket = endpoint
            .ticket
            .ok_or_else(|| Status::internal("the server returned an endpoint without a ticket"))?;
        let stream = client.do_get(ticket).await?;
        batches.extend(stream.try_collect::<Vec<_>>().await?);
    }
    Ok((schema, batches))
}
