//! What this build is: its version and build date, as `shoal --version` and every heartbeat
//! report them (the seed's `version()` prints `2.00.7.4 2022.12.08`).

/// The version compiled in (`SHOAL_BUILD_VERSION` at build time, else the package version).
pub const VERSION: &str = env!("SHOAL_VERSION");

/// The build date compiled in, `YYYY.MM.DD`.
pub const BUILD_DATE: &str = env!("SHOAL_BUILD_DATE");

/// `"<version> <build date>"`, the seed's `version()` format.
pub const VERSION_LINE: &str = concat!(env!("SHOAL_VERSION"), " ", env!("SHOAL_BUILD_DATE"));

#[cfg(test)]
mod tests {
    #[test]
    fn build_date_is_a_date() {
        let parts: Vec<&str> = super::BUILD_DATE.split('.').collect();
        assert_eq!(parts.len(), 3, "{}", super::BUILD_DATE);
        assert!(parts.iter().all(|p| p.chars().all(|c| c.is_ascii_digit())));
        assert!(!super::VERSION.is_empty());
        assert_eq!(
            super::VERSION_LINE,
            format!("{} {}", super::VERSION, super::BUILD_DATE)
        );
    }
}
