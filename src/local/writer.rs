//! The single writer thread: takes every pending change, lets each feature plan it into one
//! [`Plan`], writes one fjall batch, fsyncs it once (group commit), then broadcasts the new
//! frames in id order and answers each change on its own reply.

use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;

use tokio::sync::watch;

use super::plan::{Ctx, Plan, Reply, WriteOp};
use super::LiveSenders;
use super::{append, atomic, codec, consumers, content::cas_key, gc, stats, Keyspaces};
use crate::backend::GcReport;
use crate::error::{Error, Result};
use crate::frame::{Frame, Id};
use crate::topic::index_prefixes;

/// Most changes committed in one batch.
const MAX_BATCH: usize = 1024;

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
            cx: Ctx {
                ks,
                cacache_dir,
                last_id,
            },
            live,
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
    cx: Ctx,
    live: LiveSenders,
    failed: watch::Sender<Option<String>>,
}

/// An op's reply and what planning answered, sent once the batch is durable (or refused).
enum Answer {
    Frame(Reply<Frame>, Result<Frame>),
    Frames(Reply<Vec<Frame>>, Result<Vec<Frame>>),
    Unit(Reply<()>, Result<()>),
    Count(Reply<usize>, Result<usize>),
    Position(Reply<Id>, Result<Id>),
    /// A purge or gc: the index of its drop request in the plan.
    Freed(Reply<GcReport>, Result<usize>),
}

impl Answer {
    /// Sends the answer: `Ok(freed)` once the batch is durable (what each drop request
    /// freed), `Err` if it was refused (then every planned change fails with that error).
    fn send(self, batch: std::result::Result<&[GcReport], &Error>) {
        fn out<T>(reply: Reply<T>, r: Result<T>, failed: Option<&Error>) {
            let r = match failed {
                Some(e) => r.and(Err(batch_error(e))),
                None => r,
            };
            let _ = reply.send(r);
        }
        let failed = batch.err();
        match self {
            Answer::Frame(reply, r) => out(reply, r, failed),
            Answer::Frames(reply, r) => out(reply, r, failed),
            Answer::Unit(reply, r) => out(reply, r, failed),
            Answer::Count(reply, r) => out(reply, r, failed),
            Answer::Position(reply, r) => out(reply, r, failed),
            Answer::Freed(reply, r) => {
                let r = r.map(|i| match batch {
                    Ok(freed) => freed.get(i).copied().unwrap_or_default(),
                    Err(_) => GcReport::default(),
                });
                out(reply, r, failed)
            }
        }
    }
}

/// What each change of a refused batch answers.
fn batch_error(e: &Error) -> Error {
    match e {
        Error::NoSpace(m) => Error::NoSpace(m.clone()),
        e => Error::Write(e.to_string()),
    }
}

impl WriterState {
    /// Has the feature that owns `op` plan it; answers what its reply will carry.
    fn plan(&mut self, plan: &mut Plan, op: WriteOp) -> Answer {
        let cx = &mut self.cx;
        match op {
            WriteOp::Append(nf, reply) => Answer::Frame(reply, append::plan_append(cx, plan, nf)),
            WriteOp::Import(frame, reply) => {
                let r = append::plan_import(cx, plan, &frame).map(|()| frame);
                Answer::Frame(reply, r)
            }
            WriteOp::Remove(id, reply) => Answer::Unit(reply, plan.remove(cx, id)),
            WriteOp::Expire(ids, reply) => Answer::Count(reply, plan.expire(cx, ids)),
            WriteOp::PutContent(hash, bytes, reply) => {
                plan.content.push((cas_key(&hash), bytes));
                Answer::Unit(reply, Ok(()))
            }
            WriteOp::Purge(id, reply) => Answer::Freed(reply, gc::plan_purge(cx, plan, id)),
            WriteOp::Gc(keys, reply) => Answer::Freed(reply, Ok(gc::plan_gc(plan, keys))),
            WriteOp::Ack { name, id, reply } => {
                Answer::Position(reply, consumers::plan_ack(cx, plan, name, id))
            }
            WriteOp::RemoveConsumer { name, reply } => {
                Answer::Unit(reply, consumers::plan_remove_consumer(cx, plan, name))
            }
            WriteOp::Atomic {
                frames,
                checkpoint,
                fence,
                reply,
            } => Answer::Frames(
                reply,
                atomic::plan_atomic(cx, plan, frames, checkpoint, fence),
            ),
            WriteOp::RemoveCheckpoint { name, reply } => {
                atomic::plan_remove_checkpoint(plan, name);
                Answer::Unit(reply, Ok(()))
            }
            WriteOp::Apply {
                ops,
                checkpoints,
                reply,
            } => Answer::Unit(reply, super::copy::plan_apply(cx, plan, ops, checkpoints)),
        }
    }

    /// Commits one batch. Errors are answered to each op; `Err` only when the store is
    /// unusable from now on.
    fn commit(&mut self, ops: Vec<WriteOp>) -> std::result::Result<(), String> {
        let mut plan = Plan::default();
        let mut answers: Vec<Answer> = Vec::with_capacity(ops.len());
        // Ids above this are new: no stored frame has them (see `stats::account`).
        let fresh_above = self.cx.last_id;
        for op in ops {
            answers.push(self.plan(&mut plan, op));
        }
        let live = std::mem::take(&mut plan.live);
        let result =
            append::plan_trims(&self.cx, &mut plan).and_then(|()| self.write(plan, fresh_above));
        match result {
            Ok(freed) => {
                // Broadcast before answering: a read that starts once an append is answered
                // (a `new` follow) must not get that frame live.
                for f in live {
                    self.live.send(f);
                }
                for a in answers {
                    a.send(Ok(&freed));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "write batch failed; nothing in it was stored");
                for a in answers {
                    a.send(Err(&e));
                }
                if matches!(e, Error::Failed(_)) {
                    return Err(e.to_string());
                }
            }
        }
        Ok(())
    }

    /// Writes the plan as one fjall batch with one fdatasync; answers what each drop request
    /// freed.
    fn write(&self, plan: Plan, fresh_above: Option<Id>) -> Result<Vec<GcReport>> {
        // Refuse before fjall is touched: a failed journal write would poison it.
        let deletes_only = plan.inserts.iter().all(|i| i.skip) && plan.content.is_empty();
        let ks = &self.cx.ks;
        ks.space.check(deletes_only)?;
        let changes = stats::account(
            ks,
            plan.inserts.iter().filter(|i| !i.skip).map(|i| &i.frame),
            plan.deletes.keys(),
            fresh_above,
        )?;
        let (drops, freed) = gc::drops(&self.cx, &plan, &changes)?;
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
