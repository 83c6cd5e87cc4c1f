//! The process's allocator, jemalloc, and its statistics in the log.
//!
//! jemalloc (built with background threads and a one-second dirty-page decay, see
//! `.cargo/config.toml`) hands freed memory back to the OS within about a second, where
//! glibc's malloc kept freed arenas resident. A data node logs the statistics so a reader can
//! tell memory the process uses (`allocated`) from memory the allocator keeps (`resident`
//! minus `allocated`, and `retained`: mapped but returned, not resident).

use std::time::Duration;

use tikv_jemalloc_ctl::{epoch, stats};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// How often the statistics are read.
const READ_EVERY: Duration = Duration::from_secs(1);
/// A line is logged when `resident` moved by this much since the last line...
const LOG_STEP: u64 = 16 << 20;
/// ...or when this long has passed.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// jemalloc's counters, in bytes.
#[derive(Clone, Copy, Debug)]
pub struct AllocatorStats {
    /// Bytes in live allocations.
    pub allocated: u64,
    /// Bytes in pages holding live allocations.
    pub active: u64,
    /// Bytes in physically resident pages the allocator maps (≈ its share of RSS).
    pub resident: u64,
    /// Bytes of virtual memory returned to the OS but kept mapped for reuse (not resident).
    pub retained: u64,
}

/// The counters now (refreshed first: jemalloc caches them per `epoch`).
pub fn stats() -> Result<AllocatorStats, tikv_jemalloc_ctl::Error> {
    epoch::advance()?;
    Ok(AllocatorStats {
        allocated: stats::allocated::read()? as u64,
        active: stats::active::read()? as u64,
        resident: stats::resident::read()? as u64,
        retained: stats::retained::read()? as u64,
    })
}

/// Logs the counters (MiB) when `resident` moves by [`LOG_STEP`], and every [`LOG_EVERY`];
/// runs until the task is dropped. Stops, saying why, if jemalloc cannot report them.
pub async fn log_stats() {
    let mut last: Option<(u64, tokio::time::Instant)> = None;
    let mut tick = tokio::time::interval(READ_EVERY);
    loop {
        tick.tick().await;
        let s = match stats() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("allocator statistics unavailable: {e}");
                return;
            }
        };
        let now = tokio::time::Instant::now();
        let due = last.is_none_or(|(resident, at)| {
            resident.abs_diff(s.resident) >= LOG_STEP || now - at >= LOG_EVERY
        });
        if due {
            tracing::info!(
                allocated_mib = s.allocated >> 20,
                active_mib = s.active >> 20,
                resident_mib = s.resident >> 20,
                retained_mib = s.retained >> 20,
                "jemalloc"
            );
            last = Some((s.resident, now));
        }
    }
}
