//! Atomic appends with a checkpoint: several frames and one named value (a processor's
//! position and state) committed in one batch, all or nothing. This is what makes a
//! handler's output exactly-once: after a crash it resumes from the checkpoint written with
//! its last output, so nothing is emitted twice and nothing is lost.

use std::future::Future;

use super::{writer, Local, WriteOp};
use crate::error::{Error, Result};
use crate::frame::Frame;
use crate::NewFrame;

impl Local {
    /// Appends `frames` in order and, in the same durable batch, sets checkpoint `name` to
    /// `value` (`None`: leaves checkpoints alone). If any frame is refused (failed `expect`,
    /// ...) nothing of it is written. Queued at once; resolves to the frames once durable.
    pub(super) fn append_atomic(
        &self,
        frames: Vec<NewFrame>,
        checkpoint: Option<(String, Vec<u8>)>,
    ) -> impl Future<Output = Result<Vec<Frame>>> + Send + 'static {
        let done = self.submit(|reply| WriteOp::Atomic {
            frames,
            checkpoint,
            reply,
        });
        async move {
            match done.await? {
                writer::Done::Frames(f) => Ok(f),
                _ => Err(Error::Internal(
                    "an atomic append answered without frames".into(),
                )),
            }
        }
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
            .map(|_| ())
    }
}
