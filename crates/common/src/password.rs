//! Password hashes and their verification.
//!
//! Two forms are read: `pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>` (what `cluster.users`
//! lines hold, and what the previous release reads) and Argon2id in its PHC string form
//! (`$argon2id$v=19$m=19456,t=2,p=1$...`), which the cluster makes for users it manages.
//! Parameters follow OWASP's password storage recommendations: Argon2id with m=19 MiB, t=2,
//! p=1; PBKDF2-HMAC-SHA256 with 600,000 iterations.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, OnceLock};

use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::users::{constant_time_eq, from_hex, to_hex};

/// PBKDF2 rounds for new file lines (OWASP 2023 for PBKDF2-HMAC-SHA256).
pub const PBKDF2_ITERATIONS: u32 = 600_000;
const ARGON2_MEMORY_KIB: u32 = 19 * 1024;
const ARGON2_TIME: u32 = 2;
const ARGON2_LANES: u32 = 1;

/// A stored password hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PasswordHash {
    Pbkdf2 {
        iterations: u32,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
    /// The PHC string, checked by the `argon2` crate (parameters are read from it).
    Argon2id(String),
}

impl PasswordHash {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.starts_with("$argon2id$") {
            let h =
                argon2::PasswordHash::new(text).map_err(|e| format!("bad argon2id hash: {e}"))?;
            if h.hash.is_none() || h.salt.is_none() {
                return Err("bad argon2id hash: no salt or hash".into());
            }
            return Ok(Self::Argon2id(text.to_owned()));
        }
        let fields: Vec<&str> = text.split('$').collect();
        let ["pbkdf2-sha256", iterations, salt, hash] = fields.as_slice() else {
            return Err(
                "hash must be pbkdf2-sha256$<iterations>$<salt hex>$<hash hex> or $argon2id$..."
                    .into(),
            );
        };
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| format!("bad iteration count `{iterations}`"))?;
        Ok(Self::Pbkdf2 {
            iterations,
            salt: from_hex(salt).ok_or("salt is not hex")?,
            hash: from_hex(hash).ok_or("hash is not hex")?,
        })
    }

    /// A new Argon2id hash of `password` with a fresh random salt. Blocks (see [`Slots`]).
    pub fn argon2id(password: &str) -> String {
        let salt: [u8; 16] = rand::random();
        let salt = SaltString::encode_b64(&salt).unwrap_or_else(|_| unreachable!("16 bytes"));
        Slots::run(|| hasher().hash_password(password.as_bytes(), &salt))
            .map(|h| h.to_string())
            .unwrap_or_else(|e| unreachable!("argon2 with fixed valid parameters: {e}"))
    }

    /// A new PBKDF2 hash in the file's form. Blocks (see [`Slots`]).
    pub fn pbkdf2(password: &str) -> String {
        let salt: [u8; 16] = rand::random();
        let hash = Slots::run(|| pbkdf2(password, &salt, PBKDF2_ITERATIONS));
        format!(
            "pbkdf2-sha256${PBKDF2_ITERATIONS}${}${}",
            to_hex(&salt),
            to_hex(&hash)
        )
    }

    /// Whether `password` matches. Blocks (see [`Slots`]): call it off async workers.
    pub fn verify(&self, password: &str) -> bool {
        Slots::run(|| self.verify_now(password))
    }

    fn verify_now(&self, password: &str) -> bool {
        match self {
            Self::Pbkdf2 {
                iterations,
                salt,
                hash,
            } => constant_time_eq(&pbkdf2(password, salt, *iterations), hash),
            Self::Argon2id(phc) => argon2::PasswordHash::new(phc)
                .is_ok_and(|h| hasher().verify_password(password.as_bytes(), &h).is_ok()),
        }
    }

    /// The same work as checking a real user's password, for a name that does not exist, so
    /// timing does not tell which names exist.
    pub fn verify_nobody(password: &str) {
        static NOBODY: OnceLock<PasswordHash> = OnceLock::new();
        let _ = NOBODY
            .get_or_init(|| Self::Argon2id(Self::argon2id("nobody")))
            .verify(password);
    }
}

/// At most one password hash per core at a time in this process: each costs tens of ms of CPU
/// and Argon2id 19 MiB, so a burst of logins (or of wrong passwords) queues here instead of
/// taking every thread and gigabytes.
struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

