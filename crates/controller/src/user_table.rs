//! The replicated users table (part of [`crate::cluster_meta::ClusterMeta`]) and how the user
//! commands change it. Every refusal changes nothing.
//!
//! Generations: users seeded from `cluster.users` start at 0 (the `shoal1` tokens handed out
//! before the table existed carry none and count as 0, so seeding logs nobody out); a new user
//! and a password change take the table's new revision, so a name removed and added again never
//! accepts the tokens of its earlier owner.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shoal_common::users::{Role, UserRecord};

use crate::command::{CommandResponse, Rejection};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserTable {
    /// Raised by every change; 0 until seeded (then `cluster.users` is what nodes read).
    pub revision: u64,
    pub users: BTreeMap<String, UserRecord>,
}

impl UserTable {
    pub fn seeded(&self) -> bool {
        self.revision > 0
    }

    pub fn seed(&mut self, users: &[UserRecord]) -> CommandResponse {
        if self.seeded() {
            // Another leader seeded it first: its table stands.
            return CommandResponse::applied();
        }
        self.users = users
            .iter()
            .map(|u| {
                let seeded = UserRecord {
                    generation: 0,
                    ..u.clone()
                };
                (u.name.clone(), seeded)
            })
            .collect();
        self.revision = 1;
        CommandResponse::applied()
    }

    pub fn add(&mut self, name: &str, role: Role, hash: &str) -> CommandResponse {
        if let Some(refused) = self.unseeded() {
            return refused;
        }
        if self.users.contains_key(name) {
            return CommandResponse::refused(
                Rejection::AlreadyExists,
                format!("user `{name}` exists already"),
            );
        }
        self.revision += 1;
        let user = UserRecord {
            name: name.to_owned(),
            role,
            hash: hash.to_owned(),
            generation: self.revision,
        };
        self.users.insert(name.to_owned(), user);
        CommandResponse::applied()
    }

    pub fn remove(&mut self, name: &str) -> CommandResponse {
        if let Err(refused) = self.last_admin_check(name, None) {
            return refused;
        }
        self.users.remove(name);
        self.revision += 1;
        CommandResponse::applied()
    }

    pub fn set_password(&mut self, name: &str, hash: &str) -> CommandResponse {
        if let Err(refused) = self.existing(name) {
            return refused;
        }
        self.revision += 1;
        let revision = self.revision;
        if let Some(user) = self.users.get_mut(name) {
            user.hash = hash.to_owned();
            user.generation = revision;
        }
        CommandResponse::applied()
    }

    pub fn set_role(&mut self, name: &str, role: Role) -> CommandResponse {
        if let Err(refused) = self.last_admin_check(name, Some(role)) {
            return refused;
        }
        if let Some(user) = self.users.get_mut(name) {
            user.role = role;
        }
        self.revision += 1;
        CommandResponse::applied()
    }

    fn unseeded(&self) -> Option<CommandResponse> {
        (!self.seeded()).then(|| CommandResponse::rejected("the users table is not seeded yet"))
    }

    fn existing(&self, name: &str) -> Result<&UserRecord, CommandResponse> {
        if let Some(refused) = self.unseeded() {
            return Err(refused);
        }
        self.users.get(name).ok_or_else(|| {
            CommandResponse::refused(Rejection::NotFound, format!("no user `{name}`"))
        })
    }

    /// Refuses taking `name`'s admin role away (removing it: `new_role` None) if no other
    /// admin would be left: nobody could manage users any more except with the secret.
    fn last_admin_check(&self, name: &str, new_role: Option<Role>) -> Result<(), CommandResponse> {
        let user = self.existing(name)?;
        let loses_admin = user.role == Role::Admin && new_role != Some(Role::Admin);
        let other_admins = self
            .users
            .values()
            .filter(|u| u.role == Role::Admin && u.name != name)
            .count();
        if loses_admin && other_admins == 0 {
            return Err(CommandResponse::rejected(format!(
                "`{name}` is the last admin; make another user admin first"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, role: Role) -> UserRecord {
        UserRecord {
            name: name.into(),
            role,
            hash: "pbkdf2-sha256$1$00$00".into(),
            generation: 9,
        }
    }

    #[test]
    fn changes_bump_generations_and_refusals_change_nothing() {
        let mut t = UserTable::default();
        assert!(
            t.add("app", Role::Writer, "h")
                .rejected
                .contains("not seeded")
        );
        t.seed(&[record("admin", Role::Admin)]);
        assert_eq!((t.revision, t.users["admin"].generation), (1, 0));
        // A second seed (another leader's) changes nothing.
        t.seed(&[]);
        assert_eq!(t.users.len(), 1);

        assert!(t.add("app", Role::Writer, "h").rejected.is_empty());
        assert_eq!(t.users["app"].generation, 2);
        let before = t.clone();
        assert_eq!(
            t.add("app", Role::Reader, "h").rejection,
            Rejection::AlreadyExists
        );
        assert_eq!(t.remove("ghost").rejection, Rejection::NotFound);
        assert!(t.remove("admin").rejected.contains("last admin"));
        assert!(
            t.set_role("admin", Role::Reader)
                .rejected
                .contains("last admin")
        );
        assert_eq!(t, before);

        assert!(t.set_password("app", "h2").rejected.is_empty());
        assert_eq!(
            (t.users["app"].generation, t.users["app"].hash.as_str()),
            (3, "h2")
        );
        assert!(t.set_role("app", Role::Admin).rejected.is_empty());
        assert_eq!(t.users["app"].generation, 3, "a role change keeps sessions");
        assert!(t.remove("admin").rejected.is_empty());
        assert!(t.add("admin", Role::Reader, "h").rejected.is_empty());
        assert_eq!(
            t.users["admin"].generation, 6,
            "never its earlier owner's 0"
        );
    }
}
