//! Appends and imports as the writer plans them: idempotency keys (a repeat answers the
//! original frame), optimistic concurrency (`expect`), ids, and `last:n` trims.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use super::plan::{Ctx, Insert, Plan, WriteOp};
use super::{codec, content::cas_key, stats, Local};
use crate::backend::{Content, LiveFrame, NewFrame};
use crate::error::{Error, Result};
use crate::frame::{now_ms, Frame, Id};
use crate::topic::index_prefixes;
use crate::ttl::Ttl;

/// Imported ids must leave this many larger ids for appends: the writer gives each append
/// an id above every stored one, and must never run out of them.
const IMPORT_ID_HEADROOM: u128 = 1 << 64;

impl Local {
    /// Appends a frame. The frame is queued at once (so appends issued in order are stored in
    /// order); the future resolves once it is durable (fsynced) and broadcast to followers.
    pub(super) fn append(
        &self,
        frame: NewFrame,
    ) -> impl Future<Output = Result<Frame>> + Send + 'static {
        self.submit(|r| WriteOp::Append(frame, r))
    }

    /// Stores a frame as given, keeping its id (for `xs import`). Not broadcast to followers.
    /// Queued at once, like [`Local::append`]. Its content must already be in the store.
    pub(super) fn import(
        &self,
        frame: Frame,
    ) -> impl Future<Output = Result<Frame>> + Send + 'static {
        let checked = crate::topic::validate_topic(&frame.topic).and_then(|()| match &frame.hash {
            _ if frame.id.to_u128() > u128::MAX - IMPORT_ID_HEADROOM => {
                Err(Error::invalid(format!(
                "frame {}: id is too close to the largest possible id (appends need larger ones)",
                frame.id
            )))
            }
            Some(h) if !self.cas_has(h)? => Err(Error::invalid(format!(
                "frame {}: content {h} is not in the store (POST /cas it first)",
                frame.id
            ))),
            _ => Ok(()),
        });
        let done = checked.map(|()| self.submit(|r| WriteOp::Import(frame, r)));
        async move { done?.await }
    }
}

/// Plans one append: answers the original frame for a known idempotency key, checks
/// `expect`, then assigns the id. A new frame's live copy goes in `plan.live`.
pub(super) fn plan_append(cx: &mut Ctx, plan: &mut Plan, nf: NewFrame) -> Result<Frame> {
    plan_append_as(cx, plan, nf, None)
}

/// [`plan_append`], with the id given (`forced`: a frame another writer appended, applied to a
/// copy) instead of a new one.
pub(super) fn plan_append_as(
    cx: &mut Ctx,
    plan: &mut Plan,
    nf: NewFrame,
    forced: Option<Id>,
) -> Result<Frame> {
    let idem = nf.key.as_deref().map(|k| idem_key(&nf.topic, k));
    if let Some(k) = &idem {
        if let Some(f) = plan.idem.get(k) {
            return Ok(f.clone());
        }
        if let Some(f) = idem_frame(cx, plan, k)? {
            return Ok(f);
        }
    }
    if let Some(expected) = nf.expect {
        let last = newest_on(cx, plan, &nf.topic)?;
        if !expected.holds(last) {
            return Err(Error::ExpectFailed {
                topic: nf.topic,
                expected,
                last,
                index: None,
            });
        }
    }
    if let Content::Stored { hash: h, .. } = &nf.content {
        let key = cas_key(h);
        let here = super::content::cacache_path(&cx.cacache_dir, h).is_file()
            || cx.ks.cas.contains_key(&key)?;
        if !here {
            return Err(Error::Conflict(format!(
                "content {h} was removed (purged or collected) before its frame was written; append it again"
            )));
        }
    }
    let id = match forced {
        Some(id) => {
            if cx.last_id.is_none_or(|l| id > l) {
                cx.last_id = Some(id);
            }
            id
        }
        None => cx.next_id(),
    };
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
    plan.live.push(Arc::new(LiveFrame {
        frame: frame.clone(),
        json: json.into(),
    }));
    if let (Some(k), false) = (idem, nf.ttl == Ttl::Ephemeral) {
        plan.idem.insert(k, frame.clone());
    }
    Ok(frame)
}

/// Plans an import: the frame as given, replacing a stored frame with its id.
pub(super) fn plan_import(cx: &mut Ctx, plan: &mut Plan, frame: &Frame) -> Result<()> {
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
    let fresh = cx.last_id.is_none_or(|l| frame.id > l);
    let old = if fresh {
        None
    } else {
        cx.lookup(&frame.id).unwrap_or(None)
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
    if fresh {
        cx.last_id = Some(frame.id);
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
pub(super) fn plan_trims(cx: &Ctx, plan: &mut Plan) -> Result<()> {
    let trims = std::mem::take(&mut plan.trims);
    let mut topics: Vec<&str> = trims.iter().map(|(_, t, _)| t.as_str()).collect();
    topics.sort_unstable();
    topics.dedup();
    for topic in topics {
        // The topic's frames by id: (id, insert index if from this batch, alive).
        let mut members: Vec<(Id, Option<usize>, bool)> = Vec::new();
        let mut prefix = topic.as_bytes().to_vec();
        prefix.push(0);
        for g in cx.ks.idx_topic.prefix(&prefix) {
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
            if let Some(v) = cx.ks.frames.get(codec::id_key(&id))? {
                let exp = codec::decode_frame_value(&id, &v)?.expires_at;
                let old_topic = codec::decode_frame(&id, &v)?.topic;
                plan.deletes.insert(id, (old_topic, exp));
            }
        }
    }
    Ok(())
}

/// Key of an idempotency key in the `idem` keyspace: `topic \0 key`.
pub(super) fn idem_key(topic: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(topic.len() + 1 + key.len());
    k.extend_from_slice(topic.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

/// The stored frame an idempotency key points at, if it still exists (not removed, not
/// being removed in this batch, not expired).
fn idem_frame(cx: &Ctx, plan: &Plan, key: &[u8]) -> Result<Option<Frame>> {
    let Some(v) = cx.ks.idem.get(key)? else {
        return Ok(None);
    };
    let id = codec::id_from_key(&v)?;
    if plan.deletes.contains_key(&id) {
        return Ok(None);
    }
    let Some(v) = cx.ks.frames.get(codec::id_key(&id))? else {
        return Ok(None);
    };
    if codec::decode_frame_value(&id, &v)?.is_expired(now_ms()) {
        return Ok(None);
    }
    codec::decode_frame(&id, &v).map(Some)
}

/// The newest frame on exactly `topic`: this batch's frames first, then the store's
/// (skipping frames deleted in this batch and expired ones).
fn newest_on(cx: &Ctx, plan: &Plan, topic: &str) -> Result<Option<Id>> {
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
        match cx.ks.frames.get(codec::id_key(id))? {
            Some(v) => Ok(!codec::decode_frame_value(id, &v)?.is_expired(now)),
            None => Ok(false),
        }
    };
    // Fast path: the topic index's last frame, when it is still there (point reads only).
    match stats::topic_last(&cx.ks, topic)? {
        None => return Ok(in_batch),
        Some(id) if live(&id)? => return Ok(in_batch.max(Some(id))),
        Some(_) => {}
    }
    let mut prefix = topic.as_bytes().to_vec();
    prefix.push(0);
    let mut stored = None;
    for g in cx.ks.idx_topic.prefix(&prefix).rev() {
        let id = codec::id_from_topic_key(&g.key()?)?;
        if live(&id)? {
            stored = Some(id);
            break;
        }
    }
    Ok(in_batch.max(stored))
}
