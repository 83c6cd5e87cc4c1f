//! A chunk store whose WAL write or fdatasync failed is poisoned, and only a reopen in a fresh
//! process can trust what is on disk again. So the data node stops, returning an error (a
//! non-zero exit), and its agent restarts it (`restartOnCrash`, after `restartBackoff`), which
//! reopens every store.

use std::sync::Arc;

use shoal_storage::FailureHook;
use tokio::sync::watch;

/// The first store failure of this process, if any.
#[derive(Clone)]
pub struct StoreFailures {
    first: Arc<watch::Sender<Option<String>>>,
}

impl Default for StoreFailures {
    fn default() -> Self {
        Self {
            first: Arc::new(watch::channel(None).0),
        }
    }
}

impl StoreFailures {
    /// The hook every store of this node is opened with.
    pub fn hook(&self) -> FailureHook {
        let first = self.first.clone();
        Arc::new(move |e| {
            tracing::error!(
                "{e}; stopping this data node: its agent restarts it and the store is reopened \
                 from what is on disk"
            );
            first.send_if_modified(|f| {
                if f.is_some() {
                    return false;
                }
                *f = Some(e.to_string());
                true
            });
        })
    }

    /// Resolves once a store has failed.
    pub async fn occurred(&self) {
        let mut rx = self.first.subscribe();
        // The sender lives in `self`, so the wait cannot fail.
        let _ = rx.wait_for(Option::is_some).await;
    }

    /// The first failure, if a store has failed.
    pub fn first(&self) -> Option<String> {
        self.first.borrow().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_failure_is_kept_and_wakes_the_waiter() {
        let failures = StoreFailures::default();
        let hook = failures.hook();
        assert_eq!(failures.first(), None);
        let fail = |reason: &str| shoal_storage::StorageError::Failed {
            dir: "/v/chunks/1".into(),
            reason: reason.into(),
        };
        std::thread::spawn(move || {
            hook(&fail("fdatasync: EIO"));
            hook(&fail("later"));
        });
        failures.occurred().await;
        let first = failures.first().unwrap();
        assert!(first.contains("fdatasync: EIO"), "{first}");
    }
}
