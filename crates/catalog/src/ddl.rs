//! DolphinDB-style SQL DDL (its `create` statement), which standard SQL parsers do not know:
//!
//! ```text
//! CREATE DATABASE "dfs://stock" PARTITIONED BY VALUE(2023.01.01..2023.01.10), ENGINE='TSDB'
//! CREATE TABLE "dfs://stock"."stock" (time TIMESTAMP, name SYMBOL, id INT)
//!     PARTITIONED BY time, sortColumns=[`name], keepDuplicates=ALL   (or FIRST, LAST)
//! DROP TABLE "dfs://stock"."stock"      DROP DATABASE "dfs://stock"
//! SHOW DATABASES                        SHOW TABLES FROM "dfs://stock"
//! ```
//!
//! Anything else is a query, handed to DataFusion unchanged ([`Statement::Query`]).

use std::fmt;

use crate::partition::{KeyKind, PartitionKey, PartitionScheme, parse_date};
use crate::table::{ColumnDef, KeepDuplicates, TableDef};
use crate::types::ColumnType;

/// Largest initial partition list a range may expand to.
const MAX_INITIAL_PARTITIONS: usize = 100_000;

#[derive(Clone, Debug, PartialEq)]
pub enum Statement {
    CreateDatabase {
        path: String,
        scheme: PartitionScheme,
        engine: String,
    },
    CreateTable {
        db_path: String,
        table: TableDef,
    },
    DropDatabase {
        path: String,
    },
    DropTable {
        db_path: String,
        table: String,
    },
    /// `ALTER TABLE "dfs://db".t DROP PARTITION 2023.01.01..2023.01.03`: retention, DolphinDB's
    /// `dropPartition(db, partitions, table)`. Keys sorted and distinct.
    DropPartitions {
        db_path: String,
        table: String,
        keys: Vec<PartitionKey>,
    },
    ShowDatabases,
    ShowTables {
        db_path: String,
    },
    /// Not DDL: a query for the SQL engine.
    Query(String),
}

/// A DDL statement that does not parse: what was expected, and where (1-based column).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at column {column})")]
pub struct DdlError {
    pub message: String,
    pub column: usize,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    /// `` `name `` (a DolphinDB symbol literal).
    Symbol(String),
    Number(String),
    Range,
    Punct(char),
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Word(w) => write!(f, "`{w}`"),
            Tok::Str(s) => write!(f, "\"{s}\""),
            Tok::Symbol(s) => write!(f, "`{s}"),
            Tok::Number(n) => write!(f, "`{n}`"),
            Tok::Range => f.write_str("`..`"),
            Tok::Punct(c) => write!(f, "`{c}`"),
        }
    }
}

