//! Shoal's shared vocabulary: configuration files, the cluster secret, users and tokens, and
//! the build version.

pub mod clock;
pub mod config;
pub mod secret;
pub mod users;
pub mod version;
