//! Shoal's wire protocol: the generated tonic/prost code for `proto/shoal/v1/shoal.proto`, and
//! the authentication every call carries.
//!
//! Fields are only ever added (see the header of the `.proto`), so every version of Shoal can
//! decode every other version's messages during a rolling upgrade.

pub mod auth;
mod convert;
mod reason;

/// Generated code of package `shoal.v1`.
#[allow(clippy::all, missing_docs, clippy::unwrap_used)]
pub mod v1 {
    tonic::include_proto!("shoal.v1");
}

pub use reason::{REASON_METADATA_KEY, Reason};
pub use v1::*;

/// Largest message between cluster members. Senders bound what they put in one message far
/// below it (catch-up pages, scan messages); the limit only keeps a malformed length from
/// allocating without bound, and stays this high so a peer of the previous release, whose scan
/// messages were bounded by batch count rather than bytes, can still be read.
pub const MAX_MESSAGE: usize = 256 << 20;

/// Response metadata key naming the controller leader's address when a follower refuses a call.
pub const LEADER_METADATA_KEY: &str = "shoal-leader";
