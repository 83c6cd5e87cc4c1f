//! The `key=value` reader shared by `controller.cfg`, `cluster.cfg` and
//! `agent.cfg`, plus the value parsers every file uses.
//!
//! Format: one `key=value` per line; whitespace around key and value is
//! trimmed; blank lines and lines starting with `#` are ignored. Keys are
//! case-sensitive camelCase. A key may appear only once per file.
//!
//! Each file describes its keys as a small table of [`Key`]s (name, default
//! text, parser). [`KvFile::get`] looks a key up, falls back to the default
//! and parses, turning any failure into a [`ConfigError`] that names the
//! file, line and key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ConfigError;
use super::site::{NodeMode, Site};

/// A value that does not parse; the message says what was expected and what
/// was found. Becomes a [`ConfigError`] once the file, line and key are known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValueError(pub String);

impl ValueError {
    /// A new error with the given message.
    pub fn new(message: impl Into<String>) -> Self {
        ValueError(message.into())
    }
}

/// One `key=value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 1-based line number.
    pub line: usize,
    /// The key, trimmed.
    pub key: String,
    /// The value, trimmed (may be empty).
    pub value: String,
}

/// A parsed `key=value` file: its entries in file order, keys unique.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvFile {
    file: PathBuf,
    entries: Vec<Entry>,
}

impl KvFile {
    /// Split `text` into entries. Rejects lines without `=`, empty or
    /// malformed keys and duplicate keys (naming both lines). Does not check
    /// whether keys are known; see [`KvFile::check_known`].
    pub fn parse(file: &Path, text: &str) -> Result<Self, ConfigError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut entries: Vec<Entry> = Vec::new();
        for (idx, raw) in text.lines().enumerate() {
            let line = idx + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let Some((key, value)) = trimmed.split_once('=') else {
                return Err(ConfigError::new(
                    file,
                    format!("expected `key=value`, got {trimmed:?}"),
                )
                .at_line(line));
            };
            let key = key.trim();
            let value = value.trim();
            if key.is_empty() {
                return Err(
                    ConfigError::new(file, format!("empty key in {trimmed:?}")).at_line(line)
                );
            }
            if !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            {
                return Err(ConfigError::new(
                    file,
                    "invalid key: keys contain only letters, digits, '_' and '.'",
                )
                .at_line(line)
                .with_key(key));
            }
            if let Some(first) = entries.iter().find(|e| e.key == key) {
                return Err(ConfigError::new(
                    file,
                    format!("duplicate key (first set on line {})", first.line),
                )
                .at_line(line)
                .with_key(key));
            }
            entries.push(Entry {
                line,
                key: key.to_string(),
                value: value.to_string(),
            });
        }
        Ok(KvFile {
            file: file.to_path_buf(),
            entries,
        })
    }

    /// The file name used in errors.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// All entries, in file order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry for `key`, if set.
    pub fn find(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    /// Reject the first key not in `known`, with a "did you mean" hint.
    pub fn check_known(&self, known: &[&str]) -> Result<(), ConfigError> {
        match self
            .entries
            .iter()
            .find(|e| !known.contains(&e.key.as_str()))
        {
            Some(e) => Err(unknown_key(&self.file, e.line, &e.key, &e.key, known)),
            None => Ok(()),
        }
    }

    /// The value of `key`: parsed from the file if set, else its default;
    /// a missing required key is an error.
    pub fn get<T>(&self, key: &Key<T>) -> Result<T, ConfigError> {
        match self.find(key.name) {
            Some(e) => key.parse_at(&self.file, Some(e.line), &e.value),
            None => key.default_value(&self.file),
        }
    }

    /// The line `key` is set on, if it is set.
    pub fn line_of(&self, key: &str) -> Option<usize> {
        self.find(key).map(|e| e.line)
    }

    /// An error about `key`, at its line if it is set.
    pub fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::new(&self.file, message)
            .at(self.line_of(key))
            .with_key(key)
    }

    /// Check the required `mode` key equals `expected`.
    pub fn expect_mode(&self, key: &Key<NodeMode>, expected: NodeMode) -> Result<(), ConfigError> {
        let mode = self.get(key)?;
        if mode == expected {
            Ok(())
        } else {
            Err(self.error(
                key.name,
                format!("expected `{expected}` in this file, got `{mode}`"),
            ))
        }
    }
}

impl super::tls::KeySource for KvFile {
    fn value<T>(&self, key: &Key<T>) -> Result<T, ConfigError> {
        self.get(key)
    }

    fn file(&self) -> &Path {
        &self.file
    }

    fn home(&self) -> PathBuf {
        super::config_dir(&self.file)
    }
}

/// Keys shared by several files (same name, default and parser everywhere).
pub mod common {
    use super::*;

