//! Content deletion: `remove --purge` (a frame and, if nothing else references it, its content)
//! and `gc` (every blob no frame references), both decided inside the writer's batch.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::plan::{Ctx, DropRequest, Plan, WriteOp};
use super::{stats, Keyspaces, Local};
use crate::backend::GcReport;
use crate::error::{Error, IoContext, Result};
use crate::frame::Id;

/// Large content files younger than this are never collected: they may belong to an append
/// whose frame is not committed yet.
pub const GC_GRACE: Duration = Duration::from_secs(10 * 60);

/// The cacache file of content key `algo-hex` (see `content::cacache_path`).
pub(crate) fn key_path(dir: &Path, key: &[u8]) -> Option<PathBuf> {
    let key = std::str::from_utf8(key).ok()?;
    let (algo, hex) = key.split_once('-')?;
    if hex.len() < 5 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut p = dir.join("content-v2");
    p.push(algo);
    p.push(&hex[0..2]);
    p.push(&hex[2..4]);
    p.push(&hex[4..]);
    Some(p)
}

/// Content to remove once a batch is committed: inline keys go in the batch, files after it.
#[derive(Default)]
pub(crate) struct Drops {
    pub inline: Vec<Vec<u8>>,
    pub files: Vec<PathBuf>,
    pub report: GcReport,
}

impl Drops {
    /// Plans removing the content with `key` wherever it lives.
    pub fn add(&mut self, ks: &Keyspaces, cacache_dir: &Path, key: &[u8]) -> Result<()> {
        if let Some(v) = ks.cas.get(key)? {
            self.inline.push(key.to_vec());
            self.report.blobs += 1;
            self.report.bytes += v.len() as u64;
        }
        if let Some(path) = key_path(cacache_dir, key) {
            if let Ok(m) = std::fs::metadata(&path) {
                self.files.push(path);
                self.report.blobs += 1;
                self.report.bytes += m.len();
            }
        }
        Ok(())
    }

    /// Removes the files (after their batch committed) and makes the removals durable.
    pub fn remove_files(&self) -> Result<()> {
        for path in &self.files {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(format!("removing {}", path.display()), e)),
            }
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)
                    .and_then(|d| d.sync_all())
                    .context(|| format!("syncing directory {}", dir.display()))?;
            }
        }
        Ok(())
    }
}

impl Local {
    /// Removes a frame and, when no other frame references its content any more, the content
    /// too (inline content in the same batch, a large file right after it). `NotFound` if there
    /// is no such frame.
    pub(super) async fn remove_purge(&self, id: Id) -> Result<GcReport> {
        let report = self.submit(|r| WriteOp::Purge(id, r)).await?;
        self.scrub(report).await?;
        Ok(report)
    }

    /// After inline content was deleted: flushes every memtable (so the journals that still
    /// hold the bytes are dropped) and compacts the `cas` keyspace (so no table keeps them).
    /// Costs in proportion to the inline content, not to the frames.
    async fn scrub(&self, freed: GcReport) -> Result<()> {
        if freed.blobs == 0 {
            return Ok(());
        }
        let ks = self.inner.ks.clone();
        tokio::task::spawn_blocking(move || {
            for k in ks.all() {
                k.rotate_memtable_and_wait()?;
            }
            ks.cas.major_compact()?;
            Ok::<_, Error>(())
        })
        .await
        .map_err(|e| Error::Internal(format!("scrub task failed: {e}")))?
    }

    /// Removes every content blob no frame references (large files only once they are older
    /// than [`GC_GRACE`]). O(blobs): walks the content, never the frames.
    pub(super) async fn gc(&self) -> Result<GcReport> {
        let ks = self.inner.ks.clone();
        let dir = self.inner.cacache_dir.clone();
        let candidates = tokio::task::spawn_blocking(move || candidates(&ks, &dir))
            .await
            .map_err(|e| Error::Internal(format!("gc task failed: {e}")))??;
        if candidates.is_empty() {
            return Ok(GcReport::default());
        }
        let report = self.submit(|r| WriteOp::Gc(candidates, r)).await?;
        self.scrub(report).await?;
        Ok(report)
    }
}

/// Plans a purge: deletes the frame and asks for its content to be dropped. Answers the
/// index of its request (see [`drops`]). `NotFound` if there is no such frame.
pub(super) fn plan_purge(cx: &Ctx, plan: &mut Plan, id: Id) -> Result<usize> {
    plan.remove(cx, id)?;
    plan.drops.push(DropRequest::OfFrame(id));
    Ok(plan.drops.len() - 1)
}

/// Plans a gc of these candidate keys. Answers the index of its request (see [`drops`]).
pub(super) fn plan_gc(plan: &mut Plan, keys: Vec<Vec<u8>>) -> usize {
    plan.drops.push(DropRequest::Keys(keys));
    plan.drops.len() - 1
}

/// Content to remove with this batch: a purged frame's content once nothing references
/// it, and gc candidates still unreferenced. Returns it with what each request freed, in
/// the order of `plan.drops`.
pub(super) fn drops(
    cx: &Ctx,
    plan: &Plan,
    changes: &stats::Changes,
) -> Result<(Drops, Vec<GcReport>)> {
    let mut drops = Drops::default();
    let mut freed = Vec::with_capacity(plan.drops.len());
    let mut seen: HashSet<&[u8]> = HashSet::new();
    for request in &plan.drops {
        let keys: Vec<&Vec<u8>> = match request {
            DropRequest::OfFrame(id) => changes.old_hashes.get(id).into_iter().collect(),
            DropRequest::Keys(keys) => keys.iter().collect(),
        };
        let before = drops.report;
        for key in keys {
            if !changes.referenced_after(&cx.ks, key)? && seen.insert(key) {
                drops.add(&cx.ks, &cx.cacache_dir, key)?;
            }
        }
        freed.push(GcReport {
            blobs: drops.report.blobs - before.blobs,
            bytes: drops.report.bytes - before.bytes,
        });
    }
    Ok((drops, freed))
}

/// Content keys with no reference: inline ones, then old enough files. The writer checks
/// each again before removing it.
fn candidates(ks: &Keyspaces, dir: &Path) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for g in ks.cas.iter() {
        let key = g.key()?;
        if !super::stats::referenced(ks, &key)? {
            out.push(key.to_vec());
        }
    }
    let root = dir.join("content-v2");
    let now = SystemTime::now();
    for algo in read_dir(&root)? {
        let algo_name = algo.file_name().to_string_lossy().into_owned();
        for a in read_dir(&algo.path())? {
            for b in read_dir(&a.path())? {
                for f in read_dir(&b.path())? {
                    let hex = format!(
                        "{}{}{}",
                        a.file_name().to_string_lossy(),
                        b.file_name().to_string_lossy(),
                        f.file_name().to_string_lossy()
                    );
                    let Ok(meta) = f.metadata() else { continue };
                    let young = meta
                        .modified()
                        .ok()
                        .and_then(|m| now.duration_since(m).ok())
                        .is_none_or(|age| age < GC_GRACE);
                    if !meta.is_file() || young {
                        continue;
                    }
                    let key = format!("{algo_name}-{hex}").into_bytes();
                    if !super::stats::referenced(ks, &key)? {
                        out.push(key);
                    }
                }
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn read_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>> {
    match std::fs::read_dir(dir) {
        Ok(rd) => Ok(rd.flatten().collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io(format!("reading {}", dir.display()), e)),
    }
}
