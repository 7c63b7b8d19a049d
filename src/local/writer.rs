//! The single writer thread and its sync thread. The writer takes every pending change, lets
//! each feature plan it into one [`Plan`] and writes it as one fjall batch (handed to the OS,
//! not synced), then passes the batch on and plans the next one. The sync thread fdatasyncs
//! fjall's journal once for every batch that arrived meanwhile (group commit, pipelined: the
//! next batch is written while this one syncs), then publishes the durable read view, answers
//! each change on its own reply and broadcasts the new frames in id order.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Instant;

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
    /// Joined after the writer: it answers what the writer passed on.
    syncer: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer and its sync thread; `fsync`: whether each batch is fdatasynced
    /// before it is answered (`--fsync always`), else answered once handed to the OS.
    pub(crate) fn spawn(
        ks: Keyspaces,
        cacache_dir: PathBuf,
        live: LiveSenders,
        last_id: Option<Id>,
        failed: watch::Sender<Option<String>>,
        fsync: bool,
    ) -> Result<Writer> {
        let (tx, rx) = mpsc::channel();
        let (written_tx, written) = mpsc::channel();
        let journal = ActiveJournal::open(&ks.journal_dir)
            .map_err(|e| Error::io("opening fjall's journal", e))?;
        let syncer = Syncer {
            journal,
            fsync,
            ks: ks.clone(),
            live,
            failed: failed.clone(),
        };
        let syncer = std::thread::Builder::new()
            .name("xs-sync".into())
            .spawn(move || syncer.run(written))
            .map_err(|e| Error::io("starting the sync thread", e))?;
        let mut state = WriterState {
            cx: Ctx {
                ks,
                cacache_dir,
                last_id,
            },
            written: written_tx,
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
            syncer: Some(syncer),
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
        if let Some(t) = self.syncer.take() {
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
    /// To the sync thread.
    written: mpsc::Sender<Written>,
    failed: watch::Sender<Option<String>>,
}

/// A batch written to fjall (or refused), on its way to be answered.
struct Written {
    answers: Vec<Answer>,
    /// What each drop request freed, or why the batch was refused.
    result: Result<Vec<GcReport>>,
    /// The frames to broadcast once it is durable.
    live: Vec<Arc<crate::backend::LiveFrame>>,
    /// Content files to remove once the purges that dropped them are durable.
    drops: Option<gc::Drops>,
    /// The read view with this batch in it (`None`: it wrote nothing).
    view: Option<fjall::Snapshot>,
    started: Instant,
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

    /// Writes one batch and passes it to the sync thread. Errors are answered to each op;
    /// `Err` only when the store is unusable from now on.
    fn commit(&mut self, ops: Vec<WriteOp>) -> std::result::Result<(), String> {
        let started = Instant::now();
        let mut plan = Plan::default();
        let mut answers: Vec<Answer> = Vec::with_capacity(ops.len());
        // Ids above this are new: no stored frame has them (see `stats::account`).
        let fresh_above = self.cx.last_id;
        for op in ops {
            answers.push(self.plan(&mut plan, op));
        }
        let live = std::mem::take(&mut plan.live);
        let written =
            append::plan_trims(&self.cx, &mut plan).and_then(|()| self.write(plan, fresh_above));
        let fatal = match &written {
            Err(e @ Error::Failed(_)) => Some(e.to_string()),
            _ => None,
        };
        let batch = match written {
            Ok((freed, drops, view)) => Written {
                answers,
                result: Ok(freed),
                live,
                drops: Some(drops),
                view,
                started,
            },
            Err(e) => {
                tracing::error!(error = %e, "write batch failed; nothing in it was stored");
                Written {
                    answers,
                    result: Err(e),
                    live: Vec::new(),
                    drops: None,
                    view: None,
                    started,
                }
            }
        };
        if let Err(mpsc::SendError(batch)) = self.written.send(batch) {
            // The sync thread stopped: a sync failed, nothing more can be made durable.
            let e = Error::Failed("the store's journal could not be synced".into());
            for a in batch.answers {
                a.send(Err(&e));
            }
            return Err(e.to_string());
        }
        fatal.map_or(Ok(()), Err)
    }

    /// Writes the plan as one fjall batch, handed to the OS; answers what each drop request
    /// freed, the content files to remove once it is durable, and the read view with it.
    fn write(
        &self,
        plan: Plan,
        fresh_above: Option<Id>,
    ) -> Result<(Vec<GcReport>, gc::Drops, Option<fjall::Snapshot>)> {
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
        // Handed to the OS; the sync thread makes it durable (see `Fsync`).
        let mut batch = ks.db.batch().durability(Some(fjall::PersistMode::Buffer));
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
            return Ok((freed, drops, None));
        }
        batch.commit()?;
        // The writer is fjall's only writer: this snapshot is the store just after the batch.
        Ok((freed, drops, Some(ks.db.snapshot())))
    }
}

/// The sync thread's state.
struct Syncer {
    journal: ActiveJournal,
    /// fdatasync before answering (`--fsync always`).
    fsync: bool,
    ks: Keyspaces,
    live: LiveSenders,
    failed: watch::Sender<Option<String>>,
}

impl Syncer {
    /// Until the writer stops: takes every batch written meanwhile, syncs them with one
    /// fdatasync, then publishes the newest view and answers them in order. A failed sync
    /// fails the store: fjall holds batches that may not be on disk.
    fn run(mut self, written: mpsc::Receiver<Written>) {
        while let Ok(first) = written.recv() {
            let mut group = vec![first];
            while let Ok(next) = written.try_recv() {
                group.push(next);
            }
            let wrote = group.iter().any(|b| b.view.is_some());
            if self.fsync && wrote {
                if let Err(e) = self.journal.sync() {
                    let e = Error::Failed(format!("syncing fjall's journal failed: {e}"));
                    tracing::error!(error = %e, "storage failed; no more writes are accepted");
                    for b in group {
                        for a in b.answers {
                            a.send(Err(&e));
                        }
                    }
                    let _ = self.failed.send(Some(e.to_string()));
                    return;
                }
            }
            if let Some(view) = group.iter_mut().rev().find_map(|b| b.view.take()) {
                self.ks.view.publish(view);
            }
            for b in group {
                self.answer(b);
            }
        }
    }

    fn answer(&self, b: Written) {
        match &b.result {
            Ok(freed) => {
                self.ks.metrics.commit(b.started.elapsed());
                if let Some(Err(e)) = b.drops.map(|d| d.remove_files()) {
                    // The frames are gone for good; the files stay for the next `gc`.
                    tracing::warn!(error = %e, "removing purged content files failed");
                }
                for a in b.answers {
                    a.send(Ok(freed));
                }
                for f in b.live {
                    self.live.send(f);
                }
            }
            Err(e) => {
                for a in b.answers {
                    a.send(Err(e));
                }
            }
        }
    }
}

/// fjall's active journal, fdatasynced through a handle of our own, so that the writer can
/// write the next batch while this one syncs (fjall's own sync holds its journal lock). fjall
/// names its journals `<n>.jnl`, and starts journal n+1 only after syncing journal n (fjall
/// 3.1, `journal::writer::Writer::rotate`): syncing the newest journal, found after the batches
/// were written, makes every one of them durable.
struct ActiveJournal {
    dir: PathBuf,
    n: u64,
    file: File,
}

impl ActiveJournal {
    fn open(dir: &Path) -> std::io::Result<ActiveJournal> {
        let n = newest_journal(dir)?;
        let file = File::open(dir.join(format!("{n}.jnl")))?;
        Ok(ActiveJournal {
            dir: dir.to_path_buf(),
            n,
            file,
        })
    }

    fn sync(&mut self) -> std::io::Result<()> {
        let n = newest_journal(&self.dir)?;
        if n != self.n {
            self.file = File::open(self.dir.join(format!("{n}.jnl")))?;
            self.n = n;
        }
        self.file.sync_data()
    }
}

/// The number of the newest `<n>.jnl` in `dir`.
fn newest_journal(dir: &Path) -> std::io::Result<u64> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let n = name
            .to_str()
            .and_then(|n| n.strip_suffix(".jnl"))
            .and_then(|n| n.parse::<u64>().ok());
        newest = newest.max(n);
    }
    newest.ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no journal in {}", dir.display()),
        )
    })
}