    /// `mode`: which kind of node the file configures (required).
    pub const MODE: Key<NodeMode> = Key::required("mode", parse_mode);
    /// `localSite`: this node's `host:port:alias` (required).
    pub const LOCAL_SITE: Key<Site> = Key::required("localSite", parse_site);
    /// `workerNum`: worker threads.
    pub const WORKER_NUM: Key<u32> = Key::with_default("workerNum", "4", parse_positive_u32);
    /// `maxConnections`: client connection limit.
    pub const MAX_CONNECTIONS: Key<u32> =
        Key::with_default("maxConnections", "512", parse_positive_u32);
    /// `maxMemSize`: memory limit in GB; 0 = no limit.
    pub const MAX_MEM_SIZE: Key<f64> = Key::with_default("maxMemSize", "0", parse_non_negative_f64);
    /// `dataSync`: fsync writes (0|1).
    pub const DATA_SYNC: Key<bool> = Key::with_default("dataSync", "0", parse_bool);
    /// `lanCluster`: nodes are on one LAN (0|1).
    pub const LAN_CLUSTER: Key<bool> = Key::with_default("lanCluster", "1", parse_bool);
    /// `httpPort`: the port of the node's metrics and health endpoints; 0 (default): the
    /// node's own port + 1000.
    pub const HTTP_PORT: Key<u16> = Key::with_default("httpPort", "0", parse_port_or_zero);
}

/// A TCP port, or 0 for "the default".
pub fn parse_port_or_zero(value: &str) -> Result<u16, ValueError> {
    parse_u32_in(value, 0, u32::from(u16::MAX)).map(|p| p as u16)
}

/// One known key of a file: its name, its default (as text, parsed by the
/// same parser as file values; `None` means required) and its parser.
#[derive(Clone, Copy)]
pub struct Key<T> {
    /// camelCase name as it appears in the file.
    pub name: &'static str,
    /// Default value text; `None` for a required key.
    pub default: Option<&'static str>,
    /// Value parser.
    pub parse: fn(&str) -> Result<T, ValueError>,
}

impl<T> std::fmt::Debug for Key<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("name", &self.name)
            .field("default", &self.default)
            .finish_non_exhaustive()
    }
}

impl<T> Key<T> {
    /// A required key.
    pub const fn required(name: &'static str, parse: fn(&str) -> Result<T, ValueError>) -> Self {
        Key {
            name,
            default: None,
            parse,
        }
    }

    /// A key with a default.
    pub const fn with_default(
        name: &'static str,
        default: &'static str,
        parse: fn(&str) -> Result<T, ValueError>,
    ) -> Self {
        Key {
            name,
            default: Some(default),
            parse,
        }
    }

    /// Parse `value`, found on `line` of `file`.
    pub fn parse_at(
        &self,
        file: &Path,
        line: Option<usize>,
        value: &str,
    ) -> Result<T, ConfigError> {
        (self.parse)(value).map_err(|e| ConfigError::new(file, e.0).at(line).with_key(self.name))
    }

    /// The default, or a "missing required key" error.
    pub fn default_value(&self, file: &Path) -> Result<T, ConfigError> {
        match self.default {
            Some(text) => self.parse_at(file, None, text),
            None => Err(self.missing(file)),
        }
    }

    /// The error for a required key that is not set.
    pub fn missing(&self, file: &Path) -> ConfigError {
        ConfigError::new(file, "missing required key").with_key(self.name)
    }
}

/// The error for an unknown key. `shown` is the key as written (reported in
/// the error); `name` is the part compared against `known` (they differ for
/// `ALIAS.key` overrides in `cluster.cfg`).
pub fn unknown_key(
    file: &Path,
    line: usize,
    shown: &str,
    name: &str,
    known: &[&str],
) -> ConfigError {
    let message = match suggest(name, known) {
        Some(s) => format!("unknown key; did you mean `{s}`?"),
        None => "unknown key".to_string(),
    };
    ConfigError::new(file, message)
        .at_line(line)
        .with_key(shown)
}

/// The candidate closest to `word` when within edit distance 2, comparing
/// case-insensitively (so `workernum` suggests `workerNum`).
pub fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let word = word.to_lowercase();
    candidates
        .iter()
        .map(|c| (edit_distance(&word, &c.to_lowercase()), *c))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over chars.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

// ---------------------------------------------------------------------------
// Value parsers. Each returns a message saying what was expected and what
// was found; the caller adds file, line and key.
// ---------------------------------------------------------------------------

/// A path, or none for an empty value.
pub fn parse_optional_path(value: &str) -> Result<Option<PathBuf>, ValueError> {
    Ok((!value.is_empty()).then(|| PathBuf::from(value)))
}

