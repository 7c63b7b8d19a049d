//! The local backend: the frame log and its indexes in fjall, content in cacache, one writer
//! thread that group-commits every change, the live channel followers subscribe to, and the
//! expiry of `time:` TTLs. Only [`Local::open`] and the [`crate::Backend`] impl (`boundary`) are
//! used from outside; fjall and cacache types stay in this module.

mod append;
mod atomic;
mod boundary;
mod check;
#[doc(hidden)]
pub mod codec;
mod consumers;
mod content;
#[cfg_attr(not(feature = "nats"), allow(dead_code))]
pub(crate) mod copy;
pub(crate) mod gc;
mod journal;
mod metrics;
mod plan;
mod scan;
mod space;
mod stats;
mod writer;

use std::fs::File;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use ssri::Integrity;
use tokio::sync::{broadcast, oneshot, watch};

pub use check::CheckReport;
pub(crate) use content::{CasContent, ContentWriter};
use plan::{Reply, WriteOp};
pub use space::DEFAULT_MIN_FREE_BYTES;
use writer::Writer;

use crate::backend::{Content, LiveFrame};

use crate::error::{Error, IoContext, Result};
use crate::frame::{now_ms, Frame, Id};

/// How many live frames the broadcast channel holds before a slow follower lags (and then
/// catches up from the store instead).
pub const LIVE_CHANNEL_CAPACITY: usize = 1024;

/// The live channels the writer broadcasts committed frames on: every frame, and the
/// runtime's own (`xs.*`) frames alone, so that tasks watching only those (the processor
/// dispatchers) are not woken by every append.
#[derive(Clone)]
pub(crate) struct LiveSenders {
    pub all: broadcast::Sender<Arc<LiveFrame>>,
    pub runtime: broadcast::Sender<Arc<LiveFrame>>,
}

impl LiveSenders {
    fn new() -> LiveSenders {
        LiveSenders {
            all: broadcast::channel(LIVE_CHANNEL_CAPACITY).0,
            runtime: broadcast::channel(LIVE_CHANNEL_CAPACITY).0,
        }
    }

    pub(crate) fn send(&self, f: Arc<LiveFrame>) {
        if f.frame.topic.starts_with("xs.") {
            let _ = self.runtime.send(f.clone());
        }
        let _ = self.all.send(f);
    }
}

impl From<fjall::Error> for Error {
    /// A poisoned fjall cannot go on: that is a failure for good; anything else refuses the
    /// one operation.
    fn from(e: fjall::Error) -> Error {
        match e {
            fjall::Error::Poisoned => Error::Failed(e.to_string()),
            e => Error::Storage(e.to_string()),
        }
    }
}

/// When committed batches reach the disk (`xs serve --fsync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fsync {
    /// Each batch is fdatasynced before its appends are answered (one fsync per group
    /// commit): survives a process crash, an OS crash and a power loss.
    #[default]
    Always,
    /// Each batch is handed to the OS before its appends are answered, and fdatasynced every
    /// interval: survives a process crash; an OS crash or power loss loses up to an interval.
    Interval(std::time::Duration),
    /// Batches are handed to the OS, which writes them when it likes: survives a process
    /// crash; an OS crash or power loss loses what the OS had not written.
    Never,
}

impl std::str::FromStr for Fsync {
    type Err = String;

    /// `always`, `interval:<ms>` or `never`.
    fn from_str(s: &str) -> std::result::Result<Fsync, String> {
        let bad = || format!("--fsync takes always, interval:<ms> or never, not {s:?}");
        match s {
            "always" => Ok(Fsync::Always),
            "never" => Ok(Fsync::Never),
            _ => {
                let ms: u64 = s
                    .strip_prefix("interval:")
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n > 0)
                    .ok_or_else(bad)?;
                Ok(Fsync::Interval(std::time::Duration::from_millis(ms)))
            }
        }
    }
}

/// Options of the local backend.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// fjall block cache size in bytes.
    pub cache_bytes: u64,
    /// Memtable size per keyspace in bytes.
    pub memtable_bytes: u64,
    /// Journal size after which memtables are flushed; bounds replay time after a crash
    /// (fjall's minimum is 64 MiB).
    pub journal_bytes: u64,
    /// Free space kept on the store's filesystem: below it, appends answer `NoSpace`.
    pub min_free_bytes: u64,
    /// When committed batches reach the disk.
    pub fsync: Fsync,
    /// How often expired (`time:`) frames are removed.
    pub ttl_sweep: std::time::Duration,
    /// Who holds the store while it is open (e.g. `xs serve /path`): written into its `lock`
    /// file after the pid, for whoever finds it locked.
    pub holder: String,
}

