//! The JetStream backend (`xs serve --nats URLS`): the stream lives in a NATS JetStream cluster
//! shared by several daemons; each daemon keeps a local copy ([`Local`] in
//! `<state>/copy/<stream>`) that a feed task fills from an ordered consumer, in stream-sequence
//! order, keeping the ids the appending daemon gave. Every read is served by the copy.
//!
//! Appends go through one writer task: it plans the queued writes against the copy at the
//! sequence L it has applied (`expect`, idempotency keys, ids above every id seen), publishes
//! them as one atomic batch whose first message expects the stream to end at L, and on
//! 10071 (another daemon was first) catches the copy up, plans again and retries. A committed
//! batch is answered once the copy has applied it (read-your-writes). See docs/jetstream.md.

pub mod cluster;
mod codec;
mod collect;
mod consumers;
mod feed;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, kv, object_store, stream};
use ssri::Integrity;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::backend::{
    Backend, Batch, BoxFuture, Content, ContentReader, ContentSink, GcReport, LiveFrame, Metric,
    Record, ScanEnd, TopicInfo,
};
use crate::consumer::ConsumerInfo;
use crate::error::{Error, Result};
use crate::frame::{Frame, Id};
use crate::local::{Local, LocalOptions};
use crate::read::ReadOptions;

/// The checkpoint of the copy holding the last stream sequence it applied.
const APPLIED: &str = "$jetstream.applied";

/// How to reach the cluster and which stream to use.
#[derive(Debug, Clone)]
pub struct JetStreamOptions {
    /// Server URLs (`nats://host:4222`, `tls://...`).
    pub urls: Vec<String>,
    /// The stream's name (`XS` by default); its subjects are `<name lower-cased>.>`.
    pub stream: String,
    /// Replicas of the stream and its buckets (3 in production).
    pub replicas: usize,
    /// A NATS credentials file (JWT and NKey seed).
    pub creds_file: Option<PathBuf>,
    /// A server token.
    pub token: Option<String>,
    /// CA certificate(s) (PEM) the servers' TLS certificates are checked against.
    pub tls_ca: Option<PathBuf>,
    /// How long a write may wait for the cluster before it answers `Unavailable`.
    pub write_timeout: Duration,
}

