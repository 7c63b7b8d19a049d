//! The one read path: history in id order, then `xs.threshold` (unless `new`), then live
//! frames, with `xs.pulse` markers when asked. A follower that falls behind the live channel
//! catches up from history, so it never misses a stored frame. Every surface (HTTP NDJSON and
//! SSE, consumers, processors, webhooks, the gateway, `.cat`) reads through [`Reader`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, mpsc};

use crate::backend::{LiveFrame, Record};
use crate::error::Result;
use crate::frame::{Frame, Id};
use crate::read::{Follow, ReadOptions};
use crate::store::{Counters, Store};
use crate::topic::{TopicFilter, TopicPattern};
use crate::ttl::Ttl;

/// One event of a read.
#[derive(Debug, Clone)]
pub enum Event {
    /// A frame: stored (history or live) or ephemeral (live only).
    Frame(Record),
    /// History is done; live frames follow (`xs.threshold`, made for this reader).
    Threshold(Frame),
    /// A pulse while following (`xs.pulse`, made for this reader).
    Pulse(Frame),
}

impl Event {
    /// The event's id and wire JSON.
    pub fn json(&self) -> (Id, bytes::Bytes) {
        match self {
            Event::Frame(r) => (r.id, r.json.clone()),
            Event::Threshold(f) | Event::Pulse(f) => (f.id, f.to_json().into()),
        }
    }
}

/// An ephemeral frame made for one reader (`xs.threshold`, `xs.pulse`); never stored.
pub fn marker_frame(topic: &str) -> Frame {
    Frame {
        topic: topic.to_string(),
        id: scru128::new(),
        hash: None,
        meta: None,
        ttl: Some(Ttl::Ephemeral),
    }
}

/// A running read; dropping it ends the read.
pub struct Reader {
    rx: mpsc::Receiver<Result<Vec<Event>>>,
    buf: VecDeque<Event>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Reader {
    /// The next event; `None` once the read is complete (or the store closed).
    pub async fn next(&mut self) -> Option<Result<Event>> {
        if self.buf.is_empty() {
            match self.rx.recv().await? {
                Ok(events) => self.buf.extend(events),
                Err(e) => return Some(Err(e)),
            }
        }
        self.buf.pop_front().map(Ok)
    }

    /// Every event available now, waiting for at least one; `None` once the read is complete.
    pub async fn next_batch(&mut self) -> Option<Result<Vec<Event>>> {
        if !self.buf.is_empty() {
            return Some(Ok(self.buf.drain(..).collect()));
        }
        self.rx.recv().await
    }

    /// Events available now without waiting (at most `max`), for a caller that processes
    /// what has arrived as one burst.
    pub fn ready(&mut self, max: usize) -> Result<Vec<Event>> {
        while self.buf.len() < max {
            match self.rx.try_recv() {
                Ok(events) => self.buf.extend(events?),
                Err(_) => break,
            }
        }
        let n = self.buf.len().min(max);
        Ok(self.buf.drain(..n).collect())
    }
}

/// Starts the read: subscribes to live frames now (if it follows), then runs on a task.
pub(crate) fn start(store: Store, opts: ReadOptions, guard: Option<ReadGuard>) -> Reader {
    let live = opts
        .is_follow()
        .then(|| store.subscribe(runtime_only(&opts.topic)));
    let (tx, rx) = mpsc::channel(8);
    let task = tokio::spawn(async move {
        let mut read = Read {
            store,
            opts,
            tx,
            sent: 0,
            seen: None,
            floor: None,
            guard,
        };
        if let Err(e) = read.run(live).await {
            let _ = read.tx.send(Err(e)).await;
        }
    });
    Reader {
        rx,
        buf: VecDeque::new(),
        task,
    }
}

/// Whether every topic the filter matches is a runtime topic (`xs.*`), so that the read can
/// take the runtime channel and not be woken by every append.
fn runtime_only(filter: &TopicFilter) -> bool {
    match filter {
        TopicFilter::All => false,
        TopicFilter::Any(patterns) => patterns.iter().all(|p| match p {
            TopicPattern::Exact(t) | TopicPattern::Descendants(t) => t.starts_with("xs."),
        }),
    }
}

/// Counts a read as open (and, once it follows, its position) for `GET /metrics`.
pub(crate) struct ReadGuard {
    counters: Arc<Counters>,
    follower: Option<Arc<Mutex<Option<Id>>>>,
}

impl ReadGuard {
    pub(crate) fn new(counters: Arc<Counters>) -> ReadGuard {
        ReadGuard {
            counters,
            follower: None,
        }
    }

    /// Marks the read as following (live), positioned at `seen`.
    fn follow(&mut self, seen: Option<Id>) {
        self.follower = Some(self.counters.follower(seen));
    }

