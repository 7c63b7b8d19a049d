//! Processors and their lifecycle (docs/DESIGN.md §6): users append `xs.<kind>.<name>.create` /
//! `.term`; the runtime answers `active`, `invalid`, `fin.ok`, `fin.error`, `fin.term`,
//! `replaced` and `stopped`, pointing at the create with the kind's meta key
//! (`xs::lifecycle`: `create_id` for ours, `actor_id` / `source_id` for cross.stream's).
//! A dispatcher per kind word rebuilds its processors at start from the `xs.<word>.` frames
//! only, then follows them live; the engines (webhook, handler, generator, action) say how a
//! create frame is read and how one instance runs. `xs.actor.*` runs on the handler engine,
//! `xs.service.*` on the generator engine; `unknown` answers creates of any other kind.
//! On a shared stream every daemon's dispatcher follows every processor, but an instance runs
//! only where [`Placement`] puts it (the lease holder); answers any daemon may give (`invalid`,
//! `replaced`, `fin.term`, ...) carry an idempotency key, so the stream holds one of each.

#[cfg(feature = "nu")]
#[allow(clippy::result_large_err)]
pub mod action;
#[cfg(feature = "nu")]
#[allow(clippy::result_large_err)]
pub mod generator;
#[cfg(feature = "nu")]
#[allow(clippy::result_large_err)]
pub mod handler;
#[cfg(feature = "nu")]
#[allow(clippy::result_large_err)]
mod nu_config;
pub mod unknown;

#[cfg(feature = "nu")]
pub use nu_config::Env;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use xs::lifecycle::Vocab;
use xs::reader::Event as ReadEvent;
use xs::{Follow, Frame, Id, NewFrame, ReadOptions, Store, TopicFilter};

use crate::placement::Placement;
use crate::ps::{self, Table};

/// An engine running a kind of processor.
pub trait Kind: Send + Sync + 'static {
    type Config: Send + Sync + 'static;

    /// Reads a create frame's configuration (called on a blocking thread); the error says
    /// what is wrong and is answered as `invalid`.
    fn parse(
        &self,
        store: &Store,
        frame: &Frame,
        vocab: &'static Vocab,
    ) -> Result<Self::Config, String>;

    /// Whether an instance says when it is up ([`Instance::ready`]) before `active` is
    /// appended (a store is up once its socket is bound); otherwise `active` comes at launch.
    const SIGNALS_READY: bool = false;

    /// Runs one instance until it ends by itself or `inst.stop` turns true.
    fn run(&self, inst: Instance<Self::Config>) -> Pin<Box<dyn Future<Output = Outcome> + Send>>;

    /// A detail shown by `xs ps` (a webhook's url).
    fn detail(_config: &Self::Config) -> Option<String> {
        None
    }

    /// Makes a config that was stopped runnable again (its processor moved away from this
    /// daemon and came back).
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    fn rearm(_config: &Self::Config) {}
}

/// One live processor, as its kind runs it.
pub struct Instance<C> {
    pub name: String,
    pub create_id: Id,
    /// The words it was created with (`xs.handler.*` or `xs.actor.*`, ...).
    #[cfg_attr(not(feature = "nu"), allow(dead_code))]
    pub vocab: &'static Vocab,
    pub config: Arc<C>,
    pub store: Store,
    /// Turns true when the instance must stop (term, replaced, daemon stopping).
    pub stop: watch::Receiver<bool>,
    pub status: Status,
    /// Tells the dispatcher the instance is up, for kinds with `SIGNALS_READY`.
    pub ready: Ready,
    /// On a shared stream, this daemon's holding of the processor's lease.
    #[cfg_attr(not(feature = "nu"), allow(dead_code))]
    pub owner: Option<Owner>,
}

/// This daemon's holding of a processor's lease on a shared stream.
#[derive(Clone)]
pub struct Owner {
    /// The fencing token (unique to this daemon and this taking of the lease): a handler
    /// writes it in its checkpoint and commits only while the checkpoint is still its own.
    pub token: String,
    /// Whether the lease is still held, on this daemon's clock (false at once after a pause
    /// past the lease, before the renewal task has run): a generator appends only while it is.
    pub held: Arc<dyn Fn() -> bool + Send + Sync>,
}