impl JetStreamOptions {
    /// Stream `XS`, replicas 3, no credentials, a 10 s write timeout.
    pub fn new(urls: impl IntoIterator<Item = impl Into<String>>) -> JetStreamOptions {
        JetStreamOptions {
            urls: urls.into_iter().map(Into::into).collect(),
            stream: "XS".into(),
            replicas: 3,
            creds_file: None,
            token: None,
            tls_ca: None,
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// A stream in a JetStream cluster, read through a local copy; cheap to clone.
#[derive(Clone)]
pub struct JetStreamBackend {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) copy: Local,
    pub(crate) client: async_nats::Client,
    pub(crate) stream: stream::Stream,
    pub(crate) objects: object_store::ObjectStore,
    /// Durable consumer positions (`consumers.rs`).
    pub(crate) consumers: kv::Store,
    /// Subject prefix of frames: `<prefix>.<topic>`.
    pub(crate) prefix: String,
    /// The stream's name (its buckets are named after it).
    pub(crate) stream_name: String,
    /// Replicas of the stream and its buckets.
    pub(crate) replicas: usize,
    /// Core NATS subject prefix of ephemeral frames.
    pub(crate) eph_prefix: String,
    /// The last stream sequence the copy has applied.
    pub(crate) applied: watch::Sender<u64>,
    /// Whether the feed has reached the end of the stream once since the daemon started.
    pub(crate) current: watch::Sender<bool>,
    pub(crate) write_timeout: Duration,
    /// The largest id a writer gave that this daemon knows of: its own (ephemeral frames' ids
    /// are never stored), and those of the frames its feed applied or relayed.
    pub(crate) assigned: Mutex<Option<Id>>,
    writes: Mutex<Option<mpsc::Sender<writer::Request>>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }
}

/// How long a daemon keeps asking a cluster it reached to set up the stream and buckets: a
/// cluster that just started can refuse placement ("no suitable peers") or time out for a
/// few seconds.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs one setup step until it succeeds, or answers its last error after [`SETUP_TIMEOUT`].
pub(crate) async fn set_up<T, E: std::fmt::Display, F>(
    what: &str,
    mut step: impl FnMut() -> F,
) -> std::result::Result<T, String>
where
    F: std::future::Future<Output = std::result::Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + SETUP_TIMEOUT;
    loop {
        match step().await {
            Ok(v) => return Ok(v),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e.to_string()),
            Err(e) => {
                tracing::warn!(error = %e, "{what}: retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> Error {
    Error::Unavailable(e.to_string())
}

impl JetStreamBackend {
    /// Connects, creates the stream and the content bucket if missing, and opens the local
    /// copy in `<state>/copy/<stream>`.
    pub async fn open(
        state: impl AsRef<Path>,
        local: LocalOptions,
        opts: JetStreamOptions,
    ) -> Result<JetStreamBackend> {
        let dir = state.as_ref().join("copy").join(&opts.stream);
        let copy = tokio::task::spawn_blocking(move || Local::open(dir, local))
            .await
            .map_err(|e| Error::Internal(format!("opening the copy: {e}")))??;
        JetStreamBackend::start(copy, opts).await
    }

    /// As [`JetStreamBackend::open`], on a copy already opened (tests open it outside a
    /// runtime, so that it sweeps expired frames only when told).
    pub async fn start(copy: Local, opts: JetStreamOptions) -> Result<JetStreamBackend> {
        let mut connect = async_nats::ConnectOptions::new()
            .request_timeout(Some(Duration::from_secs(5)))
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(None::<usize>);
        if let Some(f) = &opts.creds_file {
            connect = connect
                .credentials_file(f)
                .await
                .map_err(|e| Error::io(format!("reading {}", f.display()), e))?;
        }
        if let Some(t) = &opts.token {
            connect = connect.token(t.clone());
        }
        if let Some(ca) = &opts.tls_ca {
            connect = connect.add_root_certificates(ca.clone()).require_tls(true);
        }
        let at = opts.urls.join(",");
        let cluster = |what: &str, e: &dyn std::fmt::Display| {
            Error::Unavailable(format!("NATS cluster at {at}: {what}: {e}"))
        };
        let client = connect
            .connect(opts.urls.clone())
            .await
            .map_err(|e| cluster("cannot connect", &e))?;
        let js = jetstream::new(client.clone());
        let prefix = opts.stream.to_lowercase();
        let stream_config = stream::Config {
            name: opts.stream.clone(),
            subjects: vec![format!("{prefix}.>")],
            num_replicas: opts.replicas,
            storage: stream::StorageType::File,
            allow_message_ttl: true,
            allow_atomic_publish: true,
            allow_rollup: true,
            allow_direct: true,
            ..Default::default()
        };
        let what = format!("opening stream {}", opts.stream);
        let stream = set_up(&what, || js.get_or_create_stream(stream_config.clone()))
            .await
            .map_err(|e| cluster(&what, &e))?;
        let bucket = format!("{}_content", opts.stream);
        let what = format!("opening object store {bucket}");
        let objects = set_up(&what, || async {
            match js.get_object_store(&bucket).await {
                Ok(o) => Ok(o),
                Err(_) => js
                    .create_object_store(object_store::Config {
                        bucket: bucket.clone(),
                        num_replicas: opts.replicas,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| e.to_string()),
            }
        })
        .await
        .map_err(|e| cluster(&what, &e))?;
        let kv_bucket = format!("{}_consumers", opts.stream);
        let what = format!("opening key-value bucket {kv_bucket}");
        let consumers = set_up(&what, || async {
            match js.get_key_value(&kv_bucket).await {
                Ok(s) => Ok(s),
                Err(_) => js
                    .create_key_value(kv::Config {
                        bucket: kv_bucket.clone(),
                        history: 1,
                        num_replicas: opts.replicas,
                        storage: stream::StorageType::File,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| e.to_string()),
            }
        })
        .await
        .map_err(|e| cluster(&what, &e))?;
        let applied = match copy.checkpoint_value(APPLIED)? {
            Some(v) => u64::from_be_bytes(
                v.as_slice()
                    .try_into()
                    .map_err(|_| Error::Corrupt(format!("checkpoint {APPLIED}")))?,
            ),
            None => 0,
        };
        let end = stream.cached_info().state.last_sequence;
        if applied > end {
            return Err(Error::invalid(format!(
                "the local copy applied stream {} up to sequence {applied}, but the stream ends at \
                 {end}: it is a copy of an earlier stream of that name; delete the copy ({}) to \
                 rebuild it",
                opts.stream,
                copy.path().display()
            )));
        }
        writer::wait_writable(&client, &prefix).await?;
        let (wtx, wrx) = mpsc::channel(1024);
        let inner = Arc::new(Inner {
            copy,
            client,
            stream,
            objects,
            consumers,
            eph_prefix: format!("_xs_eph.{}", opts.stream),
            prefix,
            stream_name: opts.stream.clone(),
            replicas: opts.replicas,
            applied: watch::channel(applied).0,
            current: watch::channel(false).0,
            write_timeout: opts.write_timeout,
            assigned: Mutex::new(None),
            writes: Mutex::new(Some(wtx)),
            tasks: Mutex::new(Vec::new()),
        });
        let weak = Arc::downgrade(&inner);
        let eph = inner
            .client
            .subscribe(format!("{}.>", inner.eph_prefix))
            .await
            .map_err(unavailable)?;
        let tasks = vec![
            tokio::spawn(feed::run(weak.clone(), inner.stream.clone(), applied)),
            tokio::spawn(feed::ephemeral(weak.clone(), eph)),
            tokio::spawn(writer::run(weak, wrx)),
        ];
        *inner.tasks.lock().unwrap_or_else(|e| e.into_inner()) = tasks;
        let backend = JetStreamBackend { inner };
        backend.catch_up().await?;
        Ok(backend)
    }

    /// Waits until the copy has applied the whole stream once, so that a daemon answers from a
    /// current copy: one that was down for a while, or whose copy was deleted (rebuilt here),
    /// starts serving only then. Logs its progress every 5 s.
    async fn catch_up(&self) -> Result<()> {
        let mut current = self.inner.current.subscribe();
        let started = std::time::Instant::now();
        loop {
            match tokio::time::timeout(Duration::from_secs(5), current.wait_for(|c| *c)).await {
                Ok(Ok(_)) => break,
                Ok(Err(_)) => return Err(Error::Closed),
                Err(_) => tracing::info!(
                    applied = *self.inner.applied.borrow(),
                    "catching the local copy up with the stream"
                ),
            }
        }
        if started.elapsed() >= Duration::from_secs(1) {
            tracing::info!(
                applied = *self.inner.applied.borrow(),
                took = ?started.elapsed(),
                "the local copy caught up with the stream"
            );
        }
        Ok(())
    }

    /// The local copy (for tests: sweeping and checking it).
    pub fn copy(&self) -> &Local {
        &self.inner.copy
    }

    fn submit<T: Send + 'static>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T>>) -> writer::Request,
    ) -> impl std::future::Future<Output = Result<T>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let sent = match self
            .inner
            .writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            Some(w) => w.try_send(make(tx)).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => {
                    Error::Unavailable("too many writes queued".into())
                }
                mpsc::error::TrySendError::Closed(_) => Error::Closed,
            }),
            None => Err(Error::Closed),
        };
        async move {
            sent?;
            rx.await.map_err(|_| Error::Closed)?
        }
    }
}

