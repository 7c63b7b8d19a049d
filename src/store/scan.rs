//! Scanning history: frames in id order from the log (all topics) or from the topic index
//! (one range scan per pattern, merged by id), skipping expired frames.

use std::ops::Bound;

use super::{codec, Store};
use crate::error::{Error, Result};
use crate::frame::{now_ms, Frame, Id};
use crate::read::ReadOptions;
use crate::topic::TopicFilter;

/// A stored frame as scanned: its id and wire JSON.
pub struct RawFrame<'a> {
    pub id: Id,
    pub json: &'a [u8],
}

/// How a scan ended.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScanEnd {
    /// The last frame passed to the callback.
    pub last_id: Option<Id>,
    pub count: usize,
    /// The callback asked to stop, or `limit` was reached.
    pub stopped: bool,
}

type IdIter = Box<dyn Iterator<Item = Result<Id>> + Send>;
type FrameIter<'a> = Box<dyn Iterator<Item = Result<(Id, fjall::Slice)>> + 'a>;

impl Store {
    /// The stored frames `opts` selects, parsed, in id order (see [`Store::scan`]). A frame
    /// that does not parse is an error. Blocking.
    pub fn frames(&self, opts: &ReadOptions) -> Result<Vec<Frame>> {
        let mut out = Vec::new();
        let mut bad = None;
        self.scan(opts, |raw| match Frame::from_json(raw.json) {
            Ok(f) => {
                out.push(f);
                true
            }
            Err(e) => {
                bad = Some(e);
                false
            }
        })?;
        match bad {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Calls `f` with each stored frame that `opts` selects (`from`/`after`, `topic`,
    /// `last`, `limit`), in id order. `f` returns `false` to stop. Blocking: run it off the
    /// async reactor. A corrupt value is logged and skipped.
    pub fn scan(
        &self,
        opts: &ReadOptions,
        mut f: impl FnMut(RawFrame<'_>) -> bool,
    ) -> Result<ScanEnd> {
        let now = now_ms();
        let mut end = ScanEnd::default();
        let limit = opts.limit.unwrap_or(usize::MAX);
        if limit == 0 {
            end.stopped = true;
            return Ok(end);
        }
        let lower = match (&opts.from, &opts.after) {
            (Some(id), _) => Bound::Included(*id),
            (None, Some(id)) => Bound::Excluded(*id),
            (None, None) => Bound::Unbounded,
        };
        let mut emit = |id: Id, value: &[u8], end: &mut ScanEnd| -> bool {
            match codec::decode_frame_value(&id, value) {
                Ok(v) if v.is_expired(now) => true,
                Ok(v) => {
                    end.last_id = Some(id);
                    end.count += 1;
                    let go_on = f(RawFrame { id, json: v.json });
                    if !go_on || end.count >= limit {
                        end.stopped = true;
                        return false;
                    }
                    true
                }
                Err(e) => {
                    tracing::error!(error = %e, "skipping corrupt frame");
                    true
                }
            }
        };

        if let Some(n) = opts.last {
            // Collect the newest n (newest first), then emit them oldest first.
            let lower = if opts.from.is_some() || opts.after.is_some() {
                lower
            } else {
                Bound::Unbounded
            };
            let mut picked = Vec::with_capacity(n.min(4096));
            if n > 0 {
                for item in self.frames_rev(&opts.topic, lower)? {
                    let (id, value) = item?;
                    match codec::decode_frame_value(&id, &value) {
                        Ok(v) if v.is_expired(now) => continue,
                        _ => picked.push((id, value)),
                    }
                    if picked.len() >= n {
                        break;
                    }
                }
            }
            for (id, value) in picked.into_iter().rev() {
                if !emit(id, &value, &mut end) {
                    break;
                }
            }
            return Ok(end);
        }

        match &opts.topic {
            TopicFilter::All => {
                let ks = &self.inner.ks.frames;
                let iter = ks.range::<[u8; 16], _>((map_bound(lower), Bound::Unbounded));
                for g in iter {
                    let (k, v) = g.into_inner()?;
                    let id = codec::id_from_key(&k)?;
                    if !emit(id, &v, &mut end) {
                        break;
                    }
                }
            }
            filter => {
                for id in self.index_ids(filter, lower, false)? {
                    let id = id?;
                    let Some(v) = self.inner.ks.frames.get(codec::id_key(&id))? else {
                        continue; // removed between index and log read
                    };
                    if !emit(id, &v, &mut end) {
                        break;
                    }
                }
            }
        }
        Ok(end)
    }

    /// Matching frames, newest first (for `last`).
    fn frames_rev(&self, topic: &TopicFilter, lower: Bound<Id>) -> Result<FrameIter<'_>> {
        let frames = &self.inner.ks.frames;
        Ok(match topic {
            TopicFilter::All => Box::new(
                frames
                    .range::<[u8; 16], _>((map_bound(lower), Bound::Unbounded))
                    .rev()
                    .map(|g| {
                        let (k, v) = g.into_inner()?;
                        Ok((codec::id_from_key(&k)?, v))
                    }),
            ),
            filter => Box::new(self.index_ids(filter, lower, true)?.filter_map(move |id| {
                let id = match id {
                    Ok(id) => id,
                    Err(e) => return Some(Err(e)),
                };
                match frames.get(codec::id_key(&id)) {
                    Ok(Some(v)) => Some(Ok((id, v))),
                    Ok(None) => None,
                    Err(e) => Some(Err(e.into())),
                }
            })),
        })
    }

    /// Ids from the topic index for each pattern of `filter`, merged in id order
    /// (descending if `rev`), each id once.
    fn index_ids(&self, filter: &TopicFilter, lower: Bound<Id>, rev: bool) -> Result<MergedIds> {
        let TopicFilter::Any(patterns) = filter else {
            return Err(Error::invalid("index scan needs topic patterns"));
        };
        let iters = patterns
            .iter()
            .map(|p| {
                let key = p.index_key();
                let lo = match lower {
                    Bound::Included(id) => Bound::Included(codec::topic_key(key, &id)),
                    Bound::Excluded(id) => Bound::Excluded(codec::topic_key(key, &id)),
                    Bound::Unbounded => Bound::Included(codec::topic_key(key, &Id::from_u128(0))),
                };
                let hi = Bound::Included(codec::topic_key(key, &Id::from_u128(u128::MAX)));
                let it = self.inner.ks.idx_topic.range::<Vec<u8>, _>((lo, hi));
                let it: IdIter = if rev {
                    Box::new(it.rev().map(|g| codec::id_from_topic_key(&g.key()?)))
                } else {
                    Box::new(it.map(|g| codec::id_from_topic_key(&g.key()?)))
                };
                it.peekable()
            })
            .collect();
        Ok(MergedIds {
            iters,
            rev,
            last: None,
        })
    }
}

fn map_bound(b: Bound<Id>) -> Bound<[u8; 16]> {
    match b {
        Bound::Included(id) => Bound::Included(id.to_bytes()),
        Bound::Excluded(id) => Bound::Excluded(id.to_bytes()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// A k-way merge of sorted id iterators, without duplicates.
pub(crate) struct MergedIds {
    iters: Vec<std::iter::Peekable<IdIter>>,
    rev: bool,
    last: Option<Id>,
}

impl Iterator for MergedIds {
    type Item = Result<Id>;

    fn next(&mut self) -> Option<Result<Id>> {
        loop {
            let mut best: Option<(usize, Id)> = None;
            for (i, it) in self.iters.iter_mut().enumerate() {
                match it.peek() {
                    None => continue,
                    Some(Err(_)) => return it.next(),
                    Some(Ok(id)) => {
                        let better = match best {
                            None => true,
                            Some((_, b)) => (*id < b) != self.rev && *id != b,
                        };
                        if better {
                            best = Some((i, *id));
                        }
                    }
                }
            }
            let (i, id) = best?;
            self.iters[i].next();
            if self.last == Some(id) {
                continue;
            }
            self.last = Some(id);
            return Some(Ok(id));
        }
    }
}
