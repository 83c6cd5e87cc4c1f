//! What this build is: its version and build date, as `shoal --version` and every heartbeat
//! report them (the seed's `version()` prints `2.00.7.4 2022.12.08`), and the versions of what
//! it speaks and writes, which a release package declares (see `shoal-package`).
//!
//! The binary crate compiles the version in (its build script) and calls [`set`] first thing;
//! keeping it out of this crate means another version rebuilds only the binary.

use std::sync::OnceLock;

/// Protocol generation between nodes: raised when a release needs every node to speak
/// something new (gated by the cluster version until then).
pub const WIRE_VERSION: u32 = 1;
/// On-disk format generation (WAL, chunk records, Raft state).
pub const STORAGE_FORMAT_VERSION: u32 = 1;
/// The oldest release this one can upgrade in place (it reads its files and speaks with it).
pub const MIN_UPGRADE_FROM: &str = "0.1.0";

struct Build {
    version: &'static str,
    build_date: &'static str,
}

static BUILD: OnceLock<Build> = OnceLock::new();

/// Records the binary's version and build date; later calls are ignored.
pub fn set(version: &'static str, build_date: &'static str) {
    let _ = BUILD.set(Build {
        version,
        build_date,
    });
}

/// The running binary's version (the library's own package version in unit tests).
pub fn version() -> &'static str {
    BUILD.get().map_or(env!("CARGO_PKG_VERSION"), |b| b.version)
}

/// The build date, `YYYY.MM.DD` (`unknown` in unit tests).
pub fn build_date() -> &'static str {
    BUILD.get().map_or("unknown", |b| b.build_date)
}
