//! Shoal's shared vocabulary: configuration files, the cluster secret, users and tokens, TLS
//! material, and the build version.

pub mod clock;
pub mod config;
pub mod secret;
pub mod tls;
pub mod users;
pub mod version;
