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
/// On-disk format generation this build writes (WAL, chunk records, Raft state): 2 adds chunk
/// files and a MANIFEST per replica, written only from [`CHUNK_FILES_CLUSTER_VERSION`] on;
/// format 1 stays readable.
pub const STORAGE_FORMAT_VERSION: u32 = 2;
/// The highest cluster version this release can run at. A cluster version says what every node
/// may use; it rises only through `shoal upgrade --finalize` (to the level of the release every
/// node then runs) or is set at a brand-new cluster's first start, so a rolled-back binary
/// never meets something it cannot read. Levels:
/// - 1: the first release.
/// - 2: this release; chunk replicas may be stored as sorted files with a manifest
///   ([`CHUNK_FILES_CLUSTER_VERSION`]), partitions may be dropped
///   ([`DROP_PARTITION_CLUSTER_VERSION`]), tables may keep only the first or last row of a
///   sort key ([`KEEP_DUPLICATES_CLUSTER_VERSION`]), a diverged replica is cut back to the
///   prefix it shares with its primary ([`CUT_TAIL_CLUSTER_VERSION`]), a query's aggregate is
///   computed partly on the replicas ([`AGGREGATE_PUSHDOWN_CLUSTER_VERSION`]), replicas keep a
///   query's top k ([`TOP_K_CLUSTER_VERSION`]), users are managed through the controllers
///   ([`MANAGED_USERS_CLUSTER_VERSION`]).
pub const CLUSTER_VERSION: u32 = 2;
/// From this cluster version on, data nodes may write chunk files (storage format 2).
pub const CHUNK_FILES_CLUSTER_VERSION: u32 = 2;
/// From this cluster version on, the controllers accept `DropPartitions` (the previous release
/// does not know the command).
pub const DROP_PARTITION_CLUSTER_VERSION: u32 = 2;
/// From this cluster version on, the controllers accept `keepDuplicates=FIRST|LAST`: a data node
/// of the previous release would keep and serve every row of such a table.
pub const KEEP_DUPLICATES_CLUSTER_VERSION: u32 = 2;
/// From this cluster version on, a primary asks a diverged replica for its checksums and to cut
/// its tail (`ReplicaPositionRequest.checksum_at`, `cut_after`) instead of copying it whole.
pub const CUT_TAIL_CLUSTER_VERSION: u32 = 2;
/// From this cluster version on, a coordinator asks replicas for partial aggregate states
/// (`ScanChunkRequest.aggregate`); a data node of the previous release would send rows.
pub const AGGREGATE_PUSHDOWN_CLUSTER_VERSION: u32 = 2;
/// From this cluster version on, a coordinator asks replicas for a query's top k
/// (`ScanChunkRequest.top_k`); a data node of the previous release ignores it and sends every
/// row, which is still correct, only slower.
pub const TOP_K_CLUSTER_VERSION: u32 = 2;
/// From this cluster version on, the controllers keep the users (seeded from `cluster.users`)
/// and accept the commands that change them, and nodes hand out `shoal2` tokens: a controller of
/// the previous release could not apply those commands, a node of it could not read the tokens.
pub const MANAGED_USERS_CLUSTER_VERSION: u32 = 2;
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