fn tokenize(sql: &str) -> Result<Vec<(Tok, usize)>, DdlError> {
    let chars: Vec<char> = sql.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    let err = |message: String, at: usize| DdlError {
        message,
        column: at + 1,
    };
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' || c == '\'' {
            let end = chars[i + 1..]
                .iter()
                .position(|x| *x == c)
                .ok_or_else(|| err(format!("unterminated string starting with {c}"), start))?;
            toks.push((Tok::Str(chars[i + 1..i + 1 + end].iter().collect()), start));
            i += end + 2;
        } else if c == '`' {
            i += 1;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            toks.push((Tok::Symbol(chars[start + 1..i].iter().collect()), start));
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            i += 1;
            while i < chars.len()
                && (chars[i].is_ascii_digit()
                    || (chars[i] == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)))
            {
                i += 1;
            }
            toks.push((Tok::Number(chars[start..i].iter().collect()), start));
        } else if c == '.' && chars.get(i + 1) == Some(&'.') {
            toks.push((Tok::Range, start));
            i += 2;
        } else if c.is_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            toks.push((Tok::Word(chars[start..i].iter().collect()), start));
        } else if "()[],=.;".contains(c) {
            toks.push((Tok::Punct(c), start));
            i += 1;
        } else {
            return Err(err(format!("unexpected character `{c}`"), start));
        }
    }
    Ok(toks)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(t, _)| t)
    }

    fn column(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |(_, at)| *at) + 1
    }

    fn error<T>(&self, message: impl Into<String>) -> Result<T, DdlError> {
        Err(DdlError {
            message: message.into(),
            column: self.column(),
        })
    }

    fn found(&self) -> String {
        self.peek()
            .map_or("the end of the statement".into(), |t| t.to_string())
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|(t, _)| t.clone());
        self.pos += 1;
        t
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w))
    }

    fn eat_word(&mut self, w: &str) -> bool {
        let yes = self.is_word(w);
        if yes {
            self.pos += 1;
        }
        yes
    }

    fn expect_word(&mut self, w: &str) -> Result<(), DdlError> {
        if self.eat_word(w) {
            Ok(())
        } else {
            self.error(format!("expected {w}, found {}", self.found()))
        }
    }

    fn eat_punct(&mut self, c: char) -> bool {
        let yes = self.peek() == Some(&Tok::Punct(c));
        if yes {
            self.pos += 1;
        }
        yes
    }

    fn expect_punct(&mut self, c: char) -> Result<(), DdlError> {
        if self.eat_punct(c) {
            Ok(())
        } else {
            self.error(format!("expected `{c}`, found {}", self.found()))
        }
    }

    /// A name: a bare word, a quoted string or a `` `symbol ``.
    fn name(&mut self, what: &str) -> Result<String, DdlError> {
        match self.peek().cloned() {
            Some(Tok::Word(s) | Tok::Str(s) | Tok::Symbol(s)) if !s.is_empty() => {
                self.pos += 1;
                Ok(s)
            }
            _ => self.error(format!("expected {what}, found {}", self.found())),
        }
    }

    fn db_path(&mut self) -> Result<String, DdlError> {
        let at = self.column();
        let path = self.name("a database path like \"dfs://stock\"")?;
        if !path.starts_with("dfs://") || path.len() <= "dfs://".len() {
            return Err(DdlError {
                message: format!(
                    "database path `{path}` must start with dfs:// and name the database"
                ),
                column: at,
            });
        }
        Ok(path)
    }

    fn finish(&mut self) -> Result<(), DdlError> {
        self.eat_punct(';');
        match self.peek() {
            None => Ok(()),
            Some(_) => self.error(format!("unexpected {} after the statement", self.found())),
        }
    }
}

/// Parses one statement; non-DDL SQL comes back as [`Statement::Query`] untouched.
pub fn parse(sql: &str) -> Result<Statement, DdlError> {
    let words: Vec<String> = sql
        .split_whitespace()
        .take(3)
        .map(str::to_ascii_lowercase)
        .collect();
    let word = |i: usize| words.get(i).map_or("", String::as_str);
    // `CREATE TABLE t(...)` without a dfs:// path is plain SQL, not ours.
    let dfs_target = word(2).starts_with("\"dfs://") || word(2).starts_with("'dfs://");
    let is_ddl = matches!(
        (word(0), word(1)),
        ("create" | "drop", "database") | ("show", "databases" | "tables")
    ) || (matches!((word(0), word(1)), ("create" | "drop" | "alter", "table"))
        && dfs_target);
    if !is_ddl {
        return Ok(Statement::Query(sql.to_owned()));
    }
    let mut p = Parser {
        toks: tokenize(sql)?,
        pos: 2,
        end: sql.chars().count(),
    };
    let stmt = match (word(0), word(1)) {
        ("create", "database") => create_database(&mut p)?,
        ("create", _) => create_table(&mut p)?,
        ("drop", "database") => Statement::DropDatabase { path: p.db_path()? },
        ("alter", _) => drop_partitions(&mut p)?,
        ("drop", _) => {
            let (db_path, table) = qualified_table(&mut p)?;
            Statement::DropTable { db_path, table }
        }
        (_, "databases") => Statement::ShowDatabases,
        _ => {
            if !p.eat_word("from") {
                p.expect_word("in")?;
            }
            Statement::ShowTables {
                db_path: p.db_path()?,
            }
        }
    };
    p.finish()?;
    Ok(stmt)
}

