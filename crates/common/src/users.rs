//! Users, passwords and session tokens for clients.
//!
//! Where users come from ([`Directory`]): at cluster version 1 (and on a node that has not yet
//! heard from the controllers) from `cluster.users` beside `cluster.nodes` on every machine
//! (mode 0600), one per line: `name:role:<hash>` (see [`crate::password`]). From
//! [`crate::version::MANAGED_USERS_CLUSTER_VERSION`] on, the controllers keep the users in
//! their replicated metadata (seeded once from the leader's `cluster.users`), change them with
//! `shoal user add|remove|passwd|role`, and hand them to data nodes in heartbeat answers: then
//! that table is the authority and the file is no longer read. Roles, each including the ones
//! before it: `reader` (queries), `writer` (appends), `admin` (DDL, administration). There is no
//! built-in user and no default password.
//!
//! A client logs in once (the Flight SQL handshake, basic auth) and gets a token it presents as
//! `authorization: Bearer <token>`, HMAC-SHA256-signed with the cluster secret so any node can
//! check it without asking anyone: `shoal1.<user>.<role>.<expiry unix s>.<hmac hex>` while
//! users come from the file (what the previous release reads), `shoal2.<user>.<role>.
//! <generation>.<expiry>.<key id>.<hmac>` from the managed table. The key id names which of the
//! cluster's secrets signed it ([`crate::secret::Keys`]), so the secret can be rotated without
//! logging anyone out; a `shoal1` token is checked against each secret. Every call checks the token's user
//! against the current users: a removed user's tokens stop working, a token of an older
//! generation (issued before a password change) is refused, and the role is the current one.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::password::{PasswordHash, VerifiedCache};
use crate::secret::{Keys, key_id};

/// File name of the users file, beside `cluster.nodes`.
pub const USERS_FILE: &str = "cluster.users";

/// Where `shoal local up` puts the generated `admin` password (mode 0600), beside
/// `cluster.nodes`; client commands given `--dir` log in with it.
pub const ADMIN_PASSWORD_FILE: &str = "admin.password";

/// Shorter passwords are refused.
pub const MIN_PASSWORD_LEN: usize = 8;

const TOKEN_PREFIX: &str = "shoal1";
const TOKEN_PREFIX_2: &str = "shoal2";
/// How long a login lasts.
pub const TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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

/// A user as the controllers replicate it and send it to data nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub name: String,
    pub role: Role,
    /// A [`PasswordHash`] in text form.
    pub hash: String,
    /// Tokens carry it; a password change raises it, ending the sessions issued before.
    /// 0 for users seeded from the file (whose `shoal1` tokens carry none).
    pub generation: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct User {
    record: UserRecord,
    hash: PasswordHash,
}

/// The users of a cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Users {
    users: Vec<User>,
}

/// Checks a user name: letters, digits and `_` (it travels inside tokens and file lines).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("bad user name `{name}` (letters, digits, _)"));
    }
    Ok(())
}

/// Checks a new password's length.
pub fn check_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(format!(
            "the password must have at least {MIN_PASSWORD_LEN} characters"
        ));
    }
    Ok(())
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
        let mut records = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |msg: String| format!("{}:{}: {msg}", path.display(), i + 1);
            let record = parse_line(line).map_err(at)?;
            if records.iter().any(|u: &UserRecord| u.name == record.name) {
                return Err(at(format!("user `{}` appears twice", record.name)));
            }
            records.push(record);
        }
        Self::from_records(records)
    }

    /// Users from records (the controllers' table); refuses a hash it cannot read.
    pub fn from_records(records: impl IntoIterator<Item = UserRecord>) -> Result<Self, String> {
        let users = records
            .into_iter()
            .map(|record| {
                let hash = PasswordHash::parse(&record.hash)
                    .map_err(|e| format!("user `{}`: {e}", record.name))?;
                Ok(User { record, hash })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self { users })
    }

    pub fn records(&self) -> impl Iterator<Item = &UserRecord> {
        self.users.iter().map(|u| &u.record)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    fn get(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.record.name == name)
    }

    /// The user's role if the password is right. The same work is done for an unknown user,
    /// so timing does not tell which names exist.
    pub fn verify(&self, name: &str, password: &str) -> Option<Role> {
        self.verify_user(name, password, None).map(|r| r.role)
    }

    fn verify_user(
        &self,
        name: &str,
        password: &str,
        cache: Option<&VerifiedCache>,
    ) -> Option<&UserRecord> {
        let Some(user) = self.get(name) else {
            // As long as a real user's check (the first user's hash, PBKDF2 or Argon2id, its
            // answer dropped), so timing does not tell which names exist.
            match self.users.first() {
                Some(u) => drop(u.hash.verify(password)),
                None => PasswordHash::verify_nobody(password),
            }
            return None;
        };
        let r = &user.record;
        let right = match cache {
            Some(c) => c.verify(&r.name, r.generation, &r.hash, &user.hash, password),
            None => user.hash.verify(password),
        };
        right.then_some(r)
    }

    /// The current role of a token's user, if the user still exists at the token's generation.
    pub fn admit(&self, claims: &Claims) -> Option<Role> {
        let user = &self.get(&claims.name)?.record;
        (user.generation == claims.generation.unwrap_or(0)).then_some(user.role)
    }
}

