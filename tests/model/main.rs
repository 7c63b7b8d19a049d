//! The backend conformance suite: random sequences of appends (single, group-committed and
//! atomic with a checkpoint; with `expect` and idempotency keys), removes, purges, gc,
//! imports, reads, gets, consumer acks, expiry sweeps and restarts (clean and unclean), run
//! through the [`xs::Backend`] boundary (a [`Store`]) and checked against a simple in-memory
//! model after every step: the model predicts every answer. Each backend gives a [`Subject`]: how to open it, sweep its expired
//! frames now, and check its own consistency; the sequences are the same for all.
//!
//! Time TTLs are `time:0` (expired at once) or `time:FAR` (never expires during a run), so
//! the model needs no clock. `last:n` keeps the newest n stored frames of its topic, counting
//! frames that are expired but not swept yet, exactly as if appends were applied one by one.
//! `expect` and idempotency keys are decided against the store as it was before the write
//! batch, so the suite keeps them where batching cannot change the answer: keys in single and
//! atomic appends, `expect` in a group only for its first frame on a topic. Large content
//! (files) is always younger than `GC_GRACE`, so `gc` never collects it; purge does.
//!
//! `PROPTEST_CASES` sets the number of sequences (default 36: about a minute here, most of it
//! fsyncs). Shrunk counterexamples that ever failed are kept as named tests in `regressions.rs`.

mod regressions;

#[cfg(feature = "nats")]
#[path = "../helper/nats.rs"]
mod cluster;

use std::collections::{BTreeMap, HashMap, HashSet};

use proptest::prelude::*;
use serde_json::json;
use xs::backend::GcReport;
use xs::local::{CheckReport, Local};
use xs::{
    Batch, Content, Error, Expect, Frame, Id, LocalOptions, NewFrame, ReadOptions, Store,
    TopicFilter, Ttl,
};

/// A time TTL that never expires during a test run (about 31,000 years).
const FAR: u64 = 1_000_000_000_000_000;

const TOPICS: &[&str] = &["a", "a.b", "a.b.c", "b", "b.x", "ab"];
const FILTERS: &[&str] = &[
    "*", "a", "a.*", "a.b.*", "b.*", "a,b", "a.*,b.x", "b,b.*", "ab", "a.b,a.*", "c", "a.b.c.*",
    "ab.*,a",
];
const CONSUMERS: &[&str] = &["c0", "c1"];
const CHECKPOINTS: &[&str] = &["p0", "p1"];

#[derive(Debug, Clone)]
pub enum TtlSpec {
    Forever,
    Ephemeral,
    Expired,
    Far,
    Last(u32),
}

