//! Users, passwords and session tokens for clients.
//!
//! Users live in `cluster.users` beside `cluster.nodes` on every machine (mode 0600), one per
//! line: `name:role:pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>`. Roles, each including the
//! ones before it: `reader` (queries), `writer` (appends), `admin` (DDL, administration).
//! `shoal user hash` prints a line; `shoal local up` writes the file with a generated `admin`
//! password (in `DIR/admin.password`). There is no built-in user and no default password.
//!
//! A client logs in once (the Flight SQL handshake, basic auth) and gets a token it presents as
//! `authorization: Bearer <token>`: `shoal1.<user>.<role>.<expiry unix s>.<hmac hex>`, the HMAC
//! (SHA-256) keyed with the cluster secret, so any node can check a token without asking anyone.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// File name of the users file, beside `cluster.nodes`.
pub const USERS_FILE: &str = "cluster.users";

/// Where `shoal local up` puts the generated `admin` password (mode 0600), beside
/// `cluster.nodes`; client commands given `--dir` log in with it.
pub const ADMIN_PASSWORD_FILE: &str = "admin.password";

/// PBKDF2 rounds for new hashes: ~50 ms per login on this class of machine.
const ITERATIONS: u32 = 60_000;
const TOKEN_PREFIX: &str = "shoal1";
/// How long a login lasts.
pub const TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Reader,
    Writer,
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "reader" => Ok(Role::Reader),
            "writer" => Ok(Role::Writer),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role `{other}` (roles: reader, writer, admin)"
            )),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct User {
    name: String,
    role: Role,
    iterations: u32,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

/// The users of a cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Users {
    users: Vec<User>,
}

impl Users {
    /// Reads `cluster.users`; a missing file means no users (clients cannot log in).
    pub fn load(path: &Path) -> Result<Self, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, String> {
        let mut users: Vec<User> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |msg: String| format!("{}:{}: {msg}", path.display(), i + 1);
            let user = parse_line(line).map_err(at)?;
            if users.iter().any(|u| u.name == user.name) {
                return Err(at(format!("user `{}` appears twice", user.name)));
            }
            users.push(user);
        }
        Ok(Self { users })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.users.iter().any(|u| u.name == name)
    }

    /// The user's role if the password is right. The same work is done for an unknown user,
    /// so timing does not tell which names exist.
    pub fn verify(&self, name: &str, password: &str) -> Option<Role> {
        let user = self.users.iter().find(|u| u.name == name);
        let (iterations, salt) = user.map_or((ITERATIONS, &[0u8; 16][..]), |u| {
            (u.iterations, u.salt.as_slice())
        });
        let computed = derive(password, salt, iterations);
        let user = user?;
        constant_time_eq(&computed, &user.hash).then_some(user.role)
    }
}

fn parse_line(line: &str) -> Result<User, String> {
    let mut parts = line.splitn(3, ':');
    let (Some(name), Some(role), Some(hash)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("expected name:role:hash".into());
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("bad user name `{name}` (letters, digits, _)"));
    }
    let role: Role = role.parse()?;
    let fields: Vec<&str> = hash.split('$').collect();
    let ["pbkdf2-sha256", iterations, salt, hash] = fields.as_slice() else {
        return Err("hash must be pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>".into());
    };
    let iterations: u32 = iterations
        .parse()
        .map_err(|_| format!("bad iteration count `{iterations}`"))?;
    Ok(User {
        name: name.to_owned(),
        role,
        iterations,
        salt: from_hex(salt).ok_or("salt is not hex")?,
        hash: from_hex(hash).ok_or("hash is not hex")?,
    })
}

/// A `cluster.users` line for a new user (fresh random salt).
pub fn user_line(name: &str, role: Role, password: &str) -> String {
    let salt: [u8; 16] = rand::random();
    let hash = derive(password, &salt, ITERATIONS);
    format!(
        "{name}:{role}:pbkdf2-sha256${ITERATIONS}${}${}",
        to_hex(&salt),
        to_hex(&hash)
    )
}

fn derive(password: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut out);
    out
}

/// A signed token for `name` with `role`, valid for `ttl`.
pub fn issue_token(secret: &str, name: &str, role: Role, ttl: Duration) -> String {
    let expiry = now_s() + ttl.as_secs();
    let body = format!("{TOKEN_PREFIX}.{name}.{role}.{expiry}");
    format!("{body}.{}", to_hex(&sign(secret, &body)))
}

/// The user and role a token names, if it was signed with `secret` and has not expired.
pub fn verify_token(secret: &str, token: &str) -> Option<(String, Role)> {
    let (body, mac) = token.rsplit_once('.')?;
    let mut parts = body.split('.');
    let (Some(TOKEN_PREFIX), Some(name), Some(role), Some(expiry), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    if !constant_time_eq(&from_hex(mac)?, &sign(secret, body)) {
        return None;
    }
    let expiry: u64 = expiry.parse().ok()?;
    (now_s() < expiry).then(|| Some((name.to_owned(), role.parse().ok()?)))?
}

fn sign(secret: &str, body: &str) -> Vec<u8> {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return Vec::new(); // HMAC takes keys of any length; unreachable
    };
    mac.update(body.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Compares without an early exit, so timing does not reveal how much of a guess was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn passwords_verify_only_when_right_and_bad_files_name_the_line() {
        let text = format!(
            "# users\n{}\n{}\n",
            user_line("admin", Role::Admin, "correct horse"),
            user_line("app", Role::Writer, "battery staple")
        );
        let users = Users::parse(Path::new("cluster.users"), &text).unwrap();
        assert_eq!(users.verify("admin", "correct horse"), Some(Role::Admin));
        assert_eq!(users.verify("app", "battery staple"), Some(Role::Writer));
        assert_eq!(users.verify("admin", "battery staple"), None);
        assert_eq!(users.verify("nobody", "correct horse"), None);

        let e =
            Users::parse(Path::new("cluster.users"), "x:root:pbkdf2-sha256$1$00$00").unwrap_err();
        assert!(e.starts_with("cluster.users:1: unknown role `root`"), "{e}");
        let twice = format!(
            "{}\n{}",
            user_line("a", Role::Reader, "p"),
            user_line("a", Role::Reader, "q")
        );
        let e = Users::parse(Path::new("u"), &twice).unwrap_err();
        assert!(e.contains("u:2: user `a` appears twice"), "{e}");
    }

    #[test]
    fn tokens_carry_user_and_role_and_refuse_tampering_other_secrets_and_expiry() {
        let secret = "0123456789abcdef0123";
        let t = issue_token(secret, "app", Role::Writer, TOKEN_TTL);
        assert_eq!(verify_token(secret, &t), Some(("app".into(), Role::Writer)));
        assert_eq!(verify_token("another-secret-00000", &t), None);
        let promoted = t.replacen(".writer.", ".admin.", 1);
        assert_eq!(verify_token(secret, &promoted), None);
        let expired = issue_token(secret, "app", Role::Writer, Duration::ZERO);
        assert_eq!(verify_token(secret, &expired), None);
        assert_eq!(verify_token(secret, "garbage"), None);
    }
}
