//! Removals, purges and gc across daemons. A removal is a tombstone every copy applies (a
//! purge's tombstone also drops the content in every copy where nothing references it);
//! then the daemon that removed deletes the frame's message from the stream, and for a
//! purge the content's object when its caught-up copy has no frame naming it. `gc` collects
//! the copy, then every object no frame of the caught-up copy references (objects larger
//! than inline content only once older than [`GC_GRACE`]: they may belong to an append
//! whose frame is not published yet).

use async_nats::jetstream::stream::DirectGetErrorKind;
use futures::StreamExt;
use ssri::Integrity;

use super::{codec, unavailable, Inner};
use crate::backend::{Backend, GcReport};
use crate::error::Result;
use crate::frame::Id;
use crate::local::gc::GC_GRACE;

/// Messages of one subject a removal scans when the binary search misses (imports keep
/// their ids, so a subject's ids need not increase with the sequence).
const SCAN_MAX: usize = 10_000;

impl Inner {
    /// Brings the copy up to the stream's end as it is now (bounded by the write timeout);
    /// answers whether it got there. Messages removed from the stream (`Nats-TTL`, deleted)
    /// never reach the copy: when every one between the copy's sequence and the end is gone
    /// (checked with direct gets when at most 64 are missing), the copy is there.
    pub(crate) async fn catch_up_now(&self) -> Result<bool> {
        let info = self.stream.get_info().await.map_err(unavailable)?;
        let last = info.state.last_sequence;
        let deadline = std::time::Instant::now() + self.write_timeout;
        loop {
            if self
                .wait_applied(last, std::time::Duration::from_millis(50))
                .await
            {
                return Ok(true);
            }
            let applied = *self.applied.borrow();
            if last.saturating_sub(applied) <= 64 {
                let mut present = false;
                for seq in applied + 1..=last {
                    match self.stream.direct_get(seq).await {
                        Err(e) if e.kind() == DirectGetErrorKind::NotFound => {}
                        _ => {
                            present = true;
                            break;
                        }
                    }
                }
                if !present {
                    return Ok(true);
                }
            }
            if std::time::Instant::now() >= deadline {
                return Ok(false);
            }
        }
    }

