//! The single writer thread: takes every pending change, writes one fjall batch, fsyncs it
//! once (group commit), then acknowledges each change and broadcasts the new frames in id order.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use ssri::Integrity;
use tokio::sync::{oneshot, watch};

use super::gc::Drops;
use super::{codec, content::cas_key, stats, Keyspaces, LiveSenders};
use crate::backend::{Content, GcReport, LiveFrame, NewFrame};
use crate::error::{Error, Result};
use crate::frame::{now_ms, Frame, Id};
use crate::topic::index_prefixes;
use crate::ttl::Ttl;

/// Most changes committed in one batch.
const MAX_BATCH: usize = 1024;

pub(crate) type Reply = oneshot::Sender<Result<Done>>;

pub(crate) enum Done {
    Frame(Frame),
    /// Content removed by a purge or a gc.
    Freed(GcReport),
    Count(usize),
    Unit,
    /// A consumer's position after an ack.
    Position(Id),
    /// The frames of an atomic append.
    Frames(Vec<Frame>),
}

pub(crate) enum WriteOp {
    Append(NewFrame, Reply),
    Import(Frame, Reply),
    Remove(Id, Reply),
    PutContent(Integrity, Bytes, Reply),
    Expire(Vec<Id>, Reply),
    /// Remove, and remove the frame's content if nothing else references it.
    Purge(Id, Reply),
    /// Remove these content keys if nothing references them once the batch is written.
    Gc(Vec<Vec<u8>>, Reply),
    /// Moves consumer `name` forward to `id` (never backwards).
    Ack {
        name: String,
        id: Id,
        reply: Reply,
    },
    RemoveConsumer {
        name: String,
        reply: Reply,
    },
    /// Frames and a checkpoint, all or nothing (see `atomic`).
    Atomic {
        frames: Vec<NewFrame>,
        checkpoint: Option<(String, Vec<u8>)>,
        reply: Reply,
    },
    RemoveCheckpoint {
        name: String,
        reply: Reply,
    },
}

pub(crate) struct Writer {
    tx: Option<mpsc::Sender<WriteOp>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    pub(crate) fn spawn(
        ks: Keyspaces,
        cacache_dir: PathBuf,
        live: LiveSenders,
        last_id: Option<Id>,
        failed: watch::Sender<Option<String>>,
    ) -> Result<Writer> {
        let (tx, rx) = mpsc::channel();
        let mut state = WriterState {
            ks,
            cacache_dir,
            live,
            last_id,
            failed,
        };
        let thread = std::thread::Builder::new()
            .name("xs-writer".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut ops = vec![first];
                    while ops.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(op) => ops.push(op),
                            Err(_) => break,
                        }
                    }
                    if let Err(fatal) = state.commit(ops) {
                        // The storage engine cannot go on (fjall is poisoned): stop taking
                        // writes and tell the owner, who must exit.
                        tracing::error!(error = %fatal, "storage failed; no more writes are accepted");
                        let _ = state.failed.send(Some(fatal));
                        return;
                    }
                }
            })
            .map_err(|e| Error::io("starting the writer thread", e))?;
        Ok(Writer {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    pub(crate) fn send(&self, op: WriteOp) -> Result<()> {
        self.tx
            .as_ref()
            .ok_or(Error::Closed)?
            .send(op)
            .map_err(|_| Error::Closed)
    }

    /// Commits what was sent, then stops the thread.
    pub(crate) fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop();
    }
}

struct WriterState {
    ks: Keyspaces,
    cacache_dir: PathBuf,
    live: LiveSenders,
    last_id: Option<Id>,
    failed: watch::Sender<Option<String>>,
}

/// A frame to insert in the batch being built.
struct Insert {
    frame: Frame,
    value: Vec<u8>,
    skip: bool,
}

/// What one batch will do, built from its ops before anything is written.
#[derive(Default)]
struct Plan {
    inserts: Vec<Insert>,
    /// Existing frames to delete: id → topic and expiry (to delete their index entries).
    deletes: HashMap<Id, (String, u64)>,
    /// The `last:n` appends of this batch, in order: index in `inserts`, topic, n.
    trims: Vec<(usize, String, u32)>,
    content: Vec<(Vec<u8>, Bytes)>,
    /// Index keys of replaced (re-imported) frames that are no longer wanted.
    stale_keys: Vec<(bool, Vec<u8>)>,
    /// Idempotency keys (`topic \0 key`) of this batch's appends, and their frames.
    idem: HashMap<Vec<u8>, Frame>,
    /// Purged frames, and the index of the reply that reports what was freed.
    purge: Vec<(Id, usize)>,
    /// Content keys to collect, and the index of the reply.
    gc: Vec<(Vec<Vec<u8>>, usize)>,
    /// Consumer positions to write (`None`: remove the consumer).
    consumers: HashMap<String, Option<Id>>,
    /// Checkpoints to write (`None`: remove).
    checkpoints: HashMap<String, Option<Vec<u8>>>,
}

