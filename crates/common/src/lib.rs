//! Shoal's shared vocabulary: configuration files, the cluster secret, users and tokens, TLS
//! material, the build version, and how an error is written out with its causes.

pub mod clock;
pub mod config;
pub mod error_text;
pub mod password;
pub mod secret;
pub mod tls;
pub mod users;
pub mod version;
