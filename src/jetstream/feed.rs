//! The feed: an ordered consumer on the whole stream, from the sequence after the last one
//! the copy applied, applying every change to the copy in sequence order (ids kept) with that
//! sequence in the same commit, so a restart resumes exactly. And the ephemeral frames other
//! daemons publish on core NATS, sent to this daemon's live followers.

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_nats::jetstream::{consumer, stream};
use futures::StreamExt;

use super::codec::{self, Change};
use super::{Inner, APPLIED};
use crate::backend::{Content, LiveFrame};
use crate::error::Result;
use crate::frame::Frame;
use crate::local::copy::Applied;

/// At most this many messages are applied in one commit of the copy.
const CHUNK: usize = 512;

pub(crate) async fn run(inner: Weak<Inner>, stream: stream::Stream, mut applied: u64) {
    loop {
        match follow(&inner, &stream, &mut applied).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, applied, "the JetStream feed stopped; restarting it");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// Follows the stream until the backend is gone (`Ok`) or the consumer fails.
async fn follow(inner: &Weak<Inner>, stream: &stream::Stream, applied: &mut u64) -> Result<()> {
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: *applied + 1,
            },
            ..Default::default()
        })
        .await
        .map_err(super::unavailable)?;
    if consumer.cached_info().num_pending == 0 {
        if let Some(inner) = inner.upgrade() {
            inner.current.send_replace(true);
        }
    }
    let msgs = consumer.messages().await.map_err(super::unavailable)?;
    let mut chunks = msgs.ready_chunks(CHUNK);
    while let Some(chunk) = chunks.next().await {
        let Some(inner) = inner.upgrade() else {
            return Ok(());
        };
        let mut changes = Vec::with_capacity(chunk.len());
        let mut failed = None;
        let mut pending = None;
        for m in chunk {
            match m {
                Ok(m) => {
                    let info = m.info().map_err(super::unavailable)?;
                    let seq = info.stream_sequence;
                    pending = Some(info.pending);
                    if seq <= *applied {
                        continue;
                    }
                    match codec::decode(m.headers.as_ref(), &m.payload) {
                        Ok(c) => changes.push((seq, c)),
                        Err(e) => {
                            tracing::error!(error = %e, seq, "skipping a message that does not decode");
                            changes.push((seq, None));
                        }
                    }
                }
                Err(e) => {
                    failed = Some(super::unavailable(e));
                    break;
                }
            }
        }
        apply(&inner, changes, applied).await?;
        if pending == Some(0) {
            inner.current.send_replace(true);
        }
        if let Some(e) = failed {
            return Err(e);
        }
    }
    Ok(())
}

/// Applies decoded changes in order: appends and checkpoints grouped in one commit, imports
/// and removals each in their own (they may touch a frame of the same group).
async fn apply(
    inner: &Arc<Inner>,
    changes: Vec<(u64, Option<Change>)>,
    applied: &mut u64,
) -> Result<()> {
    let mut ops = Vec::new();
    let mut checkpoints = Vec::new();
    let mut last = *applied;
    for (seq, change) in changes {
        let alone = matches!(change, Some(Change::Import(_) | Change::Remove(..)));
        if alone && (!ops.is_empty() || !checkpoints.is_empty()) {
            commit(inner, &mut ops, &mut checkpoints, last, applied).await?;
        }
        match change {
            Some(Change::Append(nf, id)) => {
                if let Content::Stored { hash, .. } = &nf.content {
                    fetch(inner, hash).await?;
                }
                inner.saw(id);
                ops.push(Applied::Append(nf, id));
            }
            Some(Change::Import(f)) => {
                if let Some(hash) = &f.hash {
                    fetch(inner, hash).await?;
                }
                inner.saw(f.id);
                ops.push(Applied::Import(f));
            }
            Some(Change::Remove(id, false)) => ops.push(Applied::Remove(id)),
            Some(Change::Remove(id, true)) => ops.push(Applied::Purge(id)),
            Some(Change::Checkpoint(name, value)) => checkpoints.push((name, value)),
            None => {}
        }
        last = seq;
        if alone {
            commit(inner, &mut ops, &mut checkpoints, last, applied).await?;
        }
    }
    if last > *applied {
        commit(inner, &mut ops, &mut checkpoints, last, applied).await?;
    }
    Ok(())
}

async fn commit(
    inner: &Inner,
    ops: &mut Vec<Applied>,
    checkpoints: &mut Vec<(String, Option<Vec<u8>>)>,
    seq: u64,
    applied: &mut u64,
) -> Result<()> {
    let mut cps = std::mem::take(checkpoints);
    cps.push((APPLIED.to_string(), Some(seq.to_be_bytes().to_vec())));
    inner.copy.apply(std::mem::take(ops), cps).await?;
    *applied = seq;
    inner.applied.send_replace(seq);
    Ok(())
}

/// Brings large content into the copy before the frame naming it is applied.
async fn fetch(inner: &Inner, hash: &ssri::Integrity) -> Result<()> {
    if inner.copy.has_content(hash)? {
        return Ok(());
    }
    if !inner.download(hash).await? {
        tracing::warn!(%hash, "content named by a frame is not in the object store");
    }
    Ok(())
}

/// Ephemeral frames (core NATS, never stored) to live followers.
pub(crate) async fn ephemeral(inner: Weak<Inner>, mut sub: async_nats::Subscriber) {
    while let Some(m) = sub.next().await {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        match Frame::from_json(&m.payload) {
            Ok(f) => {
                inner.saw(f.id);
                inner.copy.broadcast(Arc::new(LiveFrame::new(f)))
            }
            Err(e) => tracing::warn!(error = %e, "an ephemeral frame that does not decode"),
        }
    }
}
