//! Users managed through the controllers: the `UserAdmin` gRPC service, seeding the table
//! from `cluster.users`, and the directory a controller checks logins and tokens against.
//!
//! Which users count: while the cluster version is below
//! [`version::MANAGED_USERS_CLUSTER_VERSION`] (or the table is not seeded yet), the file's;
//! once seeded, the table's, everywhere (a data node until its first heartbeat answer still
//! uses its file). The leader seeds the table from its own `cluster.users` as soon as the
//! cluster version allows it (a new cluster at once, an upgraded one after `--finalize`), and
//! before any user command.

use std::sync::Arc;

use shoal_common::password::PasswordHash;
use shoal_common::users::{self, Directory, Role, UserRecord, Users};
use shoal_common::version;
use shoal_proto::auth::{Principal, authenticated};
use shoal_proto::user_admin_server::UserAdmin;
use shoal_proto::{ListUsersRequest, UserInfo, UserList, UserRequest};
use tonic::{Request, Response, Status};

use crate::command::Command;
use crate::controller_service::ControllerCore;

/// The users this controller checks logins and tokens against, brought up to date with the
/// replicated table first (cheap when it has not changed).
pub fn directory(core: &ControllerCore) -> Arc<Directory> {
    let held = core.users.revision();
    let table = core.read(|m| {
        (m.users.seeded() && m.users.revision != held).then(|| {
            (
                m.users.revision,
                m.users.users.values().cloned().collect::<Vec<_>>(),
            )
        })
    });
    if let Some((revision, records)) = table {
        match Users::from_records(records) {
            // Every hash was made by a leader; keep the users held.
            Err(e) => tracing::error!("users table revision {revision} unreadable: {e}"),
            Ok(table) => {
                if let Err(e) = core.users.replace(revision, table) {
                    tracing::error!("users table revision {revision} not installed: {e}");
                }
            }
        }
    }
    core.users.clone()
}

/// Seeds the table from this controller's `cluster.users` if the cluster version allows it
/// and nobody has yet. Only on the leader.
pub async fn ensure_seeded(core: &ControllerCore) -> Result<(), Status> {
    let due = core
        .read(|m| m.cluster_version >= version::MANAGED_USERS_CLUSTER_VERSION && !m.users.seeded());
    if due {
        let users: Vec<UserRecord> = core.users_file.records().cloned().collect();
        tracing::info!(
            "seeding the users table with the {} of cluster.users",
            users.len()
        );
        core.write(Command::SeedUsers { users })
            .await?
            .into_result()?;
    }
    Ok(())
}

pub struct UserAdminService {
    core: ControllerCore,
}

impl UserAdminService {
    pub fn new(core: ControllerCore) -> Self {
        Self { core }
    }

    /// The leader, at a cluster version with managed users, seeded, and an admin calling.
    async fn admit<T>(&self, req: &Request<T>) -> Result<(), Status> {
        // Refuse who cannot pass before any Raft round (and the seeding write) runs for them;
        // basic credentials are checked after it, against the current table.
        let principal = Principal::of(req);
        if !matches!(principal, Principal::Login { .. }) {
            principal.require(Role::Admin)?;
        }
        self.core.ensure_lease().await?;
        self.core.read_index().await?;
        self.core.read(|m| {
            crate::ddl::require_cluster_version(
                m,
                version::MANAGED_USERS_CLUSTER_VERSION,
                "managing users through the cluster",
            )
        })?;
        ensure_seeded(&self.core).await?;
        // Basic credentials cost a password hash: off the async threads.
        let users = directory(&self.core);
        tokio::task::spawn_blocking(move || authenticated(&users, principal))
            .await
            .map_err(|e| Status::internal(format!("checking the password: {e}")))??
            .require(Role::Admin)
    }

    async fn change(&self, cmd: Command) -> Result<Response<UserList>, Status> {
        tracing::info!("users: {cmd}");
        self.core.write(cmd).await?.into_result()?;
        Ok(Response::new(self.list()))
    }

    fn list(&self) -> UserList {
        let users = self.core.read(|m| {
            m.users
                .users
                .values()
                .map(|u| UserInfo {
                    name: u.name.clone(),
                    role: u.role.name().to_owned(),
                    generation: u.generation,
                })
                .collect()
        });
        UserList { users }
    }
}

fn role(text: &str) -> Result<Role, Status> {
    text.parse().map_err(Status::invalid_argument)
}

/// Checks a new password and hashes it (Argon2id, off the async threads: it takes tens of ms).
async fn new_hash(password: String) -> Result<String, Status> {
    users::check_password(&password).map_err(Status::invalid_argument)?;
    tokio::task::spawn_blocking(move || PasswordHash::argon2id(&password))
        .await
        .map_err(|e| Status::internal(format!("hashing the password: {e}")))
}

#[tonic::async_trait]
impl UserAdmin for UserAdminService {
    async fn add_user(&self, req: Request<UserRequest>) -> Result<Response<UserList>, Status> {
        self.admit(&req).await?;
        let req = req.into_inner();
        users::check_name(&req.name).map_err(Status::invalid_argument)?;
        let role = role(&req.role)?;
        let hash = new_hash(req.password).await?;
        self.change(Command::AddUser {
            name: req.name,
            role,
            hash,
        })
        .await
    }

    async fn remove_user(&self, req: Request<UserRequest>) -> Result<Response<UserList>, Status> {
        self.admit(&req).await?;
        self.change(Command::RemoveUser {
            name: req.into_inner().name,
        })
        .await
    }

    async fn set_password(&self, req: Request<UserRequest>) -> Result<Response<UserList>, Status> {
        self.admit(&req).await?;
        let req = req.into_inner();
        let exists = self.core.read(|m| m.users.users.contains_key(&req.name));
        if !exists {
            return Err(Status::not_found(format!("no user `{}`", req.name)));
        }
        let hash = new_hash(req.password).await?;
        self.change(Command::SetPassword {
            name: req.name,
            hash,
        })
        .await
    }

    async fn set_role(&self, req: Request<UserRequest>) -> Result<Response<UserList>, Status> {
        self.admit(&req).await?;
        let req = req.into_inner();
        let role = role(&req.role)?;
        self.change(Command::SetRole {
            name: req.name,
            role,
        })
        .await
    }

    async fn list_users(
        &self,
        req: Request<ListUsersRequest>,
    ) -> Result<Response<UserList>, Status> {
        self.admit(&req).await?;
        Ok(Response::new(self.list()))
    }
}