impl Slots {
    fn run<T>(f: impl FnOnce() -> T) -> T {
        static SLOTS: OnceLock<Slots> = OnceLock::new();
        let slots = SLOTS.get_or_init(|| Slots {
            free: Mutex::new(std::thread::available_parallelism().map_or(1, |n| n.get())),
            freed: Condvar::new(),
        });
        {
            let mut free = slots.free.lock().unwrap_or_else(|p| p.into_inner());
            while *free == 0 {
                free = slots.freed.wait(free).unwrap_or_else(|p| p.into_inner());
            }
            *free -= 1;
        }
        // Given back even if `f` panics.
        struct Release<'a>(&'a Slots);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                *self.0.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                self.0.freed.notify_one();
            }
        }
        let _release = Release(slots);
        f()
    }
}

fn hasher() -> Argon2<'static> {
    let params = Params::new(ARGON2_MEMORY_KIB, ARGON2_TIME, ARGON2_LANES, None)
        .unwrap_or_else(|e| unreachable!("fixed valid argon2 parameters: {e}"));
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn pbkdf2(password: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut out);
    out
}

/// Remembers passwords that verified, per (user, generation, stored hash), as an HMAC under a
/// key that lives only in this process: a client that logs in again does not cost another slow
/// hash, and a changed password or user never matches an old entry.
pub struct VerifiedCache {
    key: [u8; 32],
    seen: Mutex<HashMap<(String, u64, String), Vec<u8>>>,
}

/// Entries kept before the cache starts over (bounds memory under many distinct users).
const CACHE_LIMIT: usize = 4096;

impl Default for VerifiedCache {
    fn default() -> Self {
        Self {
            key: rand::random(),
            seen: Mutex::default(),
        }
    }
}

impl VerifiedCache {
    /// Whether `password` is right for the stored `hash`, hashing only when this exact
    /// password has not verified for this (user, generation, hash) before.
    pub fn verify(
        &self,
        name: &str,
        generation: u64,
        hash_text: &str,
        hash: &PasswordHash,
        password: &str,
    ) -> bool {
        let key = (name.to_owned(), generation, hash_text.to_owned());
        let tag = self.tag(password);
        let remembered = self
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .is_some_and(|t| constant_time_eq(t, &tag));
        if remembered {
            return true;
        }
        if !hash.verify(password) {
            return false;
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= CACHE_LIMIT {
            seen.clear();
        }
        seen.insert(key, tag);
        true
    }

    fn tag(&self, password: &str) -> Vec<u8> {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return Vec::new(); // HMAC takes keys of any length; unreachable
        };
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn argon2id_and_pbkdf2_hashes_verify_only_the_right_password() {
        let a = PasswordHash::argon2id("correct horse");
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        let a = PasswordHash::parse(&a).unwrap();
        assert!(a.verify("correct horse"));
        assert!(!a.verify("correct horsE"));

        let p = PasswordHash::pbkdf2("battery staple");
        assert!(p.starts_with("pbkdf2-sha256$600000$"), "{p}");
        let p = PasswordHash::parse(&p).unwrap();
        assert!(p.verify("battery staple"));
        assert!(!p.verify("battery"));

        let e = PasswordHash::parse("md5$abc").unwrap_err();
        assert!(e.contains("hash must be"), "{e}");
        assert!(PasswordHash::parse("$argon2id$garbage").is_err());
    }

    #[test]
    fn the_cache_answers_a_repeated_login_and_never_a_wrong_password_or_a_new_generation() {
        let text = PasswordHash::argon2id("pw-123456");
        let hash = PasswordHash::parse(&text).unwrap();
        let cache = VerifiedCache::default();
        assert!(cache.verify("app", 1, &text, &hash, "pw-123456"));
        // A hash that can no longer verify anything: only the cache can answer now.
        let never = PasswordHash::Pbkdf2 {
            iterations: 1,
            salt: vec![],
            hash: vec![],
        };
        assert!(cache.verify("app", 1, &text, &never, "pw-123456"));
        assert!(!cache.verify("app", 1, &text, &never, "wrong"));
        assert!(!cache.verify("app", 2, &text, &never, "pw-123456"));
        assert!(!cache.verify("other", 1, &text, &never, "pw-123456"));
    }
}
