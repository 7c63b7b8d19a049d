//! Runs one read as DESIGN.md §4 says: history in id order, then `xs.threshold` (unless
//! `new`), then live frames; a follower that falls behind the live channel catches up from
//! the store, so it never misses a stored frame. Output is encoded NDJSON or SSE chunks.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, mpsc};

type Receiver = broadcast::Receiver<Arc<LiveFrame>>;

use crate::error::{Error, Result};
use crate::frame::{write_json, Frame, Id};
use crate::read::{Follow, ReadOptions};
use crate::store::{LiveFrame, ReadGuard, ScanEnd, Store};
use crate::ttl::Ttl;

/// Chunks of history are sent once they reach this size.
const CHUNK: usize = 64 * 1024;

/// A piece of a read's output, and the id of the last stored or live frame in it (not a
/// marker), so a consumer can acknowledge what it was handed (`ack=auto`).
#[derive(Debug)]
pub struct Chunk {
    pub bytes: Bytes,
    pub last: Option<Id>,
}

impl From<Chunk> for Bytes {
    fn from(c: Chunk) -> Bytes {
        c.bytes
    }
}

fn chunk(buf: Vec<u8>, last: Option<Id>) -> Chunk {
    Chunk {
        bytes: buf.into(),
        last,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One frame JSON per line.
    Ndjson,
    /// Server-sent events: `id: <id>\ndata: <frame>\n\n`.
    Sse,
}

/// Appends one encoded frame to `out`.
pub fn encode(out: &mut Vec<u8>, format: Format, id: &Id, json: &[u8], with_timestamp: bool) {
    match format {
        Format::Ndjson => {
            write_json(out, json, id, with_timestamp);
            out.push(b'\n');
        }
        Format::Sse => {
            out.extend_from_slice(b"id: ");
            out.extend_from_slice(id.encode().as_bytes());
            out.extend_from_slice(b"\ndata: ");
            write_json(out, json, id, with_timestamp);
            out.extend_from_slice(b"\n\n");
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

/// Streams the read into `tx` until it is complete, `limit` is reached, or the receiver is
/// dropped (the client went away). The live subscription is taken before this returns, so
/// a frame appended after the call is never missed. `T` is `Bytes`, or [`Chunk`] to know
/// which frames each piece carries.
pub fn run<T: From<Chunk> + Send + 'static>(
    store: Store,
    opts: ReadOptions,
    format: Format,
    tx: mpsc::Sender<T>,
) -> impl Future<Output = Result<()>> + Send + 'static {
    let started = subscribe(&store, &opts);
    let guard = store.read_opened();
    async move {
        let (rx, seen) = started?;
        follow(store, opts, format, tx, rx, seen, guard).await
    }
}

/// Subscribes before history is scanned so no frame falls between the two; live frames at or
/// below the returned id are already covered (by the scan, or by `new`).
fn subscribe(store: &Store, opts: &ReadOptions) -> Result<(Option<Receiver>, Option<Id>)> {
    if !opts.is_follow() {
        return Ok((None, None));
    }
    if opts.new {
        let last = store.last_id()?;
        return Ok((Some(store.subscribe()), last));
    }
    Ok((Some(store.subscribe()), None))
}

async fn follow<T: From<Chunk> + Send + 'static>(
    store: Store,
    opts: ReadOptions,
    format: Format,
    tx: mpsc::Sender<T>,
    mut rx: Option<Receiver>,
    mut seen: Option<Id>,
    mut guard: ReadGuard,
) -> Result<()> {
    let mut sent = 0usize;
    if !opts.new {
        let (end, gone) = send_history(&store, opts.clone(), format, &tx).await?;
        if gone || end.stopped {
            return Ok(());
        }
        sent = end.count;
        seen = end.last_id;
    }
    let Some(rx) = rx.as_mut() else {
        return Ok(());
    };
    let limit = opts.limit.unwrap_or(usize::MAX);
    let wt = opts.with_timestamp;
    guard.follow(seen);

    if !opts.new {
        let mut buf = Vec::new();
        let t = marker_frame("xs.threshold");
        encode(&mut buf, format, &t.id, &t.to_json(), wt);
        if tx.send(chunk(buf, None).into()).await.is_err() {
            return Ok(());
        }
    }

    let mut pulse = match opts.follow {
        Follow::Pulse(ms) => {
            let period = Duration::from_millis(ms);
            let mut i = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            Some(i)
        }
        _ => None,
    };

    loop {
        let mut buf = Vec::new();
        let mut last = None;
        let mut considered = None;
        tokio::select! {
            r = rx.recv() => match r {
                Ok(f) => {
                    let mut next = Some(f);
                    // Take whatever else is already waiting, and send it as one chunk.
                    for _ in 0..256 {
                        let Some(f) = next.take() else { break };
                        considered = Some(f.frame.id);
                        if live_frame(&mut buf, &f, &opts, format, &mut seen) {
                            sent += 1;
                            last = seen;
                            if sent >= limit {
                                let _ = tx.send(chunk(buf, last).into()).await;
                                return Ok(());
                            }
                        }
                        match rx.try_recv() {
                            Ok(f) => next = Some(f),
                            Err(TryRecvError::Lagged(_)) => {
                                // Handled by the next recv(), which reports the lag too.
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    // Too slow for the live channel: catch up from the store, then go on live.
                    *rx = store.subscribe();
                    let mut o = opts.clone();
                    o.new = false;
                    o.last = None;
                    o.from = None;
                    o.after = seen;
                    o.limit = Some(limit - sent);
                    let (end, gone) = send_history(&store, o, format, &tx).await?;
                    if gone {
                        return Ok(());
                    }
                    sent += end.count;
                    if end.last_id.is_some() {
                        seen = end.last_id;
                    }
                    guard.seen(seen);
                    if sent >= limit {
                        return Ok(());
                    }
                    continue;
                }
                Err(RecvError::Closed) => return Ok(()),
            },
            _ = tick(&mut pulse) => {
                let p = marker_frame("xs.pulse");
                encode(&mut buf, format, &p.id, &p.to_json(), wt);
            }
            _ = tx.closed() => return Ok(()),
        }
        guard.seen(considered);
        if !buf.is_empty() && tx.send(chunk(buf, last).into()).await.is_err() {
            return Ok(());
        }
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

/// Encodes a live frame if the read wants it; returns whether it did.
fn live_frame(
    buf: &mut Vec<u8>,
    f: &Arc<LiveFrame>,
    opts: &ReadOptions,
    format: Format,
    seen: &mut Option<Id>,
) -> bool {
    let id = f.frame.id;
    if seen.is_some_and(|s| id <= s) {
        return false;
    }
    if !opts.topic.matches(&f.frame.topic) {
        return false;
    }
    *seen = Some(id);
    encode(buf, format, &id, &f.json, opts.with_timestamp);
    true
}

/// Scans history on a blocking thread, sending it in chunks. Returns how the scan ended and
/// whether the receiver went away.
async fn send_history<T: From<Chunk> + Send + 'static>(
    store: &Store,
    opts: ReadOptions,
    format: Format,
    tx: &mpsc::Sender<T>,
) -> Result<(ScanEnd, bool)> {
    let store = store.clone();
    let tx = tx.clone();
    tokio::task::spawn_blocking(move || {
        let mut buf = Vec::with_capacity(CHUNK + 1024);
        let mut gone = false;
        let wt = opts.with_timestamp;
        let mut last = None;
        let end = store.scan(&opts, |f| {
            encode(&mut buf, format, &f.id, f.json, wt);
            last = Some(f.id);
            if buf.len() >= CHUNK {
                let full = std::mem::replace(&mut buf, Vec::with_capacity(CHUNK + 1024));
                if tx.blocking_send(chunk(full, last.take()).into()).is_err() {
                    gone = true;
                    return false;
                }
            }
            true
        })?;
        if !gone && !buf.is_empty() && tx.blocking_send(chunk(buf, last).into()).is_err() {
            gone = true;
        }
        Ok((end, gone))
    })
    .await
    .map_err(|e| Error::Internal(format!("history scan task failed: {e}")))?
}