impl<C> Instance<C> {
    /// This owner's fencing token, on a shared stream.
    #[cfg_attr(not(feature = "nu"), allow(dead_code))]
    pub fn fence(&self) -> Option<&str> {
        self.owner.as_ref().map(|o| o.token.as_str())
    }

    /// Whether this daemon may still act for the processor (always, off a shared stream).
    #[cfg_attr(not(feature = "nu"), allow(dead_code))]
    pub fn held(&self) -> bool {
        self.owner.as_ref().is_none_or(|o| (o.held)())
    }
}

/// Sends "up" to the dispatcher, which then appends `active` (in order with `fin.*`).
pub struct Ready {
    tx: mpsc::UnboundedSender<Ended>,
    name: String,
    create_id: Id,
}

impl Ready {
    pub fn send(self) {
        let _ = self.tx.send((self.name, self.create_id, None));
    }
}

/// How an instance ended.
#[derive(Debug)]
#[cfg_attr(not(feature = "nu"), allow(dead_code))]
pub enum Outcome {
    /// Told to stop.
    Stopped,
    /// Finished by itself (`fin.ok`).
    Done,
    /// Failed for good (`fin.error`).
    Failed(String),
    /// Failed for good on this frame (`fin.error` with `frame_id`, so whoever waits for an
    /// answer to that frame, like the HTTP gateway, learns that none will come).
    FailedOn(String, Id),
}

/// An instance's row in `xs ps`.
#[derive(Clone)]
pub struct Status {
    table: Table,
    kind: &'static str,
    name: String,
    create_id: Id,
}

impl Status {
    /// Changes the row, if it still describes this instance.
    pub fn update(&self, f: impl FnOnce(&mut ps::Status)) {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = t.get_mut(&(self.kind, self.name.clone())) {
            if s.create_id == self.create_id {
                f(s);
            }
        }
    }

    /// Sets the state (and `since` when it changes).
    pub fn state(&self, state: &'static str, error: Option<String>) {
        self.update(|s| {
            if s.state != state {
                s.since = ps::now();
                s.state = state;
            }
            if error.is_some() {
                s.failures += 1;
                s.last_error = error;
            }
        });
    }

    pub fn position(&self, id: Id) {
        self.update(|s| s.position = Some(id));
    }
}

/// A running dispatcher; [`Dispatcher::stop`] ends it.
pub struct Dispatcher {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Rebuilds the processors of `vocab`'s word, run by engine `K`, from their lifecycle
/// frames and runs them where `placement` says.
pub fn start<K: Kind>(
    kind: K,
    vocab: &'static Vocab,
    store: Store,
    table: Table,
    placement: Placement,
) -> Dispatcher {
    let (stop, stop_rx) = watch::channel(false);
    table
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|(k, _), _| *k != vocab.word);
    let (ended_tx, ended_rx) = mpsc::unbounded_channel();
    let d = State {
        kind: Arc::new(kind),
        vocab,
        store,
        table,
        names: BTreeMap::new(),
        answered: HashSet::new(),
        invalid: HashMap::new(),
        pending: Vec::new(),
        replaying: true,
        ended_tx,
        placement,
    };
    Dispatcher {
        stop,
        task: tokio::spawn(d.run(stop_rx, ended_rx)),
    }
}

