//! Shoal's shared vocabulary: configuration files, the cluster secret and the build version.

pub mod config;
pub mod secret;
pub mod version;
