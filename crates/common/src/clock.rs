//! A monotonic clock that keeps counting while the machine is suspended (`CLOCK_BOOTTIME`).
//! `std::time::Instant` stops during a VM suspend, so a lease measured with it would look
//! fresh to a node that slept through its expiry; time-based guards use [`BootInstant`].

use std::time::Duration;

use nix::time::{ClockId, clock_gettime};

/// How long a data node's fetched catalog may route and acknowledge writes (measured on its
/// [`BootInstant`] from when the fetch started). A DROP answers only once this has passed since
/// it committed, and a dropped name is held longer still, so no write is acknowledged for a
/// dropped table after its DROP returned, nor lands in it when meant for a new table.
pub const CATALOG_LEASE: Duration = Duration::from_secs(3);

/// A point in time since the machine booted, suspends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct BootInstant(Duration);

impl BootInstant {
    pub fn now() -> Self {
        // CLOCK_BOOTTIME exists on every Linux this runs on; should the call fail, a time of 0
        // makes every lease look expired, which only costs a refresh.
        let t = clock_gettime(ClockId::CLOCK_BOOTTIME).map_or(Duration::ZERO, Duration::from);
        Self(t)
    }

    pub fn elapsed(&self) -> Duration {
        Self::now().0.saturating_sub(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_time_moves_forward_with_real_time() {
        let a = BootInstant::now();
        std::thread::sleep(Duration::from_millis(20));
        let b = BootInstant::now();
        assert!(b > a);
        assert!(a.elapsed() >= Duration::from_millis(20));
        assert!(a.elapsed() < Duration::from_secs(60));
    }
}
