//! Release packages for rolling upgrades.
//!
//! A package is one uncompressed tar file: `manifest.json` first (so a reader learns what to
//! expect before any payload), then the files it lists (today only the `shoal` binary), then
//! optionally `manifest.sig`, an Ed25519 signature over the exact manifest bytes. The manifest
//! pins each file's size and SHA-256, so verifying a package needs only the package and,
//! when signatures are enforced, a trusted public key.
//!
//! Everything streams: binaries are hundreds of megabytes and are never held in memory.

mod error;
mod hashing;
mod make;
mod manifest;
mod read;
mod signing;
mod unpack;
mod verify;
mod version;

#[cfg(test)]
mod tests;

pub use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
pub use error::PackageError;
pub use make::build;
pub use manifest::{FORMAT, FileEntry, MANIFEST_NAME, Manifest, ManifestFields, SIGNATURE_NAME};
pub use read::read_manifest;
pub use signing::{generate_key, load_signing_key, load_verifying_key};
pub use unpack::unpack;
pub use verify::verify;
pub use version::{Version, check_upgrade};