impl Dispatcher {
    /// Stops every instance and appends `.stopped` for each; they resume on the next start.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// A live processor: its create frame, config and task.
struct Live<C> {
    create_id: Id,
    config: Arc<C>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    /// Whether its instance runs in this daemon now (on a shared stream it may run elsewhere).
    here: Arc<AtomicBool>,
}

/// How long a stopping instance gets to end before it is left behind (a script blocked
/// where no interrupt reaches it); it can no longer write anything that matters.
const HALT_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

impl<C> Live<C> {
    /// Stops the task and waits for it (up to [`HALT_GRACE`]).
    async fn halt(self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task {
            if tokio::time::timeout(HALT_GRACE, t).await.is_err() {
                tracing::warn!("a processor did not stop within {HALT_GRACE:?}; leaving it behind");
            }
        }
    }
}

/// A lifecycle frame, with a create's config read (or why it is invalid).
struct Lifecycle<C> {
    frame: Frame,
    config: Option<Result<C, String>>,
}

/// An instance is up (`None`) or ended with an outcome.
type Ended = (String, Id, Option<Outcome>);

struct State<K: Kind> {
    kind: Arc<K>,
    vocab: &'static Vocab,
    store: Store,
    table: Table,
    /// The live instance of each name.
    names: BTreeMap<String, Live<K::Config>>,
    /// `(create id, event)` answers already in the stream.
    answered: HashSet<(Id, String)>,
    /// While replaying: the creates the stream already answers `invalid`, with the error.
    /// They are not parsed again (a reason that held then, like a path another daemon had,
    /// may be gone now): `invalid` is final, a restart never runs them.
    invalid: HashMap<Id, String>,
    /// Answers owed while replaying, appended once replay is done (unless already there).
    pending: Vec<(String, &'static str, Id, serde_json::Value)>,
    replaying: bool,
    ended_tx: mpsc::UnboundedSender<Ended>,
    placement: Placement,
}

impl<K: Kind> State<K> {
    fn prefix(&self) -> String {
        format!("xs.{}.", self.vocab.word)
    }

    async fn run(
        mut self,
        mut stop: watch::Receiver<bool>,
        mut ended: mpsc::UnboundedReceiver<Ended>,
    ) {
        let prefix = self.prefix();
        let topic = match TopicFilter::parse(&format!("{prefix}*")) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(kind = self.vocab.word, error = %e, "reading lifecycle frames");
                return self.shutdown().await;
            }
        };
        self.invalid = self.answered_invalid(&topic).await;
        let mut reader = self.store.read_quiet(ReadOptions {
            follow: Follow::On,
            topic,
            ..ReadOptions::default()
        });
        loop {
            tokio::select! {
                _ = crate::daemon::stopped(&mut stop) => break,
                Some((name, create_id, outcome)) = ended.recv() => match outcome {
                    Some(outcome) => self.ended(name, create_id, outcome).await,
                    None => {
                        if self.names.get(&name).is_some_and(|l| l.create_id == create_id) {
                            Status {
                                table: self.table.clone(),
                                kind: self.vocab.word,
                                name: name.clone(),
                                create_id,
                            }
                            .state("active", None);
                            let extra = match self.placement.shared() {
                                true => serde_json::json!({ "daemon": &*self.placement.name }),
                                false => serde_json::json!({}),
                            };
                            self.append(&name, "active", create_id, extra).await;
                        }
                    }
                },
                e = reader.next_batch() => match e {
                    Some(Ok(events)) => {
                        for e in events {
                            match e {
                                ReadEvent::Frame(r) => match r.frame() {
                                    // Ephemeral frames are not part of the lifecycle.
                                    Ok(f) if f.ttl == Some(xs::Ttl::Ephemeral) => {}
                                    Ok(frame) => {
                                        let ev = self.lifecycle(frame).await;
                                        self.apply(ev).await;
                                    }
                                    Err(e) => tracing::error!(error = %e, "skipping a bad lifecycle frame"),
                                },
                                ReadEvent::Threshold(_) if self.replaying => self.finish_replay().await,
                                _ => {}
                            }
                        }
                    }
                    Some(Err(e)) => {
                        tracing::error!(kind = self.vocab.word, error = %e, "reading lifecycle frames");
                        break;
                    }
                    None => break,
                },
            }
        }
        self.shutdown().await;
    }

