//! The storage boundary: what a backend (the local fjall + cacache store, a JetStream cluster)
//! gives the rest of xs. Everything above it ([`crate::Store`], the read path, the daemon) sees
//! only this trait and the plain types below, never a storage engine's own types or errors.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use ssri::Integrity;
use tokio::sync::{broadcast, mpsc};

use crate::consumer::ConsumerInfo;
use crate::error::Result;
use crate::frame::{Expect, Frame, Id};
use crate::read::ReadOptions;
use crate::ttl::Ttl;

/// The content of a frame being appended.
#[derive(Debug, Clone, Default)]
pub enum Content {
    /// No content.
    #[default]
    None,
    /// Small content: stored with its frame, in the same commit.
    Inline {
        /// Its hash.
        hash: Integrity,
        /// The bytes.
        bytes: Bytes,
    },
    /// Content already durable in the backend (large content).
    Stored {
        /// Its hash.
        hash: Integrity,
        /// Its length in bytes.
        len: u64,
    },
}

impl Content {
    /// Small content held in memory, hashed (empty bytes are no content).
    pub fn inline(bytes: impl Into<Bytes>) -> Content {
        let bytes = bytes.into();
        if bytes.is_empty() {
            return Content::None;
        }
        Content::Inline {
            hash: Integrity::from(&bytes[..]),
            bytes,
        }
    }

    /// The content's length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Content::None => 0,
            Content::Inline { bytes, .. } => bytes.len() as u64,
            Content::Stored { len, .. } => *len,
        }
    }

    /// Whether there is no content.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The content's hash, if any.
    pub fn hash(&self) -> Option<&Integrity> {
        match self {
            Content::None => None,
            Content::Inline { hash, .. } | Content::Stored { hash, .. } => Some(hash),
        }
    }
}

/// A frame to append: the store assigns its id.
#[derive(Debug, Clone, Default)]
pub struct NewFrame {
    /// The topic (checked before the append reaches a backend).
    pub topic: String,
    /// The frame's meta, any JSON.
    pub meta: Option<serde_json::Value>,
    /// How long the frame is kept.
    pub ttl: Ttl,
    /// Its content.
    pub content: Content,
    /// Append only if the newest frame on the topic is this (checked in the writer).
    pub expect: Option<Expect>,
    /// Idempotency key: a repeated append with the same key and topic answers the original
    /// frame, for as long as it exists.
    pub key: Option<String>,
}

impl NewFrame {
    /// A frame to append on `topic`, with no meta, content or checks.
    pub fn new(topic: impl Into<String>) -> NewFrame {
        NewFrame {
            topic: topic.into(),
            ..Default::default()
        }
    }
}

/// A boxed future, so that the trait can be used as `dyn Backend`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Frames to append together, all or nothing, with an optional checkpoint `(name, value)`
/// committed in the same write (a processor's position and state: exactly-once output).
#[derive(Debug, Default)]
pub struct Batch {
    /// The frames, in order.
    pub frames: Vec<NewFrame>,
    /// A checkpoint `(name, value)` written in the same commit, if any.
    pub checkpoint: Option<(String, Vec<u8>)>,
    /// Commit only if the checkpoint still holds what this says (a compare-and-set): the
    /// processor's owner fences out a deposed one, whose late batch is then refused whole
    /// with [`crate::Error::Fenced`]. Needs `checkpoint`.
    pub fence: Option<Fence>,
}

/// What a batch expects its checkpoint to hold before it commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fence {
    /// Not set at all.
    Unset,
    /// Exactly these bytes.
    Holds(Vec<u8>),
}

impl Fence {
    /// Whether `current` (the checkpoint's value now) is what the fence expects.
    pub fn holds(&self, current: Option<&[u8]>) -> bool {
        match (self, current) {
            (Fence::Unset, None) => true,
            (Fence::Holds(v), Some(c)) => v.as_slice() == c,
            _ => false,
        }
    }
}