impl TtlSpec {
    fn ttl(&self) -> Ttl {
        match self {
            TtlSpec::Forever => Ttl::Forever,
            TtlSpec::Ephemeral => Ttl::Ephemeral,
            TtlSpec::Expired => Ttl::Time(0),
            TtlSpec::Far => Ttl::Time(FAR),
            TtlSpec::Last(n) => Ttl::Last(*n),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AppendSpec {
    pub topic: usize,
    pub ttl: TtlSpec,
    /// Content length and a seed for its bytes (equal pairs give equal content).
    pub len: usize,
    pub seed: u8,
    pub meta: Option<u8>,
    pub expect: Option<ExpectPick>,
    /// An idempotency key (`k0`...).
    pub key: Option<u8>,
}

/// What an append expects to be the newest frame on its topic.
#[derive(Debug, Clone)]
pub enum ExpectPick {
    /// `none`.
    Empty,
    /// The topic's real newest frame (or `none`): holds.
    Newest,
    /// Some stored frame: holds only if it is the topic's newest.
    Pick(usize),
}

/// The id a consumer acknowledges.
#[derive(Debug, Clone)]
pub enum AckPick {
    Existing(usize),
    /// The newest id the store assigned: accepted.
    Newest,
    /// Just after it: refused.
    Beyond,
    /// A tiny id, below every appended one.
    Old(u16),
}

#[derive(Debug, Clone)]
pub enum IdPick {
    /// An id of a stored frame (re-import replaces it).
    Existing(usize),
    /// Just after a stored frame's id (lands between two frames).
    After(usize),
    /// A new id from the clock.
    Fresh,
    /// A tiny id, older than anything appended.
    Old(u16),
    /// Near the largest id there is: appends after it must still get larger ids.
    Max(u8),
}

#[derive(Debug, Clone)]
pub enum HashPick {
    None,
    /// Content some earlier append stored.
    Known(usize),
    /// Content that is not in the store: the import must be refused.
    Missing,
}

#[derive(Debug, Clone)]
pub struct ImportSpec {
    pub id: IdPick,
    pub topic: usize,
    /// `None`: no `ttl` field (stored as forever).
    pub ttl: Option<TtlSpec>,
    pub hash: HashPick,
    pub meta: Option<u8>,
}

#[derive(Debug, Clone)]
pub enum Bound {
    None,
    After(usize),
    From(usize),
    /// An id between or beyond stored ones.
    AfterAny(u128),
}

#[derive(Debug, Clone)]
pub struct ReadSpec {
    pub bound: Bound,
    pub limit: Option<usize>,
    pub last: Option<usize>,
    pub filter: usize,
}

#[derive(Debug, Clone)]
pub enum Op {
    Append(AppendSpec),
    /// Appends queued at once, so the writer commits them in one (or few) batches.
    AppendBatch(Vec<AppendSpec>),
    /// Removes a stored frame (`Some`: pick) or a random id that is not there.
    Remove(Option<usize>),
    Import(ImportSpec),
    Read(ReadSpec),
    Get(usize),
    Sweep,
    /// Close and reopen (`clean`), or drop without `close`.
    Restart {
        clean: bool,
    },
    /// Frames and an optional checkpoint (name, value), all or nothing.
    Atomic {
        frames: Vec<AppendSpec>,
        checkpoint: Option<(usize, u8)>,
    },
    RemoveCheckpoint(usize),
    Ack {
        consumer: usize,
        id: AckPick,
    },
    RemoveConsumer(usize),
    /// Removes a stored frame (`Some`: pick) or a random id, with its content if unreferenced.
    Purge(Option<usize>),
    Gc,
}

fn ttl_spec() -> impl Strategy<Value = TtlSpec> {
    prop_oneof![
        4 => Just(TtlSpec::Forever),
        1 => Just(TtlSpec::Ephemeral),
        1 => Just(TtlSpec::Expired),
        1 => Just(TtlSpec::Far),
        3 => (1u32..4).prop_map(TtlSpec::Last),
    ]
}

fn append_spec() -> impl Strategy<Value = AppendSpec> {
    let len = prop_oneof![
        3 => Just(0usize),
        6 => 1usize..200,
        2 => 16_380usize..16_390,
        2 => 16_385usize..65_536,
    ];
    (
        0..TOPICS.len(),
        ttl_spec(),
        len,
        0u8..3,
        proptest::option::of(0u8..4),
        prop_oneof![
            6 => Just(None),
            1 => Just(Some(ExpectPick::Empty)),
            2 => Just(Some(ExpectPick::Newest)),
            1 => any::<usize>().prop_map(|p| Some(ExpectPick::Pick(p))),
        ],
        prop_oneof![3 => Just(None), 1 => (0u8..3).prop_map(Some)],
    )
        .prop_map(|(topic, ttl, len, seed, meta, expect, key)| AppendSpec {
            topic,
            ttl,
            len,
            seed,
            meta,
            expect,
            key,
        })
}

fn import_spec() -> impl Strategy<Value = ImportSpec> {
    let id = prop_oneof![
        any::<usize>().prop_map(IdPick::Existing),
        any::<usize>().prop_map(IdPick::After),
        Just(IdPick::Fresh),
        any::<u16>().prop_map(IdPick::Old),
        any::<u8>().prop_map(IdPick::Max),
    ];
    let hash = prop_oneof![
        3 => Just(HashPick::None),
        3 => any::<usize>().prop_map(HashPick::Known),
        1 => Just(HashPick::Missing),
    ];
    (
        id,
        0..TOPICS.len(),
        proptest::option::of(ttl_spec()),
        hash,
        proptest::option::of(0u8..4),
    )
        .prop_map(|(id, topic, ttl, hash, meta)| ImportSpec {
            id,
            topic,
            ttl,
            hash,
            meta,
        })
}

fn read_spec() -> impl Strategy<Value = ReadSpec> {
    let bound = prop_oneof![
        3 => Just(Bound::None),
        2 => any::<usize>().prop_map(Bound::After),
        2 => any::<usize>().prop_map(Bound::From),
        1 => any::<u128>().prop_map(Bound::AfterAny),
    ];
    (
        bound,
        proptest::option::of(0usize..6),
        proptest::option::of(0usize..6),
        0..FILTERS.len(),
    )
        .prop_map(|(bound, limit, last, filter)| ReadSpec {
            bound,
            limit,
            last,
            filter,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => append_spec().prop_map(Op::Append),
        3 => proptest::collection::vec(append_spec(), 2..8).prop_map(Op::AppendBatch),
        2 => proptest::option::of(any::<usize>()).prop_map(Op::Remove),
        3 => import_spec().prop_map(Op::Import),
        6 => read_spec().prop_map(Op::Read),
        2 => any::<usize>().prop_map(Op::Get),
        1 => Just(Op::Sweep),
        1 => any::<bool>().prop_map(|clean| Op::Restart { clean }),
        2 => (
            proptest::collection::vec(append_spec(), 1..5),
            proptest::option::of((0..CHECKPOINTS.len(), any::<u8>())),
        )
            .prop_map(|(frames, checkpoint)| Op::Atomic { frames, checkpoint }),
        1 => (0..CHECKPOINTS.len()).prop_map(Op::RemoveCheckpoint),
        3 => (0..CONSUMERS.len(), ack_pick()).prop_map(|(consumer, id)| Op::Ack { consumer, id }),
        1 => (0..CONSUMERS.len()).prop_map(Op::RemoveConsumer),
        2 => proptest::option::of(any::<usize>()).prop_map(Op::Purge),
        1 => Just(Op::Gc),
    ]
}

fn ack_pick() -> impl Strategy<Value = AckPick> {
    prop_oneof![
        3 => any::<usize>().prop_map(AckPick::Existing),
        1 => Just(AckPick::Newest),
        1 => Just(AckPick::Beyond),
        1 => any::<u16>().prop_map(AckPick::Old),
    ]
}

/// Deterministic content for (len, seed).
pub fn content_bytes(len: usize, seed: u8) -> Vec<u8> {
    let mut x = (len as u64) << 8 | u64::from(seed) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn meta(m: Option<u8>) -> Option<serde_json::Value> {
    m.map(|m| json!({ "m": m, "s": "x".repeat(m as usize) }))
}

/// The model: every stored frame (including expired ones not swept yet), known content and
/// which of it is stored, idempotency keys, consumer positions and checkpoints.
#[derive(Default, Clone)]
struct Model {
    frames: BTreeMap<Id, Frame>,
    contents: Vec<(ssri::Integrity, Vec<u8>)>,
    /// Content the store holds.
    present: HashSet<ssri::Integrity>,
    /// (topic, key) → the frame a new append with that key made.
    idem: HashMap<(String, String), Id>,
    /// The newest id the store assigned (or imported): acks after it are refused.
    last_assigned: Option<Id>,
    consumers: BTreeMap<&'static str, Id>,
    checkpoints: BTreeMap<&'static str, Vec<u8>>,
}

/// What an append answers, as the model predicts it.
enum Want {
    /// The frame an earlier append with the same idempotency key made.
    Original(Frame),
    /// `ExpectFailed`, with the topic's newest frame.
    Refused(Option<Id>),
    /// A new frame.
    New,
}

fn expired(f: &Frame) -> bool {
    // Only time:0 and time:FAR are used; created_ms + FAR is always in the future.
    f.ttl
        .and_then(|t| t.expires_at(f.created_ms()))
        .is_some_and(|at| at <= xs::frame::now_ms())
}

impl Model {
    /// The newest frame on exactly `topic` that has not expired.
    fn newest_on(&self, topic: &str) -> Option<Id> {
        self.frames
            .values()
            .rev()
            .find(|f| f.topic == topic && !expired(f))
            .map(|f| f.id)
    }

    /// What appending `nf` answers: a key first, then `expect`.
    fn want(&self, nf: &NewFrame) -> Want {
        if let Some(k) = &nf.key {
            let original = self
                .idem
                .get(&(nf.topic.clone(), k.clone()))
                .and_then(|id| self.frames.get(id))
                .filter(|f| !expired(f));
            if let Some(f) = original {
                return Want::Original(f.clone());
            }
        }
        match nf.expect {
            Some(e) if !e.holds(self.newest_on(&nf.topic)) => {
                Want::Refused(self.newest_on(&nf.topic))
            }
            _ => Want::New,
        }
    }

    /// Whether any stored frame references content `h`.
    fn referenced(&self, h: &ssri::Integrity) -> bool {
        self.frames.values().any(|f| f.hash.as_ref() == Some(h))
    }

    /// Removes content `h` if nothing references it; answers what that freed.
    fn drop_content(&mut self, h: &ssri::Integrity) -> GcReport {
        if self.referenced(h) || !self.present.remove(h) {
            return GcReport::default();
        }
        let len = self
            .contents
            .iter()
            .find(|(k, _)| k == h)
            .map_or(0, |(_, b)| b.len());
        GcReport {
            blobs: 1,
            bytes: len as u64,
        }
    }

    fn pick(&self, i: usize) -> Option<Id> {
        if self.frames.is_empty() {
            return None;
        }
        self.frames.keys().nth(i % self.frames.len()).copied()
    }

    /// Stores a frame (or not, if ephemeral) and applies its `last:n`.
    fn apply_append(&mut self, f: Frame) {
        if f.ttl == Some(Ttl::Ephemeral) {
            return;
        }
        let topic = f.topic.clone();
        let ttl = f.ttl;
        self.frames.insert(f.id, f);
        if let Some(Ttl::Last(n)) = ttl {
            let ids: Vec<Id> = self
                .frames
                .values()
                .rev()
                .filter(|f| f.topic == topic)
                .skip(n as usize)
                .map(|f| f.id)
                .collect();
            for id in ids {
                self.frames.remove(&id);
            }
        }
    }

    fn read(&self, opts: &ReadOptions) -> Vec<Frame> {
        let mut v: Vec<Frame> = self
            .frames
            .values()
            .filter(|f| !expired(f))
            .filter(|f| match (&opts.from, &opts.after) {
                (Some(from), _) => f.id >= *from,
                (None, Some(after)) => f.id > *after,
                (None, None) => true,
            })
            .filter(|f| opts.topic.matches(&f.topic))
            .cloned()
            .collect();
        if let Some(n) = opts.last {
            v = v.split_off(v.len().saturating_sub(n));
        }
        if let Some(n) = opts.limit {
            v.truncate(n);
        }
        v
    }
}

/// A backend as the suite drives it: its [`Store`], and the two things the boundary leaves to
/// the backend (when expired frames are removed, and what a consistent store looks like).
pub struct Subject {
    pub store: Store,
    /// Removes every expired frame now; answers how many.
    pub sweep: Box<dyn Fn() -> xs::Result<usize>>,
    /// The backend's own consistency check: frames stored, and every problem found.
    pub check: Box<dyn Fn() -> xs::Result<CheckReport>>,
    /// Whether purge and gc are supported (both backends do; a backend that did not would
    /// skip those steps).
    pub collects: bool,
}

/// Opens (or reopens) a subject in a directory. Called outside any runtime, so the backend
/// runs no background expiry and `sweep` decides when expired frames go.
pub type Open = fn(&std::path::Path, &tokio::runtime::Runtime) -> Subject;

/// The local backend.
fn local(dir: &std::path::Path, rt: &tokio::runtime::Runtime) -> Subject {
    let local = Local::open(dir, small_options()).expect("opening");
    let handle = rt.handle().clone();
    let (sweeper, checker) = (local.clone(), local.clone());
    Subject {
        store: Store::new(std::sync::Arc::new(local)),
        sweep: Box::new(move || handle.block_on(sweeper.sweep_expired(usize::MAX))),
        check: Box::new(move || checker.check()),
        collects: true,
    }
}

/// The JetStream backend (`--features nats`): a stream of its own (named after `dir`, so a
/// restart finds it again) on the cluster this test process shares, its copy in `dir`.
#[cfg(feature = "nats")]
fn jetstream(dir: &std::path::Path, rt: &tokio::runtime::Runtime) -> Subject {
    use std::hash::{Hash, Hasher};
    use xs::jetstream::{JetStreamBackend, JetStreamOptions};
    let urls = nats::urls().expect("a cluster (checked by the test)");
    let mut h = std::collections::hash_map::DefaultHasher::new();
    dir.hash(&mut h);
    let mut opts = JetStreamOptions::new(urls);
    opts.stream = format!("T{:016X}", h.finish());
    // Opened outside the runtime: it sweeps expired frames only when the suite says so.
    let copy = Local::open(dir.join("copy").join(&opts.stream), small_options()).expect("opening");
    let backend = rt
        .block_on(JetStreamBackend::start(copy.clone(), opts))
        .expect("starting the JetStream backend");
    let handle = rt.handle().clone();
    let (sweeper, checker) = (copy.clone(), copy);
    Subject {
        store: Store::new(std::sync::Arc::new(backend)),
        sweep: Box::new(move || handle.block_on(sweeper.sweep_expired(usize::MAX))),
        check: Box::new(move || checker.check()),
        collects: true,
    }
}

/// One JetStream cluster for the whole test process, started on first use from a thread that
/// lives as long as the process (the servers die with it: `setpriv --pdeathsig`).
#[cfg(feature = "nats")]
mod nats {
    use super::cluster;
    use std::sync::OnceLock;

    static URLS: OnceLock<Option<Vec<String>>> = OnceLock::new();

    /// The cluster's URLs, or None (after a SKIPPED line) when there is no nats-server.
    pub fn urls() -> Option<Vec<String>> {
        URLS.get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let c = cluster::NatsCluster::start();
                let _ = tx.send(c.as_ref().map(|c| c.url_list()));
                if c.is_some() {
                    loop {
                        std::thread::park();
                    }
                }
            });
            rx.recv().expect("the cluster thread answers")
        })
        .clone()
    }
}

/// The subject under test, a runtime to drive it, and its model.
pub struct Harness {
    rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    open: Open,
    subject: Option<Subject>,
    model: Model,
}

impl Harness {
    fn new(open: Open) -> Harness {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("building a runtime");
        let dir = tempfile::tempdir().expect("creating a temp dir");
        let subject = open(&dir.path().join("store"), &rt);
        Harness {
            rt,
            dir,
            open,
            subject: Some(subject),
            model: Model::default(),
        }
    }

