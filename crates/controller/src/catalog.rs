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
        match self {
            ChunkState::Constructing => "CONSTRUCTING",
            ChunkState::Recovering => "RECOVERING",
            ChunkState::Complete => "COMPLETE",
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
}

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
    pub fn replicas_per_node(&self) -> BTreeMap<&str, usize> {
        let mut counts = BTreeMap::new();
        for r in self.chunks.values().flat_map(|c| &c.replicas) {
            *counts.entry(r.node.as_str()).or_default() += 1;
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

    pub fn drop_table(&mut self, db: &str, table: &str) -> CommandResponse {
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
        CommandResponse::applied()
    }

    pub fn drop_database(&mut self, db: &str) -> CommandResponse {
        if self.databases.remove(db).is_none() {
            return CommandResponse::refused(
                Rejection::NotFound,
                format!("database `{db}` does not exist"),
            );
        }
        self.chunks.retain(|_, c| c.db != db);
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
            cat.drop_table("dfs://stock", "stock"),
            CommandResponse::applied()
        );
        assert!(cat.chunks.is_empty());
        assert!(
            cat.drop_table("dfs://stock", "stock")
                .rejected
                .contains("does not exist")
        );
    }
}
