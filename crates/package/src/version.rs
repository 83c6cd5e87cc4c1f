//! Release versions and the rule for which upgrades a package may perform.

use std::fmt;
use std::str::FromStr;

use crate::error::PackageError;
use crate::manifest::Manifest;

/// A release version "X.Y.Z". Ordered by major, then minor, then patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl FromStr for Version {
    type Err = PackageError;

    /// Strict: exactly three decimal numbers, so "0.2" or "v0.2.0" are caught at build time
    /// instead of comparing oddly during an upgrade.
    fn from_str(s: &str) -> Result<Version, PackageError> {
        let bad = || PackageError::BadVersion {
            version: s.to_owned(),
        };
        let mut parts = s.split('.').map(|part| {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            part.parse::<u32>().map_err(|_| bad())
        });
        let (Some(major), Some(minor), Some(patch), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        Ok(Version {
            major: major?,
            minor: minor?,
            patch: patch?,
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Whether a cluster running `running` may install `manifest`'s release. Downgrades go
/// through the explicit rollback path (it restores the previous install rather than
/// trusting new code with old data), reinstalling the same version is a no-op the operator
/// probably did not mean, and a jump past `min_upgrade_from` would skip a release whose
/// wire or storage migration the package relies on.
pub fn check_upgrade(running: &str, manifest: &Manifest) -> Result<(), PackageError> {
    let running: Version = running.parse()?;
    let package: Version = manifest.version.parse()?;
    let min: Version = manifest.min_upgrade_from.parse()?;
    if package < running {
        return Err(PackageError::Downgrade { package, running });
    }
    if package == running {
        return Err(PackageError::SameVersion { version: running });
    }
    if running < min {
        return Err(PackageError::UpgradeTooLarge {
            package,
            min,
            running,
        });
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::manifest::FORMAT;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    fn manifest(version: &str, min: &str) -> Manifest {
        Manifest {
            format: FORMAT,
            version: version.to_owned(),
            build_date: "2025.01.02".to_owned(),
            min_upgrade_from: min.to_owned(),
            wire_version: 1,
            storage_format_version: 1,
            files: Vec::new(),
        }
    }

    #[test]
    fn parses_and_orders() {
        assert_eq!(
            v("0.12.3"),
            Version {
                major: 0,
                minor: 12,
                patch: 3
            }
        );
        assert_eq!(v("1.2.3").to_string(), "1.2.3");
        assert!(v("0.2.0") < v("0.10.0"), "numeric, not lexicographic");
        assert!(v("0.9.9") < v("1.0.0"));
        assert!(v("1.0.1") > v("1.0.0"));
        for bad in [
            "", "1", "1.2", "1.2.3.4", "v1.2.3", "1.2.x", "1..3", "1.2.-3", "1.2.+3", " 1.2.3",
        ] {
            let err = bad.parse::<Version>().unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn upgrade_rules() {
        check_upgrade("0.2.0", &manifest("0.3.0", "0.2.0")).unwrap();
        check_upgrade("0.2.5", &manifest("0.3.0", "0.2.0")).unwrap();

        let err = check_upgrade("0.2.0", &manifest("0.1.0", "0.1.0")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "package version 0.1.0 is older than the running 0.2.0: downgrades are refused; use upgrade --rollback"
        );
        let err = check_upgrade("0.2.0", &manifest("0.2.0", "0.1.0")).unwrap_err();
        assert!(err.to_string().contains("already runs 0.2.0"), "{err}");
        let err = check_upgrade("0.1.0", &manifest("0.3.0", "0.2.0")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "0.3.0 upgrades from 0.2.0 or later; the cluster runs 0.1.0: upgrade to an intermediate release first"
        );
        let err = check_upgrade("0.2", &manifest("0.3.0", "0.2.0")).unwrap_err();
        assert!(err.to_string().contains("\"0.2\""), "{err}");
    }
}
