//! The changes the writer thread takes, each with its own typed reply, and the [`Plan`] of one
//! batch that each feature (appends, atomic appends, consumers, purge and gc) adds to.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use ssri::Integrity;
use tokio::sync::oneshot;

use super::{codec, Keyspaces};
use crate::backend::{GcReport, LiveFrame, NewFrame};
use crate::error::{Error, Result};
use crate::frame::{now_ms, Frame, Id};

/// Where the writer sends an op's answer once its batch is durable (or refused).
pub(crate) type Reply<T> = oneshot::Sender<Result<T>>;

/// One change for the writer thread.
pub(crate) enum WriteOp {
    Append(NewFrame, Reply<Frame>),
    Import(Frame, Reply<Frame>),
    Remove(Id, Reply<()>),
    PutContent(Integrity, Bytes, Reply<()>),
    /// Removes those of these frames that have expired; answers how many.
    Expire(Vec<Id>, Reply<usize>),
    /// Remove, and remove the frame's content if nothing else references it.
    Purge(Id, Reply<GcReport>),
    /// Remove these content keys if nothing references them once the batch is written.
    Gc(Vec<Vec<u8>>, Reply<GcReport>),
    /// Moves consumer `name` forward to `id` (never backwards); answers its position.
    Ack {
        name: String,
        id: Id,
        reply: Reply<Id>,
    },
    RemoveConsumer {
        name: String,
        reply: Reply<()>,
    },
    /// Frames and a checkpoint, all or nothing (see `atomic`).
    Atomic {
        frames: Vec<NewFrame>,
        checkpoint: Option<(String, Vec<u8>)>,
        fence: Option<crate::backend::Fence>,
        reply: Reply<Vec<Frame>>,
    },
    RemoveCheckpoint {
        name: String,
        reply: Reply<()>,
    },
    /// Changes another writer already decided (the JetStream feed), applied as they come:
    /// appends keep their ids and skip `expect`; checkpoints are set in the same batch.
    Apply {
        ops: Vec<super::copy::Applied>,
        checkpoints: Vec<(String, Option<Vec<u8>>)>,
        reply: Reply<()>,
    },
}

/// What planning may read, and the id counter: the store as the batches before this one
/// left it.
pub(crate) struct Ctx {
    pub ks: Keyspaces,
    pub cacache_dir: PathBuf,
    /// The largest id stored or planned so far.
    pub last_id: Option<Id>,
}

impl Ctx {
    /// A new id above every stored and planned one.
    pub fn next_id(&mut self) -> Id {
        let mut id = scru128::new();
        if let Some(last) = self.last_id {
            if id <= last {
                id = Id::from_u128(last.to_u128() + 1);
            }
        }
        self.last_id = Some(id);
        id
    }

    /// Topic and expiry of a stored frame, if it exists.
    pub fn lookup(&self, id: &Id) -> Result<Option<(String, u64)>> {
        let Some(v) = self.ks.frames.get(codec::id_key(id))? else {
            return Ok(None);
        };
        let value = codec::decode_frame_value(id, &v)?;
        let frame = codec::decode_frame(id, &v)?;
        Ok(Some((frame.topic, value.expires_at)))
    }
}

/// A frame to insert in the batch being built.
pub(crate) struct Insert {
    pub frame: Frame,
    pub value: Vec<u8>,
    /// Dropped by a later `last:n` of the same batch: not written.
    pub skip: bool,
}

/// Content a purge or a gc asks to remove once the batch is written, if nothing references it
/// then (see `gc`).
pub(crate) enum DropRequest {
    /// The content a deleted frame referenced.
    OfFrame(Id),
    /// These content keys.
    Keys(Vec<Vec<u8>>),
}

/// What one batch will do, built from its ops before anything is written.
#[derive(Default)]
pub(crate) struct Plan {
    pub inserts: Vec<Insert>,
    /// Existing frames to delete: id → topic and expiry (to delete their index entries).
    pub deletes: HashMap<Id, (String, u64)>,
    /// The `last:n` appends of this batch, in order: index in `inserts`, topic, n.
    pub trims: Vec<(usize, String, u32)>,
    pub content: Vec<(Vec<u8>, Bytes)>,
    /// Index keys of replaced (re-imported) frames that are no longer wanted (`true`: expiry).
    pub stale_keys: Vec<(bool, Vec<u8>)>,
    /// Idempotency keys (`topic \0 key`) of this batch's appends, and their frames.
    pub idem: HashMap<Vec<u8>, Frame>,
    /// New frames to broadcast once the batch is durable, in id order.
    pub live: Vec<Arc<LiveFrame>>,
    /// Purges and gcs, each answered with what its request freed.
    pub drops: Vec<DropRequest>,
    /// Consumer positions to write (`None`: remove the consumer).
    pub consumers: HashMap<String, Option<Id>>,
    /// Checkpoints to write (`None`: remove).
    pub checkpoints: HashMap<String, Option<Vec<u8>>>,
}

impl Plan {
    /// Deletes a stored frame. `NotFound` if there is none.
    pub fn remove(&mut self, cx: &Ctx, id: Id) -> Result<()> {
        match cx.lookup(&id)? {
            Some(found) => {
                self.deletes.insert(id, found);
                Ok(())
            }
            None => Err(Error::NotFound(format!("no frame with id {id}"))),
        }
    }

    /// Deletes those of `ids` that have expired; answers how many.
    pub fn expire(&mut self, cx: &Ctx, ids: Vec<Id>) -> Result<usize> {
        let now = now_ms();
        let mut n = 0;
        let mut err = None;
        for id in ids {
            match cx.lookup(&id) {
                Ok(Some((topic, exp))) if exp != 0 && exp <= now => {
                    self.deletes.insert(id, (topic, exp));
                    n += 1;
                }
                Ok(_) => {}
                Err(e) => err = Some(e),
            }
        }
        err.map_or(Ok(n), Err)
    }
}
