//! A Flight SQL client for one query: what the CLI and tests use.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use shoal_client::channel::{AuthChannel, connect_lazy};
use shoal_common::tls::ClientTls;
use std::sync::Arc;
use tonic::Status;

/// Runs `sql` on the data node behind `channel` (which carries the cluster secret) and
/// collects the result. An `Unavailable` status means another data node may answer.
pub async fn query(
    channel: AuthChannel,
    sql: &str,
) -> Result<(SchemaRef, Vec<RecordBatch>), Status> {
    query_with_headers(channel, sql, &[]).await
}

/// [`query`] with call headers (e.g. [`crate::PUSH_AGGREGATES_HEADER`]) on each of its calls.
pub async fn query_with_headers(
    channel: AuthChannel,
    sql: &str,
    headers: &[(&str, &str)],
) -> Result<(SchemaRef, Vec<RecordBatch>), Status> {
    let mut client = FlightSqlServiceClient::new(channel);
    for (name, value) in headers {
        client.set_header(*name, *value);
    }
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

/// Logs in (Flight SQL handshake, basic auth) at the first of `sites` (data nodes) that
/// answers, over TLS with `tls`; the token then goes in `authorization: Bearer` like the
/// cluster secret does. Wrong credentials fail at once; an unreachable site is skipped.
pub async fn login(
    sites: &[String],
    user: &str,
    password: &str,
    tls: Option<&ClientTls>,
) -> Result<String, Status> {
    let mut last = Status::unavailable("no data node site given");
    for addr in sites {
        let channel = connect_lazy(addr, tls)
            .map_err(|e| Status::invalid_argument(format!("bad address {addr}: {e}")))?;
        let mut client = FlightSqlServiceClient::new(channel);
        match client.handshake(user, password).await {
            Ok(token) => {
                return String::from_utf8(token.to_vec())
                    .map_err(|_| Status::internal("the token is not text"));
            }
            Err(e) if e.to_string().contains("Unauthenticated") => {
                return Err(Status::unauthenticated(format!("{addr}: {e}")));
            }
            Err(e) => last = Status::unavailable(format!("{addr}: {e}")),
        }
    }
    Err(last)
}