fn parse_line(line: &str) -> Result<UserRecord, String> {
    let mut parts = line.splitn(3, ':');
    let (Some(name), Some(role), Some(hash)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("expected name:role:hash".into());
    };
    check_name(name)?;
    let role: Role = role.parse()?;
    PasswordHash::parse(hash)?;
    Ok(UserRecord {
        name: name.to_owned(),
        role,
        hash: hash.to_owned(),
        generation: 0,
    })
}

/// A `cluster.users` line for a new user (PBKDF2, fresh random salt: the form the previous
/// release reads).
pub fn user_line(name: &str, role: Role, password: &str) -> String {
    format!("{name}:{role}:{}", PasswordHash::pbkdf2(password))
}

/// Where a data node keeps the last users table the controllers sent (in its chunk metadata
/// directory, mode 0600), so that after a restart it never goes back to `cluster.users`.
pub const USERS_TABLE_FILE: &str = "users.table.json";

/// Who may log in on this node, as it currently knows: the file's users until it hears the
/// controllers' table (revision 0), then that table, replaced as it changes.
pub struct Directory {
    current: RwLock<(u64, Arc<Users>)>,
    cache: VerifiedCache,
    /// Where each new table is saved (data nodes).
    store: Option<PathBuf>,
}

/// The saved form of a table.
#[derive(Serialize, Deserialize)]
struct SavedTable {
    revision: u64,
    users: Vec<UserRecord>,
}

impl Directory {
    /// Starts from `cluster.users`.
    pub fn from_file(users: Users) -> Self {
        Self {
            current: RwLock::new((0, Arc::new(users))),
            cache: VerifiedCache::default(),
            store: None,
        }
    }

    /// Starts from the table saved at `store` (the last the controllers sent) if there is one,
    /// else from `cluster.users`; each new table is saved there.
    pub fn kept_at(file_users: Users, store: PathBuf) -> Result<Self, String> {
        let dir = Self {
            store: Some(store.clone()),
            ..Self::from_file(file_users)
        };
        let text = match std::fs::read_to_string(&store) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(dir),
            Err(e) => return Err(format!("cannot read {}: {e}", store.display())),
        };
        let bad = |e: String| format!("{}: {e}", store.display());
        let saved: SavedTable = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let users = Users::from_records(saved.users).map_err(bad)?;
        *dir.current.write().unwrap_or_else(|p| p.into_inner()) = (saved.revision, Arc::new(users));
        Ok(dir)
    }

    /// The revision of the controllers' table in use; 0 while the file is.
    pub fn revision(&self) -> u64 {
        self.current.read().unwrap_or_else(|p| p.into_inner()).0
    }

    pub fn users(&self) -> Arc<Users> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    }

    /// Installs the controllers' table at `revision` (ignored if not newer than the one held),
    /// saving it first when this directory is kept on disk.
    pub fn replace(&self, revision: u64, users: Users) -> Result<(), String> {
        if revision <= self.revision() {
            return Ok(());
        }
        if let Some(store) = &self.store {
            let saved = SavedTable {
                revision,
                users: users.records().cloned().collect(),
            };
            let text = serde_json::to_string(&saved).map_err(|e| e.to_string())?;
            // Never an empty file the node could not start from.
            crate::secret::replace_private(store, &text)
                .map_err(|e| format!("cannot save {}: {e}", store.display()))?;
        }
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if revision > current.0 {
            *current = (revision, Arc::new(users));
        }
        Ok(())
    }

    /// Checks a password (remembering it verified, see [`VerifiedCache`]); the user's role
    /// and generation.
    pub fn verify(&self, name: &str, password: &str) -> Option<(Role, u64)> {
        self.users()
            .verify_user(name, password, Some(&self.cache))
            .map(|r| (r.role, r.generation))
    }

    /// A token for a user who just logged in: `shoal2` (with the generation) once the
    /// controllers' table is in use, `shoal1` before, which the previous release reads too.
    pub fn issue_token(&self, keys: &Keys, name: &str, role: Role, generation: u64) -> String {
        let generation = (self.revision() > 0).then_some(generation);
        issue_token(keys, name, role, generation, TOKEN_TTL)
    }

    /// The user and current role of a validly signed, unexpired token whose user still exists
    /// at the token's generation.
    pub fn check_token(&self, keys: &Keys, token: &str) -> Option<(String, Role)> {
        let claims = verify_token(keys, token)?;
        let role = self.users().admit(&claims)?;
        Some((claims.name, role))
    }
}

