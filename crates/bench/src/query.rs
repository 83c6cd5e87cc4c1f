//! `shoal-bench query`: the issue's queries over `--rows` rows of the seed table, all of them in
//! chunk files, through Flight SQL (warm: each query runs once untimed, then `--runs` times),
//! against DuckDB over the same rows in one Parquet file, measured in the same run. The rows
//! are read back from the cluster (`SELECT *`, which also times a full export) and written to
//! that file, so both answer over exactly the same data. DuckDB runs from a Python snippet
//! (`--python`, with the `duckdb` package: `target/pyenv/bin/python3 -m pip install duckdb`),
//! 2 threads.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::TimestampMillisecondType;
use comfy_table::{Table, presets::ASCII_MARKDOWN};
use parquet::arrow::ArrowWriter;
use shoal_query::PUSH_AGGREGATES_HEADER;
use shoal_storage::{FILES_DIR, MANIFEST_FILE};

use crate::cluster::Conn;
use crate::load::{self, Load};
use crate::restart::wait_flushed;
use crate::scan_traffic::ScanTraffic;
use crate::{fmt_int, rate};

/// The table as Shoal names it; DuckDB's view of the Parquet file gets the name `stock`.
const TABLE: &str = r#""dfs://stock".stock"#;
/// Milliseconds in five minutes.
const FIVE_MINUTES_MS: i64 = 300_000;
/// Longest wait for the replicas' files to be merged before the queries are timed.
const COMPACTION_TIMEOUT: Duration = Duration::from_secs(600);

/// The measured queries: a label and the SQL with `{t}` for the table.
fn queries(latest_ms: i64) -> Vec<(&'static str, String)> {
    // `TIMESTAMP '…'` reads the same in both engines (no time zone).
    let from = timestamp_literal(latest_ms - FIVE_MINUTES_MS);
    vec![
        (
            "GROUP BY name",
            "SELECT name, count(*) AS n, max(id) AS hi FROM {t} GROUP BY name ORDER BY name".into(),
        ),
        (
            "filtered count (id % 7 = 3)",
            "SELECT count(*) AS n FROM {t} WHERE id % 7 = 3".into(),
        ),
        (
            "name = 'Apple' AND id BETWEEN",
            "SELECT count(*) AS n, max(time) AS t FROM {t} \
             WHERE name = 'Apple' AND id BETWEEN 100000000 AND 100200000"
                .into(),
        ),
        (
            "latest 10 by time",
            "SELECT time, name, id FROM {t} ORDER BY time DESC LIMIT 10".into(),
        ),
        ("count(*)", "SELECT count(*) AS n FROM {t}".into()),
        (
            "min/max of time",
            "SELECT min(time) AS lo, max(time) AS hi FROM {t}".into(),
        ),
        (
            "last 5 minutes of 'Apple'",
            format!(
                "SELECT time, id FROM {{t}} WHERE name = 'Apple' AND time >= TIMESTAMP '{from}'"
            ),
        ),
    ]
}

/// `ms` since the epoch as a SQL timestamp literal's text (UTC, milliseconds).
fn timestamp_literal(ms: i64) -> String {
    let array = arrow::array::TimestampMillisecondArray::from(vec![ms]);
    let text = arrow::util::display::array_value_to_string(&array, 0).unwrap_or_default();
    text.replace('T', " ")
}

/// What `shoal-bench query` runs.
pub struct Options<'a> {
    /// Rows of the seed table loaded.
    pub rows: u64,
    /// Timed runs of each query (after an untimed one).
    pub runs: usize,
    /// A Python with the `duckdb` package.
    pub python: &'a Path,
    /// Only the queries whose label contains this.
    pub only: Option<&'a str>,
}