impl Inner {
    /// Records an id some writer gave (ids planned later are above it; acks up to it are
    /// valid).
    pub(crate) fn saw(&self, id: Id) {
        let mut a = self.assigned.lock().unwrap_or_else(|e| e.into_inner());
        *a = (*a).max(Some(id));
    }

    /// Waits until the copy has applied sequence `seq`, at most `timeout`; answers whether it
    /// has.
    pub(crate) async fn wait_applied(&self, seq: u64, timeout: Duration) -> bool {
        let mut rx = self.applied.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|s| *s >= seq))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Makes content stored in the copy durable in the object store too (no-op if there).
    pub(crate) async fn upload(&self, hash: &Integrity) -> Result<()> {
        if self.object(hash).await.is_some() {
            return Ok(());
        }
        let name = hash.to_string();
        let path = self.copy.content_path(hash);
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(_) => {
                // Inline-sized content lives in the copy's index, not in a file.
                let bytes = match Backend::content(&self.copy, hash.clone()).await? {
                    Some(r) => r.read_all().await?,
                    None => return Err(Error::NotFound(format!("content {hash}"))),
                };
                self.objects
                    .put(name.as_str(), &mut bytes.as_slice())
                    .await
                    .map_err(unavailable)?;
                return Ok(());
            }
        };
        self.objects
            .put(name.as_str(), &mut file)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Copies content from the object store into the copy; answers whether it was there.
    pub(crate) async fn download(&self, hash: &Integrity) -> Result<bool> {
        use tokio::io::AsyncReadExt;
        let mut obj = match self.objects.get(hash.to_string()).await {
            Ok(o) => o,
            Err(e) if e.kind() == object_store::GetErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(unavailable(e)),
        };
        let mut w = Backend::content_writer(&self.copy);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = obj
                .read(&mut buf)
                .await
                .map_err(|e| Error::io("reading an object", e))?;
            if n == 0 {
                break;
            }
            w.write(&buf[..n]).await?;
        }
        let got = w.finish().await?;
        if got.hash() != Some(hash) && !got.is_empty() {
            return Err(Error::Corrupt(format!(
                "object {hash} does not match its hash"
            )));
        }
        if let Content::Inline { hash, bytes } = got {
            Backend::content_put(&self.copy, Content::Inline { hash, bytes }).await?;
        }
        Ok(true)
    }

    /// Whether content is known: in the copy, or in the object store.
    pub(crate) async fn content_known(&self, hash: &Integrity) -> Result<bool> {
        if self.copy.has_content(hash)? {
            return Ok(true);
        }
        Ok(self.object(hash).await.is_some())
    }

    /// The object store's entry for `hash`, if it holds the object. A deleted object keeps an
    /// entry, marked deleted: that is no object.
    pub(crate) async fn object(
        &self,
        hash: &Integrity,
    ) -> Option<async_nats::jetstream::object_store::ObjectInfo> {
        self.objects
            .info(hash.to_string())
            .await
            .ok()
            .filter(|i| !i.deleted)
    }
}

