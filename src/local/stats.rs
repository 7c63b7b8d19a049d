//! Indexes the writer keeps beside the log, updated in the same batch as every change:
//! per-topic stats (`topics`: count, first and last id) and content references (`refs`: one
//! `content key \0 frame id` entry per referencing frame, written blind so an append never
//! reads before it writes).

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{codec, content::cas_key, Keyspaces, Local};
use crate::backend::TopicInfo;
use crate::error::{Error, Result};
use crate::frame::{Frame, Id};

/// Marks (in `refs`) that both indexes cover every frame; they are built once for a store
/// that predates them.
const BUILT_MARKER: &[u8] = b"\0stats-v2";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TopicStat {
    pub count: u64,
    pub first: Id,
    pub last: Id,
}

fn encode_stat(s: &TopicStat) -> Vec<u8> {
    let mut v = Vec::with_capacity(40);
    v.extend_from_slice(&s.count.to_be_bytes());
    v.extend_from_slice(&s.first.to_bytes());
    v.extend_from_slice(&s.last.to_bytes());
    v
}

fn decode_stat(topic: &[u8], v: &[u8]) -> Result<TopicStat> {
    if v.len() != 40 {
        return Err(Error::Corrupt(format!(
            "topic stats of {}: {} bytes, expected 40",
            String::from_utf8_lossy(topic),
            v.len()
        )));
    }
    let mut count = [0u8; 8];
    count.copy_from_slice(&v[..8]);
    Ok(TopicStat {
        count: u64::from_be_bytes(count),
        first: codec::id_from_key(&v[8..24])?,
        last: codec::id_from_key(&v[24..40])?,
    })
}

/// Key of one reference in `refs`: `content key \0 frame id`.
fn ref_key(key: &[u8], id: &Id) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 17);
    k.extend_from_slice(key);
    k.push(0);
    k.extend_from_slice(&id.to_bytes());
    k
}

fn ref_prefix(key: &[u8]) -> Vec<u8> {
    let mut p = key.to_vec();
    p.push(0);
    p
}

/// The newest stored frame of exactly `topic` as the index has it (expired frames included).
pub(crate) fn topic_last(ks: &Keyspaces, topic: &str) -> Result<Option<Id>> {
    match ks.topics.get(topic.as_bytes())? {
        Some(v) => Ok(Some(decode_stat(topic.as_bytes(), &v)?.last)),
        None => Ok(None),
    }
}

/// Whether any stored frame references content `key` (`algo-hex`).
pub(crate) fn referenced(ks: &Keyspaces, key: &[u8]) -> Result<bool> {
    match ks.refs.prefix(ref_prefix(key)).next() {
        Some(g) => g.key().map(|_| true).map_err(Error::from),
        None => Ok(false),
    }
}

/// What a batch changes in the indexes: new topic stats (`None`: the topic is gone) and the
/// references it adds and removes (content key, frame id).
#[derive(Default)]
pub(crate) struct Changes {
    pub topics: Vec<(String, Option<TopicStat>)>,
    pub ref_adds: Vec<(Vec<u8>, Id)>,
    pub ref_dels: Vec<(Vec<u8>, Id)>,
    /// The content key each changed frame referenced before the batch.
    pub old_hashes: HashMap<Id, Vec<u8>>,
}

