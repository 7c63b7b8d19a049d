//! `GET /export[?topic=P][&after=ID]`: streams the frames (and, once each, before its first
//! frame, the content they reference) as one archive (`xs::archive`). An export that fails
//! midway ends without its `E` record, so a restore of it is refused.

use std::collections::HashSet;
use std::io::Read;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use tokio::sync::mpsc;
use xs::archive::ArchiveWriter;
use xs::store::CasContent;
use xs::{ReadOptions, Store};

use super::{respond, ApiResult};
use crate::body;

/// Media type of an archive.
pub const ARCHIVE: &str = "application/x-xs-export";
/// Chunks are sent once they reach this size.
const CHUNK: usize = 256 * 1024;

pub async fn handle(store: Store, req: Request<Incoming>) -> ApiResult {
    let q = ReadOptions::from_query(req.uri().query())?;
    let opts = ReadOptions {
        topic: q.topic,
        after: q.after,
        from: q.from,
        ..ReadOptions::default()
    };
    let (tx, rx) = mpsc::channel(4);
    tokio::task::spawn_blocking(move || match export(&store, &opts, &tx) {
        Ok(_) => {}
        Err(Stop::Gone) => tracing::debug!("export client went away"),
        Err(Stop::Failed(e)) => {
            tracing::error!(error = %e, "export failed; the archive was cut short")
        }
    });
    Ok(respond(StatusCode::OK, ARCHIVE, body::channel(rx)))
}

enum Stop {
    Gone,
    Failed(xs::Error),
}

impl From<xs::Error> for Stop {
    fn from(e: xs::Error) -> Stop {
        Stop::Failed(e)
    }
}

struct Out<'a> {
    w: ArchiveWriter,
    buf: Vec<u8>,
    tx: &'a mpsc::Sender<Bytes>,
}

impl Out<'_> {
    fn flush_if_full(&mut self) -> Result<(), Stop> {
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Stop> {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK + 64 * 1024));
        self.tx.blocking_send(chunk.into()).map_err(|_| Stop::Gone)
    }
}

#[derive(serde::Deserialize)]
struct HashOnly {
    #[serde(default)]
    hash: Option<String>,
}

/// Writes the whole archive into `tx` (blocking).
fn export(store: &Store, opts: &ReadOptions, tx: &mpsc::Sender<Bytes>) -> Result<(), Stop> {
    let mut out = Out {
        w: ArchiveWriter::new(),
        buf: Vec::with_capacity(CHUNK + 64 * 1024),
        tx,
    };
    out.w.header(&mut out.buf);
    let mut sent: HashSet<String> = HashSet::new();
    let mut stop = None;
    store.scan(opts, |f| {
        let r = (|| {
            let hash = serde_json::from_slice::<HashOnly>(f.json)
                .map_err(|e| xs::Error::Corrupt(format!("frame {}: {e}", f.id)))?
                .hash;
            if let Some(h) = hash {
                if !sent.contains(&h) {
                    content(store, &mut out, &h, &f.id)?;
                    sent.insert(h);
                }
            }
            out.w.frame(&mut out.buf, f.json);
            out.flush_if_full()
        })();
        match r {
            Ok(()) => true,
            Err(e) => {
                stop = Some(e);
                false
            }
        }
    })?;
    if let Some(e) = stop {
        return Err(e);
    }
    let Out { w, mut buf, tx } = out;
    w.end(&mut buf);
    tx.blocking_send(buf.into()).map_err(|_| Stop::Gone)
}

/// Writes one content record.
fn content(store: &Store, out: &mut Out<'_>, hash: &str, id: &xs::Id) -> Result<(), Stop> {
    let sri = xs::frame::parse_hash(hash)?;
    let missing = || xs::Error::NotFound(format!("frame {id}: its content {hash} is missing"));
    match store.cas_get(&sri)?.ok_or_else(missing)? {
        CasContent::Inline(b) => {
            out.w.content_start(&mut out.buf, &sri, b.len() as u64);
            out.w.content_data(&mut out.buf, &b);
        }
        CasContent::File { mut file, len } => {
            out.w.content_start(&mut out.buf, &sri, len);
            let mut left = len;
            let mut chunk = vec![0u8; CHUNK];
            while left > 0 {
                let want = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let n = file
                    .read(&mut chunk[..want])
                    .map_err(|e| xs::Error::io(format!("reading content {hash}"), e))?;
                if n == 0 {
                    return Err(xs::Error::Corrupt(format!(
                        "content {hash} is shorter than its file"
                    ))
                    .into());
                }
                out.w.content_data(&mut out.buf, &chunk[..n]);
                left -= n as u64;
                out.flush_if_full()?;
            }
        }
    }
    out.w.content_end(&mut out.buf);
    Ok(())
}
