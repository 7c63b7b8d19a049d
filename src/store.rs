//! [`Store`]: the handle the daemon holds on a mounted stream, whatever its backend. It checks
//! input, counts appends and reads for `GET /metrics`, runs the read path ([`crate::reader`])
//! and otherwise passes each call through the [`Backend`] boundary.

use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};

use ssri::Integrity;
use tokio::sync::{broadcast, mpsc};

use crate::backend::{
    Backend, Batch, Content, ContentReader, ContentSink, GcReport, LiveFrame, Metric, NewFrame,
    Record, ScanEnd, TopicInfo,
};
use crate::consumer::{validate_name, ConsumerInfo, LAG_CAP};
use crate::error::{Error, Result};
use crate::frame::{Frame, Id};
use crate::local::{Local, LocalOptions};
use crate::read::ReadOptions;
use crate::reader::{ReadGuard, Reader};
use crate::ttl::Ttl;

/// A handle to a mounted stream; cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    metrics: Arc<Counters>,
}

impl Store {
    /// A store on `backend`.
    pub fn new(backend: Arc<dyn Backend>) -> Store {
        Store {
            backend,
            metrics: Arc::default(),
        }
    }

    /// Opens (creating if missing) a local store in `path`. Blocking.
    pub fn open_local(path: impl AsRef<Path>, opts: LocalOptions) -> Result<Store> {
        Ok(Store::new(Arc::new(Local::open(path, opts)?)))
    }

