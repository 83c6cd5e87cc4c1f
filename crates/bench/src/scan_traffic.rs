//! What chunk scans answered across the cluster, from every data node's `/metrics`
//! (`shoal_scan_answer_rows_total`, `shoal_scan_sent_bytes_total`): how many rows (or rows of
//! partial aggregate states) replicas produced for queries, and the bytes they sent over
//! `ScanChunk` (in-process reads of the coordinator's own replicas send none).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::cluster::Conn;

/// Totals since the data nodes started; subtract two to get one query's.
#[derive(Clone, Copy, Debug, Default)]
pub struct ScanTraffic {
    pub rows: f64,
    pub bytes: f64,
}

impl ScanTraffic {
    pub fn now(conn: &Conn) -> Result<Self> {
        let mut total = Self::default();
        for addr in conn.datanodes.values() {
            let text = metrics(&http_addr(addr)?)?;
            total.rows += sum(&text, "shoal_scan_answer_rows_total");
            total.bytes += sum(&text, "shoal_scan_sent_bytes_total");
        }
        Ok(total)
    }

    pub fn since(self, before: Self) -> Self {
        Self {
            rows: self.rows - before.rows,
            bytes: self.bytes - before.bytes,
        }
    }
}

/// A data node's metrics address: its gRPC port + 1000 (`httpPort` left at its default).
fn http_addr(grpc: &str) -> Result<String> {
    let (host, port) = grpc.rsplit_once(':').context("no port")?;
    Ok(format!("{host}:{}", port.parse::<u16>()? + 1000))
}

fn metrics(addr: &str) -> Result<String> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    match out.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_owned()),
        _ => bail!(
            "{addr}/metrics: {}",
            out.lines().next().unwrap_or("no answer")
        ),
    }
}

/// Every sample of `name`, whatever its labels, summed.
fn sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(key, _)| key.split_once('{').map_or(*key, |(n, _)| n) == name)
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum()
}
