//! Compiles the version and build date into the binary.
//!
//! `SHOAL_BUILD_VERSION` overrides the package version so a build can honestly report another
//! version (the rolling-upgrade tests and the demo need two). `SHOAL_BUILD_DATE` (`YYYY.MM.DD`)
//! overrides the date, which otherwise is the day of the build. Only this crate (the binary)
//! reads them, so building another version recompiles one crate, not the workspace.
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo:rerun-if-env-changed=SHOAL_BUILD_VERSION");
    println!("cargo:rerun-if-env-changed=SHOAL_BUILD_DATE");
    let version = std::env::var("SHOAL_BUILD_VERSION")
        .unwrap_or_else(|_| std::env::var("CARGO_PKG_VERSION").unwrap_or_default());
    let date = std::env::var("SHOAL_BUILD_DATE").unwrap_or_else(|_| today());
    println!("cargo:rustc-env=SHOAL_VERSION={version}");
    println!("cargo:rustc-env=SHOAL_BUILD_DATE={date}");
}

/// Today's UTC date as `YYYY.MM.DD` (civil-from-days, so no date crate is needed here).
fn today() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}.{month:02}.{day:02}")
}
