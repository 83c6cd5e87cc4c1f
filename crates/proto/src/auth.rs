//! Authentication on the wire.
//!
//! Between nodes (and from operators holding the secret file) every call carries
//! `authorization: Bearer <cluster secret>`; [`ServerAuth`] refuses anything else. Services that
//! clients reach (appends, Flight SQL) use [`UserAuth`] instead: it also accepts a user's token
//! (from a login) and basic credentials (for the login itself), and records who called as a
//! [`Principal`] that each handler checks against what it needs. A token is checked against
//! the node's current users ([`Directory`]): it must be validly signed and its user must still
//! exist at the token's generation; the role is the user's current one.

use std::sync::Arc;

use base64::Engine;
use shoal_common::secret::Keys;
use shoal_common::users::{Directory, Role, constant_time_eq};
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::{Request, Status};

const HEADER: &str = "authorization";

/// Adds the bearer token to every outgoing request.
#[derive(Clone)]
pub struct ClientAuth {
    header: MetadataValue<tonic::metadata::Ascii>,
}

impl ClientAuth {
    /// Fails only if the secret is not valid header text (it is generated as hex).
    pub fn new(secret: &str) -> Result<Self, Status> {
        let header = format!("Bearer {secret}")
            .parse()
            .map_err(|_| Status::invalid_argument("cluster secret is not printable ASCII"))?;
        Ok(Self { header })
    }

    /// Basic credentials instead of the secret: a user acting through a service that checks
    /// them itself (the controllers' `UserAdmin`).
    pub fn basic(user: &str, password: &str) -> Result<Self, Status> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let header = format!("Basic {b64}")
            .parse()
            .map_err(|_| Status::invalid_argument("credentials are not valid header text"))?;
        Ok(Self { header })
    }
}

impl Interceptor for ClientAuth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut().insert(HEADER, self.header.clone());
        Ok(req)
    }
}

/// Refuses requests whose bearer token is not one of the cluster's secrets.
#[derive(Clone)]
pub struct ServerAuth {
    keys: Keys,
}

impl ServerAuth {
    pub fn new(keys: &Keys) -> Self {
        Self { keys: keys.clone() }
    }
}

/// Whether `token` is one of the secrets (each compared in constant time).
fn is_secret(keys: &Keys, token: &[u8]) -> bool {
    keys.all().iter().fold(false, |found, k| {
        constant_time_eq(token, k.as_bytes()) | found
    })
}

impl Interceptor for ServerAuth {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let given = req
            .metadata()
            .get(HEADER)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
            .unwrap_or_default();
        if is_secret(&self.keys, given) {
            Ok(req)
        } else {
            Err(Status::unauthenticated(
                "missing or wrong cluster secret (authorization: Bearer ...)",
            ))
        }
    }
}

/// Who made a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// The cluster secret: a node, or an operator with the secret file. May do anything.
    Cluster,
    /// A user who logged in (a valid token).
    User {
        name: String,
        role: Role,
    },
    /// Basic credentials: only the login accepts them.
    Login {
        name: String,
        password: String,
    },
    Anonymous,
}

impl Principal {
    /// Who called `req` (as [`UserAuth`] recorded it).
    pub fn of<T>(req: &Request<T>) -> Principal {
        req.extensions()
            .get::<Principal>()
            .cloned()
            .unwrap_or(Principal::Anonymous)
    }

    /// The cluster, or a user with at least `role`.
    pub fn require(&self, role: Role) -> Result<(), Status> {
        match self {
            Principal::Cluster => Ok(()),
            Principal::User { role: has, .. } if *has >= role => Ok(()),
            Principal::User { name, role: has } => Err(Status::permission_denied(format!(
                "user `{name}` has role {has}; this needs {role}"
            ))),
            Principal::Login { .. } | Principal::Anonymous => Err(Status::unauthenticated(
                "log in first (Flight SQL handshake with user and password), then send the token",
            )),
        }
    }

    /// Only nodes of the cluster (internal calls).
    pub fn require_cluster(&self) -> Result<(), Status> {
        match self {
            Principal::Cluster => Ok(()),
            _ => Err(Status::permission_denied(
                "this call is between cluster nodes; it needs the cluster secret",
            )),
        }
    }
}

/// For services clients reach: accepts the cluster secret, a valid token of a current user,
/// or basic credentials, and records the [`Principal`]; refuses a wrong or expired bearer
/// token, and one whose user was removed or changed password since.
#[derive(Clone)]
pub struct UserAuth {
    keys: Keys,
    users: Arc<Directory>,
}

impl UserAuth {
    pub fn new(keys: &Keys, users: Arc<Directory>) -> Self {
        Self {
            keys: keys.clone(),
            users,
        }
    }
}

impl Interceptor for UserAuth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let principal = match req.metadata().get(HEADER).map(|v| v.as_bytes()) {
            None => Principal::Anonymous,
            Some(h) => principal_of(&self.keys, &self.users, h)?,
        };
        req.extensions_mut().insert(principal);
        Ok(req)
    }
}

