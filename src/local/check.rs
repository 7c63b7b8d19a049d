//! Consistency check of a whole store (for tests and the torture run): every frame decodes,
//! has all its topic index entries and its expiry entry, and no index entry is dangling.

use std::collections::HashMap;

use super::{codec, Local};
use crate::error::Result;
use crate::frame::Id;
use crate::topic::index_prefixes;

/// What [`Local::check`] found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Frames in the log.
    pub frames: usize,
    /// Every inconsistency found, one line each; empty when the store is consistent.
    pub problems: Vec<String>,
}

impl Local {
    /// Walks the log and every index and reports inconsistencies. Blocking and O(store size),
    /// with one map entry per frame in memory: meant for tests and offline checks.
    pub fn check(&self) -> Result<CheckReport> {
        let ks = &self.inner.ks;
        let mut report = CheckReport::default();
        let mut topics: HashMap<Id, (String, u64)> = HashMap::new();
        let mut problem = |p: String| report_problem(&mut report.problems, p);
        let mut prev: Option<Id> = None;
        for g in ks.frames.iter() {
            let (k, v) = g.into_inner()?;
            let id = match codec::id_from_key(&k) {
                Ok(id) => id,
                Err(e) => {
                    problem(format!("bad frame key: {e}"));
                    continue;
                }
            };
            if prev.is_some_and(|p| p >= id) {
                problem(format!("frame keys out of order at {id}"));
            }
            prev = Some(id);
            report.frames += 1;
            let (value, frame) = match (
                codec::decode_frame_value(&id, &v),
                codec::decode_frame(&id, &v),
            ) {
                (Ok(value), Ok(frame)) => (value, frame),
                (Err(e), _) | (_, Err(e)) => {
                    problem(format!("frame {id} does not decode: {e}"));
                    continue;
                }
            };
            if frame.id != id {
                problem(format!("frame under key {id} says it is {}", frame.id));
            }
            for p in index_prefixes(&frame.topic) {
                if !ks.idx_topic.contains_key(codec::topic_key(p, &id))? {
                    problem(format!(
                        "frame {id} ({}) has no index entry {p:?}",
                        frame.topic
                    ));
                }
            }
            let want_exp = frame
                .ttl
                .and_then(|t| t.expires_at(frame.created_ms()))
                .unwrap_or(0);
            if value.expires_at != want_exp {
                problem(format!(
                    "frame {id}: header expiry {} but its ttl says {want_exp}",
                    value.expires_at
                ));
            }
            if value.expires_at != 0
                && !ks
                    .idx_expiry
                    .contains_key(codec::expiry_key(value.expires_at, &id))?
            {
                problem(format!("frame {id} has no expiry index entry"));
            }
            if let Some(h) = &frame.hash {
                if !self.cas_has(h)? {
                    problem(format!("frame {id}: content {h} is missing"));
                }
            }
            topics.insert(id, (frame.topic, value.expires_at));
        }
        for g in ks.idx_topic.iter() {
            let k = g.key()?;
            let id = match codec::id_from_topic_key(&k) {
                Ok(id) if k[k.len() - 17] == 0 => id,
                _ => {
                    problem(format!("bad topic index key {k:?}"));
                    continue;
                }
            };
            let prefix = String::from_utf8_lossy(&k[..k.len() - 17]).into_owned();
            match topics.get(&id) {
                None => problem(format!(
                    "index entry {prefix:?} points at missing frame {id}"
                )),
                Some((topic, _)) if !index_prefixes(topic).any(|p| p == prefix) => problem(
                    format!("index entry {prefix:?} points at frame {id} of topic {topic}"),
                ),
                Some(_) => {}
            }
        }
        for g in ks.idx_expiry.iter() {
            let k = g.key()?;
            if k.len() != 24 {
                problem(format!("bad expiry index key of {} bytes", k.len()));
                continue;
            }
            let mut at = [0u8; 8];
            at.copy_from_slice(&k[..8]);
            let at = u64::from_be_bytes(at);
            let id = codec::id_from_key(&k[8..])?;
            match topics.get(&id) {
                Some((_, exp)) if *exp == at => {}
                Some((_, exp)) => problem(format!(
                    "expiry entry {at} for frame {id}, which expires at {exp}"
                )),
                None => problem(format!("expiry entry {at} points at missing frame {id}")),
            }
        }
        Ok(report)
    }
}

/// Keeps the report readable when a store is badly broken.
fn report_problem(problems: &mut Vec<String>, p: String) {
    const MAX_PROBLEMS: usize = 100;
    if problems.len() < MAX_PROBLEMS {
        problems.push(p);
    }
}