    fn subject(&self) -> &Subject {
        self.subject.as_ref().expect("the store is open")
    }

    fn store(&self) -> &Store {
        &self.subject().store
    }

    fn new_frame(&mut self, s: &AppendSpec) -> NewFrame {
        let bytes = content_bytes(s.len, s.seed);
        let content = if bytes.len() > xs::INLINE_CONTENT_MAX {
            let store = self.store().clone();
            self.rt.block_on(async {
                let mut w = store.content_writer();
                for chunk in bytes.chunks(7_000) {
                    w.write(chunk).await.expect("writing content");
                }
                w.finish().await.expect("finishing content")
            })
        } else {
            Content::inline(bytes.clone())
        };
        if let Some(h) = content.hash() {
            if !self.model.contents.iter().any(|(k, _)| k == h) {
                self.model.contents.push((h.clone(), bytes));
            }
            if matches!(content, Content::Stored { .. }) {
                self.model.present.insert(h.clone());
            }
        }
        let mut nf = NewFrame::new(TOPICS[s.topic]);
        nf.meta = meta(s.meta);
        nf.ttl = s.ttl.ttl();
        nf.content = content;
        nf.key = s.key.map(|k| format!("k{k}"));
        nf.expect = s.expect.as_ref().map(|e| match e {
            ExpectPick::Empty => Expect::None,
            ExpectPick::Newest => self
                .model
                .newest_on(TOPICS[s.topic])
                .map_or(Expect::None, Expect::Id),
            ExpectPick::Pick(p) => self.model.pick(*p).map_or(Expect::None, Expect::Id),
        });
        nf
    }