    /// Appends a frame. Queued at once (appends issued in order are stored in order); resolves
    /// once the frame is durable and broadcast to followers.
    pub fn append(
        &self,
        frame: NewFrame,
    ) -> impl std::future::Future<Output = Result<Frame>> + Send + 'static {
        let done = self.append_batch(Batch {
            frames: vec![frame],
            ..Batch::default()
        });
        async move {
            let mut frames = done.await?;
            frames
                .pop()
                .ok_or_else(|| Error::Internal("an append answered no frame".into()))
        }
    }

    /// Appends frames and an optional checkpoint in one commit, all or nothing.
    pub fn append_batch(
        &self,
        batch: Batch,
    ) -> impl std::future::Future<Output = Result<Vec<Frame>>> + Send + 'static {
        let sizes: Vec<u64> = batch.frames.iter().map(|f| f.content.len()).collect();
        let checked = batch
            .frames
            .iter()
            .try_for_each(|f| crate::topic::validate_topic(&f.topic))
            .and_then(|()| match &batch.checkpoint {
                Some((name, _)) if name.is_empty() => {
                    Err(Error::invalid("a checkpoint needs a name"))
                }
                None if batch.fence.is_some() => {
                    Err(Error::invalid("a checkpoint fence needs a checkpoint"))
                }
                _ => Ok(()),
            });
        let done = checked.map(|()| self.backend.append(batch));
        let metrics = self.metrics.clone();
        async move {
            let r = match done {
                Ok(done) => done.await,
                Err(e) => Err(e),
            };
            let outcome = Outcome::of(&r);
            for bytes in sizes {
                metrics.append(outcome, bytes);
            }
            r
        }
    }

    /// Stores a frame as given, keeping its id (restore). Not broadcast to followers. A frame
    /// without `ttl` is stored as `forever`; its content must already be in the store. Queued
    /// at once, like [`Store::append`].
    pub fn import(
        &self,
        mut frame: Frame,
    ) -> impl std::future::Future<Output = Result<Frame>> + Send + 'static {
        frame.ttl.get_or_insert(Ttl::Forever);
        let done = crate::topic::validate_topic(&frame.topic).map(|()| self.backend.import(frame));
        async move { done?.await }
    }

    /// Removes a frame. `NotFound` if there is no such frame.
    pub async fn remove(&self, id: Id) -> Result<()> {
        self.backend.remove(id, false).await.map(|_| ())
    }

    /// Removes a frame and, when no other frame references it, its content.
    pub async fn remove_purge(&self, id: Id) -> Result<GcReport> {
        self.backend.remove(id, true).await
    }

    /// Removes every content blob no frame references.
    pub async fn gc(&self) -> Result<GcReport> {
        self.backend.gc().await
    }

    /// A frame by id; `None` if absent or expired.
    pub async fn get(&self, id: Id) -> Result<Option<Frame>> {
        self.backend.get(id).await
    }

    /// The newest stored id, if any.
    pub async fn last_id(&self) -> Result<Option<Id>> {
        self.backend.last_id().await
    }

    /// Topics with their counts; see [`Backend::topics`].
    pub async fn topics(&self, prefix: Option<&str>, children: bool) -> Result<Vec<TopicInfo>> {
        let prefix = match prefix.map(|p| p.trim_end_matches('.')) {
            Some("") | None => None,
            Some(p) => {
                crate::topic::validate_topic(p)?;
                Some(p.to_string())
            }
        };
        self.backend.topics(prefix, children).await
    }

    /// Starts a read: see [`crate::reader`]. The live subscription is taken before this
    /// returns, so a frame appended after the call is never missed. Call it on the tokio
    /// runtime (from another thread, enter the runtime's handle first).
    pub fn read(&self, opts: ReadOptions) -> Reader {
        let guard = self.read_opened();
        crate::reader::start(self.clone(), opts, Some(guard))
    }

    /// The daemon's own reads (processors, the gateway): the same path as [`Store::read`],
    /// not counted among the open reads and followers of `GET /metrics`.
    pub fn read_quiet(&self, opts: ReadOptions) -> Reader {
        crate::reader::start(self.clone(), opts, None)
    }

    /// The stored frames `opts` selects (history only), decoded. A frame that does not
    /// decode is an error.
    pub async fn frames(&self, mut opts: ReadOptions) -> Result<Vec<Frame>> {
        opts.follow = crate::read::Follow::Off;
        let mut r = self.read_quiet(opts);
        let mut out = Vec::new();
        while let Some(e) = r.next().await {
            if let crate::reader::Event::Frame(rec) = e? {
                out.push(rec.frame()?);
            }
        }
        Ok(out)
    }

    /// Sends history pages (see [`Backend::history`]).
    pub(crate) async fn history(
        &self,
        opts: ReadOptions,
        tx: mpsc::Sender<Vec<Record>>,
    ) -> Result<ScanEnd> {
        self.backend.history(opts, tx).await
    }

    /// Live frames from now on (see [`Backend::subscribe`]).
    pub(crate) fn subscribe(&self, runtime: bool) -> broadcast::Receiver<Arc<LiveFrame>> {
        self.backend.subscribe(runtime)
    }

    /// Starts streaming content in.
    pub fn content_writer(&self) -> ContentWriter {
        ContentWriter(self.backend.content_writer())
    }

    /// Makes content durable without a frame (`POST /cas`) and returns its hash.
    pub async fn cas_put(&self, content: Content) -> Result<Option<Integrity>> {
        self.backend.content_put(content).await
    }

    /// Opens content by hash; `None` if it is not stored.
    pub async fn cas_get(&self, hash: &Integrity) -> Result<Option<ContentReader>> {
        self.backend.content(hash.clone()).await
    }

    /// Reads whole content into memory (small content, scripts, tests).
    pub async fn cas_read(&self, hash: &Integrity) -> Result<Option<Vec<u8>>> {
        match self.cas_get(hash).await? {
            Some(c) => c.read_all().await.map(Some),
            None => Ok(None),
        }
    }

    /// Acknowledges `id` for consumer `name` (positions never move backwards). Queued at
    /// once; resolves to the position once durable.
    pub fn ack(
        &self,
        name: &str,
        id: Id,
    ) -> impl std::future::Future<Output = Result<Id>> + Send + 'static {
        let done = validate_name(name).map(|()| self.backend.ack(name.to_string(), id));
        async move { done?.await }
    }

    /// Forgets consumer `name`. `NotFound` if it has no position.
    pub async fn remove_consumer(&self, name: &str) -> Result<()> {
        validate_name(name)?;
        self.backend.remove_consumer(name.to_string()).await
    }

    /// One consumer with its lag, if it has a position.
    pub async fn consumer(&self, name: &str) -> Result<Option<ConsumerInfo>> {
        validate_name(name)?;
        Ok(self.backend.consumers(Some(name.to_string())).await?.pop())
    }

    /// The last id acknowledged for `name`, if any.
    pub async fn consumer_position(&self, name: &str) -> Result<Option<Id>> {
        Ok(self.consumer(name).await?.map(|c| c.position))
    }

    /// Every consumer, by name, with its lag.
    pub async fn consumers(&self) -> Result<Vec<ConsumerInfo>> {
        self.backend.consumers(None).await
    }

    /// A processor's checkpoint, if set.
    pub async fn checkpoint(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.backend.checkpoint(name.to_string()).await
    }

    /// Removes a checkpoint (nothing if it is not set).
    pub async fn remove_checkpoint(&self, name: &str) -> Result<()> {
        self.backend.remove_checkpoint(name.to_string()).await
    }

    /// Counts an append refused before it reached the store (a bad HTTP header, say).
    pub fn count_append(&self, outcome: Outcome, bytes: u64) {
        self.metrics.append(outcome, bytes);
    }

    /// Counts a read as open until the guard is dropped.
    pub(crate) fn read_opened(&self) -> ReadGuard {
        self.metrics.reads_open.fetch_add(1, Relaxed);
        ReadGuard::new(self.metrics.clone())
    }

    /// Every figure for `GET /metrics`: appends, reads and followers, then the backend's.
    pub async fn metrics(&self) -> Result<Vec<Metric>> {
        let m = &self.metrics;
        let mut out = Vec::new();
        for (name, help, values) in [
            (APPENDS, APPENDS_HELP, &m.appends),
            (APPEND_BYTES, APPEND_BYTES_HELP, &m.append_bytes),
        ] {
            for o in Outcome::ALL {
                let labels = vec![("outcome", o.as_str().to_string())];
                out.push(counter(
                    name,
                    help,
                    labels,
                    values[o as usize].load(Relaxed),
                ));
            }
        }
        let positions = m.follower_positions();
        let mut lag_max = 0;
        if !positions.is_empty() {
            let newest = self.last_id().await?;
            for p in positions {
                let lag = match (p, newest) {
                    (_, None) => 0,
                    (Some(p), Some(n)) if p >= n => 0,
                    (p, Some(_)) => self.backend.count_after(p, LAG_CAP).await?,
                };
                lag_max = lag_max.max(lag);
            }
        }
        let reads = u64::try_from(m.reads_open.load(Relaxed)).unwrap_or(0);
        out.push(gauge(READS, READS_HELP, reads));
        out.push(gauge(FOLLOWERS, FOLLOWERS_HELP, m.follower_count()));
        out.push(gauge(LAG, LAG_HELP, lag_max));
        out.extend(self.backend.metrics().await?);
        Ok(out)
    }

    /// Resolves if the backend fails for good (the daemon must then stop), with the reason.
    pub async fn failed(&self) -> String {
        self.backend.failed().await
    }

    /// Commits what was queued, then takes no more writes and ends every read once it has
    /// its last frames.
    pub async fn close(&self) {
        self.backend.close().await
    }
}

