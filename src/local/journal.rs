//! What a clean close leaves of fjall's journal: nothing to replay. fjall (3.1) starts a new
//! journal only once the active one passes 64 MB and deletes a sealed one once its keyspaces
//! are flushed, so without this a stopped store keeps up to 64 MB of journal whose every
//! entry is already in the keyspaces' tables, and the next start reads it all again.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fjall::PersistMode;

use super::Keyspaces;
use crate::error::{IoContext, Result};

/// How long [`empty_after_flush`] waits for fjall's worker to finish the flushes it waited for
/// (account their bytes, delete the sealed journals they covered).
const SEALED_GRACE: Duration = Duration::from_secs(1);

/// After every memtable was flushed (and with no writer left): empties the active journal, if
/// no memtable holds anything any more. Every entry in it is then in a table that fjall has
/// synced, so the empty journal recovers the same store; a crash before the truncation leaves
/// the full journal, whose entries recovery skips as already flushed. The file stays (an
/// empty one, not none: fjall recovers the sequence number only when it finds an active
/// journal). Sealed journals are fjall's to delete; this waits (bounded) until it has, and
/// empties the active one even if some stay (recovery skips their entries too).
///
/// Safe only because nothing writes after the close: fjall's writer keeps its file offset, and
/// a write after the truncation would leave a hole that recovery stops at.
pub(super) fn empty_after_flush(ks: &Keyspaces, fjall_dir: &Path) -> Result<()> {
    // Nothing left in fjall's write buffer (so nothing written at the old offset later).
    ks.db.persist(PersistMode::SyncAll)?;
    // fjall frees a flushed memtable's bytes and deletes sealed journals just after the flush
    // that `rotate_memtable_and_wait` waited for.
    let deadline = Instant::now() + SEALED_GRACE;
    while (ks.db.write_buffer_size() > 0 || ks.db.journal_count() > 1) && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    if ks.db.write_buffer_size() > 0 {
        tracing::warn!(
            unflushed = ks.db.write_buffer_size(),
            "memtables not flushed at close: the journal stays for the next start"
        );
        return Ok(());
    }
    let Some(active) = active_journal(fjall_dir)? else {
        return Ok(());
    };
    let file = std::fs::File::options()
        .write(true)
        .open(&active)
        .context(|| format!("opening the journal {}", active.display()))?;
    file.set_len(0)
        .and_then(|()| file.sync_all())
        .context(|| format!("emptying the journal {}", active.display()))
}

/// The bytes fjall's journals hold on disk: what the next start would read. Their allocated
/// blocks, not their length: fjall makes each journal 64 MiB long at once, a sparse file.
pub(super) fn written_bytes(fjall_dir: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let dir =
        std::fs::read_dir(fjall_dir).context(|| format!("reading {}", fjall_dir.display()))?;
    let mut total = 0;
    for e in dir.flatten() {
        if e.path().extension().is_some_and(|x| x == "jnl") {
            total += e.metadata().map_or(0, |m| m.blocks() * 512);
        }
    }
    Ok(total)
}

/// The journal fjall writes to: the `<n>.jnl` with the highest `n` (the others are sealed).
fn active_journal(fjall_dir: &Path) -> Result<Option<PathBuf>> {
    let dir =
        std::fs::read_dir(fjall_dir).context(|| format!("reading {}", fjall_dir.display()))?;
    let mut best: Option<(u64, PathBuf)> = None;
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".jnl"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        if best.as_ref().is_none_or(|(b, _)| n > *b) {
            best = Some((n, e.path()));
        }
    }
    Ok(best.map(|(_, p)| p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_active_journal_is_the_highest_numbered() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(active_journal(dir.path()).unwrap(), None);
        for f in ["0.jnl", "9.jnl", "10.jnl", "lock", "11.txt", "x.jnl"] {
            std::fs::write(dir.path().join(f), b"").unwrap();
        }
        assert_eq!(
            active_journal(dir.path()).unwrap(),
            Some(dir.path().join("10.jnl"))
        );
    }
}