/// An integer in `min..=max`.
pub fn parse_u32_in(value: &str, min: u32, max: u32) -> Result<u32, ValueError> {
    let what = if min >= 1 {
        "a positive integer"
    } else {
        "a non-negative integer"
    };
    let n: u32 = value
        .parse()
        .map_err(|_| ValueError(format!("expected {what}, got {value:?}")))?;
    if n < min || n > max {
        return Err(if max == u32::MAX {
            ValueError(format!("expected {what}, got {value:?}"))
        } else {
            ValueError(format!("expected an integer from {min} to {max}, got {n}"))
        });
    }
    Ok(n)
}

/// A positive integer (`1..`).
pub fn parse_positive_u32(value: &str) -> Result<u32, ValueError> {
    parse_u32_in(value, 1, u32::MAX)
}

/// `0`/`1`/`true`/`false` (case-insensitive).
pub fn parse_bool(value: &str) -> Result<bool, ValueError> {
    match value.to_ascii_lowercase().as_str() {
        "0" | "false" => Ok(false),
        "1" | "true" => Ok(true),
        _ => Err(ValueError(format!(
            "expected 0, 1, true or false, got {value:?}"
        ))),
    }
}

/// A duration in whole milliseconds, `0` allowed.
pub fn parse_millis(value: &str) -> Result<Duration, ValueError> {
    value
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| {
            ValueError(format!(
                "expected a duration in milliseconds (non-negative integer), got {value:?}"
            ))
        })
}

/// A positive duration in whole milliseconds.
pub fn parse_positive_millis(value: &str) -> Result<Duration, ValueError> {
    match parse_millis(value)? {
        d if d.is_zero() => Err(ValueError(format!(
            "expected a positive duration in milliseconds, got {value:?}"
        ))),
        d => Ok(d),
    }
}

/// A finite, non-negative number (e.g. a memory size in GB).
pub fn parse_non_negative_f64(value: &str) -> Result<f64, ValueError> {
    match value.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(ValueError(format!(
            "expected a non-negative number, got {value:?}"
        ))),
    }
}

/// A non-empty path (not yet resolved; see [`resolve_path`]).
pub fn parse_path(value: &str) -> Result<PathBuf, ValueError> {
    if value.is_empty() {
        Err(ValueError::new("expected a path, got an empty value"))
    } else {
        Ok(PathBuf::from(value))
    }
}

/// A comma-separated, non-empty list of paths.
pub fn parse_path_list(value: &str) -> Result<Vec<PathBuf>, ValueError> {
    let parts: Vec<&str> = value.split(',').map(str::trim).collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(ValueError(format!(
            "expected a comma-separated list of paths, got {value:?}"
        )));
    }
    Ok(parts.into_iter().map(PathBuf::from).collect())
}

/// A `host:port:alias` site.
pub fn parse_site(value: &str) -> Result<Site, ValueError> {
    value.parse()
}

/// A node mode (`controller`, `agent`, `datanode`).
pub fn parse_mode(value: &str) -> Result<NodeMode, ValueError> {
    value.parse()
}

/// One of `choices` (compared case-insensitively), returned as spelled in
/// `choices`.
pub fn parse_choice(value: &str, choices: &[&'static str]) -> Result<String, ValueError> {
    choices
        .iter()
        .find(|c| c.eq_ignore_ascii_case(value))
        .map(|c| c.to_string())
        .ok_or_else(|| {
            ValueError(format!(
                "unsupported value {value:?}; expected {}",
                choices.join(" or ")
            ))
        })
}

/// `path` as is when absolute, otherwise relative to `base`.
pub fn resolve_path(base: &Path, path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        path
    } else {
        base.join(path)
    }
}

// ---------------------------------------------------------------------------
// Renderers for `entries()`: the inverse of the parsers above.
// ---------------------------------------------------------------------------

/// `0` / `1`.
pub fn fmt_bool(b: bool) -> String {
    if b { "1" } else { "0" }.to_string()
}

/// Whole milliseconds.
pub fn fmt_millis(d: Duration) -> String {
    d.as_millis().to_string()
}

/// A path as a string.
pub fn fmt_path(p: &Path) -> String {
    p.display().to_string()
}