/// Content being streamed into the store; `finish` makes it durable and says where it is.
pub struct ContentWriter(Box<dyn ContentSink>);

impl ContentWriter {
    /// Writes the next chunk.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<()> {
        self.0.write(chunk).await
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Ends the content: durable once this resolves, and where it is.
    pub async fn finish(self) -> Result<Content> {
        self.0.finish().await
    }
}

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
    /// Every outcome, in the order of the counters.
    pub const ALL: [Outcome; 3] = [Outcome::Ok, Outcome::Rejected, Outcome::Failed];

    /// The outcome's label in `GET /metrics`.
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

const APPENDS: &str = "xs_appends_total";
const APPENDS_HELP: &str = "Frames appended, by outcome: ok (stored), rejected (bad input, failed expect: 4xx), failed (the store could not take it: 5xx)";
const APPEND_BYTES: &str = "xs_append_bytes_total";
const APPEND_BYTES_HELP: &str = "Content bytes of the frames appended, by outcome";
const READS: &str = "xs_read_streams_open";
const READS_HELP: &str = "Reads being answered (GET /, GET /last?follow, .cat), history or live";
const FOLLOWERS: &str = "xs_followers";
const FOLLOWERS_HELP: &str = "Reads that follow the live stream (past their history)";
const LAG: &str = "xs_follower_lag_frames_max";
const LAG_HELP: &str =
    "Stored frames the furthest-behind follower has not yet considered (capped at 1000000)";

fn counter(
    name: &'static str,
    help: &'static str,
    labels: Vec<(&'static str, String)>,
    v: u64,
) -> Metric {
    Metric {
        name,
        kind: "counter",
        help,
        sample: None,
        labels,
        value: v as f64,
    }
}

fn gauge(name: &'static str, help: &'static str, v: u64) -> Metric {
    Metric {
        name,
        kind: "gauge",
        help,
        sample: None,
        labels: Vec::new(),
        value: v as f64,
    }
}

/// The store's own counters: appends by outcome, open reads, followers' positions.
#[derive(Default)]
pub(crate) struct Counters {
    appends: [AtomicU64; 3],
    append_bytes: [AtomicU64; 3],
    pub(crate) reads_open: AtomicI64,
    followers: Mutex<Vec<Weak<Mutex<Option<Id>>>>>,
}

impl Counters {
    fn append(&self, outcome: Outcome, bytes: u64) {
        self.appends[outcome as usize].fetch_add(1, Relaxed);
        self.append_bytes[outcome as usize].fetch_add(bytes, Relaxed);
    }

    /// Registers a follower's position slot.
    pub(crate) fn follower(&self, seen: Option<Id>) -> Arc<Mutex<Option<Id>>> {
        let slot = Arc::new(Mutex::new(seen));
        let mut all = self.followers.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(&slot));
        slot
    }

    fn follower_positions(&self) -> Vec<Option<Id>> {
        let mut all = self.followers.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|w| w.strong_count() > 0);
        all.iter()
            .filter_map(Weak::upgrade)
            .map(|s| *s.lock().unwrap_or_else(|e| e.into_inner()))
            .collect()
    }

    fn follower_count(&self) -> u64 {
        self.follower_positions().len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
