//! Cluster authentication on the wire: every Shoal gRPC call carries
//! `authorization: Bearer <cluster secret>`, and every server refuses calls without it.
//!
//! The cluster secret is shared by the nodes of one cluster and its operators (see
//! `shoal_common::secret`). Users and passwords for clients are a separate, later layer.

use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::{Request, Status};

const HEADER: &str = "authorization";

/// Adds the bearer token to every outgoing request.
#[derive(Clone)]
pub struct ClientAuth {
    header: MetadataValue<tonic::metadata::Ascii>,
}

impl ClientAuth {
    /// Fails only if the secret is not valid header text (it is generated as hex).
    pub fn new(secret: &str) -> Result<Self, Status> {
        let header = format!("Bearer {secret}")
            .parse()
            .map_err(|_| Status::invalid_argument("cluster secret is not printable ASCII"))?;
        Ok(Self { header })
    }
}

impl Interceptor for ClientAuth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut().insert(HEADER, self.header.clone());
        Ok(req)
    }
}

/// Refuses requests whose bearer token is not the cluster secret.
#[derive(Clone)]
pub struct ServerAuth {
    expected: Vec<u8>,
}

impl ServerAuth {
    pub fn new(secret: &str) -> Self {
        Self {
            expected: format!("Bearer {secret}").into_bytes(),
        }
    }
}

impl Interceptor for ServerAuth {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let given = req
            .metadata()
            .get(HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if constant_time_eq(given, &self.expected) {
            Ok(req)
        } else {
            Err(Status::unauthenticated(
                "missing or wrong cluster secret (authorization: Bearer ...)",
            ))
        }
    }
}

/// Compares without an early exit, so timing does not reveal how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_accepts_only_the_secret_the_client_sends() {
        let mut client = ClientAuth::new("s3cret-s3cret-s3cret").unwrap();
        let req = client.call(Request::new(())).unwrap();
        assert!(ServerAuth::new("s3cret-s3cret-s3cret").call(req).is_ok());

        let req = client.call(Request::new(())).unwrap();
        let err = ServerAuth::new("other-other-other-ot")
            .call(req)
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);

        let err = ServerAuth::new("x").call(Request::new(())).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
    }
}