/// A stored frame as readers get it: its id and wire JSON (decoded only when needed).
#[derive(Debug, Clone)]
pub struct Record {
    /// The frame's id.
    pub id: Id,
    /// The frame's wire JSON (one object, no newline).
    pub json: Bytes,
}

impl Record {
    /// The frame, decoded from its JSON.
    pub fn frame(&self) -> Result<Frame> {
        Frame::from_json(&self.json)
    }
}

/// A frame as broadcast to live followers: the frame and its wire JSON.
#[derive(Debug)]
pub struct LiveFrame {
    /// The frame.
    pub frame: Frame,
    /// Its wire JSON.
    pub json: Bytes,
}

impl LiveFrame {
    /// A live frame and its JSON.
    pub fn new(frame: Frame) -> LiveFrame {
        let json = frame.to_json().into();
        LiveFrame { frame, json }
    }
}

/// How a history scan ended.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScanEnd {
    /// The last frame sent.
    pub last_id: Option<Id>,
    /// How many frames were sent.
    pub count: usize,
    /// `limit` was reached, or the receiver went away.
    pub stopped: bool,
}

/// What a purge or a gc removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Content blobs removed.
    pub blobs: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// One topic (or, with `children`, one level of the hierarchy) as `GET /topics` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicInfo {
    /// The topic (or hierarchy level).
    pub topic: String,
    /// Frames stored under it.
    pub count: u64,
    /// Its oldest frame.
    pub first: Id,
    /// Its newest frame.
    pub last: Id,
}

/// One sample of a backend's figures for `GET /metrics`: a Prometheus name, its type and
/// help (the same for every sample of a name), labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// The metric's name.
    pub name: &'static str,
    /// `counter`, `gauge` or `histogram` (a histogram's `_bucket`, `_sum` and `_count`
    /// samples carry the family's name here and their own in `sample`).
    pub kind: &'static str,
    /// Its help text.
    pub help: &'static str,
    /// The sample's own name when it differs from `name` (histogram parts).
    pub sample: Option<&'static str>,
    /// The sample's labels.
    pub labels: Vec<(&'static str, String)>,
    /// The sample's value.
    pub value: f64,
}

/// Content being streamed in: written chunk by chunk, then finished into a [`Content`] that a
/// frame can carry (small content inline, large content made durable in the backend first).
pub trait ContentSink: Send {
    /// Writes the next chunk.
    fn write<'a>(&'a mut self, chunk: &'a [u8]) -> BoxFuture<'a, Result<()>>;
    /// Bytes written so far.
    fn len(&self) -> u64;
    /// Whether nothing was written yet.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Ends the content: durable once this resolves.
    fn finish(self: Box<Self>) -> BoxFuture<'static, Result<Content>>;
}

/// Content being read back: its length, then its bytes chunk by chunk.
pub struct ContentReader {
    /// The content's length in bytes.
    pub len: u64,
    /// Its bytes, chunk by chunk.
    pub chunks: mpsc::Receiver<Result<Bytes>>,
}

impl ContentReader {
    /// Content that is already in memory.
    pub fn from_bytes(bytes: Bytes) -> ContentReader {
        let (tx, rx) = mpsc::channel(1);
        let len = bytes.len() as u64;
        if !bytes.is_empty() {
            let _ = tx.try_send(Ok(bytes));
        }
        ContentReader { len, chunks: rx }
    }

    /// The next chunk; `None` at the end.
    pub async fn chunk(&mut self) -> Option<Result<Bytes>> {
        self.chunks.recv().await
    }

    /// The whole content, in memory.
    pub async fn read_all(mut self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(usize::try_from(self.len).unwrap_or(0));
        while let Some(c) = self.chunk().await {
            out.extend_from_slice(&c?);
        }
        Ok(out)
    }
}