impl Changes {
    /// Whether anything references content `key` once the batch is written.
    pub fn referenced_after(&self, ks: &Keyspaces, key: &[u8]) -> Result<bool> {
        if self.ref_adds.iter().any(|(k, _)| k == key) {
            return Ok(true);
        }
        for g in ks.refs.prefix(ref_prefix(key)) {
            let id = codec::id_from_topic_key(&g.key()?)?;
            if !self.ref_dels.iter().any(|(k, i)| k == key && *i == id) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub fn write(&self, ks: &Keyspaces, batch: &mut fjall::OwnedWriteBatch) {
        for (topic, stat) in &self.topics {
            match stat {
                Some(s) => batch.insert(&ks.topics, topic.as_bytes().to_vec(), encode_stat(s)),
                None => batch.remove(&ks.topics, topic.as_bytes().to_vec()),
            }
        }
        for (key, id) in &self.ref_dels {
            batch.remove(&ks.refs, ref_key(key, id));
        }
        for (key, id) in &self.ref_adds {
            batch.insert(&ks.refs, ref_key(key, id), Vec::new());
        }
    }
}

/// Where a frame is: its topic and content key.
type Place<'a> = (&'a str, Option<Vec<u8>>);

/// Works out the index changes of a batch from the frames it writes (`inserts`) and deletes.
/// Frames with ids above `fresh_above` are new (appends); any other id is looked up, so a
/// re-import over an existing frame moves its count and reference instead of adding one.
pub(crate) fn account<'a>(
    ks: &Keyspaces,
    inserts: impl Iterator<Item = &'a Frame>,
    deletes: impl Iterator<Item = &'a Id>,
    fresh_above: Option<Id>,
) -> Result<Changes> {
    // id → (topic, content key) after the batch; None = gone.
    let mut after: HashMap<Id, Option<Place<'a>>> = HashMap::new();
    let mut old_ids: Vec<Id> = Vec::new();
    for id in deletes {
        after.insert(*id, None);
        old_ids.push(*id);
    }
    for f in inserts {
        let is_new = fresh_above.is_some_and(|l| f.id > l) || fresh_above.is_none();
        if !is_new && !after.contains_key(&f.id) {
            old_ids.push(f.id);
        }
        after.insert(f.id, Some((f.topic.as_str(), f.hash.as_ref().map(cas_key))));
    }
    let mut before: HashMap<Id, (String, Option<Vec<u8>>)> = HashMap::new();
    for id in old_ids {
        if let Some(v) = ks.frames.get(codec::id_key(&id))? {
            let f = codec::decode_frame(&id, &v)?;
            before.insert(id, (f.topic, f.hash.as_ref().map(cas_key)));
        }
    }

    let mut changes = Changes::default();
    let mut added: HashMap<&str, Vec<Id>> = HashMap::new();
    let mut removed: HashMap<String, HashSet<Id>> = HashMap::new();
    for (id, a) in &after {
        let b = before.get(id);
        let (b_topic, b_hash) = match b {
            Some((t, h)) => (Some(t.as_str()), h.as_ref()),
            None => (None, None),
        };
        let (a_topic, a_hash) = match a {
            Some((t, h)) => (Some(*t), h.as_ref()),
            None => (None, None),
        };
        if b_topic != a_topic {
            if let Some(t) = a_topic {
                added.entry(t).or_default().push(*id);
            }
            if let Some(t) = b_topic {
                removed.entry(t.to_string()).or_default().insert(*id);
            }
        }
        if b_hash != a_hash {
            if let Some(h) = a_hash {
                changes.ref_adds.push((h.clone(), *id));
            }
            if let Some(h) = b_hash {
                changes.ref_dels.push((h.clone(), *id));
            }
        }
        if let Some(h) = b_hash {
            changes.old_hashes.insert(*id, h.clone());
        }
    }

    let mut topics: HashSet<&str> = added.keys().copied().collect();
    topics.extend(removed.keys().map(String::as_str));
    let no_ids = HashSet::new();
    for topic in topics {
        let add = added.get(topic).map_or(&[][..], |v| &v[..]);
        let rem = removed.get(topic).unwrap_or(&no_ids);
        let stat = match ks.topics.get(topic.as_bytes())? {
            Some(v) => Some(decode_stat(topic.as_bytes(), &v)?),
            None => None,
        };
        let count =
            (stat.map_or(0, |s| s.count) + add.len() as u64).saturating_sub(rem.len() as u64);
        let new = if count == 0 {
            None
        } else {
            let add_min = add.iter().min().copied();
            let add_max = add.iter().max().copied();
            let first = match stat {
                Some(s) if !rem.contains(&s.first) => Some(s.first),
                _ => edge_of(ks, topic, rem, false)?,
            };
            let last = match stat {
                Some(s) if !rem.contains(&s.last) => Some(s.last),
                _ => edge_of(ks, topic, rem, true)?,
            };
            let first = [first, add_min].into_iter().flatten().min();
            let last = [last, add_max].into_iter().flatten().max();
            match (first, last) {
                (Some(first), Some(last)) => Some(TopicStat { count, first, last }),
                _ => None,
            }
        };
        if new != stat {
            changes.topics.push((topic.to_string(), new));
        }
    }

    Ok(changes)
}

/// The oldest (or newest) stored frame of exactly `topic`, skipping `gone`: a range scan of
/// the topic index that passes over at most the frames being removed.
fn edge_of(ks: &Keyspaces, topic: &str, gone: &HashSet<Id>, newest: bool) -> Result<Option<Id>> {
    let mut prefix = topic.as_bytes().to_vec();
    prefix.push(0);
    let iter = ks.idx_topic.prefix(&prefix);
    let check = |g: fjall::Guard| -> Result<Option<Id>> {
        let id = codec::id_from_topic_key(&g.key()?)?;
        Ok((!gone.contains(&id)).then_some(id))
    };
    if newest {
        for g in iter.rev() {
            if let Some(id) = check(g)? {
                return Ok(Some(id));
            }
        }
    } else {
        for g in iter {
            if let Some(id) = check(g)? {
                return Ok(Some(id));
            }
        }
    }
    Ok(None)
}

