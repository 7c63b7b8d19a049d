//! Consumer positions: the `consumers` keyspace (name → last acknowledged id), changed only
//! through the writer (acks keep the max, so a position never moves backwards), read here.

use std::future::Future;

use super::{codec, writer, Store, WriteOp};
use crate::consumer::{validate_name, ConsumerInfo};
use crate::error::{Error, Result};
use crate::frame::Id;
use crate::LAG_CAP;

impl Store {
    /// Acknowledges `id` for consumer `name`: its position becomes the larger of the two.
    /// `id` must not be after the newest frame the store assigned. Queued at once, like
    /// [`Store::append`]; resolves to the position once it is durable.
    pub fn ack(&self, name: &str, id: Id) -> impl Future<Output = Result<Id>> + Send + 'static {
        let checked = validate_name(name);
        let name = name.to_string();
        let done = checked.map(|()| self.submit(move |reply| WriteOp::Ack { name, id, reply }));
        async move {
            match done?.await? {
                writer::Done::Position(p) => Ok(p),
                _ => unreachable!("ack answers with a position"),
            }
        }
    }

    /// Forgets consumer `name`. `NotFound` if it has no position.
    pub async fn remove_consumer(&self, name: &str) -> Result<()> {
        validate_name(name)?;
        let name = name.to_string();
        self.submit(|reply| WriteOp::RemoveConsumer { name, reply })
            .await
            .map(|_| ())
    }

    /// The last id acknowledged for `name`, if any.
    pub fn consumer_position(&self, name: &str) -> Result<Option<Id>> {
        validate_name(name)?;
        match self.inner.ks.consumers.get(name.as_bytes())? {
            Some(v) => codec::id_from_key(&v).map(Some),
            None => Ok(None),
        }
    }

    /// One consumer with its lag, if it has a position. Blocking (counts frames).
    pub fn consumer(&self, name: &str) -> Result<Option<ConsumerInfo>> {
        let Some(position) = self.consumer_position(name)? else {
            return Ok(None);
        };
        Ok(Some(ConsumerInfo {
            name: name.to_string(),
            position,
            lag: self.frames_after(&position, LAG_CAP)?,
        }))
    }

    /// Every consumer, by name, with its lag. Blocking (counts frames).
    pub fn consumers(&self) -> Result<Vec<ConsumerInfo>> {
        let mut out = Vec::new();
        for g in self.inner.ks.consumers.iter() {
            let (k, v) = g.into_inner()?;
            let name = String::from_utf8(k.to_vec())
                .map_err(|_| Error::Corrupt("consumer name is not UTF-8".into()))?;
            let position = codec::id_from_key(&v)?;
            out.push(ConsumerInfo {
                lag: self.frames_after(&position, LAG_CAP)?,
                name,
                position,
            });
        }
        Ok(out)
    }

    /// How many frames are stored after `id`, counting at most `cap`.
    pub(super) fn frames_after(&self, id: &Id, cap: u64) -> Result<u64> {
        let mut n = 0;
        let lower = std::ops::Bound::Excluded(codec::id_key(id));
        for g in self
            .inner
            .ks
            .frames
            .range::<[u8; 16], _>((lower, std::ops::Bound::Unbounded))
        {
            g.key()?;
            n += 1;
            if n >= cap {
                break;
            }
        }
        Ok(n)
    }
}
