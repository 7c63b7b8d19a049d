//! The backend conformance suite: random sequences of appends (single and group-committed),
//! removes, imports, reads, gets, expiry sweeps and restarts (clean and unclean), run through
//! the [`xs::Backend`] boundary (a [`Store`]) and checked against a simple in-memory model
//! after every step. Each backend gives a [`Subject`]: how to open it, sweep its expired
//! frames now, and check its own consistency; the sequences are the same for all.
//!
//! Time TTLs are `time:0` (expired at once) or `time:FAR` (never expires during a run), so
//! the model needs no clock. `last:n` keeps the newest n stored frames of its topic, counting
//! frames that are expired but not swept yet, exactly as if appends were applied one by one.
//!
//! `PROPTEST_CASES` sets the number of sequences (default 48). Shrunk counterexamples that
//! ever failed are kept as named tests in `regressions.rs`.

mod regressions;

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use serde_json::json;
use xs::local::{CheckReport, Local};
use xs::{Content, Error, Frame, Id, LocalOptions, NewFrame, ReadOptions, Store, TopicFilter, Ttl};

/// A time TTL that never expires during a test run (about 31,000 years).
const FAR: u64 = 1_000_000_000_000_000;

const TOPICS: &[&str] = &["a", "a.b", "a.b.c", "b", "b.x", "ab"];
const FILTERS: &[&str] = &[
    "*", "a", "a.*", "a.b.*", "b.*", "a,b", "a.*,b.x", "b,b.*", "ab", "a.b,a.*", "c", "a.b.c.*",
    "ab.*,a",
];

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
    )
        .prop_map(|(topic, ttl, len, seed, meta)| AppendSpec {
            topic,
            ttl,
            len,
            seed,
            meta,
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

/// The model: every stored frame (including expired ones not swept yet) and known content.
#[derive(Default)]
struct Model {
    frames: BTreeMap<Id, Frame>,
    contents: Vec<(ssri::Integrity, Vec<u8>)>,
}

fn expired(f: &Frame) -> bool {
    // Only time:0 and time:FAR are used; created_ms + FAR is always in the future.
    f.ttl
        .and_then(|t| t.expires_at(f.created_ms()))
        .is_some_and(|at| at <= xs::frame::now_ms())
}

impl Model {
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
        }
        let mut nf = NewFrame::new(TOPICS[s.topic]);
        nf.meta = meta(s.meta);
        nf.ttl = s.ttl.ttl();
        nf.content = content;
        nf
    }

    fn check_appended(&mut self, nf: &NewFrame, got: Frame) {
        assert_eq!(got.topic, nf.topic);
        assert_eq!(got.hash.as_ref(), nf.content.hash());
        assert_eq!(got.meta, nf.meta);
        assert_eq!(got.ttl, Some(nf.ttl));
        if let Some((last, _)) = self.model.frames.last_key_value() {
            assert!(got.id > *last, "append id {} not after {last}", got.id);
        }
        self.model.apply_append(got);
    }

    pub fn apply(&mut self, op: &Op) {
        match op {
            Op::Append(s) => {
                let nf = self.new_frame(s);
                let got = self
                    .rt
                    .block_on(self.store().append(nf.clone()))
                    .expect("append");
                self.check_appended(&nf, got);
            }
            Op::AppendBatch(specs) => {
                let nfs: Vec<NewFrame> = specs.iter().map(|s| self.new_frame(s)).collect();
                // Queue all before awaiting any: the writer takes them as one batch.
                let futs: Vec<_> = nfs
                    .iter()
                    .map(|nf| self.store().append(nf.clone()))
                    .collect();
                let got: Vec<Frame> = self.rt.block_on(async {
                    let mut out = Vec::new();
                    for f in futs {
                        out.push(f.await.expect("append"));
                    }
                    out
                });
                for (nf, f) in nfs.iter().zip(got) {
                    self.check_appended(nf, f);
                }
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
            }
        }
        self.check_all();
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
                (Some(h.clone()), true)
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
        .unwrap_or(48)
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