/// Builds both indexes from the log for a store that predates them or their current layout
/// (once, O(store)).
pub(crate) fn build_if_missing(ks: &Keyspaces) -> Result<()> {
    if ks.refs.contains_key(BUILT_MARKER)? {
        return Ok(());
    }
    // Whatever an older layout left is rebuilt from the log (the marker is written last).
    ks.refs.clear()?;
    ks.topics.clear()?;
    let mut topics: HashMap<String, TopicStat> = HashMap::new();
    let mut refs: Vec<Vec<u8>> = Vec::new();
    let mut frames = 0u64;
    for g in ks.frames.iter() {
        let (k, v) = g.into_inner()?;
        let id = codec::id_from_key(&k)?;
        let f = match codec::decode_frame(&id, &v) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "skipping a frame that does not decode");
                continue;
            }
        };
        frames += 1;
        if let Some(h) = &f.hash {
            refs.push(ref_key(&cas_key(h), &id));
        }
        topics
            .entry(f.topic)
            .and_modify(|s| {
                s.count += 1;
                s.last = id;
            })
            .or_insert(TopicStat {
                count: 1,
                first: id,
                last: id,
            });
    }
    let mut batch = ks.db.batch().durability(Some(fjall::PersistMode::SyncAll));
    for (topic, s) in &topics {
        batch.insert(&ks.topics, topic.as_bytes().to_vec(), encode_stat(s));
    }
    for key in refs {
        batch.insert(&ks.refs, key, Vec::new());
    }
    batch.insert(&ks.refs, BUILT_MARKER.to_vec(), Vec::new());
    batch.commit()?;
    if frames > 0 {
        tracing::info!(
            frames,
            topics = topics.len(),
            "built the topic and content reference indexes"
        );
    }
    Ok(())
}

impl Local {
    /// Every topic with its frame count, first and last id, sorted by topic; with `prefix`,
    /// only that topic and its descendants. With `children`, one entry per direct child
    /// level below `prefix` (or per top-level name), summing its whole subtree.
    /// Counts include frames whose `time:` TTL has passed until the sweep removes them.
    pub(super) fn topics(&self, prefix: Option<&str>, children: bool) -> Result<Vec<TopicInfo>> {
        let prefix = match prefix.map(|p| p.trim_end_matches('.')) {
            Some("") | None => None,
            Some(p) => {
                crate::topic::validate_topic(p)?;
                Some(p)
            }
        };
        let ks = &self.inner.ks;
        let mut all: Vec<TopicInfo> = Vec::new();
        let mut push = |k: &[u8], v: &[u8]| -> Result<()> {
            let s = decode_stat(k, v)?;
            all.push(TopicInfo {
                topic: String::from_utf8_lossy(k).into_owned(),
                count: s.count,
                first: s.first,
                last: s.last,
            });
            Ok(())
        };
        match prefix {
            None => {
                for g in ks.topics.iter() {
                    let (k, v) = g.into_inner()?;
                    push(&k, &v)?;
                }
            }
            Some(p) => {
                if let Some(v) = ks.topics.get(p.as_bytes())? {
                    push(p.as_bytes(), &v)?;
                }
                for g in ks.topics.prefix(format!("{p}.")) {
                    let (k, v) = g.into_inner()?;
                    push(&k, &v)?;
                }
            }
        }
        if !children {
            return Ok(all);
        }
        let base = prefix.map_or(0, |p| p.len() + 1);
        let mut levels: BTreeMap<String, TopicInfo> = BTreeMap::new();
        for t in all {
            if t.topic.len() <= base {
                continue; // the prefix itself is not one of its children
            }
            let child = match t.topic[base..].find('.') {
                Some(i) => &t.topic[..base + i],
                None => &t.topic[..],
            };
            levels
                .entry(child.to_string())
                .and_modify(|l| {
                    l.count += t.count;
                    l.first = l.first.min(t.first);
                    l.last = l.last.max(t.last);
                })
                .or_insert(TopicInfo {
                    topic: child.to_string(),
                    ..t
                });
        }
        Ok(levels.into_values().collect())
    }
}