    /// Checks an append's answer against what the model wanted, and applies it.
    fn check_answer(&mut self, nf: &NewFrame, want: Want, got: xs::Result<Frame>) {
        match want {
            Want::Original(f) => assert_eq!(got.expect("a repeated key"), f, "repeated key"),
            Want::Refused(last) => match got {
                Err(Error::ExpectFailed { last: l, .. }) => assert_eq!(l, last, "newest on topic"),
                r => panic!("expected ExpectFailed, got {r:?}"),
            },
            Want::New => self.check_appended(nf, got.expect("append")),
        }
    }

    fn check_appended(&mut self, nf: &NewFrame, got: Frame) {
        assert_eq!(got.topic, nf.topic);
        assert_eq!(got.hash.as_ref(), nf.content.hash());
        assert_eq!(got.meta, nf.meta);
        assert_eq!(got.ttl, Some(nf.ttl));
        if let Some((last, _)) = self.model.frames.last_key_value() {
            assert!(got.id > *last, "append id {} not after {last}", got.id);
        }
        if let Some(last) = self.model.last_assigned {
            assert!(got.id > last, "append id {} not after {last}", got.id);
        }
        self.model.last_assigned = Some(got.id);
        if let Content::Inline { hash, .. } = &nf.content {
            self.model.present.insert(hash.clone());
        }
        if let (Some(k), false) = (&nf.key, nf.ttl == Ttl::Ephemeral) {
            self.model
                .idem
                .insert((nf.topic.clone(), k.clone()), got.id);
        }
        self.model.apply_append(got);
    }