impl Default for LocalOptions {
    fn default() -> Self {
        LocalOptions {
            cache_bytes: 8 * 1024 * 1024,
            // 2 MiB, not 4: peak RSS building a 1M-frame store 115 -> 98 MiB, appends and
            // the build within noise (README, Benchmarks).
            memtable_bytes: 2 * 1024 * 1024,
            journal_bytes: 64 * 1024 * 1024,
            min_free_bytes: DEFAULT_MIN_FREE_BYTES,
            fsync: Fsync::Always,
            ttl_sweep: std::time::Duration::from_secs(1),
            holder: String::new(),
        }
    }
}

/// An open local store; cheap to clone.
#[derive(Clone)]
pub struct Local {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    cacache_dir: PathBuf,
    ks: Keyspaces,
    writer: Mutex<Option<Writer>>,
    /// Taken (dropped) by `close`, which ends every live subscription.
    live: Mutex<Option<LiveSenders>>,
    /// Set by the writer when storage fails for good.
    failed: watch::Sender<Option<String>>,
    /// Removes expired frames (see [`Local::sweep_expired`]); stopped by `close`.
    sweeper: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// With `Fsync::Interval`: dropped by `close` to stop the thread that syncs the journal.
    syncer: Mutex<Option<std::sync::mpsc::Sender<()>>>,
    fsync: Fsync,
    _lock: File,
}

#[derive(Clone)]
pub(crate) struct Keyspaces {
    db: Database,
    /// How each committed batch is persisted (from `LocalOptions::fsync`).
    persist: PersistMode,
    /// Checked before every batch and while large content streams in (see `space`).
    space: Arc<space::Space>,
    /// Counters for `GET /metrics` (see `metrics`).
    metrics: Arc<metrics::Metrics>,
    /// id → frame value (see `codec`).
    frames: Keyspace,
    /// `topic \0 id` and `prefix. \0 id` → empty.
    idx_topic: Keyspace,
    /// `expires_at id` → empty, for frames with a `time:` TTL.
    idx_expiry: Keyspace,
    /// inline content: `algo-hex` → bytes.
    cas: Keyspace,
    /// consumer name → last acknowledged id (see `consumers`).
    consumers: Keyspace,
    /// topic → frame count, first and last id (see `stats`).
    topics: Keyspace,
    /// content `algo-hex` → how many frames reference it (see `stats`).
    refs: Keyspace,
    /// `topic \0 idempotency key` → frame id.
    idem: Keyspace,
    /// name → a processor's checkpoint (see `atomic`).
    checkpoints: Keyspace,
}

impl Keyspaces {
    /// Every keyspace, for work that touches them all (flushing memtables).
    fn all(&self) -> [&Keyspace; 9] {
        [
            &self.frames,
            &self.idx_topic,
            &self.idx_expiry,
            &self.cas,
            &self.consumers,
            &self.topics,
            &self.refs,
            &self.idem,
            &self.checkpoints,
        ]
    }
}

