//! `GET /export[?topic=P][&after=ID]`: streams the frames (and, once each, before its first
//! frame, the content they reference) as one archive (`xs::archive`). An export that fails
//! midway ends without its `E` record, so a restore of it is refused.

use std::collections::HashSet;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use tokio::sync::mpsc;
use xs::archive::ArchiveWriter;
use xs::reader::Event;
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
    tokio::spawn(async move {
        match export(&store, opts, &tx).await {
            Ok(_) => {}
            Err(Stop::Gone) => tracing::debug!("export client went away"),
            Err(Stop::Failed(e)) => {
                tracing::error!(error = %e, "export failed; the archive was cut short")
            }
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
    async fn flush_if_full(&mut self) -> Result<(), Stop> {
        if self.buf.len() >= CHUNK {
            let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK + 64 * 1024));
            self.tx.send(chunk.into()).await.map_err(|_| Stop::Gone)?;
        }
        Ok(())
    }
}

#[derive(serde::Deserialize)]
struct HashOnly {
    #[serde(default)]
    hash: Option<String>,
}

/// Writes the whole archive into `tx`.
async fn export(store: &Store, opts: ReadOptions, tx: &mpsc::Sender<Bytes>) -> Result<(), Stop> {
    let mut out = Out {
        w: ArchiveWriter::new(),
        buf: Vec::with_capacity(CHUNK + 64 * 1024),
        tx,
    };
    out.w.header(&mut out.buf);
    let mut sent: HashSet<String> = HashSet::new();
    let mut reader = store.read_quiet(opts);
    while let Some(event) = reader.next().await {
        let Event::Frame(f) = event? else { continue };
        let hash = serde_json::from_slice::<HashOnly>(&f.json)
            .map_err(|e| xs::Error::Corrupt(format!("frame {}: {e}", f.id)))?
            .hash;
        if let Some(h) = hash {
            if !sent.contains(&h) {
                content(store, &mut out, &h, &f.id).await?;
                sent.insert(h);
            }
        }
        out.w.frame(&mut out.buf, &f.json);
        out.flush_if_full().await?;
    }
    let Out { w, mut buf, tx } = out;
    w.end(&mut buf);
    tx.send(buf.into()).await.map_err(|_| Stop::Gone)
}

/// Writes one content record.
async fn content(store: &Store, out: &mut Out<'_>, hash: &str, id: &xs::Id) -> Result<(), Stop> {
    let sri = xs::frame::parse_hash(hash)?;
    let missing = || xs::Error::NotFound(format!("frame {id}: its content {hash} is missing"));
    let mut content = store.cas_get(&sri).await?.ok_or_else(missing)?;
    out.w.content_start(&mut out.buf, &sri, content.len);
    let mut left = content.len;
    while let Some(chunk) = content.chunk().await {
        let chunk = chunk?;
        left = left.saturating_sub(chunk.len() as u64);
        out.w.content_data(&mut out.buf, &chunk);
        out.flush_if_full().await?;
    }
    if left > 0 {
        return Err(
            xs::Error::Corrupt(format!("content {hash} is shorter than its length")).into(),
        );
    }
    out.w.content_end(&mut out.buf);
    Ok(())
}