impl WriterState {
    fn next_id(&mut self) -> Id {
        let mut id = scru128::new();
        if let Some(last) = self.last_id {
            if id <= last {
                id = Id::from_u128(last.to_u128() + 1);
            }
        }
        self.last_id = Some(id);
        id
    }

    /// Commits one batch. Errors are answered to each op; `Err` only when the store is
    /// unusable from now on.
    fn commit(&mut self, ops: Vec<WriteOp>) -> std::result::Result<(), String> {
        let mut plan = Plan::default();
        let mut replies: Vec<(Reply, Result<Done>)> = Vec::with_capacity(ops.len());
        let mut live = Vec::new();
        // Ids above this are new: no stored frame has them (see `stats::account`).
        let fresh_above = self.last_id;

        for op in ops {
            match op {
                WriteOp::Append(nf, reply) => match self.plan_append(&mut plan, nf) {
                    Ok((frame, l)) => {
                        live.extend(l);
                        replies.push((reply, Ok(Done::Frame(frame))));
                    }
                    Err(e) => replies.push((reply, Err(e))),
                },
                WriteOp::Import(frame, reply) => {
                    let r = self
                        .plan_import(&mut plan, &frame)
                        .map(|_| Done::Frame(frame));
                    replies.push((reply, r));
                }
                WriteOp::Remove(id, reply) => {
                    let r = match self.lookup(&id) {
                        Ok(Some(found)) => {
                            plan.deletes.insert(id, found);
                            Ok(Done::Unit)
                        }
                        Ok(None) => Err(Error::NotFound(format!("no frame with id {id}"))),
                        Err(e) => Err(e),
                    };
                    replies.push((reply, r));
                }
                WriteOp::Purge(id, reply) => {
                    let r = match self.lookup(&id) {
                        Ok(Some(found)) => {
                            plan.deletes.insert(id, found);
                            plan.purge.push((id, replies.len()));
                            Ok(Done::Freed(GcReport::default()))
                        }
                        Ok(None) => Err(Error::NotFound(format!("no frame with id {id}"))),
                        Err(e) => Err(e),
                    };
                    replies.push((reply, r));
                }
                WriteOp::Gc(keys, reply) => {
                    plan.gc.push((keys, replies.len()));
                    replies.push((reply, Ok(Done::Freed(GcReport::default()))));
                }
                WriteOp::PutContent(hash, bytes, reply) => {
                    plan.content.push((cas_key(&hash), bytes));
                    replies.push((reply, Ok(Done::Unit)));
                }
                WriteOp::Expire(ids, reply) => {
                    let now = crate::frame::now_ms();
                    let mut n = 0;
                    let mut err = None;
                    for id in ids {
                        match self.lookup(&id) {
                            Ok(Some((topic, exp))) if exp != 0 && exp <= now => {
                                plan.deletes.insert(id, (topic, exp));
                                n += 1;
                            }
                            Ok(_) => {}
                            Err(e) => err = Some(e),
                        }
                    }
                    replies.push((reply, err.map_or(Ok(Done::Count(n)), Err)));
                }
                WriteOp::Ack { name, id, reply } => {
                    replies.push((reply, self.plan_ack(&mut plan, name, id)));
                }
                WriteOp::RemoveConsumer { name, reply } => {
                    replies.push((reply, self.plan_remove_consumer(&mut plan, name)));
                }
                WriteOp::Atomic {
                    frames,
                    checkpoint,
                    reply,
                } => match self.plan_atomic(&mut plan, frames, checkpoint) {
                    Ok((frames, l)) => {
                        live.extend(l);
                        replies.push((reply, Ok(Done::Frames(frames))));
                    }
                    Err(e) => replies.push((reply, Err(e))),
                },
                WriteOp::RemoveCheckpoint { name, reply } => {
                    plan.checkpoints.insert(name, None);
                    replies.push((reply, Ok(Done::Unit)));
                }
            }
        }

        let result = self
            .plan_trims(&mut plan)
            .and_then(|()| self.write(plan, fresh_above));
        match result {
            Ok(freed) => {
                for (i, report) in freed {
                    if let Some((_, r @ Ok(_))) = replies.get_mut(i) {
                        *r = Ok(Done::Freed(report));
                    }
                }
                for (reply, r) in replies {
                    let _ = reply.send(r);
                }
                for f in live {
                    self.live.send(f);
                }
            }
            Err(e) => {
                let msg = e.to_string();
                tracing::error!(error = %msg, "write batch failed; nothing in it was stored");
                for (reply, r) in replies {
                    let err = match &e {
                        Error::NoSpace(m) => Error::NoSpace(m.clone()),
                        _ => Error::Write(msg.clone()),
                    };
                    let _ = reply.send(r.and(Err(err)));
                }
                if matches!(e, Error::Failed(_)) {
                    return Err(msg);
                }
            }
        }
        Ok(())
    }