    pub fn apply(&mut self, op: &Op) {
        match op {
            Op::Append(s) => {
                let nf = self.new_frame(s);
                let want = self.model.want(&nf);
                let got = self.rt.block_on(self.store().append(nf.clone()));
                self.check_answer(&nf, want, got);
            }
            Op::AppendBatch(specs) => {
                // Keys never, `expect` only on a topic's first frame (see the module doc).
                let mut seen = HashSet::new();
                let specs: Vec<AppendSpec> = specs
                    .iter()
                    .map(|s| {
                        let mut s = s.clone();
                        s.key = None;
                        if !seen.insert(s.topic) {
                            s.expect = None;
                        }
                        s
                    })
                    .collect();
                let nfs: Vec<NewFrame> = specs.iter().map(|s| self.new_frame(s)).collect();
                // Queue all before awaiting any: the writer takes them as one batch.
                let futs: Vec<_> = nfs
                    .iter()
                    .map(|nf| self.store().append(nf.clone()))
                    .collect();
                let got: Vec<xs::Result<Frame>> = self.rt.block_on(async {
                    let mut out = Vec::new();
                    for f in futs {
                        out.push(f.await);
                    }
                    out
                });
                for (nf, r) in nfs.iter().zip(got) {
                    let want = self.model.want(nf);
                    self.check_answer(nf, want, r);
                }
            }
            Op::Atomic { frames, checkpoint } => self.atomic(frames, checkpoint),
            Op::RemoveCheckpoint(c) => {
                let name = CHECKPOINTS[*c];
                self.rt
                    .block_on(self.store().remove_checkpoint(name))
                    .expect("removing a checkpoint");
                self.model.checkpoints.remove(name);
            }
            Op::Ack { consumer, id } => self.ack(CONSUMERS[*consumer], id),
            Op::RemoveConsumer(c) => {
                let name = CONSUMERS[*c];
                let r = self.rt.block_on(self.store().remove_consumer(name));
                match self.model.consumers.remove(name) {
                    Some(_) => r.expect("removing a consumer"),
                    None => assert!(matches!(r, Err(Error::NotFound(_))), "{r:?}"),
                }
            }
            Op::Purge(_) | Op::Gc if !self.subject().collects => {}
            Op::Purge(pick) => {
                let id = match pick.and_then(|p| self.model.pick(p)) {
                    Some(id) => id,
                    None => scru128::new(),
                };
                let r = self.rt.block_on(self.store().remove_purge(id));
                match self.model.frames.remove(&id) {
                    Some(f) => {
                        let want = f
                            .hash
                            .as_ref()
                            .map_or(GcReport::default(), |h| self.model.drop_content(h));
                        assert_eq!(r.expect("purging a stored frame"), want, "purge freed");
                    }
                    None => assert!(matches!(r, Err(Error::NotFound(_))), "{r:?}"),
                }
                self.check_content();
            }
            Op::Gc => {
                let got = self.rt.block_on(self.store().gc()).expect("gc");
                let inline: Vec<ssri::Integrity> = self
                    .model
                    .contents
                    .iter()
                    .filter(|(h, b)| {
                        b.len() <= xs::INLINE_CONTENT_MAX && self.model.present.contains(h)
                    })
                    .map(|(h, _)| h.clone())
                    .collect();
                let mut want = GcReport::default();
                for h in inline {
                    let r = self.model.drop_content(&h);
                    want.blobs += r.blobs;
                    want.bytes += r.bytes;
                }
                assert_eq!(got, want, "gc freed");
                self.check_content();
            }
            Op::Remove(pick) => {
                let id = match pick.and_then(|p| self.model.pick(p)) {
                    Some(id) => id,
                    None => scru128::new(),
                };
                let r = self.rt.block_on(self.store().remove(id));
                match self.model.frames.remove(&id) {
                    Some(_) => r.expect("removing a stored frame"),
                    None => assert!(matches!(r, Err(Error::NotFound(_))), "{r:?}"),
                }
            }
            Op::Import(s) => self.import(s),
            Op::Read(s) => {
                let opts = self.read_options(s);
                self.check_read(&opts);
            }
            Op::Get(pick) => {
                let Some(id) = self.model.pick(*pick) else {
                    return;
                };
                let want = self.model.frames.get(&id).filter(|f| !expired(f)).cloned();
                let got = self.rt.block_on(self.store().get(id)).expect("get");
                assert_eq!(got, want);
            }
            Op::Sweep => {
                let n = (self.subject().sweep)().expect("sweep");
                let ids: Vec<Id> = self
                    .model
                    .frames
                    .values()
                    .filter(|f| expired(f))
                    .map(|f| f.id)
                    .collect();
                assert_eq!(n, ids.len(), "swept frames");
                for id in ids {
                    self.model.frames.remove(&id);
                }
            }
            Op::Restart { clean } => {
                let subject = self.subject.take().expect("open");
                if *clean {
                    self.rt.block_on(subject.store.close());
                }
                drop(subject);
                let path = self.dir.path().join("store");
                self.subject = Some((self.open)(&path, &self.rt));
                // The store counts ids from its newest stored frame again.
                self.model.last_assigned = self.model.frames.keys().next_back().copied();
                self.check_content();
            }
        }
        self.check_all();
    }