/// A storage backend. Writes are queued when the method is called (so writes issued in
/// order are committed in order) and the returned future resolves once they are durable.
/// Every method is safe to call from any task; none blocks the caller's thread.
pub trait Backend: Send + Sync + 'static {
    /// Appends a batch: every frame or none (a refused frame refuses the batch), and its
    /// checkpoint in the same commit. Answers the frames (an idempotent retry answers the
    /// original frame). Ephemeral frames are broadcast but not stored.
    fn append(&self, batch: Batch) -> BoxFuture<'static, Result<Vec<Frame>>>;

    /// Stores a frame as given, keeping its id (restore). Not broadcast to followers.
    fn import(&self, frame: Frame) -> BoxFuture<'static, Result<Frame>>;

    /// Removes a frame (`NotFound` if absent); with `purge`, also its content when no other
    /// frame references it.
    fn remove(&self, id: Id, purge: bool) -> BoxFuture<'static, Result<GcReport>>;

    /// A frame by id; `None` if absent or expired.
    fn get(&self, id: Id) -> BoxFuture<'static, Result<Option<Frame>>>;

    /// The newest stored id, if any.
    fn last_id(&self) -> BoxFuture<'static, Result<Option<Id>>>;

    /// Topics with their counts (`prefix`: under it; `children`: one level).
    fn topics(
        &self,
        prefix: Option<String>,
        children: bool,
    ) -> BoxFuture<'static, Result<Vec<TopicInfo>>>;

    /// Sends the stored frames `opts` selects (`from`/`after`, `last`, `limit`, `topic`;
    /// follow options are ignored) to `tx` in id order, in pages, skipping expired frames.
    /// Stops early, without error, when `tx` is closed.
    fn history(
        &self,
        opts: ReadOptions,
        tx: mpsc::Sender<Vec<Record>>,
    ) -> BoxFuture<'static, Result<ScanEnd>>;

    /// Frames committed from now on, in commit order (ephemeral ones included); `runtime`
    /// limits them to the runtime's own topics (`xs.*`). A receiver that lags must catch up
    /// from [`Backend::history`]. Closed once the backend is closed.
    fn subscribe(&self, runtime: bool) -> broadcast::Receiver<Arc<LiveFrame>>;

    /// Starts streaming content in.
    fn content_writer(&self) -> Box<dyn ContentSink>;

    /// Makes content durable without a frame (`POST /cas`).
    fn content_put(&self, content: Content) -> BoxFuture<'static, Result<Option<Integrity>>>;

    /// Opens content by hash; `None` if it is not stored.
    fn content(&self, hash: Integrity) -> BoxFuture<'static, Result<Option<ContentReader>>>;

    /// Removes every content blob no frame references.
    fn gc(&self) -> BoxFuture<'static, Result<GcReport>>;

    /// Moves consumer `name` forward to `id` (never backwards); answers its position.
    fn ack(&self, name: String, id: Id) -> BoxFuture<'static, Result<Id>>;

    /// Forgets a consumer (`NotFound` if it has no position).
    fn remove_consumer(&self, name: String) -> BoxFuture<'static, Result<()>>;

    /// Every consumer with a position (`name`: only that one), with its lag.
    fn consumers(&self, name: Option<String>) -> BoxFuture<'static, Result<Vec<ConsumerInfo>>>;

    /// A processor's checkpoint, if set.
    fn checkpoint(&self, name: String) -> BoxFuture<'static, Result<Option<Vec<u8>>>>;

    /// Removes a processor's checkpoint (nothing if it is not set).
    fn remove_checkpoint(&self, name: String) -> BoxFuture<'static, Result<()>>;

    /// Stored frames after `id` (all of them with `None`), counting at most `cap`.
    fn count_after(&self, id: Option<Id>, cap: u64) -> BoxFuture<'static, Result<u64>>;

    /// The backend's own figures (commits, content sizes, ...).
    fn metrics(&self) -> BoxFuture<'static, Result<Vec<Metric>>>;

    /// Resolves if the backend fails for good (the daemon must then stop), with the reason.
    fn failed(&self) -> BoxFuture<'static, String>;

    /// Commits what was queued, then takes no more writes and ends every subscription.
    fn close(&self) -> BoxFuture<'static, ()>;
}
