//! A read as an HTTP body: the read path's events encoded as NDJSON or SSE, in chunks; with a
//! consumer's `ack=auto`, each chunk's last frame is acknowledged as hyper takes the chunk.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::header::{HeaderValue, CACHE_CONTROL};
use hyper::StatusCode;
use tokio::sync::mpsc;
use xs::frame::{write_json, Id};
use xs::reader::Event;
use xs::{ReadOptions, Store};

use super::{respond, NDJSON};
use crate::body;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One frame JSON per line.
    Ndjson,
    /// Server-sent events: `id: <id>\ndata: <frame>\n\n`.
    Sse,
}

/// Appends one encoded frame to `out`.
pub fn encode(out: &mut Vec<u8>, format: Format, id: &Id, json: &[u8], with_timestamp: bool) {
    match format {
        Format::Ndjson => {
            write_json(out, json, id, with_timestamp);
            out.push(b'\n');
        }
        Format::Sse => {
            out.extend_from_slice(b"id: ");
            out.extend_from_slice(id.encode().as_bytes());
            out.extend_from_slice(b"\ndata: ");
            write_json(out, json, id, with_timestamp);
            out.extend_from_slice(b"\n\n");
        }
    }
}

/// Encodes events into `out`; returns the id of the last frame among them (not a marker).
pub fn encode_events(
    out: &mut Vec<u8>,
    events: &[Event],
    format: Format,
    with_timestamp: bool,
) -> Option<Id> {
    let mut last = None;
    for e in events {
        match e {
            Event::Frame(r) => {
                encode(out, format, &r.id, &r.json, with_timestamp);
                last = Some(r.id);
            }
            Event::Threshold(f) | Event::Pulse(f) => {
                encode(out, format, &f.id, &f.to_json(), with_timestamp)
            }
        }
    }
    last
}

/// Starts the read and answers with its streamed body; `ack`: the consumer to acknowledge
/// each chunk's frames for.
pub fn response(
    store: Store,
    opts: ReadOptions,
    format: Format,
    ack: Option<String>,
) -> hyper::Response<body::Body> {
    let wt = opts.with_timestamp;
    let mut reader = store.read(opts);
    let (tx, rx) = mpsc::channel::<(Bytes, Option<Id>)>(8);
    tokio::spawn(async move {
        loop {
            let batch = tokio::select! {
                b = reader.next_batch() => b,
                // The client went away while the read waits for live frames.
                _ = tx.closed() => return,
            };
            let Some(batch) = batch else { return };
            let events = match batch {
                Ok(events) => events,
                Err(e) => {
                    tracing::error!(error = %e, "read ended with an error");
                    return;
                }
            };
            let mut buf = Vec::new();
            let last = encode_events(&mut buf, &events, format, wt);
            if tx.send((buf.into(), last)).await.is_err() {
                return;
            }
        }
    });
    let content_type = match format {
        Format::Ndjson => NDJSON,
        Format::Sse => "text/event-stream",
    };
    let body = ReadBody {
        rx,
        ack: ack.map(|name| (store, name)),
    };
    let mut res = respond(StatusCode::OK, content_type, body::infallible(body));
    res.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

/// A read's body; with a consumer, it acknowledges the last frame of each chunk once hyper
/// takes the chunk to write it (one ack per chunk, never ahead of what was handed over).
struct ReadBody {
    rx: mpsc::Receiver<(Bytes, Option<Id>)>,
    ack: Option<(Store, String)>,
}

impl hyper::body::Body for ReadBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some((bytes, last))) => {
                if let (Some(id), Some((store, name))) = (last, &self.ack) {
                    // Queued now, in order; the store keeps the max.
                    let acked = store.ack(name, id);
                    let name = name.clone();
                    tokio::spawn(async move {
                        if let Err(e) = acked.await {
                            tracing::warn!(consumer = %name, error = %e, "auto-ack failed");
                        }
                    });
                }
                Poll::Ready(Some(Ok(hyper::body::Frame::data(bytes))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