    async fn apply(&mut self, ev: Lifecycle<K::Config>) {
        let Some((name, event)) = parse_topic(&self.prefix(), &ev.frame.topic) else {
            return;
        };
        let name = name.to_string();
        let id = ev.frame.id;
        match event {
            "create" => match ev.config.unwrap_or_else(|| Err("no config".into())) {
                Ok(config) => {
                    if let Some(old) = self.names.remove(&name) {
                        let old_id = old.create_id;
                        old.halt().await;
                        let extra = serde_json::json!({ self.vocab.replaced_by: id });
                        self.answer(&name, "replaced", old_id, extra).await;
                    }
                    let (stop, _) = watch::channel(false);
                    let r = Live {
                        create_id: id,
                        config: Arc::new(config),
                        stop,
                        task: None,
                        here: Arc::default(),
                    };
                    self.names.insert(name.clone(), r);
                    if !self.replaying {
                        self.launch(&name).await;
                    }
                }
                Err(error) => {
                    tracing::warn!(kind = self.vocab.word, name = %name, %error, "invalid processor");
                    let extra = serde_json::json!({ self.vocab.invalid_error: error });
                    self.answer(&name, "invalid", id, extra).await;
                    if !self.names.contains_key(&name) {
                        self.set_row(&name, id, "invalid", None, Some(error));
                    }
                }
            },
            "term" => {
                if let Some(old) = self.names.remove(&name) {
                    let (old_id, detail) = (old.create_id, K::detail(&old.config));
                    old.halt().await;
                    let extra = serde_json::json!({ self.vocab.term: id });
                    self.answer(&name, "fin.term", old_id, extra).await;
                    self.set_row(&name, old_id, "terminated", detail, None);
                }
            }
            other => {
                let Some(c) = self.create_of(&ev.frame) else {
                    return;
                };
                self.answered.insert((c, other.to_string()));
                // A processor that finished (or failed) stays finished across restarts, and
                // listed so.
                let state = match other {
                    "fin.ok" => "finished",
                    "fin.error" => "failed",
                    _ => return,
                };
                if self.names.get(&name).is_some_and(|l| l.create_id == c) {
                    if let Some(old) = self.names.remove(&name) {
                        let detail = K::detail(&old.config);
                        old.halt().await;
                        // Replayed, or another daemon ran it to its end.
                        let error = ev.frame.meta.as_ref().and_then(|m| {
                            m.get(self.vocab.fin_error)
                                .and_then(|v| v.as_str())
                                .map(str::to_string)
                        });
                        self.set_row(&name, c, state, detail, error);
                    }
                }
            }
        }
    }

    /// The create a lifecycle answer points at.
    fn create_of(&self, frame: &Frame) -> Option<Id> {
        let meta = frame.meta.as_ref()?.get(self.vocab.create_key())?;
        xs::frame::parse_id(meta.as_str()?).ok()
    }

    /// The creates answered `invalid` in the stream so far (before replay: the answer comes
    /// after its create), with their errors.
    async fn answered_invalid(&self, topic: &TopicFilter) -> HashMap<Id, String> {
        let mut out = HashMap::new();
        let mut reader = self.store.read_quiet(ReadOptions {
            topic: topic.clone(),
            ..ReadOptions::default()
        });
        while let Some(batch) = reader.next_batch().await {
            let events = match batch {
                Ok(events) => events,
                Err(e) => {
                    tracing::error!(kind = self.vocab.word, error = %e, "reading lifecycle frames");
                    break;
                }
            };
            for e in events {
                let ReadEvent::Frame(r) = e else { continue };
                let Ok(f) = r.frame() else { continue };
                if f.ttl == Some(xs::Ttl::Ephemeral)
                    || !matches!(parse_topic(&self.prefix(), &f.topic), Some((_, "invalid")))
                {
                    continue;
                }
                if let Some(c) = self.create_of(&f) {
                    let error = f
                        .meta
                        .as_ref()
                        .and_then(|m| m.get(self.vocab.invalid_error));
                    let error = error.and_then(|v| v.as_str()).unwrap_or("invalid");
                    out.insert(c, error.to_string());
                }
            }
        }
        out
    }

    /// After replay: appends the answers the stream still lacks (e.g. for frames appended
    /// while the daemon was down), then starts every live processor.
    async fn finish_replay(&mut self) {
        self.replaying = false;
        self.invalid = HashMap::new();
        for (name, event, create_id, extra) in std::mem::take(&mut self.pending) {
            if !self.answered.contains(&(create_id, event.to_string())) {
                self.append(&name, event, create_id, extra).await;
            }
        }
        let names: Vec<String> = self.names.keys().cloned().collect();
        for name in names {
            self.launch(&name).await;
        }
    }

