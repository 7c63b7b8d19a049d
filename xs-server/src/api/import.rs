//! `POST /import`: stores frames as given (one JSON frame, or NDJSON), ids kept. Answers the
//! imported frames as NDJSON. A bad line stops the import; the lines before it are imported.
//! It is a 400 if no frame was answered yet, else the answer ends with an `{"error"}` line.

use std::future::Future;

use bytes::Bytes;
use futures::stream::{FuturesOrdered, StreamExt};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use tokio::sync::mpsc;
use xs::{Frame, Store};

use super::{drain, respond, ApiResult, NDJSON};
use crate::body;
use crate::error::ApiError;

/// Longest accepted line (one frame).
const MAX_LINE: usize = 16 * 1024 * 1024;
/// Imports in flight at once (they are group-committed by the writer).
const IN_FLIGHT: usize = 512;

type Pending = std::pin::Pin<Box<dyn Future<Output = xs::Result<Frame>> + Send>>;

pub async fn handle(store: Store, req: Request<Incoming>) -> ApiResult {
    let mut imp = Importer {
        store,
        body: req.into_body(),
        buf: Vec::new(),
        line_no: 0,
        pending: FuturesOrdered::new(),
        done: false,
    };
    // Import up to the first frame before answering, so input that is wrong from the start
    // gets a proper 400.
    let first = loop {
        match imp.step().await {
            Err(e) => {
                // The lines before the bad one are imported: wait until they are durable.
                while imp.pending.next().await.is_some() {}
                drain(imp.body).await;
                return Err(e);
            }
            Ok(Some(out)) => break Some(out),
            Ok(None) if imp.done && imp.pending.is_empty() => break None,
            Ok(None) => {}
        }
    };
    let Some(first) = first else {
        return Err(ApiError::bad_request("empty body: no frame to import"));
    };
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        if tx.send(first).await.is_err() {
            return;
        }
        loop {
            match imp.step().await {
                Ok(Some(out)) => {
                    if tx.send(out).await.is_err() {
                        return;
                    }
                }
                Ok(None) if imp.done && imp.pending.is_empty() => return,
                Ok(None) => {}
                Err(e) => {
                    while imp.pending.next().await.is_some() {}
                    let line = serde_json::json!({ "error": e.message }).to_string() + "\n";
                    let _ = tx.send(line.into()).await;
                    return;
                }
            }
        }
    });
    Ok(respond(StatusCode::OK, NDJSON, body::channel(rx)))
}

struct Importer {
    store: Store,
    body: Incoming,
    buf: Vec<u8>,
    line_no: usize,
    pending: FuturesOrdered<Pending>,
    done: bool,
}

impl Importer {
    /// Does one unit of work: queues buffered lines, or the lines of the next body chunk, or
    /// waits for the oldest import. Returns an imported frame's JSON line when one completes.
    async fn step(&mut self) -> Result<Option<Bytes>, ApiError> {
        self.queue_lines()?;
        if !self.done && self.pending.len() < IN_FLIGHT {
            match self.body.frame().await {
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        self.buf.extend_from_slice(&data);
                        self.queue_lines()?;
                    }
                }
                Some(Err(e)) => {
                    return Err(ApiError::bad_request(format!(
                        "reading the request body: {e}"
                    )))
                }
                None => {
                    self.done = true;
                    self.queue_lines()?;
                }
            }
            if self.pending.len() < IN_FLIGHT / 2 {
                return Ok(None);
            }
        }
        match self.pending.next().await {
            Some(r) => {
                let mut line = r?.to_json();
                line.push(b'\n');
                Ok(Some(line.into()))
            }
            None => Ok(None),
        }
    }

    /// Queues the buffered complete lines (and, once the body ended, the last one) while
    /// fewer than [`IN_FLIGHT`] imports are pending; the rest stays buffered. A backend's
    /// write queue is bounded (JetStream: 1,024), so a large body must not be queued at once.
    fn queue_lines(&mut self) -> Result<(), ApiError> {
        let mut start = 0;
        while self.pending.len() < IN_FLIGHT {
            let Some(pos) = self.buf[start..].iter().position(|&b| b == b'\n') else {
                break;
            };
            let end = start + pos;
            self.queue_line(start, end)?;
            start = end + 1;
        }
        self.buf.drain(..start);
        if self.pending.len() >= IN_FLIGHT {
            return Ok(());
        }
        if self.done && !self.buf.is_empty() {
            let end = self.buf.len();
            self.queue_line(0, end)?;
            self.buf.clear();
        }
        if self.buf.len() > MAX_LINE {
            return Err(ApiError::bad_request(format!(
                "line {}: longer than {MAX_LINE} bytes",
                self.line_no + 1
            )));
        }
        Ok(())
    }

    fn queue_line(&mut self, start: usize, end: usize) -> Result<(), ApiError> {
        self.line_no += 1;
        let line = self.buf[start..end].trim_ascii();
        if line.is_empty() {
            return Ok(());
        }
        let frame = Frame::from_json(line)
            .map_err(|e| ApiError::bad_request(format!("line {}: {e}", self.line_no)))?;
        self.pending.push_back(Box::pin(self.store.import(frame)));
        Ok(())
    }
}
