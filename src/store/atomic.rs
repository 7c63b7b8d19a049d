//! Atomic appends with a checkpoint: several frames and one named value (a processor's
//! position and state) committed in one batch, all or nothing. This is what makes a
//! handler's output exactly-once: after a crash it resumes from the checkpoint written with
//! its last output, so nothing is emitted twice and nothing is lost.

use super::{writer, Outcome, Store, WriteOp};
use crate::error::Result;
use crate::frame::Frame;
use crate::NewFrame;

impl Store {
    /// Appends `frames` in order and, in the same durable batch, sets checkpoint `name` to
    /// `value` (`None`: leaves checkpoints alone). If any frame is refused (bad topic, failed
    /// `expect`, ...) nothing of it is written. Resolves to the frames once durable.
    pub async fn append_atomic(
        &self,
        frames: Vec<NewFrame>,
        checkpoint: Option<(String, Vec<u8>)>,
    ) -> Result<Vec<Frame>> {
        let sizes: Vec<u64> = frames
            .iter()
            .map(|f| self.content_len(&f.content))
            .collect();
        let r = match frames
            .iter()
            .try_for_each(|f| crate::topic::validate_topic(&f.topic))
        {
            Ok(()) => {
                self.submit(|reply| WriteOp::Atomic {
                    frames,
                    checkpoint,
                    reply,
                })
                .await
            }
            Err(e) => Err(e),
        };
        let outcome = Outcome::of(&r);
        for bytes in sizes {
            self.inner.ks.metrics.append(outcome, bytes);
        }
        match r? {
            writer::Done::Frames(f) => Ok(f),
            _ => unreachable!("an atomic append answers with frames"),
        }
    }

    /// The value of checkpoint `name`, if set.
    pub fn checkpoint(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .inner
            .ks
            .checkpoints
            .get(name.as_bytes())?
            .map(|v| v.to_vec()))
    }

    /// Removes checkpoint `name` (nothing if it is not set).
    pub async fn remove_checkpoint(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.submit(|reply| WriteOp::RemoveCheckpoint { name, reply })
            .await
            .map(|_| ())
    }
}