fn principal_of(keys: &Keys, users: &Directory, header: &[u8]) -> Result<Principal, Status> {
    if let Some(token) = header.strip_prefix(b"Bearer ") {
        if is_secret(keys, token) {
            return Ok(Principal::Cluster);
        }
        let token = std::str::from_utf8(token).unwrap_or_default();
        return users
            .check_token(keys, token)
            .map(|(name, role)| Principal::User { name, role })
            .ok_or_else(|| {
                Status::unauthenticated(
                    "invalid or expired token (or its user was removed or changed password); \
                     log in again",
                )
            });
    }
    if let Some(b64) = header.strip_prefix(b"Basic ") {
        let bad = || Status::unauthenticated("malformed basic credentials");
        // Padding optional: some clients (ADBC's Go driver) send unpadded base64.
        let text = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(b64))
            .map_err(|_| bad())?;
        let text = String::from_utf8(text).map_err(|_| bad())?;
        let (name, password) = text.split_once(':').ok_or_else(bad)?;
        return Ok(Principal::Login {
            name: name.to_owned(),
            password: password.to_owned(),
        });
    }
    Err(Status::unauthenticated(
        "unsupported authorization header (Bearer or Basic)",
    ))
}

/// The login: checks basic credentials against the users and answers a token.
pub fn login(users: &Directory, keys: &Keys, principal: &Principal) -> Result<String, Status> {
    let Principal::Login { name, password } = principal else {
        return Err(Status::unauthenticated(
            "send user and password (basic auth) to log in",
        ));
    };
    let (role, generation) = users
        .verify(name, password)
        .ok_or_else(|| Status::unauthenticated(format!("wrong user or password for `{name}`")))?;
    Ok(users.issue_token(keys, name, role, generation))
}

/// The caller as a user with its current role: a [`Principal::Login`] (basic credentials)
/// is checked against `users` here; others are as [`UserAuth`] recorded them.
pub fn authenticated(users: &Directory, principal: Principal) -> Result<Principal, Status> {
    match principal {
        Principal::Login { name, password } => match users.verify(&name, &password) {
            Some((role, _)) => Ok(Principal::User { name, role }),
            None => Err(Status::unauthenticated(format!(
                "wrong user or password for `{name}`"
            ))),
        },
        p => Ok(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_accepts_only_the_secret_the_client_sends() {
        let keys = |s: &str| Keys::parse(s, "cluster.secret").unwrap();
        let mut client = ClientAuth::new("s3cret-s3cret-s3cret").unwrap();
        let req = client.call(Request::new(())).unwrap();
        assert!(
            ServerAuth::new(&keys("s3cret-s3cret-s3cret"))
                .call(req)
                .is_ok()
        );

        let req = client.call(Request::new(())).unwrap();
        let err = ServerAuth::new(&keys("other-other-other-ot"))
            .call(req)
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);

        // While the secret rotates, a server accepts the old and the new one.
        let rotating = keys("other-other-other-ot\ns3cret-s3cret-s3cret");
        let req = client.call(Request::new(())).unwrap();
        assert!(ServerAuth::new(&rotating).call(req).is_ok());

        let err = ServerAuth::new(&rotating)
            .call(Request::new(()))
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
    }

    fn with_header(value: &str) -> Request<()> {
        let mut req = Request::new(());
        req.metadata_mut().insert(HEADER, value.parse().unwrap());
        req
    }

    #[test]
    fn users_log_in_and_their_token_carries_their_role() {
        let secret = &Keys::single("s3cret-s3cret-s3cret".into());
        let users = shoal_common::users::Users::parse(
            std::path::Path::new("cluster.users"),
            &shoal_common::users::user_line("app", Role::Writer, "pw"),
        )
        .unwrap();
        let users = Arc::new(Directory::from_file(users));
        let mut auth = UserAuth::new(secret, users.clone());
        let basic = base64::engine::general_purpose::STANDARD.encode("app:pw");
        let req = auth.call(with_header(&format!("Basic {basic}"))).unwrap();
        let token = login(&users, secret, &Principal::of(&req)).unwrap();

        let req = auth.call(with_header(&format!("Bearer {token}"))).unwrap();
        let who = Principal::of(&req);
        assert!(who.require(Role::Writer).is_ok());
        assert_eq!(
            who.require(Role::Admin).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        assert!(who.require_cluster().is_err());

        let wrong = base64::engine::general_purpose::STANDARD.encode("app:nope");
        let req = auth.call(with_header(&format!("Basic {wrong}"))).unwrap();
        let err = login(&users, secret, &Principal::of(&req)).unwrap_err();
        assert!(err.message().contains("wrong user or password"), "{err}");

        let as_user = authenticated(&users, Principal::of(&req)).unwrap_err();
        assert_eq!(as_user.code(), tonic::Code::Unauthenticated);
        let basic_admin = auth.call(with_header(&format!("Basic {basic}"))).unwrap();
        let who = authenticated(&users, Principal::of(&basic_admin)).unwrap();
        assert_eq!(
            who,
            Principal::User {
                name: "app".into(),
                role: Role::Writer
            }
        );

        let err = auth.call(with_header("Bearer forged")).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        let anonymous = auth.call(Request::new(())).unwrap();
        assert!(Principal::of(&anonymous).require(Role::Reader).is_err());
        let cluster = auth
            .call(with_header(&format!("Bearer {}", secret.signing())))
            .unwrap();
        assert!(Principal::of(&cluster).require_cluster().is_ok());
    }
}