    /// An atomic append: every frame's answer is decided against the store as it was before
    /// it; one refused frame refuses them all, and the checkpoint with them.
    fn atomic(&mut self, specs: &[AppendSpec], checkpoint: &Option<(usize, u8)>) {
        let mut seen = HashSet::new();
        let nfs: Vec<NewFrame> = specs
            .iter()
            .map(|s| {
                let mut s = s.clone();
                if !seen.insert(s.topic) {
                    (s.key, s.expect) = (None, None);
                }
                self.new_frame(&s)
            })
            .collect();
        let wants: Vec<Want> = nfs.iter().map(|nf| self.model.want(nf)).collect();
        let checkpoint = checkpoint.map(|(c, v)| (CHECKPOINTS[c], vec![v; usize::from(v % 4)]));
        let batch = Batch {
            frames: nfs.clone(),
            checkpoint: checkpoint.clone().map(|(n, v)| (n.to_string(), v)),
            fence: None,
        };
        let r = self.rt.block_on(self.store().append_batch(batch));
        let refused = wants.iter().find_map(|w| match w {
            Want::Refused(last) => Some(*last),
            _ => None,
        });
        if let Some(last) = refused {
            match r {
                Err(Error::ExpectFailed { last: l, .. }) => assert_eq!(l, last, "newest on topic"),
                r => panic!("expected ExpectFailed, got {r:?}"),
            }
            return;
        }
        let got = r.expect("atomic append");
        assert_eq!(got.len(), nfs.len(), "frames answered");
        for ((nf, want), f) in nfs.iter().zip(wants).zip(got) {
            self.check_answer(nf, want, Ok(f));
        }
        if let Some((name, value)) = checkpoint {
            self.model.checkpoints.insert(name, value);
        }
    }

    fn ack(&mut self, name: &'static str, pick: &AckPick) {
        let last = self.model.last_assigned;
        let id = match pick {
            AckPick::Existing(p) => self.model.pick(*p).or(last),
            AckPick::Newest => last,
            AckPick::Beyond => last.map(|l| Id::from_u128(l.to_u128() + 1)),
            AckPick::Old(n) => Some(Id::from_u128(u128::from(*n) + 1)),
        }
        .unwrap_or_else(|| Id::from_u128(1));
        let r = self.rt.block_on(self.store().ack(name, id));
        if last.is_none_or(|l| id > l) {
            assert!(
                matches!(r, Err(Error::Invalid(_))),
                "ack after the newest: {r:?}"
            );
            return;
        }
        let position = self.model.consumers.get(name).map_or(id, |p| id.max(*p));
        assert_eq!(r.expect("ack"), position, "position after an ack");
        self.model.consumers.insert(name, position);
    }

    /// Every known content is stored exactly when the model says so, with its bytes.
    fn check_content(&self) {
        for (h, bytes) in &self.model.contents {
            let got = self
                .rt
                .block_on(self.store().cas_read(h))
                .expect("cas read");
            let want = self.model.present.contains(h).then_some(bytes);
            assert_eq!(got.as_ref(), want, "content {h}");
        }
    }

