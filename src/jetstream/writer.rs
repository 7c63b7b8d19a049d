//! The writer: takes the queued writes, plans them against the copy at the sequence it has
//! applied, publishes them as one atomic batch expecting the stream to end at that sequence,
//! and on a conflict (10071) catches the copy up and plans again. See docs/jetstream.md.

use std::collections::{HashMap, HashSet};
use std::sync::Weak;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::codec::{self, Outgoing};
use super::Inner;
use crate::backend::{Backend, Batch, Content};
use crate::error::{Error, Result};
use crate::frame::{Frame, Id};
use crate::ttl::Ttl;

/// The most messages in one atomic batch (the server's limit is 1000).
const MAX_MSGS: usize = 1000;

/// Imported ids must leave this many larger ids for appends (as in the local store).
const IMPORT_ID_HEADROOM: u128 = 1 << 64;

/// A write waiting for the writer.
pub(crate) enum Request {
    Batch(Batch, oneshot::Sender<Result<Vec<Frame>>>),
    Import(Frame, oneshot::Sender<Result<Frame>>),
    /// A removal (`true`: a purge).
    Remove(Id, bool, oneshot::Sender<Result<()>>),
    RemoveCheckpoint(String, oneshot::Sender<Result<()>>),
}

impl Request {
    /// Messages it may publish.
    fn size(&self) -> usize {
        match self {
            Request::Batch(b, _) => b.frames.len() + usize::from(b.checkpoint.is_some()),
            _ => 1,
        }
    }

    fn answer(self, r: Result<Answer>) {
        match self {
            Request::Batch(_, tx) => {
                let _ = tx.send(r.and_then(|a| match a {
                    Answer::Frames(f) => Ok(f),
                    _ => Err(Error::Internal("a batch answered without frames".into())),
                }));
            }
            Request::Import(_, tx) => {
                let _ = tx.send(r.and_then(|a| match a {
                    Answer::Frame(f) => Ok(f),
                    _ => Err(Error::Internal("an import answered without a frame".into())),
                }));
            }
            Request::Remove(_, _, tx) | Request::RemoveCheckpoint(_, tx) => {
                let _ = tx.send(r.map(|_| ()));
            }
        }
    }
}

enum Answer {
    Frames(Vec<Frame>),
    Frame(Frame),
    Unit,
}

/// Writes planned against the copy at one sequence.
#[derive(Default)]
struct Plan {
    answers: Vec<Option<Result<Answer>>>,
    msgs: Vec<Outgoing>,
    /// Ephemeral frames, published once the batch is committed, and their content (kept,
    /// as the local store keeps it).
    ephemerals: Vec<(Frame, Content)>,
    /// Ids of the frames the batch stores (to tell whether a batch whose commit was not
    /// answered landed after all).
    stored: Vec<Id>,
    /// `last:n` appends stored, in order: (topic, n). Once committed, each topic's subject is
    /// purged down to its newest n messages, as every copy trims it.
    trims: Vec<(String, u32)>,
}

pub(crate) async fn run(inner: Weak<Inner>, mut rx: mpsc::Receiver<Request>) {
    let mut floor = 0u64;
    let mut held: Option<Request> = None;
    loop {
        let first = match held.take() {
            Some(r) => r,
            None => match rx.recv().await {
                Some(r) => r,
                None => return,
            },
        };
        let mut n = first.size();
        let mut reqs = vec![first];
        while n < MAX_MSGS {
            match rx.try_recv() {
                Ok(r) if n + r.size() > MAX_MSGS => {
                    held = Some(r);
                    break;
                }
                Ok(r) => {
                    n += r.size();
                    reqs.push(r);
                }
                Err(_) => break,
            }
        }
        let Some(inner) = inner.upgrade() else {
            for r in reqs {
                r.answer(Err(Error::Closed));
            }
            return;
        };
        commit(&inner, reqs, &mut floor).await;
    }
}

