//! The one place a [`StorageError`] becomes a gRPC status.

use shoal_proto::Reason;
use shoal_storage::StorageError;
use tonic::Status;

// The Rust client holds each writer's seqs in flight within `MAX_SEQ_SPREAD`, well inside the
// window, so a correct writer never meets `OutsideDedupWindow`.
const _: () = assert!(4 * shoal_client::data::MAX_SEQ_SPREAD <= shoal_storage::DEDUP_WINDOW);

pub fn storage_status(e: StorageError) -> Status {
    match e {
        StorageError::SchemaMismatch { .. }
        | StorageError::RecordTooLarge { .. }
        | StorageError::NoSuchColumn { .. } => Status::invalid_argument(e.to_string()),
        StorageError::LsnMismatch { .. } => Status::out_of_range(e.to_string()),
        // Records to cut are in chunk files (or a flush is under way): the primary copies the
        // replica instead, or asks again.
        StorageError::CannotCutTail { .. } => Status::failed_precondition(e.to_string()),
        // The bytes of a snapshot arrived damaged or incomplete: the primary sends it again.
        StorageError::SnapshotRefused { .. } => Status::data_loss(e.to_string()),
        // Neither written nor known to be applied: the client must not take it as an ack, and
        // a coordinator must not retry it as if the primary had changed.
        StorageError::OutsideDedupWindow { .. } => {
            Reason::SeqOutsideDedupWindow.attach(Status::failed_precondition(e.to_string()))
        }
        // The disk failed or the store is closing: another replica can take the write.
        StorageError::Failed { .. } | StorageError::Io { .. } | StorageError::Closed { .. } => {
            Status::unavailable(e.to_string())
        }
        _ => Status::internal(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_out_of_window_seq_is_a_tagged_refusal_and_a_failed_disk_sends_elsewhere() {
        let s = storage_status(StorageError::OutsideDedupWindow {
            dir: "/v/chunks/7".into(),
            writer_id: 3,
            seq: 10,
            highest: 9000,
            window: shoal_storage::DEDUP_WINDOW,
        });
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
        assert_eq!(Reason::of(&s), Some(Reason::SeqOutsideDedupWindow));
        assert!(s.message().contains("writer 3 seq 10"), "{}", s.message());
        let s = storage_status(StorageError::Failed {
            dir: "/v/chunks/7".into(),
            reason: "fdatasync: EIO".into(),
        });
        assert_eq!(s.code(), tonic::Code::Unavailable);
        assert_eq!(Reason::of(&s), None);
    }
}