    /// The follower has considered every frame up to `id` (delivered or filtered out).
    fn seen(&self, id: Option<Id>) {
        if let (Some(slot), Some(id)) = (&self.follower, id) {
            let mut s = slot.lock().unwrap_or_else(|e| e.into_inner());
            if s.is_none_or(|p| p < id) {
                *s = Some(id);
            }
        }
    }
}

impl Drop for ReadGuard {
    fn drop(&mut self) {
        self.counters
            .reads_open
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Live frames taken from the channel in one go at most.
const LIVE_BURST: usize = 256;

struct Read {
    store: Store,
    opts: ReadOptions,
    tx: mpsc::Sender<Result<Vec<Event>>>,
    /// Frames sent (markers not counted), against `limit`.
    sent: usize,
    /// The newest frame id considered: live frames at or below it are already covered.
    seen: Option<Id>,
    /// For a `new` read, the newest stored id when it started: where a lag catches up from
    /// before any frame was seen.
    floor: Option<Id>,
    /// Counts the read for `GET /metrics` (not the daemon's own reads).
    guard: Option<ReadGuard>,
}

impl Read {
    fn limit(&self) -> usize {
        self.opts.limit.unwrap_or(usize::MAX)
    }

    async fn run(&mut self, live: Option<broadcast::Receiver<Arc<LiveFrame>>>) -> Result<()> {
        if self.opts.new {
            self.floor = self.store.last_id().await?;
        } else if !self.history(self.opts.clone()).await? {
            return Ok(());
        }
        let Some(mut live) = live else {
            return Ok(());
        };
        if let Some(g) = &mut self.guard {
            g.follow(self.seen);
        }
        if !self.opts.new {
            let t = Event::Threshold(marker_frame("xs.threshold"));
            if self.tx.send(Ok(vec![t])).await.is_err() {
                return Ok(());
            }
        }
        let mut pulse = match self.opts.follow {
            Follow::Pulse(ms) => {
                let period = Duration::from_millis(ms);
                let start = tokio::time::Instant::now() + period;
                let mut i = tokio::time::interval_at(start, period);
                i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                Some(i)
            }
            _ => None,
        };
        loop {
            let mut events = Vec::new();
            tokio::select! {
                r = live.recv() => match r {
                    Ok(f) => {
                        let mut next = Some(f);
                        let mut considered = None;
                        for _ in 0..LIVE_BURST {
                            let Some(f) = next.take() else { break };
                            considered = Some(f.frame.id);
                            if self.wants(&f) {
                                self.seen = Some(f.frame.id);
                                self.sent += 1;
                                events.push(Event::Frame(Record {
                                    id: f.frame.id,
                                    json: f.json.clone(),
                                }));
                                if self.sent >= self.limit() {
                                    let _ = self.tx.send(Ok(events)).await;
                                    return Ok(());
                                }
                            }
                            match live.try_recv() {
                                Ok(f) => next = Some(f),
                                // A lag is reported again by the next recv().
                                Err(TryRecvError::Lagged(_)) | Err(_) => break,
                            }
                        }
                        self.mark_seen(considered);
                    }
                    Err(RecvError::Lagged(_)) => {
                        // Too slow for the live channel: catch up from history, then go on.
                        live = self.store.subscribe(runtime_only(&self.opts.topic));
                        let mut o = self.opts.clone();
                        o.new = false;
                        o.last = None;
                        o.from = None;
                        o.after = self.seen.or(self.floor);
                        o.limit = Some(self.limit() - self.sent);
                        if !self.history(o).await? {
                            return Ok(());
                        }
                        self.mark_seen(self.seen);
                        continue;
                    }
                    Err(RecvError::Closed) => return Ok(()),
                },
                _ = tick(&mut pulse) => events.push(Event::Pulse(marker_frame("xs.pulse"))),
                _ = self.tx.closed() => return Ok(()),
            }
            if !events.is_empty() && self.tx.send(Ok(events)).await.is_err() {
                return Ok(());
            }
        }
    }

    fn mark_seen(&self, id: Option<Id>) {
        if let Some(g) = &self.guard {
            g.seen(id);
        }
    }

    /// Whether a live frame is new to this read and matches it.
    fn wants(&self, f: &LiveFrame) -> bool {
        self.seen.is_none_or(|s| f.frame.id > s) && self.opts.topic.matches(&f.frame.topic)
    }

    /// Sends the history `opts` selects; false when the read is over (limit reached, or the
    /// reader went away).
    async fn history(&mut self, opts: ReadOptions) -> Result<bool> {
        let (ptx, mut prx) = mpsc::channel(4);
        let scan = self.store.history(opts, ptx);
        let tx = self.tx.clone();
        let forward = async move {
            while let Some(page) = prx.recv().await {
                let events = page.into_iter().map(Event::Frame).collect();
                if tx.send(Ok(events)).await.is_err() {
                    return false;
                }
            }
            true
        };
        let (end, delivered) = tokio::join!(scan, forward);
        let end = end?;
        self.sent += end.count;
        if end.last_id.is_some() {
            self.seen = end.last_id;
        }
        Ok(delivered && !end.stopped && self.sent < self.limit())
    }
}

async fn tick(pulse: &mut Option<tokio::time::Interval>) {
    match pulse {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}
