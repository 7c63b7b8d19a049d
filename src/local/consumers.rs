//! Consumer positions: the `consumers` keyspace (name → last acknowledged id), changed only
//! through the writer (acks keep the max, so a position never moves backwards), read here.

use std::future::Future;

use super::plan::{Ctx, Plan, WriteOp};
use super::{codec, Local};
use crate::consumer::{ConsumerInfo, LAG_CAP};
use crate::error::{Error, Result};
use crate::frame::Id;

impl Local {
    /// Acknowledges `id` for consumer `name`: its position becomes the larger of the two.
    /// `id` must not be after the newest frame the store assigned. Queued at once; resolves
    /// to the position once it is durable.
    pub(super) fn ack(
        &self,
        name: String,
        id: Id,
    ) -> impl Future<Output = Result<Id>> + Send + 'static {
        self.submit(move |reply| WriteOp::Ack { name, id, reply })
    }

    /// Forgets consumer `name`. `NotFound` if it has no position.
    pub(super) async fn remove_consumer(&self, name: String) -> Result<()> {
        self.submit(|reply| WriteOp::RemoveConsumer { name, reply })
            .await
    }

    /// Every consumer (or only `only`), by name, with its lag. Blocking (counts frames).
    pub(super) fn consumers(&self, only: Option<&str>) -> Result<Vec<ConsumerInfo>> {
        let mut out = Vec::new();
        let mut push = |name: String, v: &[u8]| -> Result<()> {
            let position = codec::id_from_key(v)?;
            out.push(ConsumerInfo {
                lag: self.count_after(Some(&position), LAG_CAP)?,
                name,
                position,
            });
            Ok(())
        };
        match only {
            Some(name) => {
                if let Some(v) = self.inner.ks.consumers.get(name.as_bytes())? {
                    push(name.to_string(), &v)?;
                }
            }
            None => {
                for g in self.inner.ks.consumers.iter() {
                    let (k, v) = g.into_inner()?;
                    let name = String::from_utf8(k.to_vec())
                        .map_err(|_| Error::Corrupt("consumer name is not UTF-8".into()))?;
                    push(name, &v)?;
                }
            }
        }
        Ok(out)
    }

    /// How many frames are stored after `id` (all with `None`), counting at most `cap`.
    pub(super) fn count_after(&self, id: Option<&Id>, cap: u64) -> Result<u64> {
        let mut n = 0;
        let lower = match id {
            Some(id) => std::ops::Bound::Excluded(codec::id_key(id)),
            None => std::ops::Bound::Unbounded,
        };
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

/// A consumer's position, counting changes already planned in this batch.
fn planned_position(cx: &Ctx, plan: &Plan, name: &str) -> Result<Option<Id>> {
    if let Some(p) = plan.consumers.get(name) {
        return Ok(*p);
    }
    match cx.ks.consumers.get(name.as_bytes())? {
        Some(v) => codec::id_from_key(&v).map(Some),
        None => Ok(None),
    }
}

/// Plans an ack: the position becomes the larger of the two; `id` must not be after the
/// newest id the store assigned.
pub(super) fn plan_ack(cx: &Ctx, plan: &mut Plan, name: String, id: Id) -> Result<Id> {
    if cx.last_id.is_none_or(|last| id > last) {
        return Err(Error::invalid(format!(
            "cannot acknowledge {id}: it is after the newest frame in the store"
        )));
    }
    let position = match planned_position(cx, plan, &name)? {
        Some(p) if p >= id => p,
        _ => id,
    };
    plan.consumers.insert(name, Some(position));
    Ok(position)
}

/// Plans forgetting a consumer. `NotFound` if it has no position.
pub(super) fn plan_remove_consumer(cx: &Ctx, plan: &mut Plan, name: String) -> Result<()> {
    if planned_position(cx, plan, &name)?.is_none() {
        return Err(Error::NotFound(format!("no consumer named {name:?}")));
    }
    plan.consumers.insert(name, None);
    Ok(())
}
