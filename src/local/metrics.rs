//! The local backend's own figures for `GET /metrics`: commit (write + fdatasync) latency and
//! content sizes. Relaxed atomics on the commit path.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::Local;
use crate::backend::Metric;
use crate::error::{Error, Result};

/// Upper bounds (seconds) of the commit latency histogram's buckets; `+Inf` follows.
pub const COMMIT_BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];

/// The counters of one open store.
#[derive(Default)]
pub(crate) struct Metrics {
    /// Non-cumulative counts per bucket of [`COMMIT_BUCKETS`], then `+Inf`.
    commit_buckets: [AtomicU64; COMMIT_BUCKETS.len() + 1],
    commit_nanos: AtomicU64,
}

impl Metrics {
    /// Records one batch commit (journal write and fdatasync).
    pub(crate) fn commit(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let i = COMMIT_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(COMMIT_BUCKETS.len());
        self.commit_buckets[i].fetch_add(1, Relaxed);
        self.commit_nanos
            .fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }
}

const COMMIT: &str = "xs_commit_duration_seconds";
const COMMIT_HELP: &str = "Time to write and fdatasync one group-commit batch";
const CAS: &str = "xs_cas_entries";
const CAS_HELP: &str = "Content blobs: inline (in fjall, approximate) and file (cacache)";
const CAS_BYTES: &str = "xs_cas_bytes";
const CAS_BYTES_HELP: &str =
    "Content size in bytes: inline (fjall disk space, compressed) and file (cacache)";

impl Local {
    /// The current figures. Blocking: walks the content files.
    pub(super) fn metrics(&self) -> Result<Vec<Metric>> {
        let m = &self.inner.ks.metrics;
        let mut out = Vec::new();
        let part = |sample: &'static str, labels, value| Metric {
            name: COMMIT,
            kind: "histogram",
            help: COMMIT_HELP,
            sample: Some(sample),
            labels,
            value,
        };
        let mut total = 0;
        for (i, b) in m.commit_buckets.iter().enumerate() {
            total += b.load(Relaxed);
            let le = COMMIT_BUCKETS
                .get(i)
                .map_or_else(|| "+Inf".to_string(), f64::to_string);
            out.push(part(
                "xs_commit_duration_seconds_bucket",
                vec![("le", le)],
                total as f64,
            ));
        }
        let sum = m.commit_nanos.load(Relaxed) as f64 / 1e9;
        out.push(part("xs_commit_duration_seconds_sum", vec![], sum));
        out.push(part(
            "xs_commit_duration_seconds_count",
            vec![],
            total as f64,
        ));

        let cas = &self.inner.ks.cas;
        let (files, file_bytes) = dir_size(&self.cacache_dir().join("content-v2"))?;
        let gauge = |name, help, location: &str, value: u64| Metric {
            name,
            kind: "gauge",
            help,
            sample: None,
            labels: vec![("location", location.to_string())],
            value: value as f64,
        };
        out.push(gauge(CAS, CAS_HELP, "inline", cas.approximate_len() as u64));
        out.push(gauge(CAS, CAS_HELP, "file", files));
        out.push(gauge(CAS_BYTES, CAS_BYTES_HELP, "inline", cas.disk_space()));
        out.push(gauge(CAS_BYTES, CAS_BYTES_HELP, "file", file_bytes));
        Ok(out)
    }
}

/// Files under `dir` (recursively) and their total size; a missing directory is empty.
fn dir_size(dir: &Path) -> Result<(u64, u64)> {
    let mut n = 0;
    let mut bytes = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("listing {}", d.display()), e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(format!("listing {}", d.display()), e))?;
            let ft = entry
                .file_type()
                .map_err(|e| Error::io(format!("reading {}", entry.path().display()), e))?;
            if ft.is_dir() {
                stack.push(entry.path());
            } else if ft.is_file() {
                // A file removed by a gc meanwhile is simply not counted.
                if let Ok(md) = entry.metadata() {
                    n += 1;
                    bytes += md.len();
                }
            }
        }
    }
    Ok((n, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_buckets_count_each_commit_once() {
        let m = Metrics::default();
        m.commit(Duration::from_micros(30));
        m.commit(Duration::from_micros(700));
        m.commit(Duration::from_secs(3));
        let counts: Vec<u64> = m.commit_buckets.iter().map(|b| b.load(Relaxed)).collect();
        assert_eq!(counts[0], 1, "30 µs is in the first bucket");
        assert_eq!(counts[4], 1, "700 µs is in the 1 ms bucket");
        assert_eq!(counts[COMMIT_BUCKETS.len()], 1, "3 s is only in +Inf");
        let nanos = m.commit_nanos.load(Relaxed);
        assert_eq!(nanos, 3_000_730_000);
    }
}