    /// Topic and expiry of a stored frame, if it exists.
    fn lookup(&self, id: &Id) -> Result<Option<(String, u64)>> {
        let Some(v) = self.ks.frames.get(codec::id_key(id))? else {
            return Ok(None);
        };
        let value = codec::decode_frame_value(id, &v)?;
        let frame = codec::decode_frame(id, &v)?;
        Ok(Some((frame.topic, value.expires_at)))
    }

    fn plan_import(&mut self, plan: &mut Plan, frame: &Frame) -> Result<()> {
        if frame.ttl == Some(Ttl::Ephemeral) {
            return Ok(());
        }
        if plan.inserts.iter().any(|i| i.frame.id == frame.id) {
            return Err(Error::Conflict(format!(
                "frame {} is imported twice in one batch",
                frame.id
            )));
        }
        // An id above every stored one replaces nothing (no read: the log's last level has
        // no bloom filter to answer a miss cheaply).
        let fresh = self.last_id.is_none_or(|l| frame.id > l);
        let old = if fresh {
            None
        } else {
            self.lookup(&frame.id).unwrap_or(None)
        };
        if let Some((old_topic, old_exp)) = old {
            // Re-import over an existing frame: drop the index entries the new one won't have.
            let new: HashSet<&str> = index_prefixes(&frame.topic).collect();
            for p in index_prefixes(&old_topic).filter(|p| !new.contains(p)) {
                plan.stale_keys
                    .push((false, codec::topic_key(p, &frame.id)));
            }
            let new_exp = frame
                .ttl
                .and_then(|t| t.expires_at(frame.created_ms()))
                .unwrap_or(0);
            if old_exp != 0 && old_exp != new_exp {
                plan.stale_keys
                    .push((true, codec::expiry_key(old_exp, &frame.id).to_vec()));
            }
        }
        if self.last_id.is_none_or(|l| frame.id > l) {
            self.last_id = Some(frame.id);
        }
        let json = frame.to_json();
        plan.inserts.push(Insert {
            value: codec::encode_frame(frame, &json),
            frame: frame.clone(),
            skip: false,
        });
        Ok(())
    }