/// Content streamed into the copy, then into the object store when it is too large to
/// travel inline in its frame's message.
struct JsContentWriter {
    local: Box<dyn ContentSink>,
    inner: Arc<Inner>,
}

impl ContentSink for JsContentWriter {
    fn write<'a>(&'a mut self, chunk: &'a [u8]) -> BoxFuture<'a, Result<()>> {
        self.local.write(chunk)
    }

    fn len(&self) -> u64 {
        self.local.len()
    }

    fn finish(self: Box<Self>) -> BoxFuture<'static, Result<Content>> {
        let JsContentWriter { local, inner } = *self;
        Box::pin(async move {
            let content = local.finish().await?;
            if let Content::Stored { hash, .. } = &content {
                // Boxed apart, so that the future of every (small) append stays small (see
                // the local `ContentSink`).
                Box::pin(inner.upload(hash)).await?;
            }
            Ok(content)
        })
    }
}

impl Backend for JetStreamBackend {
    fn append(&self, batch: Batch) -> BoxFuture<'static, Result<Vec<Frame>>> {
        Box::pin(self.submit(|reply| writer::Request::Batch(batch, reply)))
    }

    fn import(&self, frame: Frame) -> BoxFuture<'static, Result<Frame>> {
        Box::pin(self.submit(|reply| writer::Request::Import(frame, reply)))
    }

    fn remove(&self, id: Id, purge: bool) -> BoxFuture<'static, Result<GcReport>> {
        let done = self.submit(|reply| writer::Request::Remove(id, purge, reply));
        let inner = self.inner.clone();
        Box::pin(async move { inner.remove(done, id, purge).await })
    }

    fn get(&self, id: Id) -> BoxFuture<'static, Result<Option<Frame>>> {
        Backend::get(&self.inner.copy, id)
    }

    fn last_id(&self) -> BoxFuture<'static, Result<Option<Id>>> {
        Backend::last_id(&self.inner.copy)
    }

    fn topics(
        &self,
        prefix: Option<String>,
        children: bool,
    ) -> BoxFuture<'static, Result<Vec<TopicInfo>>> {
        Backend::topics(&self.inner.copy, prefix, children)
    }

    fn history(
        &self,
        opts: ReadOptions,
        tx: mpsc::Sender<Vec<Record>>,
    ) -> BoxFuture<'static, Result<ScanEnd>> {
        Backend::history(&self.inner.copy, opts, tx)
    }

    fn subscribe(&self, runtime: bool) -> broadcast::Receiver<Arc<LiveFrame>> {
        Backend::subscribe(&self.inner.copy, runtime)
    }

    fn content_writer(&self) -> Box<dyn ContentSink> {
        Box::new(JsContentWriter {
            local: Backend::content_writer(&self.inner.copy),
            inner: self.inner.clone(),
        })
    }

    fn content_put(&self, content: Content) -> BoxFuture<'static, Result<Option<Integrity>>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let hash = Backend::content_put(&inner.copy, content).await?;
            if let Some(h) = &hash {
                inner.upload(h).await?;
            }
            Ok(hash)
        })
    }

    fn content(&self, hash: Integrity) -> BoxFuture<'static, Result<Option<ContentReader>>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            if let Some(r) = Backend::content(&inner.copy, hash.clone()).await? {
                return Ok(Some(r));
            }
            if !inner.download(&hash).await? {
                return Ok(None);
            }
            Backend::content(&inner.copy, hash).await
        })
    }

    fn gc(&self) -> BoxFuture<'static, Result<GcReport>> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.gc().await })
    }

    fn ack(&self, name: String, id: Id) -> BoxFuture<'static, Result<Id>> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.ack(&name, id).await })
    }

    fn remove_consumer(&self, name: String) -> BoxFuture<'static, Result<()>> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.remove_consumer(&name).await })
    }

    fn consumers(&self, name: Option<String>) -> BoxFuture<'static, Result<Vec<ConsumerInfo>>> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.consumers(name.as_deref()).await })
    }

    fn checkpoint(&self, name: String) -> BoxFuture<'static, Result<Option<Vec<u8>>>> {
        Backend::checkpoint(&self.inner.copy, name)
    }

    fn remove_checkpoint(&self, name: String) -> BoxFuture<'static, Result<()>> {
        Box::pin(self.submit(|reply| writer::Request::RemoveCheckpoint(name, reply)))
    }

    fn count_after(&self, id: Option<Id>, cap: u64) -> BoxFuture<'static, Result<u64>> {
        Backend::count_after(&self.inner.copy, id, cap)
    }

    fn metrics(&self) -> BoxFuture<'static, Result<Vec<Metric>>> {
        Backend::metrics(&self.inner.copy)
    }

    fn failed(&self) -> BoxFuture<'static, String> {
        Backend::failed(&self.inner.copy)
    }

    fn close(&self) -> BoxFuture<'static, ()> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let writes = inner
                .writes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            drop(writes);
            let tasks: Vec<_> = inner
                .tasks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain(..)
                .collect();
            let mut tasks = tasks.into_iter();
            let (feed, eph, writer) = (tasks.next(), tasks.next(), tasks.next());
            // The writer answers what it holds, then ends (its queue is closed).
            if let Some(w) = writer {
                let _ = tokio::time::timeout(inner.write_timeout, w).await;
            }
            for t in [feed, eph].into_iter().flatten() {
                t.abort();
                let _ = t.await;
            }
            Backend::close(&inner.copy).await;
        })
    }
}