    fn import(&mut self, s: &ImportSpec) {
        let id = match &s.id {
            IdPick::Existing(p) => self.model.pick(*p),
            IdPick::After(p) => self
                .model
                .pick(*p)
                .map(|id| Id::from_u128(id.to_u128() + 1)),
            IdPick::Fresh => None,
            IdPick::Old(n) => Some(Id::from_u128(u128::from(*n) + 1)),
            IdPick::Max(n) => Some(Id::from_u128(u128::MAX - u128::from(*n))),
        }
        .unwrap_or_else(scru128::new);
        let (hash, known) = match &s.hash {
            HashPick::None => (None, true),
            HashPick::Known(p) if !self.model.contents.is_empty() => {
                let (h, _) = &self.model.contents[p % self.model.contents.len()];
                (Some(h.clone()), self.model.present.contains(h))
            }
            HashPick::Known(_) => (None, true),
            HashPick::Missing => (
                Some(ssri::Integrity::from(b"never stored".as_slice())),
                false,
            ),
        };
        let frame = Frame {
            topic: TOPICS[s.topic].to_string(),
            id,
            hash,
            meta: meta(s.meta),
            ttl: s.ttl.as_ref().map(TtlSpec::ttl),
        };
        // Through the wire form, as `POST /import` gets it.
        let frame = Frame::from_json(&frame.to_json()).expect("a valid frame");
        let r = self.rt.block_on(self.store().import(frame.clone()));
        if matches!(s.id, IdPick::Max(_)) {
            assert!(matches!(r, Err(Error::Invalid(_))), "{r:?}");
            return;
        }
        if !known {
            assert!(matches!(r, Err(Error::Invalid(_))), "{r:?}");
            return;
        }
        let got = r.expect("import");
        let mut want = frame;
        want.ttl.get_or_insert(Ttl::Forever);
        assert_eq!(got, want);
        if want.ttl != Some(Ttl::Ephemeral) {
            if self.model.last_assigned.is_none_or(|l| want.id > l) {
                self.model.last_assigned = Some(want.id);
            }
            // An import keeps its ttl but never trims: only appends apply `last:n`.
            self.model.frames.insert(want.id, want);
        }
    }

    fn read_options(&self, s: &ReadSpec) -> ReadOptions {
        let mut o = ReadOptions {
            limit: s.limit,
            last: s.last,
            topic: TopicFilter::parse(FILTERS[s.filter]).expect("a valid filter"),
            ..Default::default()
        };
        match s.bound {
            Bound::None => {}
            Bound::After(p) => o.after = self.model.pick(p),
            Bound::From(p) => o.from = self.model.pick(p),
            Bound::AfterAny(x) => {
                // Near the stored ids, so it often falls between them.
                let base = self.model.pick(x as usize).map_or(0, |id| id.to_u128());
                o.after = Some(Id::from_u128(base.wrapping_add(x % 3).wrapping_sub(1)));
            }
        }
        o
    }

    fn check_read(&self, opts: &ReadOptions) {
        let want = self.model.read(opts);
        let got = self
            .rt
            .block_on(self.store().frames(opts.clone()))
            .expect("read");
        assert_eq!(
            got.iter().map(|f| f.id).collect::<Vec<_>>(),
            want.iter().map(|f| f.id).collect::<Vec<_>>(),
            "ids read with {opts:?}"
        );
        assert_eq!(got, want, "frames read with {opts:?}");
        for f in &got {
            if let Some(h) = &f.hash {
                let bytes = self
                    .rt
                    .block_on(self.store().cas_read(h))
                    .expect("cas read");
                let known = self.model.contents.iter().find(|(k, _)| k == h);
                assert_eq!(
                    bytes.as_deref(),
                    known.map(|(_, b)| b.as_slice()),
                    "content of {}",
                    f.id
                );
            }
        }
    }

    /// After every step: a full read equals the model, and the store's indexes are consistent.
    fn check_all(&self) {
        self.check_read(&ReadOptions::default());
        let report = (self.subject().check)().expect("check");
        assert!(
            report.problems.is_empty(),
            "inconsistent store: {:#?}",
            report.problems
        );
        let stored = self.model.frames.len();
        assert_eq!(report.frames, stored, "frames in the log");
        let mut per_topic: HashMap<&str, usize> = HashMap::new();
        for f in self.model.frames.values().filter(|f| !expired(f)) {
            *per_topic.entry(f.topic.as_str()).or_default() += 1;
        }
        for t in TOPICS {
            let opts = ReadOptions {
                topic: TopicFilter::parse(t).expect("valid"),
                ..Default::default()
            };
            let n = self
                .rt
                .block_on(self.store().frames(opts))
                .expect("read")
                .len();
            assert_eq!(n, per_topic.get(t).copied().unwrap_or(0), "frames of {t}");
        }
        for name in CONSUMERS {
            let got = self
                .rt
                .block_on(self.store().consumer(name))
                .expect("consumer");
            let want = self.model.consumers.get(name).map(|p| {
                let lag = self
                    .model
                    .frames
                    .range(p..)
                    .filter(|(id, _)| *id > p)
                    .count();
                (*p, lag as u64)
            });
            assert_eq!(got.map(|c| (c.position, c.lag)), want, "consumer {name}");
        }
        for name in CHECKPOINTS {
            let got = self
                .rt
                .block_on(self.store().checkpoint(name))
                .expect("checkpoint");
            assert_eq!(
                got.as_ref(),
                self.model.checkpoints.get(name),
                "checkpoint {name}"
            );
        }
    }

