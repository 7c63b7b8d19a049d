//! Content addressed by its ssri hash: small content (≤ 16 KiB) in the `cas` keyspace, written
//! in the same batch as its frame; larger content streamed into cacache and fsynced first.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use ssri::Integrity;
use tokio::io::AsyncWriteExt;

use super::space::classify_io;
use super::Local;
use crate::backend::Content;
use crate::error::{Error, Result};
use crate::INLINE_CONTENT_MAX;

/// Key of inline content in the `cas` keyspace: algorithm and hex digest of the strongest hash.
pub(crate) fn cas_key(sri: &Integrity) -> Vec<u8> {
    use base64::Engine;
    let h = &sri.hashes[0];
    let mut digest = [0u8; 96];
    let n = base64::engine::general_purpose::STANDARD
        .decode_slice(&h.digest, &mut digest)
        .ok();
    let Some(n) = n else {
        // Not reached for checked hashes; keep ssri's own answer for anything else.
        let (algo, hex) = sri.to_hex();
        return format!("{algo}-{hex}").into_bytes();
    };
    let name = crate::frame::algorithm_name(h.algorithm);
    let mut key = Vec::with_capacity(name.len() + 1 + 2 * n);
    key.extend_from_slice(name.as_bytes());
    key.push(b'-');
    let start = key.len();
    key.resize(start + 2 * n, 0);
    match hex::encode_to_slice(&digest[..n], &mut key[start..]) {
        Ok(()) => key,
        // Not reached: the slice is twice the digest's length.
        Err(_) => {
            let (algo, hex) = sri.to_hex();
            format!("{algo}-{hex}").into_bytes()
        }
    }
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

/// Streams content into the store: buffered in memory up to the inline limit, then spilled
/// into cacache. `finish` makes it durable (for large content) and says where it lives.
pub struct ContentWriter {
    store: Local,
    buf: Vec<u8>,
    large: Option<cacache::Writer>,
    len: u64,
    /// Bytes written to cacache since free space was last checked.
    unchecked: u64,
}

impl ContentWriter {
    pub(crate) fn new(store: Local) -> ContentWriter {
        ContentWriter {
            store,
            buf: Vec::new(),
            large: None,
            len: 0,
            unchecked: 0,
        }
    }

    /// Keeps `chunk` in memory while the content still fits inline (no I/O, no await);
    /// false once it needs the content store ([`ContentWriter::write`] then).
    pub(crate) fn buffer(&mut self, chunk: &[u8]) -> bool {
        if self.large.is_some() || self.buf.len() + chunk.len() > INLINE_CONTENT_MAX {
            return false;
        }
        self.len += chunk.len() as u64;
        self.buf.extend_from_slice(chunk);
        true
    }

    /// The content, if it stayed inline (nothing to make durable before its frame).
    pub(crate) fn into_inline(
        mut self: Box<Self>,
    ) -> std::result::Result<Content, Box<ContentWriter>> {
        match self.large {
            None => Ok(Content::inline(std::mem::take(&mut self.buf))),
            Some(_) => Err(self),
        }
    }

    pub async fn write(&mut self, chunk: &[u8]) -> Result<()> {
        if self.buffer(chunk) {
            return Ok(());
        }
        self.len += chunk.len() as u64;
        if let Some(w) = &mut self.large {
            // Streaming content must not eat the reserve the frame batches rely on.
            self.unchecked += chunk.len() as u64;
            if self.unchecked >= SPACE_CHECK_BYTES {
                self.unchecked = 0;
                self.store.inner.ks.space.check(false)?;
            }
            return w
                .write_all(chunk)
                .await
                .map_err(|e| classify_io("writing content to the content store", e));
        }
        self.store.inner.ks.space.check(false)?;
        let mut w = cacache::WriteOpts::new()
            .open_hash(self.store.cacache_dir())
            .await
            .map_err(|e| cas_error("opening a content writer", e))?;
        w.write_all(&self.buf)
            .await
            .map_err(|e| classify_io("writing content to the content store", e))?;
        w.write_all(chunk)
            .await
            .map_err(|e| classify_io("writing content to the content store", e))?;
        self.buf = Vec::new();
        self.large = Some(w);
        Ok(())
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Ends the content. Large content is committed to cacache and fsynced before this returns.
    pub async fn finish(self) -> Result<Content> {
        let Some(w) = self.large else {
            return Ok(Content::inline(self.buf));
        };
        let sri = w
            .commit()
            .await
            .map_err(|e| cas_error("committing content", e))?;
        let dir = self.store.cacache_dir().to_path_buf();
        let path = cacache_path(&dir, &sri);
        tokio::task::spawn_blocking(move || sync_content(&dir, &path))
            .await
            .map_err(|e| Error::Cas(format!("content sync task failed: {e}")))??;
        Ok(Content::Stored {
            hash: sri,
            len: self.len,
        })
    }
}

/// How much streamed content is written between two free-space checks.
const SPACE_CHECK_BYTES: u64 = 1024 * 1024;

/// A cacache error, with "disk full" and "read-only" turned into `NoSpace`.
fn cas_error(context: &str, e: cacache::Error) -> Error {
    match e {
        cacache::Error::IoError(io, _) => classify_io(context, io),
        e => Error::Cas(format!("{context}: {e}")),
    }
}

/// fsyncs a content file and every directory from it up to the cache root, so that the
/// rename cacache did is durable too.
fn sync_content(root: &Path, path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| classify_io(&format!("syncing content file {}", path.display()), e))?;
    let mut dir = path.parent();
    while let Some(d) = dir {
        std::fs::File::open(d)
            .and_then(|f| f.sync_all())
            .map_err(|e| classify_io(&format!("syncing directory {}", d.display()), e))?;
        if d == root {
            break;
        }
        dir = d.parent();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast key is ssri's `algo-hex` form, for one hash and for several.
    #[test]
    fn cas_key_is_algorithm_and_hex_digest() {
        let several = ssri::IntegrityOpts::new()
            .algorithm(ssri::Algorithm::Sha1)
            .algorithm(ssri::Algorithm::Sha512)
            .chain(b"x")
            .result();
        for sri in [Integrity::from(b"hi"), several] {
            let (algo, hex) = sri.to_hex();
            assert_eq!(cas_key(&sri), format!("{algo}-{hex}").into_bytes());
        }
    }
}
