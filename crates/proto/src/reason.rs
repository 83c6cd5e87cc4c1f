//! Reasons carried in response metadata where the gRPC code alone is ambiguous, so that a
//! caller can tell refusals apart without parsing messages.

use tonic::Status;

/// Response metadata key holding a [`Reason`].
pub const REASON_METADATA_KEY: &str = "shoal-reason";

/// Why a call was refused, when its code also covers cases that are handled differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// FAILED_PRECONDITION from an append: the `(writer_id, seq)` is older than the writer's
    /// dedup window, so whether it was applied before is unknown. Nothing was written; re-sending
    /// it cannot help (unlike "not the primary", which a coordinator retries).
    SeqOutsideDedupWindow,
    /// RESOURCE_EXHAUSTED from an append at a chunk's primary: the node's rows not yet flushed
    /// to chunk files stayed over twice its memory budget. Nothing was written; the primary is
    /// healthy (no failover), and the client may retry shortly.
    MemoryFull,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::SeqOutsideDedupWindow => "seq-outside-dedup-window",
            Reason::MemoryFull => "memory-full",
        }
    }

    /// `status` with this reason attached.
    pub fn attach(self, mut status: Status) -> Status {
        status.metadata_mut().insert(
            REASON_METADATA_KEY,
            tonic::metadata::MetadataValue::from_static(self.as_str()),
        );
        status
    }

    /// The reason `status` carries, if any this build knows.
    pub fn of(status: &Status) -> Option<Reason> {
        let value = status.metadata().get(REASON_METADATA_KEY)?.to_str().ok()?;
        [Reason::SeqOutsideDedupWindow, Reason::MemoryFull]
            .into_iter()
            .find(|r| r.as_str() == value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_survives_the_trip_through_headers() {
        let s = Reason::SeqOutsideDedupWindow.attach(Status::failed_precondition("too old"));
        let mut headers = tonic::codegen::http::HeaderMap::new();
        s.add_header(&mut headers).unwrap();
        let back = Status::from_header_map(&headers).unwrap();
        assert_eq!(back.code(), tonic::Code::FailedPrecondition);
        assert_eq!(Reason::of(&back), Some(Reason::SeqOutsideDedupWindow));
        assert_eq!(
            Reason::of(&Status::failed_precondition("not the primary")),
            None
        );
    }
}