    /// Starts `name`'s task and appends `.active` (on a shared stream: once this daemon
    /// holds its lease, see [`placed`]).
    async fn launch(&mut self, name: &str) {
        let Some(r) = self.names.get_mut(name) else {
            return;
        };
        let (create_id, config) = (r.create_id, r.config.clone());
        let shared = self.placement.shared();
        {
            let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
            t.insert(
                (self.vocab.word, name.to_string()),
                ps::Status {
                    kind: self.vocab.word,
                    name: name.to_string(),
                    state: if shared {
                        "waiting"
                    } else if K::SIGNALS_READY {
                        "starting"
                    } else {
                        "active"
                    },
                    daemon: (!shared).then(|| self.placement.name.to_string()),
                    since: ps::now(),
                    create_id,
                    position: None,
                    last_error: None,
                    failures: 0,
                    url: K::detail(&config),
                },
            );
        }
        let starter = Starter {
            kind: self.kind.clone(),
            vocab: self.vocab,
            name: name.to_string(),
            create_id,
            config,
            store: self.store.clone(),
            table: self.table.clone(),
            ended: self.ended_tx.clone(),
        };
        let (stop, stop_rx) = watch::channel(false);
        r.stop = stop;
        #[cfg(feature = "nats")]
        if let Some(m) = self.placement.members() {
            let key = format!("{}.{name}", self.vocab.word);
            r.task = Some(tokio::spawn(placed(
                m.clone(),
                key,
                starter,
                stop_rx,
                r.here.clone(),
            )));
            return;
        }
        r.here.store(true, Ordering::Relaxed);
        let fut = starter.run(stop_rx, None);
        let ended = self.ended_tx.clone();
        let n = name.to_string();
        r.task = Some(tokio::spawn(async move {
            let outcome = fut.await;
            let _ = ended.send((n, create_id, Some(outcome)));
        }));
        if !K::SIGNALS_READY {
            self.append(name, "active", create_id, serde_json::json!({}))
                .await;
        }
    }

    /// An instance ended: by itself (`fin.ok` / `fin.error`) or because it was stopped.
    async fn ended(&mut self, name: String, create_id: Id, outcome: Outcome) {
        if self
            .names
            .get(&name)
            .is_none_or(|l| l.create_id != create_id)
        {
            return;
        }
        let never_active = !self.answered.contains(&(create_id, "active".to_string()));
        let (event, state, extra, error) = match outcome {
            Outcome::Stopped => return,
            Outcome::Done => ("fin.ok", "finished", serde_json::json!({}), None),
            // A kind that says when it is up (a store) and failed before it ever was: its
            // create is `invalid` (a path that cannot be created, a cluster that cannot be
            // reached), final like any `invalid`; the user sends the create again.
            Outcome::Failed(e) if K::SIGNALS_READY && never_active => (
                "invalid",
                "invalid",
                serde_json::json!({ self.vocab.invalid_error: e }),
                Some(e),
            ),
            Outcome::Failed(e) => (
                "fin.error",
                "failed",
                serde_json::json!({ self.vocab.fin_error: e }),
                Some(e),
            ),
            Outcome::FailedOn(e, frame_id) => (
                "fin.error",
                "failed",
                serde_json::json!({ self.vocab.fin_error: e, "frame_id": frame_id }),
                Some(e),
            ),
        };
        if let Some(l) = self.names.remove(&name) {
            let detail = K::detail(&l.config);
            l.halt().await;
            self.set_row(&name, create_id, state, detail, error);
        }
        self.append(&name, event, create_id, extra).await;
    }

    /// Halts every instance at once (many mounted stores close in parallel), then appends
    /// `stopped` for each.
    async fn shutdown(&mut self) {
        let all = std::mem::take(&mut self.names);
        // Only what runs here (on a shared stream the others run elsewhere, or nowhere yet).
        let ids: Vec<(String, Id)> = all
            .iter()
            .filter(|(_, r)| !self.placement.shared() || r.here.load(Ordering::Relaxed))
            .map(|(n, r)| (n.clone(), r.create_id))
            .collect();
        futures::future::join_all(all.into_values().map(Live::halt)).await;
        // Queued at once, in order, committed together.
        let appends: Vec<_> = ids
            .into_iter()
            .map(|(name, create_id)| {
                self.answered.insert((create_id, "stopped".to_string()));
                let frame = NewFrame {
                    meta: Some(serde_json::json!({ "create_id": create_id })),
                    ..NewFrame::new(format!("{}{name}.stopped", self.prefix()))
                };
                self.store.append(frame)
            })
            .collect();
        for r in futures::future::join_all(appends).await {
            if let Err(e) = r {
                tracing::warn!(kind = self.vocab.word, error = %e, "could not append a stopped frame");
            }
        }
    }

