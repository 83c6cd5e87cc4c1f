//! Shoal's catalog vocabulary, shared by controllers (which store it) and data nodes (which
//! enforce it): column types and their Arrow mapping, partition schemes and keys, table
//! definitions, and the DolphinDB-style DDL that creates them.

pub mod ddl;
pub mod partition;
pub mod rows;
pub mod table;
pub mod types;

pub use ddl::{DdlError, Statement};
pub use partition::{PartitionKey, PartitionScheme};
pub use table::{ColumnDef, DatabaseDef, KeepDuplicates, TableDef};
pub use types::ColumnType;