/// Comma-separated paths.
pub fn fmt_paths(ps: &[PathBuf]) -> String {
    ps.iter().map(|p| fmt_path(p)).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(text: &str) -> Result<KvFile, ConfigError> {
        KvFile::parse(Path::new("test.cfg"), text)
    }

    #[test]
    fn parses_lines_comments_and_whitespace() {
        let f = kv("# comment\n\n  a = 1 \n\tb=x=y\r\nc=\n   # indented comment\n").expect("parse");
        let got: Vec<(usize, &str, &str)> = f
            .entries()
            .iter()
            .map(|e| (e.line, e.key.as_str(), e.value.as_str()))
            .collect();
        assert_eq!(got, vec![(3, "a", "1"), (4, "b", "x=y"), (5, "c", "")]);
    }

    #[test]
    fn malformed_line_names_file_and_line() {
        let e = kv("a=1\n\nworkerNum 4\n").expect_err("no '='");
        assert_eq!(e.line, Some(3));
        assert_eq!(
            e.to_string(),
            "test.cfg:3: expected `key=value`, got \"workerNum 4\""
        );
        let e = kv("=4\n").expect_err("empty key");
        assert_eq!(e.line, Some(1));
        let e = kv("worker Num=4\n").expect_err("space in key");
        assert_eq!(e.key.as_deref(), Some("worker Num"));
    }

    #[test]
    fn duplicate_key_names_both_lines() {
        let e = kv("workerNum=4\nmaxConnections=1\nworkerNum=8\n").expect_err("dup");
        assert_eq!(
            e.to_string(),
            "test.cfg:3: workerNum: duplicate key (first set on line 1)"
        );
    }

    #[test]
    fn unknown_keys_get_suggestions() {
        let known = ["workerNum", "maxConnections", "dfsReplicationFactor"];
        let e = kv("workerNum=1\nmaxConection=3\n")
            .expect("parse")
            .check_known(&known)
            .expect_err("unknown");
        assert_eq!(
            e.to_string(),
            "test.cfg:2: maxConection: unknown key; did you mean `maxConnections`?"
        );
        let e = kv("WORKERNUM=1\n")
            .expect("parse")
            .check_known(&known)
            .expect_err("case");
        assert!(e.message.contains("did you mean `workerNum`?"), "{e}");
        let e = kv("fooBar=1\n")
            .expect("parse")
            .check_known(&known)
            .expect_err("far");
        assert_eq!(e.to_string(), "test.cfg:1: fooBar: unknown key");
    }

    #[test]
    fn edit_distance_basics() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
        assert_eq!(suggest("datnode", &["datanode", "agent"]), Some("datanode"));
        assert_eq!(suggest("zzz", &["datanode", "agent"]), None);
    }

    #[test]
    fn getters_use_defaults_and_report_lines() {
        const N: Key<u32> = Key::with_default("n", "2", |v| parse_u32_in(v, 1, 5));
        const R: Key<u32> = Key::required("r", parse_positive_u32);
        let f = kv("x=1\nn=two\n").expect("parse");
        let e = f.get(&N).expect_err("bad int");
        assert_eq!(
            e.to_string(),
            "test.cfg:2: n: expected a positive integer, got \"two\""
        );
        let e = f.get(&R).expect_err("missing");
        assert_eq!(e.to_string(), "test.cfg: r: missing required key");
        let f = kv("n=9").expect("parse");
        let e = f.get(&N).expect_err("range");
        assert_eq!(
            e.to_string(),
            "test.cfg:1: n: expected an integer from 1 to 5, got 9"
        );
        assert_eq!(kv("").expect("parse").get(&N).expect("default"), 2);
    }

    #[test]
    fn value_parsers() {
        assert_eq!(parse_bool("TRUE"), Ok(true));
        assert_eq!(parse_bool("0"), Ok(false));
        assert!(parse_bool("yes").is_err());
        assert_eq!(parse_millis("30000"), Ok(Duration::from_secs(30)));
        assert!(parse_millis("-1").is_err());
        assert!(parse_positive_millis("0").is_err());
        assert_eq!(parse_non_negative_f64("8"), Ok(8.0));
        assert!(parse_non_negative_f64("-1").is_err());
        assert!(parse_non_negative_f64("NaN").is_err());
        assert!(parse_path("").is_err());
        assert_eq!(
            parse_path_list("/a, b"),
            Ok(vec![PathBuf::from("/a"), PathBuf::from("b")])
        );
        assert!(parse_path_list("/a,,b").is_err());
        assert_eq!(parse_choice("raft", &["Raft"]), Ok("Raft".to_string()));
        assert!(parse_choice("Paxos", &["Raft"]).is_err());
        assert_eq!(parse_u32_in("0", 0, 2), Ok(0));
        assert_eq!(
            parse_positive_u32("0"),
            Err(ValueError::new("expected a positive integer, got \"0\""))
        );
    }

    #[test]
    fn renderers_invert_parsers() {
        assert_eq!(fmt_bool(true), "1");
        assert_eq!(fmt_millis(Duration::from_secs(30)), "30000");
        assert_eq!(
            fmt_paths(&[PathBuf::from("/a"), PathBuf::from("b")]),
            "/a,b"
        );
        assert_eq!(
            resolve_path(Path::new("/h"), PathBuf::from("x")),
            PathBuf::from("/h/x")
        );
        assert_eq!(
            resolve_path(Path::new("/h"), PathBuf::from("/x")),
            PathBuf::from("/x")
        );
    }
}