    /// Answers `event` for `create_id` now, or after replay if we are replaying.
    async fn answer(
        &mut self,
        name: &str,
        event: &'static str,
        create_id: Id,
        extra: serde_json::Value,
    ) {
        if self.replaying {
            self.pending
                .push((name.to_string(), event, create_id, extra));
        } else {
            self.append(name, event, create_id, extra).await;
        }
    }

    async fn append(&mut self, name: &str, event: &str, create_id: Id, extra: serde_json::Value) {
        let mut meta = serde_json::json!({});
        for key in self.vocab.create_keys {
            meta[*key] = serde_json::json!(create_id);
        }
        if let serde_json::Value::Object(m) = extra {
            for (k, v) in m {
                meta[k] = v;
            }
        }
        let frame = NewFrame {
            meta: Some(meta),
            // One answer per create and event, whichever daemons of a shared stream give it
            // (`active` and `stopped` may come again: each start, each stop).
            key: (!matches!(event, "active" | "stopped")).then(|| create_id.to_string()),
            ..NewFrame::new(format!("{}{name}.{event}", self.prefix()))
        };
        self.answered.insert((create_id, event.to_string()));
        if let Err(e) = self.store.append(frame).await {
            tracing::warn!(kind = self.vocab.word, name = %name, event, error = %e, "could not append a lifecycle frame");
        }
    }

    fn set_row(
        &self,
        name: &str,
        create_id: Id,
        state: &'static str,
        detail: Option<String>,
        error: Option<String>,
    ) {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let key = (self.vocab.word, name.to_string());
        let old = t.get(&key);
        let position = old.and_then(|s| s.position);
        let daemon = old.and_then(|s| s.daemon.clone());
        let last_error = error.or_else(|| old.and_then(|s| s.last_error.clone()));
        let url = detail.or_else(|| old.and_then(|s| s.url.clone()));
        t.insert(
            key,
            ps::Status {
                kind: self.vocab.word,
                name: name.to_string(),
                state,
                daemon,
                since: ps::now(),
                create_id,
                position,
                last_error,
                failures: 0,
                url,
            },
        );
    }

    /// A lifecycle frame, with a create's config read (on a blocking thread: it may
    /// evaluate a script).
    async fn lifecycle(&self, frame: Frame) -> Lifecycle<K::Config> {
        if !matches!(
            parse_topic(&self.prefix(), &frame.topic),
            Some((_, "create"))
        ) {
            return Lifecycle {
                frame,
                config: None,
            };
        }
        if let Some(error) = self.invalid.get(&frame.id) {
            return Lifecycle {
                frame,
                config: Some(Err(error.clone())),
            };
        }
        let (kind, store, f) = (self.kind.clone(), self.store.clone(), frame.clone());
        let vocab = self.vocab;
        let config = tokio::task::spawn_blocking(move || kind.parse(&store, &f, vocab))
            .await
            .unwrap_or_else(|e| Err(format!("reading the config failed: {e}")));
        Lifecycle {
            frame,
            config: Some(config),
        }
    }
}

/// What it takes to run one processor's instance (again, after it moved and came back).
struct Starter<K: Kind> {
    kind: Arc<K>,
    vocab: &'static Vocab,
    name: String,
    create_id: Id,
    config: Arc<K::Config>,
    store: Store,
    table: Table,
    ended: mpsc::UnboundedSender<Ended>,
}

impl<K: Kind> Starter<K> {
    fn status(&self) -> Status {
        Status {
            table: self.table.clone(),
            kind: self.vocab.word,
            name: self.name.clone(),
            create_id: self.create_id,
        }
    }

