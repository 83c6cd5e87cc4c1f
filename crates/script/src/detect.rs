//! Which front end a text goes to: Shoal's SQL (with its DDL) or DolphinDB script.
//!
//! The rule: text whose first word starts a SQL statement (`select`, `with`, `explain`,
//! `show`, `create`, `drop`, `alter`, `describe`, `values`, `insert`, `update`, `delete`,
//! `set`) is SQL, exactly as before — unless it holds more than one statement (a `;` with
//! more after it), or it is a select whose `from` calls a script function (`from
//! rpc(...)`, `from loadTable(...)`, `from getClusterChunksStatus()`). Everything else is a
//! script: `pnodeRun(version)`, `x = ...`, `` `symbols ``, `f{a}`, `a..b` at the start of a
//! statement. Leading SQL comments (`--`, `/* */`) are skipped first; a text starting with
//! `(`, and one starting with a SQL word that the script lexer cannot read (SQL's `::`,
//! `@>`), is SQL.

use crate::functions;
use crate::lexer::{Tok, tokenize};

const SQL_WORDS: [&str; 13] = [
    "select", "with", "explain", "show", "create", "drop", "alter", "describe", "values", "insert",
    "update", "delete", "set",
];

/// Whether `text` is a DolphinDB script (else SQL for the SQL engine and DDL).
pub fn is_script(text: &str) -> bool {
    let body = skip_sql_comments(text);
    if body.is_empty() || body.starts_with('(') {
        return false;
    }
    let first = body
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if !SQL_WORDS.contains(&first.as_str()) {
        return true;
    }
    let Ok(toks) = tokenize(text) else {
        return false;
    };
    let several = toks
        .iter()
        .position(|t| t.tok == Tok::Op(";"))
        .is_some_and(|i| {
            toks[i + 1..]
                .iter()
                .any(|t| !matches!(t.tok, Tok::Op(";") | Tok::Newline))
        });
    let from_script_function = toks.windows(3).any(|w| {
        matches!((&w[0].tok, &w[1].tok, &w[2].tok),
            (Tok::Ident(from), Tok::Ident(f), Tok::Op("("))
                if from.eq_ignore_ascii_case("from") && functions::is_function(f))
    });
    several || from_script_function
}

/// `text` after leading whitespace and SQL comments (`-- ...`, `/* ... */`).
fn skip_sql_comments(text: &str) -> &str {
    let mut rest = text.trim_start();
    loop {
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, r)| r).trim_start();
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, r)| r).trim_start();
        } else {
            return rest;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_script;

    #[test]
    fn sql_and_ddl_stay_sql() {
        for sql in [
            "SELECT count(*) FROM \"dfs://stock\".stock",
            "  select * from cluster.chunks where state <> 'COMPLETE';",
            "CREATE DATABASE \"dfs://stock\" PARTITIONED BY VALUE(2023.01.01..2023.01.10), ENGINE='TSDB'",
            "create table \"dfs://stock\".\"stock\"(time TIMESTAMP, name SYMBOL, id INT) partitioned by time, sortColumns=[`name], keepDuplicates=ALL",
            "SHOW DATABASES",
            "ALTER TABLE \"dfs://stock\".stock DROP PARTITION 2023.01.01..2023.01.03",
            "select x::int from t",
            "EXPLAIN SELECT 1",
            "-- the chunks\n/* not complete */ SELECT * FROM cluster.chunks",
            "(SELECT 1) UNION (SELECT 2)",
            "",
        ] {
            assert!(!is_script(sql), "{sql}");
        }
    }

    #[test]
    fn the_seeds_commands_are_scripts() {
        for script in [
            "pnodeRun(version)",
            "pnodeRun(getConfig{`chunkMetaDir})",
            "select * from rpc(getControllerAlias(), getClusterChunksStatus) where state != \"COMPLETE\"",
            "rpc(getControllerAlias(),getConfig{`dfsMetaDir})",
            "db = database(\"dfs://stock\",VALUE,2023.01.01..2023.01.10,,'TSDB')",
            "version()",
            "// a comment first\nversion()",
            "x = @",
            "select count(*) from loadTable(\"dfs://stock\", `stock)",
            "CREATE DATABASE \"dfs://a\" PARTITIONED BY VALUE(1..2); CREATE TABLE \"dfs://a\".t(x INT) PARTITIONED BY x",
        ] {
            assert!(is_script(script), "{script}");
        }
    }
}
