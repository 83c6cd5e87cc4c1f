//! The commit thread runs only while its store is in use.
//!
//! A data node holds a store per chunk replica, and most of them are idle (yesterday's
//! partitions): a thread each cost 670 threads per data node at 1,000 chunks. After
//! [`StoreOptions::commit_idle`](crate::StoreOptions::commit_idle) with nothing queued, the thread
//! parks its state (the WAL writer, the dedup state, the next lsn: a [`Committer`]) in the
//! store's [`CommitThread`] and exits; the next message sent starts a new thread with it.
//!
//! The race between a sender and a thread about to park is settled by one lock: the thread
//! checks the queue once more and parks while holding it, and a sender takes it after sending.
//! Either the thread's last check sees the message, or the sender sees the parked state and
//! starts a thread, which then finds the message queued.

use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{StorageError, io_err};
use crate::group_commit::Committer;

enum Slot {
    Running(JoinHandle<()>),
    Parked(Box<Committer>),
    Stopped,
}

/// The store's handle on its commit thread (see the module docs).
pub(crate) struct CommitThread {
    slot: Arc<Mutex<Slot>>,
    idle: Duration,
    /// Threads started so far (tests).
    #[cfg(test)]
    starts: std::sync::atomic::AtomicU64,
}

impl CommitThread {
    /// Start the thread with `committer`'s state.
    pub(crate) fn start(committer: Committer, idle: Duration) -> Result<Self, StorageError> {
        let slot = Arc::new(Mutex::new(Slot::Stopped));
        let thread = CommitThread {
            slot,
            idle,
            #[cfg(test)]
            starts: Default::default(),
        };
        let mut slot = thread.lock();
        *slot = Slot::Running(thread.spawn(committer)?);
        drop(slot);
        Ok(thread)
    }

    /// Called after each message is sent: starts a thread again if the last one parked.
    pub(crate) fn wake(&self) -> Result<(), StorageError> {
        let mut slot = self.lock();
        if let Slot::Parked(_) = &*slot
            && let Slot::Parked(committer) = std::mem::replace(&mut *slot, Slot::Stopped)
        {
            *slot = Slot::Running(self.spawn(*committer)?);
        }
        Ok(())
    }

    /// Called once the queue's sender is dropped: waits for the thread to finish what is
    /// queued (at most one group in progress) and exit; drops a parked state.
    pub(crate) fn stop(&self) {
        let slot = std::mem::replace(&mut *self.lock(), Slot::Stopped);
        if let Slot::Running(handle) = slot {
            let _ = handle.join();
        }
    }

    /// Whether a thread is running now (tests).
    #[cfg(test)]
    pub(crate) fn running(&self) -> bool {
        matches!(&*self.lock(), Slot::Running(_))
    }

    #[cfg(test)]
    pub(crate) fn starts(&self) -> u64 {
        self.starts.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn spawn(&self, committer: Committer) -> Result<JoinHandle<()>, StorageError> {
        let dir = committer.shared.dir.clone();
        let slot = self.slot.clone();
        let idle = self.idle;
        #[cfg(test)]
        self.starts
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::thread::Builder::new()
            .name("shoal-wal-commit".into())
            .spawn(move || run(committer, &slot, idle))
            .map_err(io_err("spawn commit thread for", dir))
    }
}

/// The thread: hands each message to the committer until the queue closes, or parks after
/// `idle` with nothing queued.
fn run(mut committer: Committer, slot: &Mutex<Slot>, idle: Duration) {
    loop {
        let msg = match committer.rx.recv_timeout(idle) {
            Ok(msg) => msg,
            Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {
                let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
                match committer.rx.try_recv() {
                    Ok(msg) => msg,
                    Err(TryRecvError::Disconnected) => return,
                    Err(TryRecvError::Empty) => {
                        // `stop` may have taken the slot already; then the queue is closed
                        // and the state is dropped with this thread.
                        if let Slot::Running(_) = &*slot {
                            *slot = Slot::Parked(Box::new(committer));
                        }
                        return;
                    }
                }
            }
        };
        committer.handle(msg);
    }
}
