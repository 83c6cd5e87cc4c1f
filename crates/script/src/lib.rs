//! DolphinDB script, the subset operators use around a cluster and its tables: the seed's
//! `pnodeRun(version)`, `select * from rpc(getControllerAlias(), getClusterChunksStatus)
//! where state != "COMPLETE"`, `database(...)` / `table(...)` / `createPartitionedTable(...)`,
//! `loadTable`, and `select` over tables. Run by every data node's Flight SQL service, so
//! `shoal sql` and the Python `s.run()` share one interpreter.
//!
//! - `detect`: which texts are scripts (the rest is SQL, unchanged).
//! - `lexer` → `parser` → `ast`: text to statements; anything outside the subset is refused
//!   by name, listing what is supported.
//! - `eval`: runs statements with variables; `functions`: the callable functions
//!   (`cluster`: versions, configuration, chunk status; `ddl`: databases and tables as
//!   Shoal's DDL); `select`: selects as SQL; `value`: what scripts compute; `answer`: the
//!   result a client receives.
//! - `host`: the cluster behind a script (SQL and DDL), a trait so tests need no cluster.

mod answer;
mod ast;
mod detect;
mod error;
mod eval;
mod functions;
mod host;
mod lexer;
mod parser;
mod select;
mod sql;
mod value;

#[cfg(test)]
mod tests;

pub use answer::{Answer, FORM_KEY};
pub use detect::is_script;
pub use error::{Position, ScriptError};
pub use eval::Interpreter;
pub use host::{Host, HostError};