    fn run(
        &self,
        stop: watch::Receiver<bool>,
        owner: Option<Owner>,
    ) -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
        self.kind.run(Instance {
            name: self.name.clone(),
            create_id: self.create_id,
            vocab: self.vocab,
            config: self.config.clone(),
            store: self.store.clone(),
            stop,
            status: self.status(),
            ready: Ready {
                tx: self.ended.clone(),
                name: self.name.clone(),
                create_id: self.create_id,
            },
            owner,
        })
    }

    /// Tells the dispatcher the instance is up (it appends `active`) or how it ended.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    fn tell(&self, outcome: Option<Outcome>) {
        let _ = self
            .ended
            .send((self.name.clone(), self.create_id, outcome));
    }
}

/// Runs a processor of a shared stream: waits until this daemon holds its lease, runs it
/// until the lease is lost or must move (then waits again), or until it ends by itself or
/// the dispatcher stops it. The lease is released once the instance has stopped.
#[cfg(feature = "nats")]
async fn placed<K: Kind>(
    members: Arc<crate::placement::cluster::Members>,
    key: String,
    s: Starter<K>,
    mut stop: watch::Receiver<bool>,
    here: Arc<AtomicBool>,
) {
    let status = s.status();
    loop {
        let waiting = |holder: Option<String>| {
            status.update(|row| {
                let state = if holder.is_some() {
                    "active"
                } else {
                    "waiting"
                };
                if row.state != state {
                    row.since = ps::now();
                    row.state = state;
                }
                row.daemon = holder;
            })
        };
        let Some(mut lease) = members.acquire(&key, &mut stop, waiting).await else {
            return;
        };
        tracing::info!(processor = %key, token = %lease.token(), "running here");
        K::rearm(&s.config);
        here.store(true, Ordering::Relaxed);
        status.update(|row| {
            row.daemon = Some(members.name.clone());
            row.position = None;
        });
        if !K::SIGNALS_READY {
            s.tell(None);
        }
        let (halt, halted) = watch::channel(false);
        let mut fut = s.run(halted, Some(lease.owner()));
        let (ended, lost) = tokio::select! {
            o = &mut fut => (Some(o), None),
            _ = crate::daemon::stopped(&mut stop) => (None, None),
            l = lease.lost() => (None, Some(l)),
        };
        // Halted unless it ended by itself (a finished future is never polled again).
        let outcome = match ended {
            Some(o) => o,
            None => {
                let _ = halt.send(true);
                match tokio::time::timeout(HALT_GRACE, fut).await {
                    Ok(o) => o,
                    Err(_) => {
                        tracing::warn!(processor = %key, "did not stop within {HALT_GRACE:?}");
                        Outcome::Stopped
                    }
                }
            }
        };
        lease.release().await;
        if *stop.borrow() {
            return;
        }
        here.store(false, Ordering::Relaxed);
        match outcome {
            // Lost, moved, or fenced out by a newer owner: wait for it again.
            Outcome::Stopped => {
                tracing::info!(processor = %key, ?lost, "stopped here");
                status.update(|row| row.daemon = None);
            }
            other => return s.tell(Some(other)),
        }
    }
}

/// `<prefix><name>.<event>` → `(name, event)`; `None` for other topics or events.
pub fn parse_topic<'a>(prefix: &str, topic: &'a str) -> Option<(&'a str, &'a str)> {
    let rest = topic.strip_prefix(prefix)?;
    for event in [
        "fin.term",
        "fin.ok",
        "fin.error",
        "create",
        "term",
        "active",
        "invalid",
        "replaced",
        "stopped",
    ] {
        if let Some(name) = rest.strip_suffix(event).and_then(|n| n.strip_suffix('.')) {
            if !name.is_empty() {
                let event = &rest[rest.len() - event.len()..];
                return Some((name, event));
            }
        }
    }
    None
}

/// A create frame's content (its script or JSON), or its meta as JSON when it has none.
/// Called on a blocking thread of the runtime.
pub fn create_source(store: &Store, frame: &Frame) -> Result<Vec<u8>, String> {
    if let Some(hash) = &frame.hash {
        let read = tokio::runtime::Handle::current().block_on(store.cas_read(hash));
        return match read {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Err(format!("the create frame's content {hash} is missing")),
            Err(e) => Err(format!("reading the create frame's content: {e}")),
        };
    }
    match &frame.meta {
        Some(meta) => Ok(meta.to_string().into_bytes()),
        None => Err("the create frame has no content".into()),
    }
}