fn qualified_table(p: &mut Parser) -> Result<(String, String), DdlError> {
    let db_path = p.db_path()?;
    p.expect_punct('.')?;
    let table = p.name("a table name")?;
    Ok((db_path, table))
}

fn drop_partitions(p: &mut Parser) -> Result<Statement, DdlError> {
    let (db_path, table) = qualified_table(p)?;
    if !p.eat_word("drop") {
        return p.error(format!(
            "only ALTER TABLE ... DROP PARTITION is supported, found {}",
            p.found()
        ));
    }
    p.expect_word("partition")?;
    let keys = partition_values(p)?;
    Ok(Statement::DropPartitions {
        db_path,
        table,
        keys,
    })
}

fn create_database(p: &mut Parser) -> Result<Statement, DdlError> {
    let path = p.db_path()?;
    p.expect_word("partitioned")?;
    p.expect_word("by")?;
    if !p.eat_word("value") {
        return p.error(format!(
            "only VALUE partitioning is supported, found {}",
            p.found()
        ));
    }
    p.expect_punct('(')?;
    let initial = partition_values(p)?;
    p.expect_punct(')')?;
    let kind = match initial.first() {
        Some(PartitionKey::Date(_)) => KeyKind::Date,
        _ => KeyKind::Int,
    };
    let mut engine = String::from("TSDB");
    while p.eat_punct(',') {
        let key = p.name("an option such as ENGINE")?;
        p.expect_punct('=')?;
        let value = p.name("a value")?;
        match key.to_ascii_lowercase().as_str() {
            "engine" if ["tsdb", "olap"].contains(&value.to_ascii_lowercase().as_str()) => {
                engine = value.to_ascii_uppercase();
            }
            "engine" => return p.error(format!("unknown engine `{value}` (TSDB or OLAP)")),
            // Accepted for DolphinDB scripts; Shoal's writes are per chunk either way.
            "atomic" | "chunkgranularity" => {}
            _ => {
                return p.error(format!(
                    "unknown database option `{key}` (ENGINE, ATOMIC, CHUNKGRANULARITY)"
                ));
            }
        }
    }
    Ok(Statement::CreateDatabase {
        path,
        scheme: PartitionScheme::Value { kind, initial },
        engine,
    })
}

/// `a..b` (inclusive) or `[a, b, ...]` of dates (`2023.01.01`) or integers.
fn partition_values(p: &mut Parser) -> Result<Vec<PartitionKey>, DdlError> {
    let mut keys = Vec::new();
    if p.eat_punct('[') {
        loop {
            keys.push(literal(p)?);
            if !p.eat_punct(',') {
                break;
            }
        }
        p.expect_punct(']')?;
    } else {
        let first = literal(p)?;
        if p.peek() == Some(&Tok::Range) {
            p.pos += 1;
            let last = literal(p)?;
            keys = expand_range(p, first, last)?;
        } else {
            keys.push(first);
        }
    }
    let kinds_mixed = keys
        .windows(2)
        .any(|w| std::mem::discriminant(&w[0]) != std::mem::discriminant(&w[1]));
    if kinds_mixed {
        return p.error("partition values mix dates and integers");
    }
    keys.sort();
    keys.dedup();
    Ok(keys)
}

fn literal(p: &mut Parser) -> Result<PartitionKey, DdlError> {
    let Some(Tok::Number(n)) = p.peek().cloned() else {
        return p.error(format!(
            "expected a date like 2023.01.01 or an integer, found {}",
            p.found()
        ));
    };
    let key = if n.contains('.') {
        parse_date(&n).map(PartitionKey::Date)
    } else {
        n.parse().ok().map(PartitionKey::Int)
    };
    match key {
        Some(k) => {
            p.pos += 1;
            Ok(k)
        }
        None => p.error(format!("`{n}` is not a valid date (YYYY.MM.DD) or integer")),
    }
}

