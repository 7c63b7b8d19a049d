//! Atomic appends with a checkpoint: several frames and one named value (a processor's
//! position and state) committed in one batch, all or nothing. This is what makes a
//! handler's output exactly-once: after a crash it resumes from the checkpoint written with
//! its last output, so nothing is emitted twice and nothing is lost. A fence (the value the
//! checkpoint must still hold) refuses a deposed owner's late batch whole.

use std::future::Future;

use super::append::plan_append;
use super::plan::{Ctx, Plan, WriteOp};
use super::Local;
use crate::backend::Fence;
use crate::error::{Error, Result};
use crate::frame::Frame;
use crate::NewFrame;

impl Local {
    /// Appends `frames` in order and, in the same durable batch, sets checkpoint `name` to
    /// `value` (`None`: leaves checkpoints alone). If any frame is refused (failed `expect`,
    /// ...) or the checkpoint does not hold what `fence` says, nothing of it is written.
    /// Queued at once; resolves to the frames once durable.
    pub(super) fn append_atomic(
        &self,
        frames: Vec<NewFrame>,
        checkpoint: Option<(String, Vec<u8>)>,
        fence: Option<Fence>,
    ) -> impl Future<Output = Result<Vec<Frame>>> + Send + 'static {
        self.submit(|reply| WriteOp::Atomic {
            frames,
            checkpoint,
            fence,
            reply,
        })
    }

    /// The value of checkpoint `name`, if set.
    pub(super) fn checkpoint(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .inner
            .ks
            .checkpoints
            .get(name.as_bytes())?
            .map(|v| v.to_vec()))
    }

    /// Removes checkpoint `name` (nothing if it is not set).
    pub(super) async fn remove_checkpoint(&self, name: String) -> Result<()> {
        self.submit(|reply| WriteOp::RemoveCheckpoint { name, reply })
            .await
    }
}

/// Plans every frame, then the checkpoint; if one frame is refused, undoes what the
/// others planned, so none of them is written (a failed `expect` says which frame it was).
pub(super) fn plan_atomic(
    cx: &mut Ctx,
    plan: &mut Plan,
    frames: Vec<NewFrame>,
    checkpoint: Option<(String, Vec<u8>)>,
    fence: Option<Fence>,
) -> Result<Vec<Frame>> {
    if let (Some(f), Some((name, _))) = (&fence, &checkpoint) {
        // This commit's earlier writes first, then what is stored.
        let current = match plan.checkpoints.get(name) {
            Some(v) => v.clone(),
            None => cx.ks.checkpoints.get(name.as_bytes())?.map(|v| v.to_vec()),
        };
        if !f.holds(current.as_deref()) {
            return Err(Error::Fenced { name: name.clone() });
        }
    }
    let marks = (
        plan.inserts.len(),
        plan.trims.len(),
        plan.content.len(),
        plan.live.len(),
    );
    let idem = plan.idem.clone();
    let last_id = cx.last_id;
    let mut out = Vec::with_capacity(frames.len());
    for (i, nf) in frames.into_iter().enumerate() {
        match plan_append(cx, plan, nf) {
            Ok(f) => out.push(f),
            Err(mut e) => {
                if let Error::ExpectFailed { index, .. } = &mut e {
                    *index = Some(i);
                }
                plan.inserts.truncate(marks.0);
                plan.trims.truncate(marks.1);
                plan.content.truncate(marks.2);
                plan.live.truncate(marks.3);
                plan.idem = idem;
                cx.last_id = last_id;
                return Err(e);
            }
        }
    }
    if let Some((name, value)) = checkpoint {
        plan.checkpoints.insert(name, Some(value));
    }
    Ok(out)
}

/// Plans removing checkpoint `name`.
pub(super) fn plan_remove_checkpoint(plan: &mut Plan, name: String) {
    plan.checkpoints.insert(name, None);
}
