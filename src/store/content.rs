//! Content addressed by its ssri hash: small content (≤ 16 KiB) in the `cas` keyspace, written
//! in the same batch as its frame; larger content streamed into cacache and fsynced first.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use ssri::Integrity;
use tokio::io::AsyncWriteExt;

use super::Store;
use crate::error::{Error, IoContext, Result};
use crate::INLINE_CONTENT_MAX;

/// The content of a frame being appended.
#[derive(Debug, Clone, Default)]
pub enum Content {
    #[default]
    None,
    /// Small content: stored with its frame, in the same fjall batch.
    Inline { hash: Integrity, bytes: Bytes },
    /// Content already durable in the content store (large content, or an existing hash).
    Stored(Integrity),
}

impl Content {
    pub fn inline(bytes: impl Into<Bytes>) -> Content {
        let bytes = bytes.into();
        if bytes.is_empty() {
            return Content::None;
        }
        Content::Inline {
            hash: Integrity::from(&bytes[..]),
            bytes,
        }
    }

    pub fn hash(&self) -> Option<&Integrity> {
        match self {
            Content::None => None,
            Content::Inline { hash, .. } | Content::Stored(hash) => Some(hash),
        }
    }
}

/// Key of inline content in the `cas` keyspace: algorithm and hex digest of the strongest hash.
pub(crate) fn cas_key(sri: &Integrity) -> Vec<u8> {
    let (algo, hex) = sri.to_hex();
    format!("{algo}-{hex}").into_bytes()
}

/// Where cacache keeps the content of a hash (its `content-v2` layout). Hashes are checked
/// on the way in (`frame::parse_hash`), so the digest is never shorter than 3 bytes.
pub(crate) fn cacache_path(dir: &Path, sri: &Integrity) -> PathBuf {
    let (algo, mut hex) = sri.to_hex();
    while hex.len() < 5 {
        hex.push('0');
    }
    let mut p = dir.join("content-v2");
    p.push(algo.to_string());
    p.push(&hex[0..2]);
    p.push(&hex[2..4]);
    p.push(&hex[4..]);
    p
}

/// Content read back from the store.
pub enum CasContent {
    Inline(Bytes),
    File { file: std::fs::File, len: u64 },
}

impl CasContent {
    pub fn len(&self) -> u64 {
        match self {
            CasContent::Inline(b) => b.len() as u64,
            CasContent::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Streams content into the store: buffered in memory up to the inline limit, then spilled
/// into cacache. `finish` makes it durable (for large content) and says where it lives.
pub struct ContentWriter {
    store: Store,
    buf: Vec<u8>,
    large: Option<cacache::Writer>,
    len: u64,
}

impl ContentWriter {
    pub(crate) fn new(store: Store) -> ContentWriter {
        ContentWriter {
            store,
            buf: Vec::new(),
            large: None,
            len: 0,
        }
    }

    pub async fn write(&mut self, chunk: &[u8]) -> Result<()> {
        self.len += chunk.len() as u64;
        if let Some(w) = &mut self.large {
            return w
                .write_all(chunk)
                .await
                .context(|| "writing content to the content store".into());
        }
        if self.buf.len() + chunk.len() <= INLINE_CONTENT_MAX {
            self.buf.extend_from_slice(chunk);
            return Ok(());
        }
        let mut w = cacache::WriteOpts::new()
            .open_hash(self.store.cacache_dir())
            .await
            .map_err(|e| Error::Cas(format!("opening a content writer: {e}")))?;
        w.write_all(&self.buf)
            .await
            .context(|| "writing content to the content store".into())?;
        w.write_all(chunk)
            .await
            .context(|| "writing content to the content store".into())?;
        self.buf = Vec::new();
        self.large = Some(w);
        Ok(())
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Ends the content. Large content is committed to cacache and fsynced before this returns.
    pub async fn finish(self) -> Result<Content> {
        let Some(w) = self.large else {
            return Ok(Content::inline(self.buf));
        };
        let sri = w
            .commit()
            .await
            .map_err(|e| Error::Cas(format!("committing content: {e}")))?;
        let dir = self.store.cacache_dir().to_path_buf();
        let path = cacache_path(&dir, &sri);
        tokio::task::spawn_blocking(move || sync_content(&dir, &path))
            .await
            .map_err(|e| Error::Cas(format!("content sync task failed: {e}")))??;
        Ok(Content::Stored(sri))
    }
}

/// fsyncs a content file and every directory from it up to the cache root, so that the
/// rename cacache did is durable too.
fn sync_content(root: &Path, path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .context(|| format!("syncing content file {}", path.display()))?;
    let mut dir = path.parent();
    while let Some(d) = dir {
        std::fs::File::open(d)
            .and_then(|f| f.sync_all())
            .context(|| format!("syncing directory {}", d.display()))?;
        if d == root {
            break;
        }
        dir = d.parent();
    }
    Ok(())
}