    /// The first message on `subject` at or after `seq`: (sequence, frame id).
    async fn next_on(&self, subject: &str, seq: u64) -> Result<Option<(u64, Option<Id>)>> {
        match self
            .stream
            .direct_get_next_for_subject(subject, Some(seq))
            .await
        {
            Ok(m) => Ok(Some((m.sequence, codec::frame_id(&m.payload)))),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// The stream sequence of the message that stored frame `id` on `topic`, if it is still
    /// in the stream. Along a subject, appended ids increase with the sequence: a binary
    /// search; then (imports) a bounded scan.
    async fn find_seq(&self, topic: &str, id: Id) -> Result<Option<u64>> {
        let subject = format!("{}.{topic}", self.prefix);
        let last = self
            .stream
            .get_info()
            .await
            .map_err(unavailable)?
            .state
            .last_sequence;
        let (mut lo, mut hi) = (1u64, last);
        while lo <= hi {
            let mid = lo + (hi - lo) / 2;
            match self.next_on(&subject, mid).await? {
                Some((seq, Some(f))) if seq <= hi && f == id => return Ok(Some(seq)),
                Some((seq, Some(f))) if seq <= hi && f < id => lo = seq + 1,
                _ => hi = mid - 1,
            }
        }
        let mut seq = 1;
        for _ in 0..SCAN_MAX {
            match self.next_on(&subject, seq).await? {
                Some((s, Some(f))) if f == id => return Ok(Some(s)),
                Some((s, _)) => seq = s + 1,
                None => return Ok(None),
            }
        }
        tracing::warn!(%id, topic, "the message of a removed frame was not found in {SCAN_MAX} messages");
        Ok(None)
    }

    /// Deletes the message of a removed frame from the stream (its tombstone is committed, so
    /// no copy needs it). A failure leaves it there, harmless: every copy applies the
    /// tombstone after it.
    pub(crate) async fn delete_message(&self, topic: &str, id: Id) {
        let r = async {
            if let Some(seq) = self.find_seq(topic, id).await? {
                self.stream.delete_message(seq).await.map_err(unavailable)?;
            }
            Ok::<_, crate::error::Error>(())
        };
        if let Err(e) = r.await {
            tracing::warn!(error = %e, %id, "deleting a removed frame's message from the stream failed");
        }
    }

    /// Deletes the object of `hash` unless a frame of the copy names it; answers its size if
    /// it was deleted.
    pub(crate) async fn drop_object(&self, hash: &Integrity) -> Result<Option<u64>> {
        if self.copy.references(hash)? {
            return Ok(None);
        }
        let Some(info) = self.object(hash).await else {
            return Ok(None);
        };
        self.objects
            .delete(hash.to_string())
            .await
            .map_err(unavailable)?;
        Ok(Some(info.size as u64))
    }

    /// Removes a frame (everywhere); with `purge`, its content too when nothing references
    /// it any more.
    pub(crate) async fn remove(
        &self,
        done: impl std::future::Future<Output = Result<()>>,
        id: Id,
        purge: bool,
    ) -> Result<GcReport> {
        // Expired or not: a purge drops an expired frame's content too.
        let frame = self.copy.lookup_any(&id)?;
        let before = match (&frame, purge) {
            (Some(f), true) => match &f.hash {
                Some(h) => Some((h.clone(), self.content_len(h).await?)),
                None => None,
            },
            _ => None,
        };
        done.await?;
        if let Some(f) = &frame {
            self.delete_message(&f.topic, id).await;
        }
        let mut report = GcReport::default();
        if let Some((hash, len)) = before {
            // The copy applied the purge (read-your-writes): gone from it if unreferenced.
            let gone_here = len.is_some() && !self.copy.has_content(&hash)?;
            let object = self.drop_object(&hash).await?;
            if gone_here || object.is_some() {
                report.blobs = 1;
                report.bytes = len.or(object).unwrap_or(0);
            }
        }
        Ok(report)
    }

    /// The length of content known here (the copy) or in the object store.
    async fn content_len(&self, hash: &Integrity) -> Result<Option<u64>> {
        if let Some(r) = Backend::content(&self.copy, hash.clone()).await? {
            return Ok(Some(r.len));
        }
        Ok(self.object(hash).await.map(|i| i.size as u64))
    }

    /// Collects the copy, then every object no frame of the caught-up copy references.
    pub(crate) async fn gc(&self) -> Result<GcReport> {
        if !self.catch_up_now().await? {
            return Err(crate::error::Error::Unavailable(
                "the copy did not catch up with the stream in time; nothing collected".into(),
            ));
        }
        // Objects to consider, and whether the copy holds them too (then the copy's gc
        // counts them).
        let mut candidates = Vec::new();
        let mut list = self.objects.list().await.map_err(unavailable)?;
        let now = async_nats::datetime::now();
        while let Some(info) = list.next().await {
            let info = info.map_err(unavailable)?;
            if info.deleted {
                continue;
            }
            let Ok(hash) = info.name.parse::<Integrity>() else {
                continue;
            };
            let large = info.size > crate::INLINE_CONTENT_MAX;
            let young = info.modified.is_none_or(|m| {
                async_nats::datetime::add_std_duration(m, GC_GRACE).is_ok_and(|t| t > now)
            });
            if large && young {
                continue;
            }
            if self.copy.references(&hash)? {
                continue;
            }
            let here = self.copy.has_content(&hash)?;
            candidates.push((hash, here));
        }
        let mut report = Backend::gc(&self.copy).await?;
        for (hash, here) in candidates {
            if let Some(size) = self.drop_object(&hash).await? {
                if !here {
                    report.blobs += 1;
                    report.bytes += size;
                }
            }
        }
        Ok(report)
    }
}