    /// Applies `last:n` as if the batch's changes were made one by one (so the result does
    /// not depend on how appends were batched): each `last:n` append keeps the newest n frames
    /// of its topic at that point, counting stored frames and the batch's earlier inserts; what
    /// it drops stays dropped. Dropped stored frames are deleted, dropped batch frames not written.
    fn plan_trims(&self, plan: &mut Plan) -> Result<()> {
        let trims = std::mem::take(&mut plan.trims);
        let mut topics: Vec<&str> = trims.iter().map(|(_, t, _)| t.as_str()).collect();
        topics.sort_unstable();
        topics.dedup();
        for topic in topics {
            // The topic's frames by id: (id, insert index if from this batch, alive).
            let mut members: Vec<(Id, Option<usize>, bool)> = Vec::new();
            let mut prefix = topic.as_bytes().to_vec();
            prefix.push(0);
            for g in self.ks.idx_topic.prefix(&prefix) {
                let id = codec::id_from_topic_key(&g.key()?)?;
                let replaced = plan.inserts.iter().any(|i| i.frame.id == id);
                if !plan.deletes.contains_key(&id) && !replaced {
                    members.push((id, None, true));
                }
            }
            for (i, ins) in plan.inserts.iter().enumerate() {
                if ins.frame.topic == topic && !ins.skip {
                    members.push((ins.frame.id, Some(i), true));
                }
            }
            members.sort_by_key(|m| m.0);
            for (at, _, n) in trims.iter().filter(|(_, t, _)| t == topic) {
                let mut kept = 0u32;
                for m in members.iter_mut().rev() {
                    let present = m.1.is_none_or(|i| i <= *at);
                    if !m.2 || !present {
                        continue;
                    }
                    if kept < *n {
                        kept += 1;
                    } else {
                        m.2 = false;
                    }
                }
            }
            for (id, insert, alive) in members {
                if alive {
                    continue;
                }
                if let Some(i) = insert {
                    plan.inserts[i].skip = true;
                }
                // A dropped stored frame (or one a dropped import would have replaced).
                if let Some(v) = self.ks.frames.get(codec::id_key(&id))? {
                    let exp = codec::decode_frame_value(&id, &v)?.expires_at;
                    let old_topic = codec::decode_frame(&id, &v)?.topic;
                    plan.deletes.insert(id, (old_topic, exp));
                }
            }
        }
        Ok(())
    }

    fn write(&self, plan: Plan, fresh_above: Option<Id>) -> Result<Vec<(usize, GcReport)>> {
        // Refuse before fjall is touched: a failed journal write would poison it.
        let deletes_only = plan.inserts.iter().all(|i| i.skip) && plan.content.is_empty();
        self.ks.space.check(deletes_only)?;
        let ks = &self.ks;
        let changes = stats::account(
            ks,
            plan.inserts.iter().filter(|i| !i.skip).map(|i| &i.frame),
            plan.deletes.keys(),
            fresh_above,
        )?;
        let (drops, freed) = self.plan_drops(&plan, &changes)?;
        // `--fsync always`: fdatasync (the journal's data and what is needed to read it back,
        // not its mtime); else handed to the OS (see `Fsync`).
        let mut batch = ks.db.batch().durability(Some(ks.persist));
        for (id, (topic, exp)) in &plan.deletes {
            batch.remove(&ks.frames, codec::id_key(id).to_vec());
            for p in index_prefixes(topic) {
                batch.remove(&ks.idx_topic, codec::topic_key(p, id));
            }
            if *exp != 0 {
                batch.remove(&ks.idx_expiry, codec::expiry_key(*exp, id).to_vec());
            }
        }
        for (is_expiry, key) in plan.stale_keys {
            let ks = if is_expiry {
                &ks.idx_expiry
            } else {
                &ks.idx_topic
            };
            batch.remove(ks, key);
        }
        for (key, bytes) in plan.content {
            batch.insert(&ks.cas, key, bytes.to_vec());
        }
        for ins in plan.inserts.into_iter().filter(|i| !i.skip) {
            let f = &ins.frame;
            batch.insert(&ks.frames, codec::id_key(&f.id).to_vec(), ins.value);
            for p in index_prefixes(&f.topic) {
                batch.insert(&ks.idx_topic, codec::topic_key(p, &f.id), Vec::new());
            }
            if let Some(exp) = f.ttl.and_then(|t| t.expires_at(f.created_ms())) {
                batch.insert(
                    &ks.idx_expiry,
                    codec::expiry_key(exp, &f.id).to_vec(),
                    Vec::new(),
                );
            }
        }
        for (name, position) in plan.consumers {
            match position {
                Some(id) => batch.insert(&ks.consumers, name.into_bytes(), id.to_bytes().to_vec()),
                None => batch.remove(&ks.consumers, name.into_bytes()),
            }
        }
        for (name, value) in plan.checkpoints {
            match value {
                Some(v) => batch.insert(&ks.checkpoints, name.into_bytes(), v),
                None => batch.remove(&ks.checkpoints, name.into_bytes()),
            }
        }
        changes.write(ks, &mut batch);
        for (key, frame) in &plan.idem {
            batch.insert(&ks.idem, key.clone(), codec::id_key(&frame.id).to_vec());
        }
        for key in &drops.inline {
            batch.remove(&ks.cas, key.clone());
        }
        if batch.is_empty() {
            return Ok(freed);
        }
        let started = std::time::Instant::now();
        batch.commit()?;
        ks.metrics.commit(started.elapsed());
        if let Err(e) = drops.remove_files() {
            // The frames are gone for good; the files stay for the next `gc`.
            tracing::warn!(error = %e, "removing purged content files failed");
        }
        Ok(freed)
    }
}

