//! DolphinDB scripts on a data node: `shoal_script`'s interpreter with this node's query
//! engine and the controllers as its host. The caller needs the reader role to run a script,
//! and each DDL statement the script runs needs the role the same statement needs as SQL.

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use async_trait::async_trait;
use shoal_common::users::Role;
use shoal_proto::auth::Principal;
use shoal_script::{Answer, Host, HostError, Interpreter, ScriptError};
use tonic::{Code, Status};

use crate::engine::QueryEngine;
use crate::error::is_unavailable;

struct NodeHost<'a> {
    engine: &'a QueryEngine,
    who: &'a Principal,
    node: &'a str,
}

#[async_trait]
impl Host for NodeHost<'_> {
    fn local_node(&self) -> &str {
        self.node
    }

    async fn query(&self, sql: &str) -> Result<RecordBatch, HostError> {
        let (schema, batches) = self.engine.execute(sql).await.map_err(|e| {
            if is_unavailable(&e) {
                HostError::Unavailable(e.to_string())
            } else {
                HostError::Refused(e.to_string())
            }
        })?;
        concat_batches(&schema, &batches).map_err(|e| HostError::Refused(e.to_string()))
    }

    async fn ddl(&self, statement: &str) -> Result<RecordBatch, HostError> {
        let role = crate::ddl::needed_role(statement).unwrap_or(Role::Admin);
        self.who.require(role).map_err(host_error)?;
        crate::ddl::execute(self.engine.controllers(), statement)
            .await
            .map_err(host_error)
    }
}

fn host_error(s: Status) -> HostError {
    let message = s.message().to_owned();
    match s.code() {
        Code::Unavailable => HostError::Unavailable(message),
        Code::PermissionDenied | Code::Unauthenticated => HostError::Denied(message),
        _ => HostError::Refused(message),
    }
}

/// Runs a script for `who` on the node `node`.
pub async fn run(
    engine: &QueryEngine,
    who: &Principal,
    node: &str,
    text: &str,
) -> Result<Answer, Status> {
    who.require(Role::Reader)?;
    let host = NodeHost { engine, who, node };
    Interpreter::new(&host)
        .run(text)
        .await
        .map_err(|e| match e {
            ScriptError::Host(HostError::Unavailable(m)) => Status::unavailable(m),
            ScriptError::Host(HostError::Denied(m)) => Status::permission_denied(m),
            e => Status::invalid_argument(e.to_string()),
        })
}