    pub fn run(open: Open, ops: &[Op]) {
        let mut h = Harness::new(open);
        for op in ops {
            h.apply(op);
        }
        if let Some(s) = h.subject.take() {
            h.rt.block_on(s.store.close());
        }
    }
}

fn small_options() -> LocalOptions {
    LocalOptions {
        cache_bytes: 1024 * 1024,
        memtable_bytes: 256 * 1024,
        ..LocalOptions::default()
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(36)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 2_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn local_backend_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        Harness::run(local, &ops);
    }
}

#[cfg(feature = "nats")]
proptest! {
    // Each case creates a replicated stream and bucket: a quarter of the local cases.
    #![proptest_config(ProptestConfig {
        cases: cases().div_ceil(4),
        max_shrink_iters: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn jetstream_backend_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        if nats::urls().is_none() {
            return Ok(());
        }
        Harness::run(jetstream, &ops);
    }
}

/// Two owners of one processor's checkpoint, `a` deposed by `b`: `b` fences (a compare-and-set
/// on what it read), after which `a`'s late batch is refused whole — no frame, no checkpoint —
/// while `b` goes on committing. `a` and `b` may be two daemons on one stream.
fn fencing_refuses_a_deposed_owner(rt: &tokio::runtime::Runtime, a: &Store, b: &Store) {
    use xs::{Batch, Fence};
    let ck = "handler/h/0";
    let batch = |topic: &str, value: &[u8], fence: Fence| Batch {
        frames: vec![NewFrame::new(topic)],
        checkpoint: Some((ck.to_string(), value.to_vec())),
        fence: Some(fence),
    };
    rt.block_on(a.append_batch(batch("out", b"a1", Fence::Unset)))
        .expect("a's first commit");
    // b read a1 (its copy may lag: it retries on Fenced until it has read the newest).
    let fenced = (0..200).find_map(|_| {
        let cur = rt.block_on(b.checkpoint(ck)).expect("reading");
        let fence = cur.map_or(Fence::Unset, Fence::Holds);
        match rt.block_on(b.append_batch(Batch {
            frames: Vec::new(),
            checkpoint: Some((ck.to_string(), b"b0".to_vec())),
            fence: Some(fence),
        })) {
            Ok(_) => Some(()),
            Err(xs::Error::Fenced { .. }) => {
                std::thread::sleep(std::time::Duration::from_millis(10));
                None
            }
            Err(e) => panic!("b's fence: {e}"),
        }
    });
    assert!(fenced.is_some(), "b never fenced");
    let late = rt.block_on(a.append_batch(batch("out", b"a2", Fence::Holds(b"a1".to_vec()))));
    assert!(
        matches!(late, Err(xs::Error::Fenced { .. })),
        "a's late batch: {late:?}"
    );
    rt.block_on(b.append_batch(batch("out", b"b1", Fence::Holds(b"b0".to_vec()))))
        .expect("b commits");
    let frames = |s: &Store| {
        rt.block_on(s.frames(xs::ReadOptions {
            topic: xs::TopicFilter::parse("out").unwrap(),
            ..Default::default()
        }))
        .unwrap()
        .len()
    };
    // a's first frame and b's: a's late one is not there, on either side.
    assert_eq!(frames(b), 2);
    let settled = (0..500).any(|_| {
        let ok = frames(a) == 2 && rt.block_on(a.checkpoint(ck)).unwrap().as_deref() == Some(b"b1");
        if !ok {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        ok
    });
    assert!(settled, "a's copy follows b's commits");
    // A fence needs a checkpoint to fence.
    let bad = rt.block_on(a.append_batch(Batch {
        frames: vec![NewFrame::new("out")],
        checkpoint: None,
        fence: Some(Fence::Unset),
    }));
    assert!(matches!(bad, Err(xs::Error::Invalid(_))), "{bad:?}");
}

#[test]
fn local_fencing_refuses_a_deposed_owner() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_local(dir.path(), small_options()).unwrap();
    fencing_refuses_a_deposed_owner(&rt, &store, &store);
}

#[cfg(feature = "nats")]
#[test]
fn jetstream_fencing_refuses_a_deposed_owner_on_another_daemon() {
    use xs::jetstream::{JetStreamBackend, JetStreamOptions};
    let Some(urls) = nats::urls() else { return };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let open = |copy: &str| {
        let mut opts = JetStreamOptions::new(urls.clone());
        opts.stream = "FENCE".into();
        let backend = rt
            .block_on(JetStreamBackend::open(
                dir.path().join(copy),
                small_options(),
                opts,
            ))
            .expect("opening");
        Store::new(std::sync::Arc::new(backend))
    };
    let (a, b) = (open("a"), open("b"));
    fencing_refuses_a_deposed_owner(&rt, &a, &b);
}