/// Optimistic concurrency, idempotency keys and content deletion.
impl WriterState {
    /// Plans one append: answers the original frame for a known idempotency key, checks
    /// `expect`, then assigns the id. Returns the frame and, when it is new, its live copy.
    fn plan_append(
        &mut self,
        plan: &mut Plan,
        nf: NewFrame,
    ) -> Result<(Frame, Option<Arc<LiveFrame>>)> {
        let idem = nf.key.as_deref().map(|k| idem_key(&nf.topic, k));
        if let Some(k) = &idem {
            if let Some(f) = plan.idem.get(k) {
                return Ok((f.clone(), None));
            }
            if let Some(f) = self.idem_frame(plan, k)? {
                return Ok((f, None));
            }
        }
        if let Some(expected) = nf.expect {
            let last = self.newest_on(plan, &nf.topic)?;
            if !expected.holds(last) {
                return Err(Error::ExpectFailed {
                    topic: nf.topic,
                    expected,
                    last,
                });
            }
        }
        if let Content::Stored { hash: h, .. } = &nf.content {
            let key = cas_key(h);
            let here = super::content::cacache_path(&self.cacache_dir, h).is_file()
                || self.ks.cas.contains_key(&key)?;
            if !here {
                return Err(Error::Conflict(format!(
                    "content {h} was removed (purged or collected) before its frame was written; append it again"
                )));
            }
        }
        let id = self.next_id();
        let frame = Frame {
            topic: nf.topic,
            id,
            hash: nf.content.hash().cloned(),
            meta: nf.meta,
            ttl: Some(nf.ttl),
        };
        let json = frame.to_json();
        if let Content::Inline { hash, bytes } = nf.content {
            plan.content.push((cas_key(&hash), bytes));
        }
        match nf.ttl {
            Ttl::Ephemeral => {}
            ttl => {
                if let Ttl::Last(n) = ttl {
                    plan.trims
                        .push((plan.inserts.len(), frame.topic.clone(), n));
                }
                plan.inserts.push(Insert {
                    value: codec::encode_frame(&frame, &json),
                    frame: frame.clone(),
                    skip: false,
                });
            }
        }
        let live = Arc::new(LiveFrame {
            frame: frame.clone(),
            json: json.into(),
        });
        if let (Some(k), false) = (idem, nf.ttl == Ttl::Ephemeral) {
            plan.idem.insert(k, frame.clone());
        }
        Ok((frame, Some(live)))
    }

    /// The stored frame an idempotency key points at, if it still exists (not removed, not
    /// being removed in this batch, not expired).
    fn idem_frame(&self, plan: &Plan, key: &[u8]) -> Result<Option<Frame>> {
        let Some(v) = self.ks.idem.get(key)? else {
            return Ok(None);
        };
        let id = codec::id_from_key(&v)?;
        if plan.deletes.contains_key(&id) {
            return Ok(None);
        }
        let Some(v) = self.ks.frames.get(codec::id_key(&id))? else {
            return Ok(None);
        };
        if codec::decode_frame_value(&id, &v)?.is_expired(now_ms()) {
            return Ok(None);
        }
        codec::decode_frame(&id, &v).map(Some)
    }

    /// The newest frame on exactly `topic`: this batch's frames first, then the store's
    /// (skipping frames deleted in this batch and expired ones).
    fn newest_on(&self, plan: &Plan, topic: &str) -> Result<Option<Id>> {
        let in_batch = plan
            .inserts
            .iter()
            .filter(|i| i.frame.topic == topic)
            .map(|i| i.frame.id)
            .max();
        let now = now_ms();
        let live = |id: &Id| -> Result<bool> {
            if plan.deletes.contains_key(id) {
                return Ok(false);
            }
            match self.ks.frames.get(codec::id_key(id))? {
                Some(v) => Ok(!codec::decode_frame_value(id, &v)?.is_expired(now)),
                None => Ok(false),
            }
        };
        // Fast path: the topic index's last frame, when it is still there (point reads only).
        match stats::topic_last(&self.ks, topic)? {
            None => return Ok(in_batch),
            Some(id) if live(&id)? => return Ok(in_batch.max(Some(id))),
            Some(_) => {}
        }
        let mut prefix = topic.as_bytes().to_vec();
        prefix.push(0);
        let mut stored = None;
        for g in self.ks.idx_topic.prefix(&prefix).rev() {
            let id = codec::id_from_topic_key(&g.key()?)?;
            if live(&id)? {
                stored = Some(id);
                break;
            }
        }
        Ok(in_batch.max(stored))
    }

