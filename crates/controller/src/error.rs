use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControllerError {
    #[error("controller `{0}` (localSite) is not a controller in cluster.nodes")]
    NotDeclared(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Listen(#[from] std::io::Error),
    #[error("metadata store: {0}")]
    Store(#[from] shoal_raft_store::StoreError),
    #[error("raft: {0}")]
    Raft(String),
    #[error("gRPC server: {0}")]
    Serve(String),
}