fn expand_range(
    p: &Parser,
    first: PartitionKey,
    last: PartitionKey,
) -> Result<Vec<PartitionKey>, DdlError> {
    let (a, b, make): (i64, i64, fn(i64) -> PartitionKey) = match (first, last) {
        (PartitionKey::Date(a), PartitionKey::Date(b)) => {
            (i64::from(a), i64::from(b), |d| PartitionKey::Date(d as i32))
        }
        (PartitionKey::Int(a), PartitionKey::Int(b)) => (a, b, PartitionKey::Int),
        _ => return p.error("a range must go from a date to a date or an integer to an integer"),
    };
    if b < a {
        return p.error(format!("empty range: {first}..{last}"));
    }
    if usize::try_from(b - a).map_or(true, |n| n >= MAX_INITIAL_PARTITIONS) {
        return p.error(format!(
            "range {first}..{last} exceeds {MAX_INITIAL_PARTITIONS} partitions"
        ));
    }
    Ok((a..=b).map(make).collect())
}

fn create_table(p: &mut Parser) -> Result<Statement, DdlError> {
    let (db_path, name) = qualified_table(p)?;
    p.expect_punct('(')?;
    let mut columns: Vec<ColumnDef> = Vec::new();
    loop {
        let at = p.column();
        let col = p.name("a column name")?;
        let ty_at = p.column();
        let ty_name = p.name("a column type")?;
        let ty: ColumnType = ty_name.parse().map_err(|message| DdlError {
            message,
            column: ty_at,
        })?;
        // A column description (`[comment="...", compress="delta"]`) is accepted and ignored.
        if p.eat_punct('[') {
            while !p.eat_punct(']') {
                if p.next().is_none() {
                    return p.error("unterminated column description `[...`");
                }
            }
        }
        if columns.iter().any(|c| c.name.eq_ignore_ascii_case(&col)) {
            return Err(DdlError {
                message: format!("duplicate column `{col}`"),
                column: at,
            });
        }
        columns.push(ColumnDef { name: col, ty });
        if !p.eat_punct(',') {
            break;
        }
    }
    p.expect_punct(')')?;
    p.expect_word("partitioned")?;
    p.expect_word("by")?;
    let at = p.column();
    let partition_column = p.name("the partition column")?;
    let find = |name: &str, at: usize| {
        columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
            .map(|c| c.name.clone())
            .ok_or_else(|| DdlError {
                message: format!("no column `{name}` in the table"),
                column: at,
            })
    };
    let partition_column = find(&partition_column, at)?;
    let mut sort_columns = Vec::new();
    let mut keep_duplicates = KeepDuplicates::All;
    let mut keep_at = 0;
    while p.eat_punct(',') {
        let key_at = p.column();
        let key = p.name("sortColumns or keepDuplicates")?;
        p.expect_punct('=')?;
        match key.to_ascii_lowercase().as_str() {
            "sortcolumns" => {
                let bracketed = p.eat_punct('[');
                loop {
                    let at = p.column();
                    let c = p.name("a sort column")?;
                    sort_columns.push(find(&c, at)?);
                    if !bracketed || !p.eat_punct(',') {
                        break;
                    }
                }
                if bracketed {
                    p.expect_punct(']')?;
                }
            }
            "keepduplicates" => {
                keep_at = p.column();
                keep_duplicates =
                    p.name("ALL, FIRST or LAST")?
                        .parse()
                        .map_err(|message| DdlError {
                            message,
                            column: keep_at,
                        })?;
            }
            _ => {
                return Err(DdlError {
                    message: format!("unknown table option `{key}` (sortColumns, keepDuplicates)"),
                    column: key_at,
                });
            }
        }
    }
    // Rows are deduplicated on equal sort keys: without sortColumns there is no key to be
    // equal on (DolphinDB refuses this too).
    if keep_duplicates != KeepDuplicates::All && sort_columns.is_empty() {
        return Err(DdlError {
            message: format!(
                "keepDuplicates={keep_duplicates} needs sortColumns: rows are deduplicated on equal sort keys"
            ),
            column: keep_at,
        });
    }
    Ok(Statement::CreateTable {
        db_path,
        table: TableDef {
            name,
            columns,
            partition_column,
            sort_columns,
            keep_duplicates,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alter_table_drop_partition_takes_values_lists_and_ranges() {
        let day = |s: &str| PartitionKey::Date(parse_date(s).unwrap());
        assert_eq!(
            parse(r#"ALTER TABLE "dfs://stock".stock DROP PARTITION 2023.01.01..2023.01.03;"#)
                .unwrap(),
            Statement::DropPartitions {
                db_path: "dfs://stock".into(),
                table: "stock".into(),
                keys: vec![day("2023.01.01"), day("2023.01.02"), day("2023.01.03")],
            }
        );
        assert_eq!(
            parse(r#"alter table "dfs://m".t drop partition [7, 3, 7]"#).unwrap(),
            Statement::DropPartitions {
                db_path: "dfs://m".into(),
                table: "t".into(),
                keys: vec![PartitionKey::Int(3), PartitionKey::Int(7)],
            }
        );
        let e = parse(r#"ALTER TABLE "dfs://stock".stock ADD COLUMN x INT"#).unwrap_err();
        assert!(
            e.message.contains("only ALTER TABLE ... DROP PARTITION"),
            "{e}"
        );
        let e = parse(r#"ALTER TABLE "dfs://stock".stock DROP PARTITION"#).unwrap_err();
        assert!(e.message.contains("expected a date"), "{e}");
        // Not ours: plain SQL on a table that is not a dfs:// path.
        assert!(matches!(
            parse("ALTER TABLE t DROP PARTITION 1").unwrap(),
            Statement::Query(_)
        ));
    }

    #[test]
    fn the_seed_database_and_table_parse() {
        let db = parse(r#"CREATE DATABASE "dfs://stock" PARTITIONED BY VALUE(2023.01.01..2023.01.10), ENGINE='TSDB'"#).unwrap();
        let Statement::CreateDatabase {
            path,
            scheme,
            engine,
        } = db
        else {
            panic!("{db:?}")
        };
        assert_eq!(path, "dfs://stock");
        assert_eq!(engine, "TSDB");
        assert_eq!(scheme.kind(), KeyKind::Date);
        let days: Vec<String> = scheme.initial().iter().map(ToString::to_string).collect();
        assert_eq!(days.len(), 10);
        assert_eq!(days[0], "2023.01.01");
        assert_eq!(days[9], "2023.01.10");

        let t = parse(
            "create table \"dfs://stock\".\"stock\"(\n time TIMESTAMP, name SYMBOL, id INT\n)\n\
             partitioned by time, sortColumns=[`name], keepDuplicates=ALL;",
        )
        .unwrap();
        let Statement::CreateTable { db_path, table } = t else {
            panic!("{t:?}")
        };
        assert_eq!(db_path, "dfs://stock");
        assert_eq!(table.name, "stock");
        let cols: Vec<(&str, ColumnType)> = table
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.ty))
            .collect();
        assert_eq!(
            cols,
            [
                ("time", ColumnType::Timestamp),
                ("name", ColumnType::Symbol),
                ("id", ColumnType::Int)
            ]
        );
        assert_eq!(table.partition_column, "time");
        assert_eq!(table.sort_columns, ["name"]);
        assert_eq!(table.keep_duplicates, KeepDuplicates::All);
    }

    #[test]
    fn keep_duplicates_first_and_last_parse_in_any_case() {
        for (text, keep) in [
            ("first", KeepDuplicates::First),
            ("LAST", KeepDuplicates::Last),
            ("All", KeepDuplicates::All),
        ] {
            let sql = format!(
                "create table \"dfs://stock\".t(time TIMESTAMP, name SYMBOL, price DOUBLE) \
                 partitioned by time, keepDuplicates={text}, sortColumns=[`name, `time]"
            );
            let Statement::CreateTable { table, .. } = parse(&sql).unwrap() else {
                panic!("{sql}")
            };
            assert_eq!(table.keep_duplicates, keep, "{sql}");
            assert_eq!(table.sort_key(), ["name", "time"]);
        }
    }

    #[test]
    fn other_sql_is_a_query() {
        for q in [
            "SELECT count(*) FROM \"dfs://stock\".stock",
            "create table t(a int)",
            "  select 1",
        ] {
            assert_eq!(parse(q).unwrap(), Statement::Query(q.to_owned()));
        }
    }

    #[test]
    fn drop_and_show_parse() {
        assert_eq!(
            parse("DROP DATABASE \"dfs://x\"").unwrap(),
            Statement::DropDatabase {
                path: "dfs://x".into()
            }
        );
        assert_eq!(
            parse("drop table \"dfs://x\".t").unwrap(),
            Statement::DropTable {
                db_path: "dfs://x".into(),
                table: "t".into()
            }
        );
        assert_eq!(parse("show databases").unwrap(), Statement::ShowDatabases);
        assert_eq!(
            parse("SHOW TABLES FROM \"dfs://x\"").unwrap(),
            Statement::ShowTables {
                db_path: "dfs://x".into()
            }
        );
    }

    #[test]
    fn integer_and_list_schemes_parse() {
        let Statement::CreateDatabase { scheme, .. } =
            parse("create database \"dfs://a\" partitioned by VALUE(1..3)").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            scheme.initial(),
            [
                PartitionKey::Int(1),
                PartitionKey::Int(2),
                PartitionKey::Int(3)
            ]
        );
        let Statement::CreateDatabase { scheme, .. } =
            parse("create database \"dfs://a\" partitioned by VALUE([2023.01.05, 2023.01.01])")
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(scheme.initial().len(), 2);
        assert_eq!(scheme.initial()[0].to_string(), "2023.01.01");
    }

    /// Each bad statement fails with a message naming the problem.
    #[test]
    fn bad_ddl_names_the_problem() {
        let cases = [
            (
                "create database \"stock\" partitioned by VALUE(1..3)",
                "must start with dfs://",
            ),
            (
                "create database \"dfs://a\" partitioned by RANGE(1..3)",
                "only VALUE",
            ),
            (
                "create database \"dfs://a\" partitioned by VALUE(2023.02.30..2023.03.01)",
                "2023.02.30",
            ),
            (
                "create database \"dfs://a\" partitioned by VALUE(5..1)",
                "empty range",
            ),
            (
                "create database \"dfs://a\" partitioned by VALUE(1..3), engine='ROCKS'",
                "unknown engine",
            ),
            (
                "create database \"dfs://a\" partitioned by VALUE([1, 2023.01.01])",
                "mix",
            ),
            (
                "create table \"dfs://a\".t(x DECIMAL) partitioned by x",
                "unknown type `DECIMAL`",
            ),
            (
                "create table \"dfs://a\".t(x INT, x LONG) partitioned by x",
                "duplicate column `x`",
            ),
            (
                "create table \"dfs://a\".t(x INT) partitioned by y",
                "no column `y`",
            ),
            (
                "create table \"dfs://a\".t(x INT) partitioned by x, sortColumns=[`z]",
                "no column `z`",
            ),
            (
                "create table \"dfs://a\".t(x INT) partitioned by x, keepDuplicates=LAST",
                "keepDuplicates=LAST needs sortColumns",
            ),
            (
                "create table \"dfs://a\".t(x INT) partitioned by x, sortColumns=[`x], keepDuplicates=NONE",
                "unknown keepDuplicates value `NONE` (ALL, FIRST or LAST)",
            ),
            (
                "create table \"dfs://a\".t(x INT) partitioned by x, colour=red",
                "unknown table option",
            ),
            (
                "create table \"dfs://a\".t(x INT partitioned by x",
                "expected `)`",
            ),
            ("drop database \"dfs://a\" now", "unexpected `now`"),
            ("create database \"dfs://a", "unterminated string"),
        ];
        for (sql, want) in cases {
            let err = parse(sql).unwrap_err().to_string();
            assert!(err.contains(want), "{sql}\n  gave: {err}\n  want: {want}");
            assert!(err.contains("column"), "{err}");
        }
    }
}