    /// Content to remove with this batch: a purged frame's content once nothing references
    /// it, and gc candidates still unreferenced. Returns it with what each reply freed.
    fn plan_drops(
        &self,
        plan: &Plan,
        changes: &stats::Changes,
    ) -> Result<(Drops, Vec<(usize, GcReport)>)> {
        let mut drops = Drops::default();
        let mut freed = Vec::new();
        let mut seen: HashSet<&[u8]> = HashSet::new();
        let ops = plan
            .purge
            .iter()
            .map(|(id, i)| {
                (
                    changes.old_hashes.get(id).into_iter().collect::<Vec<_>>(),
                    *i,
                )
            })
            .chain(plan.gc.iter().map(|(keys, i)| (keys.iter().collect(), *i)));
        for (keys, i) in ops {
            let before = drops.report;
            for key in keys {
                if !changes.referenced_after(&self.ks, key)? && seen.insert(key) {
                    drops.add(&self.ks, &self.cacache_dir, key)?;
                }
            }
            freed.push((
                i,
                GcReport {
                    blobs: drops.report.blobs - before.blobs,
                    bytes: drops.report.bytes - before.bytes,
                },
            ));
        }
        Ok((drops, freed))
    }
}

/// Atomic appends.
impl WriterState {
    /// Plans every frame, then the checkpoint; if one frame is refused, undoes what the
    /// others planned, so none of them is written.
    fn plan_atomic(
        &mut self,
        plan: &mut Plan,
        frames: Vec<NewFrame>,
        checkpoint: Option<(String, Vec<u8>)>,
    ) -> Result<(Vec<Frame>, Vec<Arc<LiveFrame>>)> {
        let marks = (plan.inserts.len(), plan.trims.len(), plan.content.len());
        let idem = plan.idem.clone();
        let last_id = self.last_id;
        let mut out = Vec::with_capacity(frames.len());
        let mut live = Vec::with_capacity(frames.len());
        for nf in frames {
            match self.plan_append(plan, nf) {
                Ok((f, l)) => {
                    out.push(f);
                    live.extend(l);
                }
                Err(e) => {
                    plan.inserts.truncate(marks.0);
                    plan.trims.truncate(marks.1);
                    plan.content.truncate(marks.2);
                    plan.idem = idem;
                    self.last_id = last_id;
                    return Err(e);
                }
            }
        }
        if let Some((name, value)) = checkpoint {
            plan.checkpoints.insert(name, Some(value));
        }
        Ok((out, live))
    }
}

/// Key of an idempotency key in the `idem` keyspace: `topic \0 key`.
fn idem_key(topic: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(topic.len() + 1 + key.len());
    k.extend_from_slice(topic.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

/// Consumer acks and removals.
impl WriterState {
    /// A consumer's position, counting changes already planned in this batch.
    fn consumer_position(&self, plan: &Plan, name: &str) -> Result<Option<Id>> {
        if let Some(p) = plan.consumers.get(name) {
            return Ok(*p);
        }
        match self.ks.consumers.get(name.as_bytes())? {
            Some(v) => codec::id_from_key(&v).map(Some),
            None => Ok(None),
        }
    }

    fn plan_ack(&mut self, plan: &mut Plan, name: String, id: Id) -> Result<Done> {
        if self.last_id.is_none_or(|last| id > last) {
            return Err(Error::invalid(format!(
                "cannot acknowledge {id}: it is after the newest frame in the store"
            )));
        }
        let position = match self.consumer_position(plan, &name)? {
            Some(p) if p >= id => p,
            _ => id,
        };
        plan.consumers.insert(name, Some(position));
        Ok(Done::Position(position))
    }

    fn plan_remove_consumer(&mut self, plan: &mut Plan, name: String) -> Result<Done> {
        if self.consumer_position(plan, &name)?.is_none() {
            return Err(Error::NotFound(format!("no consumer named {name:?}")));
        }
        plan.consumers.insert(name, None);
        Ok(Done::Unit)
    }
}
