//! What a backend that keeps a local store as a copy of a shared log (the JetStream backend)
//! needs beyond the [`crate::Backend`] boundary: applying changes another writer decided
//! (ids kept, `expect` already checked), with a checkpoint in the same commit (the position
//! in the shared log), and the reads its writer plans appends with.

use std::future::Future;
use std::sync::Arc;

use ssri::Integrity;

use super::plan::{Ctx, Plan};
use super::{append, codec, stats, Local, WriteOp};
use crate::backend::{LiveFrame, NewFrame};
use crate::error::Result;
use crate::frame::{now_ms, Frame, Id};

/// One change to apply to the copy.
#[derive(Debug)]
pub(crate) enum Applied {
    /// An append with the id its writer gave it: stored (and `last:n` applied, the frame
    /// broadcast to followers) as if appended here; skipped if the id is already stored.
    Append(NewFrame, Id),
    /// An import (restore): stored as given, not broadcast.
    Import(Frame),
    /// A removal; nothing if the frame is already gone.
    Remove(Id),
    /// A removal that also drops the frame's content here when no frame references it.
    Purge(Id),
    /// An id given to a frame that is not stored (ephemeral): later ids and acks count it.
    Seen(Id),
}

impl Local {
    /// Applies `ops` in order and sets `checkpoints` in the same durable commit.
    pub(crate) fn apply(
        &self,
        ops: Vec<Applied>,
        checkpoints: Vec<(String, Option<Vec<u8>>)>,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let done = self.submit(|reply| WriteOp::Apply {
            ops,
            checkpoints,
            reply,
        });
        async move { done.await.map(|_| ()) }
    }

    /// The value of checkpoint `name`, if set.
    pub(crate) fn checkpoint_value(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.checkpoint(name)
    }

    /// The newest id stored, if any.
    pub(crate) fn newest_id(&self) -> Result<Option<Id>> {
        self.last_id()
    }

    /// The frame an idempotency key on `topic` points at, if it is still stored and not
    /// expired.
    pub(crate) fn idem_frame(&self, topic: &str, key: &str) -> Result<Option<Frame>> {
        let ks = &self.inner.ks;
        let Some(v) = ks.idem.get(append::idem_key(topic, key))? else {
            return Ok(None);
        };
        let id = codec::id_from_key(&v)?;
        let Some(v) = ks.frames.get(codec::id_key(&id))? else {
            return Ok(None);
        };
        if codec::decode_frame_value(&id, &v)?.is_expired(now_ms()) {
            return Ok(None);
        }
        codec::decode_frame(&id, &v).map(Some)
    }

    /// The newest unexpired frame on exactly `topic`, as `expect` sees it.
    pub(crate) fn newest_on(&self, topic: &str) -> Result<Option<Id>> {
        let ks = &self.inner.ks;
        let now = now_ms();
        let live = |id: &Id| -> Result<bool> {
            match ks.frames.get(codec::id_key(id))? {
                Some(v) => Ok(!codec::decode_frame_value(id, &v)?.is_expired(now)),
                None => Ok(false),
            }
        };
        match stats::topic_last(ks, topic)? {
            None => return Ok(None),
            Some(id) if live(&id)? => return Ok(Some(id)),
            Some(_) => {}
        }
        let mut prefix = topic.as_bytes().to_vec();
        prefix.push(0);
        for g in ks.idx_topic.prefix(&prefix).rev() {
            let id = codec::id_from_topic_key(&g.key()?)?;
            if live(&id)? {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// Whether content with this hash is stored here.
    pub(crate) fn has_content(&self, hash: &Integrity) -> Result<bool> {
        self.cas_has(hash)
    }

    /// Whether a stored frame names this content.
    pub(crate) fn references(&self, hash: &Integrity) -> Result<bool> {
        stats::referenced(&self.inner.ks, &super::content::cas_key(hash))
    }

    /// Where content too large to be inline would be stored here.
    pub(crate) fn content_path(&self, hash: &Integrity) -> std::path::PathBuf {
        super::content::cacache_path(self.cacache_dir(), hash)
    }

    /// Whether a frame with this id is stored (expired or not).
    pub(crate) fn contains(&self, id: &Id) -> Result<bool> {
        Ok(self.inner.ks.frames.contains_key(codec::id_key(id))?)
    }

    /// A stored frame, expired or not.
    pub(crate) fn lookup_any(&self, id: &Id) -> Result<Option<Frame>> {
        match self.inner.ks.frames.get(codec::id_key(id))? {
            Some(v) => codec::decode_frame(id, &v).map(Some),
            None => Ok(None),
        }
    }

    /// Sends a frame that is not stored (ephemeral, from another daemon) to live followers.
    pub(crate) fn broadcast(&self, frame: Arc<LiveFrame>) {
        if let Some(live) = self
            .inner
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            live.send(frame);
        }
    }
}

/// Plans changes decided elsewhere (see [`Applied`]). A frame that cannot be applied (its
/// content missing here) is skipped with a warning rather than stopping the feed.
pub(super) fn plan_apply(
    cx: &mut Ctx,
    plan: &mut Plan,
    ops: Vec<Applied>,
    checkpoints: Vec<(String, Option<Vec<u8>>)>,
) -> Result<()> {
    for op in ops {
        match op {
            Applied::Append(mut nf, id) => {
                // Applied before (a restart between the feed's commits): nothing to do.
                if cx.lookup(&id)?.is_some() || plan.inserts.iter().any(|i| i.frame.id == id) {
                    continue;
                }
                nf.expect = None;
                if let Err(e) = append::plan_append_as(cx, plan, nf, Some(id)) {
                    tracing::warn!(error = %e, %id, "a frame of the shared log is skipped");
                }
            }
            Applied::Import(frame) => {
                if let Err(e) = append::plan_import(cx, plan, &frame) {
                    tracing::warn!(error = %e, id = %frame.id, "an import of the shared log is skipped");
                }
            }
            Applied::Remove(id) => {
                // Already gone: nothing to do.
                let _ = plan.remove(cx, id);
            }
            Applied::Purge(id) => {
                if plan.remove(cx, id).is_ok() {
                    plan.drops.push(super::plan::DropRequest::OfFrame(id));
                }
            }
            Applied::Seen(id) => {
                if cx.last_id.is_none_or(|l| id > l) {
                    cx.last_id = Some(id);
                }
            }
        }
    }
    for (name, value) in checkpoints {
        plan.checkpoints.insert(name, value);
    }
    Ok(())
}