/// Why a publish failed.
enum PubErr {
    /// 10071: the stream does not end at the expected sequence; it ends here.
    WrongLast(u64),
    /// No answer, no responders, a leader election: it may have landed; retry.
    Transport(String),
    /// Refused for good.
    Refused(Error),
}

async fn commit(inner: &Inner, reqs: Vec<Request>, floor: &mut u64) {
    let deadline = Instant::now() + inner.write_timeout;
    let mut unknown: Vec<Plan> = Vec::new();
    let mut backoff = Duration::from_millis(20);
    let outcome = loop {
        let base = (*inner.applied.borrow()).max(*floor);
        match landed(inner, &mut unknown) {
            Ok(Some(p)) => break Ok(p),
            Ok(None) => {}
            Err(e) => break Err(e),
        }
        let plan = match plan(inner, &reqs).await {
            Ok(p) => p,
            Err(e) => break Err(e),
        };
        if plan.msgs.is_empty() {
            break Ok(plan);
        }
        match publish(inner, &plan.msgs, base).await {
            Ok(seq) => {
                if !inner.wait_applied(seq, inner.write_timeout).await {
                    tracing::warn!(seq, "the copy has not applied a committed batch in time");
                }
                break Ok(plan);
            }
            Err(PubErr::WrongLast(n)) => catch_up(inner, n, floor, deadline).await,
            Err(PubErr::Refused(e)) => break Err(e),
            Err(PubErr::Transport(e)) => {
                unknown.push(plan);
                if Instant::now() >= deadline {
                    break Err(Error::Unavailable(e));
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
        }
        if Instant::now() >= deadline {
            break Err(Error::Unavailable(
                "the stream kept moving; no commit in time".into(),
            ));
        }
    };
    match outcome {
        Ok(plan) => {
            let newest = plan
                .stored
                .iter()
                .copied()
                .chain(plan.ephemerals.iter().map(|(f, _)| f.id))
                .max();
            {
                let mut a = inner.assigned.lock().unwrap_or_else(|e| e.into_inner());
                *a = (*a).max(newest);
            }
            if let Some(id) = plan.ephemerals.iter().map(|(f, _)| f.id).max() {
                // The copy's writer must count the ids of frames it never stores (acks,
                // later ids).
                let seen = vec![crate::local::copy::Applied::Seen(id)];
                if let Err(e) = inner.copy.apply(seen, Vec::new()).await {
                    tracing::warn!(error = %e, "recording an ephemeral id failed");
                }
            }
            for (f, content) in &plan.ephemerals {
                if let Content::Inline { .. } = content {
                    // Kept in this daemon's copy only, as the local store keeps it.
                    let kept = Backend::content_put(&inner.copy, content.clone())
                        .await
                        .map(|_| ());
                    if let Err(e) = kept {
                        tracing::warn!(error = %e, "keeping an ephemeral frame's content failed");
                    }
                }
                let subject = format!("{}.{}", inner.eph_prefix, f.topic);
                if let Err(e) = inner
                    .client
                    .publish(subject, Bytes::from(f.to_json()))
                    .await
                {
                    tracing::warn!(error = %e, "publishing an ephemeral frame failed");
                }
            }
            for (r, a) in reqs.into_iter().zip(plan.answers) {
                r.answer(a.unwrap_or(Ok(Answer::Unit)));
            }
            trim(inner, plan.trims);
        }
        Err(e) => {
            for r in reqs {
                r.answer(Err(copy_error(&e)));
            }
        }
    }
}

/// Purges the subjects of the `last:n` topics a committed batch appended to, keeping each
/// one's newest n messages (the last `last:n` of a topic in the batch decides), in the
/// background: the copies trim on their own, this only keeps the cluster from growing. A
/// failure leaves the old messages there, harmless (every copy trims them when applying).
fn trim(inner: &Inner, trims: Vec<(String, u32)>) {
    if trims.is_empty() {
        return;
    }
    let mut keep: HashMap<String, u32> = HashMap::new();
    for (topic, n) in trims {
        keep.insert(topic, n);
    }
    let stream = inner.stream.clone();
    let prefix = inner.prefix.clone();
    tokio::spawn(async move {
        for (topic, n) in keep {
            let subject = format!("{prefix}.{topic}");
            if let Err(e) = stream.purge().filter(&subject).keep(u64::from(n)).await {
                tracing::warn!(error = %e, subject, "purging a last:n topic in the stream failed");
            }
        }
    });
}

fn copy_error(e: &Error) -> Error {
    match e {
        Error::Unavailable(m) => Error::Unavailable(m.clone()),
        Error::Invalid(m) => Error::Invalid(m.clone()),
        Error::Closed => Error::Closed,
        e => Error::Write(e.to_string()),
    }
}

/// A plan whose commit went unanswered and which the copy now shows stored.
fn landed(inner: &Inner, unknown: &mut Vec<Plan>) -> Result<Option<Plan>> {
    for i in 0..unknown.len() {
        for id in &unknown[i].stored {
            if inner.copy.contains(id)? {
                return Ok(Some(unknown.swap_remove(i)));
            }
        }
    }
    Ok(None)
}

/// Waits until the copy has applied sequence `n`. Messages removed from the stream (TTL)
/// never reach the copy: when every message between the copy's sequence and `n` is gone, the
/// copy is as good as at `n` (`floor`).
async fn catch_up(inner: &Inner, n: u64, floor: &mut u64, deadline: Instant) {
    loop {
        if inner.wait_applied(n, Duration::from_millis(50)).await {
            return;
        }
        let a = *inner.applied.borrow();
        if n.saturating_sub(a) <= 64 {
            let mut present = false;
            for seq in a + 1..=n {
                match inner.stream.direct_get(seq).await {
                    Ok(_) => {
                        present = true;
                        break;
                    }
                    Err(e)
                        if e.kind()
                            == async_nats::jetstream::stream::DirectGetErrorKind::NotFound => {}
                    Err(_) => {
                        present = true;
                        break;
                    }
                }
            }
            if !present {
                *floor = (*floor).max(n);
                return;
            }
        }
        if Instant::now() >= deadline {
            return;
        }
    }
}

fn next_id(last: &mut Option<Id>) -> Id {
    let mut id = scru128::new();
    if let Some(l) = *last {
        if id <= l {
            id = Id::from_u128(l.to_u128() + 1);
        }
    }
    *last = Some(id);
    id
}

/// What planning has decided so far, to undo a batch that is refused.
#[derive(Clone)]
struct State {
    last_id: Option<Id>,
    topic_last: HashMap<String, Option<Id>>,
    keys: HashMap<(String, String), Frame>,
    removed: HashSet<Id>,
    /// Checkpoints this plan sets (`None`: removes), for the fences of later batches.
    checkpoints: HashMap<String, Option<Vec<u8>>>,
}

async fn plan(inner: &Inner, reqs: &[Request]) -> Result<Plan> {
    let copy = &inner.copy;
    let prefix = &inner.prefix;
    let mut st = State {
        last_id: copy
            .newest_id()?
            .max(*inner.assigned.lock().unwrap_or_else(|e| e.into_inner())),
        topic_last: HashMap::new(),
        keys: HashMap::new(),
        removed: HashSet::new(),
        checkpoints: HashMap::new(),
    };
    let mut p = Plan::default();
    for req in reqs {
        match req {
            Request::Batch(b, _) => {
                let saved = (
                    st.clone(),
                    p.msgs.len(),
                    p.ephemerals.len(),
                    p.stored.len(),
                    p.trims.len(),
                );
                match plan_batch(inner, &mut st, &mut p, b) {
                    Ok(frames) => p.answers.push(Some(Ok(Answer::Frames(frames)))),
                    Err(e) => {
                        st = saved.0;
                        p.msgs.truncate(saved.1);
                        p.ephemerals.truncate(saved.2);
                        p.stored.truncate(saved.3);
                        p.trims.truncate(saved.4);
                        p.answers.push(Some(Err(e)));
                    }
                }
            }
            Request::Import(f, _) => {
                let r = if f.id.to_u128() > u128::MAX - IMPORT_ID_HEADROOM {
                    Err(Error::invalid(format!(
                        "frame {}: id is too close to the largest possible id (appends need larger ones)",
                        f.id
                    )))
                } else {
                    match &f.hash {
                        Some(h) if !inner.content_known(h).await? => Err(Error::invalid(format!(
                            "frame {}: content {h} is not in the store (POST /cas it first)",
                            f.id
                        ))),
                        _ => Ok(()),
                    }
                };
                if r.is_ok() && f.ttl != Some(Ttl::Ephemeral) {
                    p.msgs.push(codec::import_msg(prefix, f));
                    if st.last_id.is_none_or(|l| f.id > l) {
                        st.last_id = Some(f.id);
                    }
                }
                p.answers.push(Some(r.map(|()| Answer::Frame(f.clone()))));
            }
            Request::Remove(id, purge, _) => {
                let r = if !st.removed.contains(id) && copy.contains(id)? {
                    st.removed.insert(*id);
                    p.msgs.push(codec::remove_msg(prefix, *id, *purge));
                    Ok(Answer::Unit)
                } else {
                    Err(Error::NotFound(format!("no frame with id {id}")))
                };
                p.answers.push(Some(r));
            }
            Request::RemoveCheckpoint(name, _) => {
                st.checkpoints.insert(name.clone(), None);
                p.msgs.push(codec::checkpoint_msg(prefix, name, None));
                p.answers.push(Some(Ok(Answer::Unit)));
            }
        }
    }
    Ok(p)
}

fn plan_batch(inner: &Inner, st: &mut State, p: &mut Plan, b: &Batch) -> Result<Vec<Frame>> {
    let copy = &inner.copy;
    if let (Some(f), Some((name, _))) = (&b.fence, &b.checkpoint) {
        // Checked on the copy at the sequence the batch expects the stream to end at: a
        // checkpoint another owner committed after it makes the publish fail (10071), the
        // copy catch up and this check run again, now refusing.
        let current = match st.checkpoints.get(name) {
            Some(v) => v.clone(),
            None => copy.checkpoint_value(name)?,
        };
        if !f.holds(current.as_deref()) {
            return Err(Error::Fenced { name: name.clone() });
        }
    }
    let mut out = Vec::with_capacity(b.frames.len());
    for (index, nf) in b.frames.iter().enumerate() {
        if let Some(key) = &nf.key {
            let k = (nf.topic.clone(), key.clone());
            if let Some(f) = st.keys.get(&k) {
                out.push(f.clone());
                continue;
            }
            if let Some(f) = copy.idem_frame(&nf.topic, key)? {
                if !st.removed.contains(&f.id) {
                    out.push(f);
                    continue;
                }
            }
        }
        if let Some(expected) = nf.expect {
            let last = match st.topic_last.get(&nf.topic) {
                Some(l) => *l,
                None => copy.newest_on(&nf.topic)?,
            };
            if !expected.holds(last) {
                return Err(Error::ExpectFailed {
                    topic: nf.topic.clone(),
                    expected,
                    last,
                    index: Some(index),
                });
            }
        }
        let id = next_id(&mut st.last_id);
        let frame = Frame {
            topic: nf.topic.clone(),
            id,
            hash: nf.content.hash().cloned(),
            meta: nf.meta.clone(),
            ttl: Some(nf.ttl),
        };
        if nf.ttl == Ttl::Ephemeral {
            p.ephemerals.push((frame.clone(), nf.content.clone()));
        } else {
            p.msgs.push(codec::append_msg(
                &inner.prefix,
                &frame,
                &nf.content,
                nf.key.as_deref(),
            ));
            st.topic_last.insert(nf.topic.clone(), Some(id));
            p.stored.push(id);
            if let Ttl::Last(n) = nf.ttl {
                p.trims.push((nf.topic.clone(), n));
            }
            if let Some(key) = &nf.key {
                st.keys
                    .insert((nf.topic.clone(), key.clone()), frame.clone());
            }
        }
        out.push(frame);
    }
    if let Some((name, value)) = &b.checkpoint {
        st.checkpoints.insert(name.clone(), Some(value.clone()));
        p.msgs
            .push(codec::checkpoint_msg(&inner.prefix, name, Some(value)));
    }
    Ok(out)
}

/// A pub ack, or the error the server answered.
fn parse_ack(payload: &[u8]) -> std::result::Result<u64, PubErr> {
    let v: serde_json::Value = serde_json::from_slice(payload).map_err(|_| {
        PubErr::Transport(format!(
            "not a pub ack: {}",
            String::from_utf8_lossy(payload)
        ))
    })?;
    if let Some(e) = v.get("error") {
        let code = e["err_code"].as_u64().unwrap_or(0);
        let desc = e["description"].as_str().unwrap_or("").to_string();
        return Err(match code {
            10071 => match desc.rsplit(':').next().and_then(|n| n.trim().parse().ok()) {
                Some(n) => PubErr::WrongLast(n),
                None => PubErr::Transport(desc),
            },
            10199 => PubErr::Refused(Error::invalid(format!(
                "too many frames in one write: {desc}"
            ))),
            _ => PubErr::Transport(format!("JetStream error {code}: {desc}")),
        });
    }
    v["seq"]
        .as_u64()
        .ok_or_else(|| PubErr::Transport("a pub ack without seq".into()))
}

/// Publishes `msgs` as one atomic batch (ADR-50, by hand: the client has no batch publisher)
/// whose first message expects the stream to end at `expect`; answers the last sequence.
async fn publish(
    inner: &Inner,
    msgs: &[Outgoing],
    expect: u64,
) -> std::result::Result<u64, PubErr> {
    let client = &inner.client;
    let transport = |e: &dyn std::fmt::Display| PubErr::Transport(e.to_string());
    let id = scru128::new_string();
    let n = msgs.len();
    for (i, m) in msgs.iter().enumerate() {
        let mut headers: HeaderMap = m.headers.clone();
        headers.insert("Nats-Batch-Id", id.as_str());
        headers.insert("Nats-Batch-Sequence", (i + 1).to_string().as_str());
        if i == 0 {
            headers.insert("Nats-Expected-Last-Sequence", expect.to_string().as_str());
        }
        if i + 1 == n {
            headers.insert("Nats-Batch-Commit", "1");
            let reply = client
                .request_with_headers(m.subject.clone(), headers, m.payload.clone())
                .await
                .map_err(|e| transport(&e))?;
            return parse_ack(&reply.payload);
        } else if i == 0 {
            let reply = client
                .request_with_headers(m.subject.clone(), headers, m.payload.clone())
                .await
                .map_err(|e| transport(&e))?;
            if !reply.payload.is_empty() {
                parse_ack(&reply.payload)?;
            }
        } else {
            client
                .publish_with_headers(m.subject.clone(), headers, m.payload.clone())
                .await
                .map_err(|e| transport(&e))?;
        }
    }
    Err(PubErr::Refused(Error::Internal("an empty batch".into())))
}

/// Waits until the stream takes publishes (right after it is created, its leader may not
/// answer yet): a probe expecting an impossible last sequence is refused with 10071 and
/// stores nothing.
pub(crate) async fn wait_writable(client: &async_nats::Client, prefix: &str) -> Result<()> {
    let t0 = Instant::now();
    loop {
        let mut h = HeaderMap::new();
        h.insert("Nats-Expected-Last-Sequence", u64::MAX.to_string().as_str());
        let r = client
            .request_with_headers(format!("{prefix}.$probe"), h, Bytes::new())
            .await;
        let last = match r {
            Ok(m) => match parse_ack(&m.payload) {
                Err(PubErr::WrongLast(_)) => return Ok(()),
                Ok(_) => return Ok(()),
                Err(PubErr::Transport(e)) => e,
                Err(PubErr::Refused(e)) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        if t0.elapsed() > Duration::from_secs(30) {
            return Err(Error::Unavailable(format!(
                "the stream takes no publishes: {last}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
