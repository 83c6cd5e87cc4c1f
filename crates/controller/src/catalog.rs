//! The replicated catalog: databases, tables, and chunks (one partition of one table) with their
//! replica placement, in-sync sets and states.
//!
//! ```text
//!                 all replicas in sync
//!  CONSTRUCTING --------------------------> COMPLETE
//!                                            |   ^
//!                     a replica left in-sync |   | it caught up and rejoined
//!                                            v   |
//!                                          RECOVERING
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shoal_catalog::{DatabaseDef, PartitionKey, TableDef};

use crate::command::{CommandResponse, Rejection};

/// A chunk's state, as DolphinDB names them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ChunkState {
    /// Created; no write acknowledged yet.
    #[default]
    Constructing,
    /// At least one replica is not in sync and is catching up (or waiting to).
    Recovering,
    /// Every replica is in sync.
    Complete,
}

impl ChunkState {
    /// DolphinDB's name, as `cluster.chunks` shows it.
    pub fn name(self) -> &'static str {
        shoal_proto::ChunkState::from(self).name()
    }
}

impl From<ChunkState> for shoal_proto::ChunkState {
    fn from(state: ChunkState) -> Self {
        match state {
            ChunkState::Constructing => shoal_proto::ChunkState::Constructing,
            ChunkState::Recovering => shoal_proto::ChunkState::Recovering,
            ChunkState::Complete => shoal_proto::ChunkState::Complete,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaMeta {
    /// Data node alias.
    pub node: String,
    /// Only in-sync replicas acknowledge writes, serve reads and seed recovery.
    pub in_sync: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkMeta {
    pub id: u64,
    pub db: String,
    pub table: String,
    pub key: PartitionKey,
    pub replicas: Vec<ReplicaMeta>,
    #[serde(default)]
    pub state: ChunkState,
    /// Bumped on every change of the replica set or in-sync set; a change proposed against an
    /// older version is refused, so two coordinators cannot both shrink a chunk to nothing.
    #[serde(default)]
    pub version: u64,
}

impl ChunkMeta {
    /// DolphinDB-style path: `/stock/20230101/stock`.
    pub fn path(&self) -> String {
        let db = self.db.strip_prefix("dfs://").unwrap_or(&self.db);
        format!("/{db}/{}/{}", self.key.path_segment(), self.table)
    }

    pub fn in_sync(&self) -> impl Iterator<Item = &str> {
        self.replicas
            .iter()
            .filter(|r| r.in_sync)
            .map(|r| r.node.as_str())
    }
}

/// A chunk to create: the leader chose its replicas (see [`crate::placement`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewChunk {
    pub db: String,
    pub table: String,
    pub key: PartitionKey,
    pub nodes: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    #[serde(default)]
    pub databases: BTreeMap<String, DatabaseDef>,
    #[serde(default)]
    pub chunks: BTreeMap<u64, ChunkMeta>,
    #[serde(default)]
    pub next_chunk_id: u64,
    /// The recently dropped databases (`dfs://db`), tables (`dfs://db.table`) and partitions
    /// ([`partition_name`]), with when they were dropped (ms, the proposing leader's clock,
    /// used only to forget them deterministically). Each controller holds these names on its
    /// own clock (`drop_holds`).
    #[serde(default)]
    pub dropped_at_ms: BTreeMap<String, u64>,
}

/// The name a dropped partition is remembered by (see [`Catalog::dropped_at_ms`]).
pub fn partition_name(db: &str, table: &str, key: PartitionKey) -> String {
    format!("{db}.{table}/{}", key.path_segment())
}

/// A dropped name is listed this long (by command times) after its drop.
const LISTED_FOR_MS: u64 = 50_000;

impl Catalog {
    pub fn table(&self, db: &str, table: &str) -> Option<&TableDef> {
        self.databases.get(db)?.tables.get(table)
    }

    pub fn chunk_of(&self, db: &str, table: &str, key: PartitionKey) -> Option<&ChunkMeta> {
        self.chunks
            .values()
            .find(|c| c.db == db && c.table == table && c.key == key)
    }

    /// Chunks per data node: what placement balances.
    /// Owned, so placement can count the replicas it adds as it goes.
    pub fn replicas_per_node(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for r in self.chunks.values().flat_map(|c| &c.replicas) {
            *counts.entry(r.node.clone()).or_default() += 1;
        }
        counts
    }

    pub fn create_database(&mut self, def: &DatabaseDef) -> CommandResponse {
        if self.databases.contains_key(&def.path) {
            return CommandResponse::refused(
                Rejection::AlreadyExists,
                format!("database `{}` already exists", def.path),
            );
        }
        let mut def = def.clone();
        def.tables.clear();
        self.databases.insert(def.path.clone(), def);
        CommandResponse::applied()
    }

    pub fn create_table(&mut self, db: &str, table: &TableDef) -> CommandResponse {
        let Some(database) = self.databases.get_mut(db) else {
            return CommandResponse::refused(
                Rejection::NotFound,
                format!("database `{db}` does not exist"),
            );
        };
        if database.tables.contains_key(&table.name) {
            return CommandResponse::refused(
                Rejection::AlreadyExists,
                format!("table `{}` already exists in `{db}`", table.name),
            );
        }
        match table.partition_type() {
            Some(t) if database.scheme.accepts(t) => {}
            Some(t) => {
                return CommandResponse::rejected(format!(
                    "partition column `{}` is {t}, but `{db}` is partitioned by {:?} values",
                    table.partition_column,
                    database.scheme.kind()
                ));
            }
            None => {
                return CommandResponse::rejected(format!(
                    "no column `{}` in table `{}`",
                    table.partition_column, table.name
                ));
            }
        }
        database.tables.insert(table.name.clone(), table.clone());
        CommandResponse::applied()
    }

    fn remember_drop(&mut self, name: String, at_ms: u64) {
        // Forget drops long past (deterministic: by the command's own time).
        self.dropped_at_ms.retain(|_, t| *t + LISTED_FOR_MS > at_ms);
        self.dropped_at_ms.insert(name, at_ms);
    }

    pub fn drop_table(&mut self, db: &str, table: &str, at_ms: u64) -> CommandResponse {
        let removed = self
            .databases
            .get_mut(db)
            .and_then(|d| d.tables.remove(table));
        if removed.is_none() {
            return CommandResponse::refused(
                Rejection::NotFound,
                format!("table `{table}` does not exist in `{db}`"),
            );
        }
        self.chunks.retain(|_, c| !(c.db == db && c.table == table));
        self.remember_drop(format!("{db}.{table}"), at_ms);
        CommandResponse::applied()
    }

    pub fn drop_database(&mut self, db: &str, at_ms: u64) -> CommandResponse {
        if self.databases.remove(db).is_none() {
            return CommandResponse::refused(
                Rejection::NotFound,
                format!("database `{db}` does not exist"),
            );
        }
        self.chunks.retain(|_, c| c.db != db);
        self.remember_drop(db.to_owned(), at_ms);
        CommandResponse::applied()
    }

    /// Removes the chunks of `keys` (partitions without one are skipped). Each partition's name
    /// is remembered like a dropped table's, so it gets no new chunk while a data node may still
    /// route writes to the old one.
    pub fn drop_partitions(
        &mut self,
        db: &str,
        table: &str,
        keys: &[PartitionKey],
        at_ms: u64,
    ) -> CommandResponse {
        let Some(d) = self.databases.get(db) else {
            return CommandResponse::refused(
                Rejection::NotFound,
                format!("database `{db}` does not exist"),
            );
        };
        if !d.tables.contains_key(table) {
            return CommandResponse::refused(
                Rejection::NotFound,
                format!("table `{table}` does not exist in `{db}`"),
            );
        }
        let kind = d.scheme.kind();
        if let Some(k) = keys.iter().find(|k| k.kind() != kind) {
            return CommandResponse::refused(
                Rejection::Invalid,
                format!("`{db}` is partitioned by {kind}; {k} is not one of them"),
            );
        }
        self.chunks
            .retain(|_, c| !(c.db == db && c.table == table && keys.contains(&c.key)));
        for k in keys {
            self.remember_drop(partition_name(db, table, *k), at_ms);
        }
        CommandResponse::applied()
    }

    /// Creates the chunks that do not exist yet; one created concurrently by another
    /// coordinator is kept as it is (the first placement wins).
    pub fn create_chunks(&mut self, new: &[NewChunk]) -> CommandResponse {
        for n in new {
            if self.table(&n.db, &n.table).is_none() {
                return CommandResponse::refused(
                    Rejection::NotFound,
                    format!("table `{}`.`{}` does not exist", n.db, n.table),
                );
            }
            let mut distinct = n.nodes.clone();
            distinct.sort();
            distinct.dedup();
            if n.nodes.is_empty() || distinct.len() != n.nodes.len() {
                return CommandResponse::rejected(format!(
                    "chunk {} of `{}`: replicas must be distinct and at least one, got {:?}",
                    n.key, n.table, n.nodes
                ));
            }
        }
        for n in new {
            if self.chunk_of(&n.db, &n.table, n.key).is_some() {
                continue;
            }
            self.next_chunk_id += 1;
            let id = self.next_chunk_id;
            self.chunks.insert(
                id,
                ChunkMeta {
                    id,
                    db: n.db.clone(),
                    table: n.table.clone(),
                    key: n.key,
                    replicas: n
                        .nodes
                        .iter()
                        .map(|node| ReplicaMeta {
                            node: node.clone(),
                            in_sync: true,
                        })
                        .collect(),
                    state: ChunkState::Constructing,
                    version: 1,
                },
            );
        }
        CommandResponse::applied()
    }

    /// Compare-and-set on a chunk's in-sync set (see [`ReplicaChange`]). Refused, changing
    /// nothing, when the chunk is at another version than the caller saw, when a named node
    /// holds no replica of it, or when no replica would be left in sync.
    pub fn update_replicas(&mut self, change: &ReplicaChange) -> CommandResponse {
        let Some(chunk) = self.chunks.get_mut(&change.chunk_id) else {
            return CommandResponse::refused(
                Rejection::NotFound,
                format!("chunk {} does not exist", change.chunk_id),
            );
        };
        if chunk.version != change.expected_version {
            return CommandResponse::refused(
                Rejection::Conflict,
                format!(
                    "chunk {} is at version {}, not {}",
                    chunk.id, chunk.version, change.expected_version
                ),
            );
        }
        if let Some(m) = &change.move_replica {
            let from = chunk.replicas.iter().find(|r| r.node == m.from);
            if from.is_none_or(|r| r.in_sync) {
                return CommandResponse::rejected(format!(
                    "chunk {}: only a replica out of sync can move, and `{}` holds none",
                    chunk.id, m.from
                ));
            }
            if chunk.replicas.iter().any(|r| r.node == m.to) {
                return CommandResponse::rejected(format!(
                    "chunk {}: `{}` already holds a replica",
                    chunk.id, m.to
                ));
            }
        }
        let named = change.remove_in_sync.iter().chain(&change.add_in_sync);
        if let Some(stranger) = named
            .into_iter()
            .find(|n| !chunk.replicas.iter().any(|r| &r.node == *n))
        {
            return CommandResponse::rejected(format!(
                "node `{stranger}` holds no replica of chunk {}",
                chunk.id
            ));
        }
        let mut replicas = chunk.replicas.clone();
        if let Some(m) = &change.move_replica {
            for r in replicas.iter_mut().filter(|r| r.node == m.from) {
                r.node = m.to.clone();
            }
        }
        for r in &mut replicas {
            if change.remove_in_sync.contains(&r.node) {
                r.in_sync = false;
            }
            if change.add_in_sync.contains(&r.node) {
                r.in_sync = true;
            }
        }
        if !replicas.iter().any(|r| r.in_sync) {
            return CommandResponse::rejected(format!(
                "chunk {} ({}) would have no replica in sync",
                chunk.id,
                chunk.path()
            ));
        }
        let unchanged = replicas == chunk.replicas;
        if unchanged && !(change.mark_written && chunk.state == ChunkState::Constructing) {
            return CommandResponse::applied();
        }
        chunk.replicas = replicas;
        chunk.state = if chunk.replicas.iter().all(|r| r.in_sync) {
            ChunkState::Complete
        } else {
            ChunkState::Recovering
        };
        chunk.version += 1;
        CommandResponse::applied()
    }
}

/// A change of one chunk's in-sync set, made by the chunk's primary (a replica missed a write,
/// or caught up) or by a coordinator that cannot reach the primary. `expected_version` makes it
/// a compare-and-set: of two racing changes based on the same version only the first applies,
/// so two sides of a partition cannot each remove the other.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaChange {
    pub chunk_id: u64,
    pub expected_version: u64,
    #[serde(default)]
    pub remove_in_sync: Vec<String>,
    #[serde(default)]
    pub add_in_sync: Vec<String>,
    /// The first write was acknowledged: CONSTRUCTING ends.
    #[serde(default)]
    pub mark_written: bool,
    /// Re-replication: an out-of-sync replica on a node that stayed down is replaced by a new,
    /// empty, out-of-sync replica elsewhere, which the chunk's primary then fills.
    #[serde(default)]
    pub move_replica: Option<ReplicaMove>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaMove {
    pub from: String,
    pub to: String,
}

#[cfg(test)]
mod tests {
    use shoal_catalog::ddl::{Statement, parse};

    use super::*;

    fn seed_catalog() -> Catalog {
        let mut cat = Catalog::default();
        let Statement::CreateDatabase { path, scheme, engine } =
            parse(r#"create database "dfs://stock" partitioned by VALUE(2023.01.01..2023.01.10), engine='TSDB'"#).unwrap()
        else {
            panic!()
        };
        let db = DatabaseDef {
            path,
            scheme,
            engine,
            tables: BTreeMap::new(),
        };
        assert_eq!(cat.create_database(&db), CommandResponse::applied());
        let Statement::CreateTable { db_path, table } = parse(
            r#"create table "dfs://stock"."stock"(time TIMESTAMP, name SYMBOL, id INT) partitioned by time, sortColumns=[`name]"#,
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            cat.create_table(&db_path, &table),
            CommandResponse::applied()
        );
        cat
    }

    #[test]
    fn dropping_partitions_removes_their_chunks_and_holds_their_names() {
        let mut cat = seed_catalog();
        let day = |d: i32| PartitionKey::Date(19_358 + d);
        let chunks: Vec<NewChunk> = (0..3)
            .map(|d| NewChunk {
                db: "dfs://stock".into(),
                table: "stock".into(),
                key: day(d),
                nodes: vec!["node1".into(), "node2".into()],
            })
            .collect();
        assert_eq!(cat.create_chunks(&chunks), CommandResponse::applied());

        // Refused, changing nothing: wrong kind of value, unknown table.
        let before = cat.clone();
        let r = cat.drop_partitions("dfs://stock", "stock", &[PartitionKey::Int(3)], 1_000);
        assert!(r.rejected.contains("partitioned by dates"), "{r:?}");
        let r = cat.drop_partitions("dfs://stock", "nope", &[day(0)], 1_000);
        assert_eq!(r.rejection, Rejection::NotFound);
        assert_eq!(cat, before);

        // Day 0 and day 5 (which has no chunk): day 0's chunk goes, the others stay.
        let r = cat.drop_partitions("dfs://stock", "stock", &[day(0), day(5)], 1_000);
        assert_eq!(r, CommandResponse::applied());
        let left: Vec<PartitionKey> = cat.chunks.values().map(|c| c.key).collect();
        assert_eq!(left, vec![day(1), day(2)]);
        let name = partition_name("dfs://stock", "stock", day(0));
        assert_eq!(name, "dfs://stock.stock/20230101");
        assert_eq!(cat.dropped_at_ms.get(&name), Some(&1_000));
    }

    #[test]
    fn creating_twice_is_refused_and_changes_nothing() {
        let mut cat = seed_catalog();
        let before = cat.clone();
        let db = cat.databases["dfs://stock"].clone();
        assert!(cat.create_database(&db).rejected.contains("already exists"));
        let t = cat.databases["dfs://stock"].tables["stock"].clone();
        assert!(
            cat.create_table("dfs://stock", &t)
                .rejected
                .contains("already exists")
        );
        assert!(
            cat.create_table("dfs://nope", &t)
                .rejected
                .contains("does not exist")
        );
        assert_eq!(cat, before);
    }

    #[test]
    fn a_partition_column_of_the_wrong_type_is_refused() {
        let mut cat = seed_catalog();
        let mut t = cat.databases["dfs://stock"].tables["stock"].clone();
        t.name = "by_name".into();
        t.partition_column = "name".into();
        let r = cat.create_table("dfs://stock", &t);
        assert!(r.rejected.contains("SYMBOL"), "{}", r.rejected);
    }

    fn change(version: u64) -> ReplicaChange {
        ReplicaChange {
            chunk_id: 1,
            expected_version: version,
            remove_in_sync: vec![],
            add_in_sync: vec![],
            mark_written: false,
            move_replica: None,
        }
    }

    #[test]
    fn in_sync_changes_are_compare_and_set_and_never_empty_the_set() {
        let mut cat = seed_catalog();
        let key = cat.databases["dfs://stock"].scheme.initial()[0];
        cat.create_chunks(&[NewChunk {
            db: "dfs://stock".into(),
            table: "stock".into(),
            key,
            nodes: vec!["node1".into(), "node2".into()],
        }]);
        let written = ReplicaChange {
            mark_written: true,
            ..change(1)
        };
        assert_eq!(cat.update_replicas(&written), CommandResponse::applied());
        assert_eq!(cat.chunks[&1].state, ChunkState::Complete);
        assert_eq!(cat.chunks[&1].version, 2);

        // Both sides of a partition try to remove the other, based on version 2: one wins.
        let drop2 = ReplicaChange {
            remove_in_sync: vec!["node2".into()],
            ..change(2)
        };
        let drop1 = ReplicaChange {
            remove_in_sync: vec!["node1".into()],
            ..change(2)
        };
        assert_eq!(cat.update_replicas(&drop2), CommandResponse::applied());
        let before = cat.clone();
        assert_eq!(cat.update_replicas(&drop1).rejection, Rejection::Conflict);
        assert_eq!(cat, before);
        let chunk = &cat.chunks[&1];
        assert_eq!(
            (chunk.state, chunk.in_sync().collect::<Vec<_>>()),
            (ChunkState::Recovering, vec!["node1"])
        );

        // The last in-sync replica stays; a stranger is refused; nothing changes.
        let last = ReplicaChange {
            remove_in_sync: vec!["node1".into()],
            ..change(3)
        };
        assert!(
            cat.update_replicas(&last)
                .rejected
                .contains("no replica in sync")
        );
        let stranger = ReplicaChange {
            add_in_sync: vec!["node9".into()],
            ..change(3)
        };
        assert!(cat.update_replicas(&stranger).rejected.contains("node9"));
        assert_eq!(cat.chunks[&1].version, 3);

        // A replica in sync cannot move; an out-of-sync one cannot move onto a replica holder.
        let move_to = |from: &str, to: &str| ReplicaChange {
            move_replica: Some(ReplicaMove {
                from: from.into(),
                to: to.into(),
            }),
            ..change(3)
        };
        assert!(
            cat.update_replicas(&move_to("node1", "node3"))
                .rejected
                .contains("out of sync")
        );
        assert!(
            cat.update_replicas(&move_to("node2", "node1"))
                .rejected
                .contains("already holds")
        );
        assert_eq!(cat.chunks[&1].version, 3);

        // node2 caught up and rejoins: COMPLETE again.
        let rejoin = ReplicaChange {
            add_in_sync: vec!["node2".into()],
            ..change(3)
        };
        assert_eq!(cat.update_replicas(&rejoin), CommandResponse::applied());
        assert_eq!(
            (cat.chunks[&1].state, cat.chunks[&1].version),
            (ChunkState::Complete, 4)
        );

        // node2 falls behind again and stays down: its replica moves to node3, still out of
        // sync until the primary has filled it.
        let drop2 = ReplicaChange {
            remove_in_sync: vec!["node2".into()],
            ..change(4)
        };
        assert_eq!(cat.update_replicas(&drop2), CommandResponse::applied());
        let moved = ReplicaChange {
            expected_version: 5,
            ..move_to("node2", "node3")
        };
        assert_eq!(cat.update_replicas(&moved), CommandResponse::applied());
        let chunk = &cat.chunks[&1];
        assert_eq!(
            chunk
                .replicas
                .iter()
                .map(|r| (r.node.as_str(), r.in_sync))
                .collect::<Vec<_>>(),
            [("node1", true), ("node3", false)]
        );
        assert_eq!((chunk.state, chunk.version), (ChunkState::Recovering, 6));
    }

    #[test]
    fn chunks_are_created_once_and_dropped_with_their_table() {
        let mut cat = seed_catalog();
        let key = cat.databases["dfs://stock"].scheme.initial()[0];
        let new = NewChunk {
            db: "dfs://stock".into(),
            table: "stock".into(),
            key,
            nodes: vec!["node1".into(), "node2".into()],
        };
        cat.create_chunks(std::slice::from_ref(&new));
        let other = NewChunk {
            nodes: vec!["node3".into(), "node1".into()],
            ..new.clone()
        };
        cat.create_chunks(&[other]);
        assert_eq!(cat.chunks.len(), 1);
        let twice = NewChunk {
            nodes: vec!["node1".into(), "node1".into()],
            key: PartitionKey::Date(0),
            ..new.clone()
        };
        assert!(cat.create_chunks(&[twice]).rejected.contains("distinct"));
        assert_eq!(cat.chunks.len(), 1);
        let chunk = cat.chunk_of("dfs://stock", "stock", key).unwrap();
        assert_eq!(
            chunk.in_sync().collect::<Vec<_>>(),
            ["node1", "node2"],
            "first placement wins"
        );
        assert_eq!(chunk.path(), "/stock/20230101/stock");
        assert_eq!(chunk.state, ChunkState::Constructing);

        assert_eq!(
            cat.drop_table("dfs://stock", "stock", 1_000),
            CommandResponse::applied()
        );
        assert!(cat.chunks.is_empty());
        assert_eq!(cat.dropped_at_ms.get("dfs://stock.stock"), Some(&1_000));
        assert!(
            cat.drop_table("dfs://stock", "stock", 2_000)
                .rejected
                .contains("does not exist")
        );
    }
}