pub fn run(
    conn: &Conn,
    rt: &tokio::runtime::Runtime,
    base: Load,
    opts: &Options,
    dir: &Path,
) -> Result<()> {
    let Options {
        rows,
        runs,
        python,
        only,
    } = *opts;
    // Fail before the load, not after it, when the reference cannot run.
    duckdb_available(python)?;
    let load = Load {
        max_rows: rows,
        max_time: Duration::from_secs(1800),
        ..base
    };
    let w = rt.block_on(load::write(conn, &load))?;
    wait_flushed(conn, rt)?;
    println!(
        "loaded {} rows in {:.1} s ({} rows/s), all flushed to chunk files",
        fmt_int(w.rows as f64),
        w.elapsed.as_secs_f64(),
        fmt_int(rate(w.rows as f64, w.elapsed))
    );

    let t = Instant::now();
    let all = rt.block_on(shoal_sql(conn, &format!("SELECT * FROM {TABLE}"), &[]))?;
    let export = t.elapsed();
    let exported: usize = all.iter().map(RecordBatch::num_rows).sum();
    if exported as u64 != w.rows {
        bail!("wrote {} rows, read back {exported}", w.rows);
    }
    let file = dir.join("reference.parquet");
    write_parquet(&file, &all)?;
    let latest = latest_ms(&all).context("no rows")?;
    drop(all);

    let mut queries = queries(latest);
    queries.retain(|(label, _)| only.is_none_or(|o| label.contains(o)));
    if queries.is_empty() {
        bail!("no query's label contains {only:?}");
    }
    wait_compacted(dir)?;
    println!(
        "timing {} queries, {runs} runs each after one untimed",
        queries.len()
    );
    // Each query with aggregate pushdown (the default) and without it, in the same run.
    let mut shoal = Vec::new();
    for (label, sql) in &queries {
        let sql = sql.replace("{t}", TABLE);
        let timed = |headers: &[(&str, &str)]| -> Result<Measured> {
            let mut times = Vec::new();
            let mut traffic = ScanTraffic::default();
            // The first run warms caches and connections; it is not counted.
            for run in 0..=runs {
                let before = ScanTraffic::now(conn)?;
                let t = Instant::now();
                rt.block_on(shoal_sql(conn, &sql, headers))
                    .with_context(|| format!("{label}: {sql}"))?;
                times.push(t.elapsed());
                if run == 0 {
                    traffic = ScanTraffic::now(conn)?.since(before);
                }
            }
            Ok(Measured {
                time: median(&mut times[1..].to_vec()),
                traffic,
            })
        };
        shoal.push((timed(&[])?, timed(&[(PUSH_AGGREGATES_HEADER, "false")])?));
    }
    let duck = duckdb(python, &file, &queries, runs)?;

    println!(
        "\n## query: {} rows of the seed table, Flight SQL (warm, median of {runs}) vs DuckDB \
         (2 threads, same rows in one Parquet file)\n",
        fmt_int(exported as f64)
    );
    let mut table = Table::new();
    table.load_preset(ASCII_MARKDOWN).set_header([
        "query",
        "Shoal (ms)",
        "DuckDB (ms)",
        "Shoal ÷ DuckDB",
        "no agg. pushdown (ms)",
        "rows answered",
        "no agg. pushdown",
        "bytes sent",
        "no agg. pushdown",
    ]);
    for (((label, _), (s, rows)), d) in queries.iter().zip(&shoal).zip(&duck) {
        table.add_row([
            (*label).to_owned(),
            format!("{:.1}", s.time.as_secs_f64() * 1e3),
            format!("{:.1}", d.as_secs_f64() * 1e3),
            format!("{:.1}×", s.time.as_secs_f64() / d.as_secs_f64().max(1e-9)),
            format!("{:.1}", rows.time.as_secs_f64() * 1e3),
            fmt_int(s.traffic.rows),
            fmt_int(rows.traffic.rows),
            fmt_int(s.traffic.bytes),
            fmt_int(rows.traffic.bytes),
        ]);
    }
    println!("{table}\n");
    println!(
        "rows answered: rows (or rows of partial aggregate states) the replicas produced for \
         one run of the query; bytes sent: Arrow IPC over ScanChunk (the coordinator reads its \
         own replicas in-process). \"no agg. pushdown\": the same query with the call header \
         {PUSH_AGGREGATES_HEADER}: false.\n"
    );
    println!(
        "full export (SELECT *): {:.2} s, {} rows/s",
        export.as_secs_f64(),
        fmt_int(rate(exported as f64, export))
    );
    Ok(())
}