/// What a validly signed token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    pub name: String,
    pub role: Role,
    /// `None` for `shoal1` tokens (they count as generation 0).
    pub generation: Option<u64>,
}

/// A signed token for `name` with `role`, valid for `ttl`, signed by the first of `keys`:
/// `shoal2` carrying `generation` and the key id when given, else `shoal1`.
pub fn issue_token(
    keys: &Keys,
    name: &str,
    role: Role,
    generation: Option<u64>,
    ttl: Duration,
) -> String {
    let expiry = now_s() + ttl.as_secs();
    let secret = keys.signing();
    let body = match generation {
        Some(g) => format!(
            "{TOKEN_PREFIX_2}.{name}.{role}.{g}.{expiry}.{}",
            key_id(secret)
        ),
        None => format!("{TOKEN_PREFIX}.{name}.{role}.{expiry}"),
    };
    format!("{body}.{}", to_hex(&sign(secret, &body)))
}

/// What a token says, if one of `keys` signed it and it has not expired.
pub fn verify_token(keys: &Keys, token: &str) -> Option<Claims> {
    let (body, mac) = token.rsplit_once('.')?;
    let mac = from_hex(mac)?;
    let parts: Vec<&str> = body.split('.').collect();
    let signed_by = |secret: &str| constant_time_eq(&mac, &sign(secret, body));
    let (name, role, generation, expiry) = match parts.as_slice() {
        [TOKEN_PREFIX, name, role, expiry] => {
            keys.all().iter().any(|k| signed_by(k)).then_some(())?;
            (name, role, None, expiry)
        }
        [TOKEN_PREFIX_2, name, role, generation, expiry, id] => {
            signed_by(keys.by_id(id)?).then_some(())?;
            (name, role, Some(generation.parse().ok()?), expiry)
        }
        _ => return None,
    };
    let expiry: u64 = expiry.parse().ok()?;
    (now_s() < expiry).then_some(())?;
    Some(Claims {
        name: (*name).to_owned(),
        role: role.parse().ok()?,
        generation,
    })
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

pub(crate) fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(crate) fn from_hex(s: &str) -> Option<Vec<u8>> {
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
        let secret = &Keys::single("0123456789abcdef0123".into());
        let other = &Keys::single("another-secret-00000".into());
        let claims = |generation| Claims {
            name: "app".into(),
            role: Role::Writer,
            generation,
        };
        let t = issue_token(secret, "app", Role::Writer, None, TOKEN_TTL);
        assert!(t.starts_with("shoal1.app.writer."), "{t}");
        assert_eq!(verify_token(secret, &t), Some(claims(None)));
        assert_eq!(verify_token(other, &t), None);
        let promoted = t.replacen(".writer.", ".admin.", 1);
        assert_eq!(verify_token(secret, &promoted), None);
        let expired = issue_token(secret, "app", Role::Writer, None, Duration::ZERO);
        assert_eq!(verify_token(secret, &expired), None);
        assert_eq!(verify_token(secret, "garbage"), None);

        let t2 = issue_token(secret, "app", Role::Writer, Some(7), TOKEN_TTL);
        assert!(t2.starts_with("shoal2.app.writer.7."), "{t2}");
        assert_eq!(verify_token(secret, &t2), Some(claims(Some(7))));
        let older = t2.replacen(".7.", ".6.", 1);
        assert_eq!(verify_token(secret, &older), None);
        assert_eq!(verify_token(other, &t2), None);
    }

    #[test]
    fn tokens_stay_valid_through_a_rotation_of_the_secret_until_the_old_one_is_removed() {
        let old = "old-secret-0123456789";
        let new = "new-secret-0123456789";
        let keys = |text: &str| Keys::parse(text, "cluster.secret").unwrap();
        let before = keys(old);
        let t1 = issue_token(&before, "app", Role::Writer, None, TOKEN_TTL);
        let t2 = issue_token(&before, "app", Role::Writer, Some(1), TOKEN_TTL);
        assert!(t2.contains(&format!(".{}.", key_id(old))), "{t2}");
        // Step 1: the new one added (second); step 2: made first. Both tokens hold throughout,
        // and what is signed after step 2 carries the new key id.
        for step in [
            keys(&format!("{old}\n{new}")),
            keys(&format!("{new}\n{old}")),
        ] {
            assert!(verify_token(&step, &t1).is_some());
            assert!(verify_token(&step, &t2).is_some());
        }
        let t3 = issue_token(
            &keys(&format!("{new}\n{old}")),
            "app",
            Role::Writer,
            Some(1),
            TOKEN_TTL,
        );
        assert!(t3.contains(&format!(".{}.", key_id(new))), "{t3}");
        // Step 3: the old one removed: only what the new one signed.
        let after = keys(new);
        assert!(verify_token(&after, &t1).is_none());
        assert!(verify_token(&after, &t2).is_none());
        assert!(verify_token(&after, &t3).is_some());
    }

    fn record(name: &str, role: Role, password: &str, generation: u64) -> UserRecord {
        UserRecord {
            name: name.into(),
            role,
            hash: PasswordHash::argon2id(password),
            generation,
        }
    }

    #[test]
    fn a_directory_admits_tokens_only_of_current_users_at_their_generation_with_their_role() {
        let secret = &Keys::single("0123456789abcdef0123".into());
        let file = format!("{}\n", user_line("app", Role::Writer, "battery staple"));
        let dir = Directory::from_file(Users::parse(Path::new("u"), &file).unwrap());
        assert_eq!(dir.verify("app", "battery staple"), Some((Role::Writer, 0)));
        let old = dir.issue_token(secret, "app", Role::Writer, 0);
        assert!(old.starts_with("shoal1."), "{old}");
        assert_eq!(
            dir.check_token(secret, &old),
            Some(("app".into(), Role::Writer))
        );

        // The controllers' table: app is a reader now (same generation: its password did not
        // change), so its file-era token still works, with the new role.
        let table = |records| Users::from_records(records).unwrap();
        dir.replace(
            2,
            table(vec![record("app", Role::Reader, "new password", 0)]),
        )
        .unwrap();
        assert_eq!(
            dir.check_token(secret, &old),
            Some(("app".into(), Role::Reader))
        );
        assert_eq!(dir.verify("app", "battery staple"), None);
        let (role, generation) = dir.verify("app", "new password").unwrap();
        let new = dir.issue_token(secret, "app", role, generation);
        assert!(new.starts_with("shoal2.app.reader.0."), "{new}");

        // A password change (generation 3) ends both sessions; a stale table is ignored.
        dir.replace(3, table(vec![record("app", Role::Reader, "third one", 3)]))
            .unwrap();
        dir.replace(2, table(vec![])).unwrap();
        assert_eq!(dir.check_token(secret, &old), None);
        assert_eq!(dir.check_token(secret, &new), None);
        // Removed: nothing of it works.
        dir.replace(4, table(vec![])).unwrap();
        assert_eq!(dir.verify("app", "third one"), None);
    }

    #[test]
    fn a_kept_directory_starts_from_the_last_table_it_was_sent_not_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let store = tmp.path().join(USERS_TABLE_FILE);
        let file = || {
            let line = user_line("app", Role::Writer, "battery staple");
            Users::parse(Path::new("u"), &line).unwrap()
        };
        let dir = Directory::kept_at(file(), store.clone()).unwrap();
        assert_eq!(dir.revision(), 0);
        assert!(dir.users().contains("app"));
        let table = Users::from_records(vec![record("ops", Role::Admin, "ops password", 2)]);
        dir.replace(2, table.unwrap()).unwrap();

        // Restarted: the saved table, not the file (where `app`, removed since, still is).
        let again = Directory::kept_at(file(), store.clone()).unwrap();
        assert_eq!(again.revision(), 2);
        assert!(!again.users().contains("app"));
        assert_eq!(again.verify("ops", "ops password"), Some((Role::Admin, 2)));

        std::fs::write(&store, "{not json").unwrap();
        let err = Directory::kept_at(file(), store.clone()).err().unwrap();
        assert!(err.contains(USERS_TABLE_FILE), "{err}");
    }
}