impl Local {
    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Opens (creating if missing) the store in `path`: `fjall/`, `cacache/`, and a `lock`
    /// file held for as long as the store is open, so a second daemon is refused (its content,
    /// `pid N: <opts.holder>`, says who holds it).
    pub fn open(path: impl AsRef<Path>, opts: LocalOptions) -> Result<Local> {
        let path = path.as_ref().to_path_buf();
        std::fs::create_dir_all(&path)
            .context(|| format!("creating store directory {}", path.display()))?;
        let lock_path = path.join("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .context(|| format!("opening lock file {}", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => {
                let note = format!("pid {}: {}\n", std::process::id(), opts.holder);
                if let Err(e) = lock
                    .set_len(0)
                    .and_then(|()| (&lock).write_all(note.as_bytes()))
                {
                    tracing::warn!(error = %e, "could not write who holds the lock");
                }
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = lock_holder(&path);
                return Err(Error::Locked { path, holder });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io(format!("locking {}", lock_path.display()), e))
            }
        }
        let cacache_dir = path.join("cacache");
        std::fs::create_dir_all(&cacache_dir)
            .context(|| format!("creating content directory {}", cacache_dir.display()))?;

        let db = Database::builder(path.join("fjall"))
            .cache_size(opts.cache_bytes)
            .max_journaling_size(opts.journal_bytes)
            .manual_journal_persist(true)
            .open()?;
        // LZ4 at every level. fjall's default leaves levels 0 and 1 uncompressed: flushed
        // tables, and the log's tables stay as flushed (its keys never overlap, so compaction
        // moves them down without rewriting them). 100,000 frames of 100 B take 27.6 MB on
        // disk instead of 47.4, the replays within noise (README, Benchmarks: `disk_100k`).
        // Stores created before keep their policy (fjall keeps it from a keyspace's creation).
        let ks_opts = || {
            KeyspaceCreateOptions::default()
                .max_memtable_size(opts.memtable_bytes)
                .data_block_compression_policy(fjall::config::CompressionPolicy::all(
                    fjall::CompressionType::Lz4,
                ))
        };
        // Keyed by content hash, these take appends at random places in their key space, so
        // every L0 -> L1 compaction rewrites most of L1: merging 16 flushed tables at a time
        // instead of 4 rewrites L1 a quarter as often. Their reads are point reads and
        // prefix scans of one hash, which bloom filters keep cheap over more L0 tables.
        // (Not the topic index: merging 16 there saved fjall's workers a quarter of their CPU
        // but cost topic replays ~9%, README, Benchmarks.)
        let random_keyed = || {
            ks_opts().compaction_strategy(Arc::new(
                fjall::compaction::Leveled::default().with_l0_threshold(16),
            ))
        };
        // The log is read by id from the topic index, and those reads always hit. A 16 KiB
        // block holds ~100 frames, so a 1-in-10 topic loads one block per ~10 matching frames
        // instead of one per ~2.5, and the last level needs no bloom filter. `replay_topic`
        // 206k -> 332k frames/s, `replay_all` 1.45M -> 1.81M in one sitting. (fjall keeps a
        // keyspace's options from its creation: stores created before keep 4 KiB blocks.)
        let frames_opts = || {
            ks_opts()
                .data_block_size_policy(fjall::config::BlockSizePolicy::all(16 * 1024))
                .expect_point_read_hits(true)
        };
        let ks = Keyspaces {
            space: Arc::new(space::Space::new(&path, opts.min_free_bytes)),
            metrics: Arc::default(),
            frames: db.keyspace("frames", frames_opts)?,
            idx_topic: db.keyspace("idx_topic", ks_opts)?,
            idx_expiry: db.keyspace("idx_expiry", ks_opts)?,
            cas: db.keyspace("cas", random_keyed)?,
            consumers: db.keyspace("consumers", ks_opts)?,
            topics: db.keyspace("topics", ks_opts)?,
            refs: db.keyspace("refs", random_keyed)?,
            idem: db.keyspace("idem", ks_opts)?,
            checkpoints: db.keyspace("checkpoints", ks_opts)?,
            persist: match opts.fsync {
                Fsync::Always => PersistMode::SyncData,
                Fsync::Interval(_) | Fsync::Never => PersistMode::Buffer,
            },
            db,
        };
        let live = LiveSenders::new();
        let last_id = ks
            .frames
            .last_key_value()
            .map(|g| {
                g.key()
                    .map_err(Error::from)
                    .and_then(|k| codec::id_from_key(&k))
            })
            .transpose()?;
        stats::build_if_missing(&ks)?;
        let (failed, _) = watch::channel(None);
        let writer = Writer::spawn(
            ks.clone(),
            cacache_dir.clone(),
            live.clone(),
            last_id,
            failed.clone(),
        )?;
        let local = Local {
            inner: Arc::new(Inner {
                path,
                cacache_dir,
                ks,
                writer: Mutex::new(Some(writer)),
                live: Mutex::new(Some(live)),
                failed,
                sweeper: Mutex::new(None),
                syncer: Mutex::new(None),
                fsync: opts.fsync,
                _lock: lock,
            }),
        };
        if let Fsync::Interval(every) = opts.fsync {
            let tx = sync_every(local.inner.ks.db.clone(), every)?;
            *local.inner.syncer.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let task = rt.spawn(sweep_expired(Arc::downgrade(&local.inner), opts.ttl_sweep));
            *local
                .inner
                .sweeper
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(task);
        }
        Ok(local)
    }

    fn cacache_dir(&self) -> &Path {
        &self.inner.cacache_dir
    }

    /// Sends a change to the writer now; the returned future resolves once it is durable.
    fn submit<T: Send + 'static>(
        &self,
        op: impl FnOnce(Reply<T>) -> WriteOp,
    ) -> impl Future<Output = Result<T>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let sent = self.send(op(tx));
        async move {
            sent?;
            rx.await.map_err(|_| Error::Closed)?
        }
    }

    fn send(&self, op: WriteOp) -> Result<()> {
        let guard = self.inner.writer.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref() {
            Some(w) => w.send(op),
            None => Err(Error::Closed),
        }
    }

    /// Removes a frame and its index entries. `NotFound` if there is no such frame.
    async fn remove(&self, id: Id) -> Result<()> {
        self.submit(|r| WriteOp::Remove(id, r)).await
    }

    /// Makes content durable without a frame (`POST /cas`) and returns its hash.
    async fn cas_put(&self, content: Content) -> Result<Option<Integrity>> {
        match content {
            Content::None => Ok(None),
            Content::Stored { hash, .. } => Ok(Some(hash)),
            Content::Inline { hash, bytes } => {
                self.submit(|r| WriteOp::PutContent(hash.clone(), bytes, r))
                    .await?;
                Ok(Some(hash))
            }
        }
    }

    /// Opens content by hash (inline or in cacache).
    fn cas_get(&self, sri: &Integrity) -> Result<Option<CasContent>> {
        if let Some(v) = self.inner.ks.cas.get(content::cas_key(sri))? {
            return Ok(Some(CasContent::Inline(Bytes::copy_from_slice(&v))));
        }
        let path = content::cacache_path(&self.inner.cacache_dir, sri);
        match File::open(&path) {
            Ok(file) => {
                let len = file
                    .metadata()
                    .context(|| format!("reading metadata of {}", path.display()))?
                    .len();
                Ok(Some(CasContent::File { file, len }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("opening content {}", path.display()), e)),
        }
    }

    /// Whether content with this hash is stored.
    fn cas_has(&self, sri: &Integrity) -> Result<bool> {
        if self.inner.ks.cas.contains_key(content::cas_key(sri))? {
            return Ok(true);
        }
        Ok(content::cacache_path(&self.inner.cacache_dir, sri).is_file())
    }

    /// A frame by id; `None` if absent or expired.
    fn get(&self, id: &Id) -> Result<Option<Frame>> {
        let Some(v) = self.inner.ks.frames.get(codec::id_key(id))? else {
            return Ok(None);
        };
        let value = codec::decode_frame_value(id, &v)?;
        if value.is_expired(now_ms()) {
            return Ok(None);
        }
        codec::decode_frame(id, &v).map(Some)
    }

    /// Subscribes to frames appended from now on (see [`LIVE_CHANNEL_CAPACITY`]); `runtime`:
    /// the runtime's frames (topics `xs.*`) only. After `close`, the receiver is closed.
    fn subscribe(&self, runtime: bool) -> broadcast::Receiver<Arc<LiveFrame>> {
        let live = self.inner.live.lock().unwrap_or_else(|e| e.into_inner());
        match live.as_ref() {
            Some(tx) if runtime => tx.runtime.subscribe(),
            Some(tx) => tx.all.subscribe(),
            None => broadcast::channel(1).1,
        }
    }

    /// The newest id in the log, if any.
    fn last_id(&self) -> Result<Option<Id>> {
        self.inner
            .ks
            .frames
            .last_key_value()
            .map(|g| {
                g.key()
                    .map_err(Error::from)
                    .and_then(|k| codec::id_from_key(&k))
            })
            .transpose()
    }

    /// Removes frames whose `time:` TTL has passed (at most `max` per call); returns how many.
    /// A store opened inside a tokio runtime does this every second by itself; one opened
    /// outside (tests) sweeps only when this is called.
    pub async fn sweep_expired(&self, max: usize) -> Result<usize> {
        let ks = self.inner.ks.clone();
        let ids = tokio::task::spawn_blocking(move || {
            let now = now_ms();
            let mut ids = Vec::new();
            for g in ks
                .idx_expiry
                // Expired means `now >= expires_at` (as reads decide): include `now` itself.
                .range(..codec::expiry_key(now.saturating_add(1), &Id::from_u128(0)))
            {
                let k = g.key()?;
                ids.push(codec::id_from_key(&k[8..])?);
                if ids.len() >= max {
                    break;
                }
            }
            Ok::<_, Error>(ids)
        })
        .await
        .map_err(|e| Error::Internal(format!("sweep task failed: {e}")))??;
        if ids.is_empty() {
            return Ok(0);
        }
        self.submit(|r| WriteOp::Expire(ids, r)).await
    }

    /// Resolves if storage fails for good (the daemon must then exit), with the reason.
    async fn failed(&self) -> String {
        let mut rx = self.inner.failed.subscribe();
        let reason = match rx.wait_for(|f| f.is_some()).await {
            Ok(f) => Some(f.clone().unwrap_or_default()),
            Err(_) => None,
        };
        match reason {
            Some(r) => r,
            None => std::future::pending().await,
        }
    }

    /// Stops the writer after it has committed everything sent before (later writes fail
    /// with `Closed`), then ends every live subscription once it has its last frames.
    fn close(&self) {
        if let Some(t) = self
            .inner
            .sweeper
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            t.abort();
        }
        let writer = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(w) = writer {
            w.shutdown();
            self.inner
                .syncer
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if self.inner.fsync != Fsync::Always {
                // A clean stop loses nothing, whatever `--fsync` says.
                if let Err(e) = self.inner.ks.db.persist(PersistMode::SyncData) {
                    tracing::warn!(error = %e, "syncing the journal at close failed");
                }
            }
            // Flush memtables, then empty the journal: the next start has nothing to replay,
            // and the store on disk is its tables (see `journal`). A small journal is left as
            // it is: it replays faster than the flush takes (each keyspace's flush writes and
            // syncs a table: with 100 stores mounted, stopping took 5.5 s instead of 2).
            let fjall_dir = self.inner.path.join("fjall");
            let journal = journal::written_bytes(&fjall_dir).unwrap_or(u64::MAX);
            if journal > FLUSH_AT_CLOSE_BYTES {
                let mut flushed = true;
                for k in self.inner.ks.all() {
                    if let Err(e) = k.rotate_memtable_and_wait() {
                        tracing::warn!(error = %e, "flushing a memtable at close failed");
                        flushed = false;
                    }
                }
                if flushed {
                    if let Err(e) = journal::empty_after_flush(&self.inner.ks, &fjall_dir) {
                        tracing::warn!(error = %e, "emptying the journal at close failed");
                    }
                }
            }
        }
        self.inner
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
}