/// Waits until every replica under `dir` holds its rows in one chunk file: the files of a
/// chunk idle for 10 × `flushIdleTime` are merged into one, which would otherwise run, and
/// take the cores, while the queries are timed. After [`COMPACTION_TIMEOUT`] it goes on, saying
/// so.
fn wait_compacted(dir: &Path) -> Result<()> {
    let started = Instant::now();
    loop {
        let counts = file_counts(dir);
        if !counts.is_empty() && counts.iter().all(|&n| n <= 1) {
            println!(
                "every replica's rows in one chunk file {:.1} s after the export",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if started.elapsed() > COMPACTION_TIMEOUT {
            println!("note: replicas still hold {counts:?} chunk files; timing anyway");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The chunk files (`f/*.parquet`) of each replica store (a directory holding a MANIFEST)
/// under `dir`; a directory that cannot be read (removed meanwhile) is skipped.
fn file_counts(dir: &Path) -> Vec<usize> {
    let mut counts = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        if d.join(MANIFEST_FILE).is_file() {
            let parquet =
                |e: &std::fs::DirEntry| e.path().extension().is_some_and(|x| x == "parquet");
            let files = std::fs::read_dir(d.join(FILES_DIR))
                .map(|entries| entries.filter_map(Result::ok).filter(parquet).count())
                .unwrap_or(0);
            counts.push(files);
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(entry.path());
            }
        }
    }
    counts
}

/// One query's warm median time and what its scans answered (in its first run).
struct Measured {
    time: Duration,
    traffic: ScanTraffic,
}

/// Runs `sql` through Flight SQL on the first data node, with call `headers`; the answer's
/// batches.
async fn shoal_sql(conn: &Conn, sql: &str, headers: &[(&str, &str)]) -> Result<Vec<RecordBatch>> {
    let addr = conn.datanodes.values().next().context("no data node")?;
    let channel = conn.channels.get(addr)?;
    let (_, batches) = shoal_query::query_with_headers(channel, sql, headers).await?;
    Ok(batches)
}

fn write_parquet(path: &Path, batches: &[RecordBatch]) -> Result<()> {
    let schema = batches.first().context("no rows")?.schema();
    let mut w = ArrowWriter::try_new(std::fs::File::create(path)?, schema, None)?;
    for b in batches {
        w.write(b)?;
    }
    w.close()?;
    Ok(())
}

/// The largest `time` of the rows.
fn latest_ms(batches: &[RecordBatch]) -> Option<i64> {
    batches
        .iter()
        .filter_map(|b| {
            let i = b.schema().index_of("time").ok()?;
            let times = b.column(i).as_primitive_opt::<TimestampMillisecondType>()?;
            (0..times.len())
                .filter(|&r| times.is_valid(r))
                .map(|r| times.value(r))
                .max()
        })
        .max()
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort_unstable();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

fn duckdb_available(python: &Path) -> Result<()> {
    let ok = Command::new(python)
        .args(["-c", "import duckdb"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        bail!(
            "{} cannot import duckdb: install it with `{} -m pip install duckdb`",
            python.display(),
            python.display()
        );
    }
    Ok(())
}

/// DuckDB's warm median per query over `file`, from a Python snippet printing one line of
/// milliseconds per query.
fn duckdb(
    python: &Path,
    file: &Path,
    queries: &[(&str, String)],
    runs: usize,
) -> Result<Vec<Duration>> {
    let sqls: Vec<String> = queries
        .iter()
        .map(|(_, q)| q.replace("{t}", "stock"))
        .collect();
    let script = r#"
import json, sys, time, statistics, duckdb
path, runs, sqls = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
con = duckdb.connect()
con.execute("SET threads TO 2")
con.execute(f"CREATE VIEW stock AS SELECT * FROM read_parquet('{path}')")
for sql in sqls:
    times = []
    for i in range(runs + 1):
        t = time.perf_counter()
        con.execute(sql).fetchall()
        times.append(time.perf_counter() - t)
    print(statistics.median(times[1:]) * 1e3)
"#;
    let out = Command::new(python)
        .args([
            "-c",
            script,
            file.to_str().context("path is not UTF-8")?,
            &runs.to_string(),
            &serde_json::to_string(&sqls)?,
        ])
        .output()
        .with_context(|| format!("cannot run {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "DuckDB reference failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let ms: Vec<Duration> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            l.trim()
                .parse::<f64>()
                .map(|v| Duration::from_secs_f64(v / 1e3))
        })
        .collect::<Result<_, _>>()
        .context("DuckDB reference printed something else")?;
    if ms.len() != queries.len() {
        bail!(
            "DuckDB reference answered {} of {} queries",
            ms.len(),
            queries.len()
        );
    }
    Ok(ms)
}
