//! The store's own counters for `GET /metrics`: appends and their content bytes by outcome,
//! commit (write + fdatasync) latency, open reads and followers' positions, and content sizes.
//! Relaxed atomics on the hot paths; the daemon renders a [`MetricsSnapshot`] as text.

use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::Store;
use crate::error::{Error, Result};
use crate::frame::Id;
use crate::LAG_CAP;

/// Upper bounds (seconds) of the commit latency histogram's buckets; `+Inf` follows.
pub const COMMIT_BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];

/// How an append ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Stored.
    Ok,
    /// Refused for the caller's input: bad topic or meta, failed `expect`, a conflict (4xx).
    Rejected,
    /// The store could not take it: no space, closed, I/O (5xx).
    Failed,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Ok, Outcome::Rejected, Outcome::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Rejected => "rejected",
            Outcome::Failed => "failed",
        }
    }

    /// The outcome of an append that answered `r`.
    pub fn of<T>(r: &Result<T>) -> Outcome {
        match r {
            Ok(_) => Outcome::Ok,
            Err(
                Error::Invalid(_)
                | Error::NotFound(_)
                | Error::Conflict(_)
                | Error::ExpectFailed { .. },
            ) => Outcome::Rejected,
            Err(_) => Outcome::Failed,
        }
    }
}

/// The counters of one open store.
#[derive(Default)]
pub(crate) struct Metrics {
    appends: [AtomicU64; 3],
    append_bytes: [AtomicU64; 3],
    /// Non-cumulative counts per bucket of [`COMMIT_BUCKETS`], then `+Inf`.
    commit_buckets: [AtomicU64; COMMIT_BUCKETS.len() + 1],
    commit_nanos: AtomicU64,
    reads_open: AtomicI64,
    followers: Mutex<Vec<Weak<FollowerSlot>>>,
}

impl Metrics {
    pub(crate) fn append(&self, outcome: Outcome, bytes: u64) {
        self.appends[outcome as usize].fetch_add(1, Relaxed);
        self.append_bytes[outcome as usize].fetch_add(bytes, Relaxed);
    }

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

/// Held by a read for as long as it runs; counts it as open (see [`Store::read_opened`]).
pub struct ReadGuard {
    store: Store,
    follower: Option<Arc<FollowerSlot>>,
}

impl ReadGuard {
    /// Marks the read as following (live), positioned at `seen`.
    pub fn follow(&mut self, seen: Option<Id>) {
        let slot = Arc::new(FollowerSlot(Mutex::new(seen)));
        let mut all = lock(&self.store.inner.ks.metrics.followers);
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(&slot));
        self.follower = Some(slot);
    }

    /// The follower has considered every frame up to `id` (delivered or filtered out).
    pub fn seen(&self, id: Option<Id>) {
        if let (Some(slot), Some(id)) = (&self.follower, id) {
            let mut s = lock(&slot.0);
            if s.is_none_or(|p| p < id) {
                *s = Some(id);
            }
        }
    }
}

impl Drop for ReadGuard {
    fn drop(&mut self) {
        self.store.inner.ks.metrics.reads_open.fetch_sub(1, Relaxed);
    }
}

/// A follower's position: the newest id it has considered.
struct FollowerSlot(Mutex<Option<Id>>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What `GET /metrics` reports about the store, read at one moment.
#[derive(Debug, Clone, Default)]
pub struct MetricsSnapshot {
    /// Appends by outcome, in the order of [`Outcome::ALL`].
    pub appends: [u64; 3],
    /// Content bytes of those appends, by outcome.
    pub append_bytes: [u64; 3],
    /// Cumulative counts for each bound of [`COMMIT_BUCKETS`], then `+Inf` (= the count).
    pub commit_buckets: [u64; COMMIT_BUCKETS.len() + 1],
    pub commit_seconds_sum: f64,
    pub reads_open: u64,
    pub followers: u64,
    /// The most frames any follower has still to consider (capped at [`LAG_CAP`]).
    pub follower_lag_max: u64,
    /// Inline content (in fjall): entries (approximate) and bytes on disk (compressed).
    pub inline_entries: u64,
    pub inline_disk_bytes: u64,
    /// Content files (cacache): how many and their total size.
    pub file_entries: u64,
    pub file_bytes: u64,
}

impl Store {
    /// Counts an append that ended as `outcome` with `bytes` of content (appends refused
    /// before they reach the store, e.g. a bad HTTP header, are counted by their caller).
    pub fn count_append(&self, outcome: Outcome, bytes: u64) {
        self.inner.ks.metrics.append(outcome, bytes);
    }

    /// Counts a read as open until the guard is dropped.
    pub fn read_opened(&self) -> ReadGuard {
        self.inner.ks.metrics.reads_open.fetch_add(1, Relaxed);
        ReadGuard {
            store: self.clone(),
            follower: None,
        }
    }

    /// The current figures. Blocking: counts followers' lag and walks the content files.
    pub fn metrics(&self) -> Result<MetricsSnapshot> {
        let m = &self.inner.ks.metrics;
        let mut s = MetricsSnapshot::default();
        for i in 0..3 {
            s.appends[i] = m.appends[i].load(Relaxed);
            s.append_bytes[i] = m.append_bytes[i].load(Relaxed);
        }
        let mut total = 0;
        for (i, b) in m.commit_buckets.iter().enumerate() {
            total += b.load(Relaxed);
            s.commit_buckets[i] = total;
        }
        s.commit_seconds_sum = m.commit_nanos.load(Relaxed) as f64 / 1e9;
        s.reads_open = u64::try_from(m.reads_open.load(Relaxed)).unwrap_or(0);

        let positions: Vec<Option<Id>> = {
            let mut all = lock(&m.followers);
            all.retain(|w| w.strong_count() > 0);
            all.iter()
                .filter_map(Weak::upgrade)
                .map(|slot| *lock(&slot.0))
                .collect()
        };
        s.followers = positions.len() as u64;
        if !positions.is_empty() {
            let newest = self.last_id()?;
            for p in positions {
                let lag = match (p, newest) {
                    (_, None) => 0,
                    (Some(p), Some(n)) if p >= n => 0,
                    (Some(p), Some(_)) => self.frames_after(&p, LAG_CAP)?,
                    (None, Some(_)) => self.frames_from_start(LAG_CAP)?,
                };
                s.follower_lag_max = s.follower_lag_max.max(lag);
            }
        }

        let cas = &self.inner.ks.cas;
        s.inline_entries = cas.approximate_len() as u64;
        s.inline_disk_bytes = cas.disk_space();
        let (n, bytes) = dir_size(&self.inner.cacache_dir.join("content-v2"))?;
        s.file_entries = n;
        s.file_bytes = bytes;
        Ok(s)
    }

    /// How many frames are stored, counting at most `cap`.
    fn frames_from_start(&self, cap: u64) -> Result<u64> {
        let mut n = 0;
        for g in self.inner.ks.frames.iter() {
            g.key()?;
            n += 1;
            if n >= cap {
                break;
            }
        }
        Ok(n)
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
    fn commit_buckets_are_cumulative_and_sum_up() {
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

    #[test]
    fn outcomes_follow_the_error_kind() {
        assert_eq!(Outcome::of(&Ok::<_, Error>(())), Outcome::Ok);
        assert_eq!(
            Outcome::of::<()>(&Err(Error::invalid("bad topic"))),
            Outcome::Rejected
        );
        assert_eq!(
            Outcome::of::<()>(&Err(Error::NoSpace("full".into()))),
            Outcome::Failed
        );
        assert_eq!(Outcome::of::<()>(&Err(Error::Closed)), Outcome::Failed);
    }
}