/// Who holds the store in `dir`, as its `lock` file says (its first line, at most 500
/// characters); empty if it says nothing.
pub fn lock_holder(dir: &Path) -> String {
    let note = std::fs::read_to_string(dir.join("lock")).unwrap_or_default();
    let first = note.lines().next().unwrap_or("").trim();
    first.chars().take(500).collect()
}

/// A journal larger than this is flushed into tables and emptied at close, so the next start
/// does not replay it.
const FLUSH_AT_CLOSE_BYTES: u64 = 4 * 1024 * 1024;

/// With `Fsync::Interval`: a thread that fdatasyncs the journal every `every`, until the
/// returned sender is dropped.
fn sync_every(db: Database, every: std::time::Duration) -> Result<std::sync::mpsc::Sender<()>> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("xs-fsync".into())
        .spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(every) {
                if let Err(e) = db.persist(PersistMode::SyncData) {
                    tracing::warn!(error = %e, "syncing the journal failed");
                }
            }
        })
        .map_err(|e| Error::io("starting the fsync thread", e))?;
    Ok(tx)
}

/// Every second, for as long as the store is open: fails the store for good if its directory
/// vanished (nothing can be stored any more); every `every` (`--ttl-sweep`), removes expired
/// frames, 10,000 at a time.
async fn sweep_expired(store: std::sync::Weak<Inner>, every: std::time::Duration) {
    const MAX: usize = 10_000;
    let second = std::time::Duration::from_secs(1);
    let period = every.min(second);
    let mut tick = tokio::time::interval(period);
    let mut last_check = tokio::time::Instant::now();
    let mut last_sweep = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        // Half a tick of slack: ticks are due on a schedule, not after it.
        let sweep = last_sweep.elapsed() + period / 2 >= every;
        if !sweep && last_check.elapsed() + period / 2 < second {
            continue;
        }
        last_check = tokio::time::Instant::now();
        if let Some(inner) = store.upgrade() {
            if let Err(e) = std::fs::metadata(inner.path.join("lock")) {
                let reason = format!(
                    "the store directory {} vanished or cannot be read ({e})",
                    inner.path.display()
                );
                tracing::error!(%reason, "storage failed");
                let _ = inner.failed.send(Some(reason));
                return;
            }
        }
        if !sweep {
            continue;
        }
        last_sweep = tokio::time::Instant::now();
        loop {
            let Some(inner) = store.upgrade() else { return };
            match (Local { inner }).sweep_expired(MAX).await {
                Ok(n) if n >= MAX => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "expiry sweep failed");
                    break;
                }
            }
        }
    }
}
