//! Durable consumers: `GET /consumers`, `GET|DELETE /consumers/{name}`,
//! `POST /consumers/{name}/ack?id=ID`, and reads with `?consumer=N` (`ack=auto`).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, CACHE_CONTROL};
use hyper::{Method, Request, StatusCode};
use tokio::sync::mpsc;
use xs::consumer::{ConsumerInfo, ConsumerRead};
use xs::reader::{Chunk, Format};
use xs::{ReadOptions, Store};

use super::{json_response, method_not_allowed, respond, ApiResult, JSON, NDJSON};
use crate::body;
use crate::error::ApiError;

/// Routes `/consumers/{name}` and (`is_ack`) `/consumers/{name}/ack`.
pub async fn route(store: Store, req: Request<Incoming>, name: &str, is_ack: bool) -> ApiResult {
    let m = req.method().clone();
    if is_ack {
        if m != Method::POST {
            return Err(method_not_allowed(&m, &["POST"]));
        }
        return ack(store, req, &super::decode(name)?).await;
    }
    let name = super::decode(name)?;
    match m {
        Method::GET => get(store, name).await,
        Method::DELETE => {
            store.remove_consumer(&name).await?;
            Ok(respond(StatusCode::NO_CONTENT, JSON, body::empty()))
        }
        _ => Err(method_not_allowed(&m, &["GET", "DELETE"])),
    }
}

fn info_json(c: &ConsumerInfo) -> Vec<u8> {
    serde_json::to_vec(c).expect("a consumer serializes")
}

/// `GET /consumers`: NDJSON `{"name","position","lag"}`, by name.
pub async fn list(store: Store) -> ApiResult {
    let all = blocking(move || store.consumers()).await?;
    let mut out = Vec::new();
    for c in &all {
        out.extend_from_slice(&info_json(c));
        out.push(b'\n');
    }
    Ok(respond(StatusCode::OK, NDJSON, body::full(out)))
}

async fn get(store: Store, name: String) -> ApiResult {
    xs::consumer::validate_name(&name)?;
    let n = name.clone();
    match blocking(move || store.consumer(&n)).await? {
        Some(c) => Ok(json_response(info_json(&c))),
        None => Err(ApiError::not_found(format!("no consumer named {name:?}"))),
    }
}

async fn ack(store: Store, req: Request<Incoming>, name: &str) -> ApiResult {
    let pairs = xs::read::parse_query(req.uri().query().unwrap_or(""))?;
    let id = match pairs.iter().rev().find(|(k, _)| k == "id") {
        Some((_, v)) => xs::frame::parse_id(v)?,
        None => {
            return Err(ApiError::bad_request(
                "missing id: POST /consumers/{name}/ack?id=ID",
            ))
        }
    };
    store.ack(name, id).await?;
    Ok(respond(StatusCode::NO_CONTENT, JSON, body::empty()))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> xs::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::from(xs::Error::Internal(e.to_string())))?
        .map_err(ApiError::from)
}

/// Starts `opts` at the consumer's position (or its `start`); with `ack=auto`, answers a
/// body that acknowledges each chunk's frames as it hands the chunk to the connection.
pub fn read(
    store: Store,
    consumer: ConsumerRead,
    mut opts: ReadOptions,
    format: Format,
) -> ApiResult {
    let position = store.consumer_position(&consumer.name)?;
    consumer.apply(position, &mut opts);
    if !consumer.ack_auto {
        return Ok(super::read::stream(store, opts, format));
    }
    let (tx, rx) = mpsc::channel::<Chunk>(8);
    let reader_store = store.clone();
    tokio::spawn(async move {
        if let Err(e) = xs::reader::run(reader_store, opts, format, tx).await {
            tracing::error!(error = %e, "read ended with an error");
        }
    });
    let content_type = match format {
        Format::Ndjson => NDJSON,
        Format::Sse => "text/event-stream",
    };
    let body = AckBody {
        rx,
        store,
        name: consumer.name,
    };
    let mut res = respond(StatusCode::OK, content_type, body::infallible(body));
    res.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(res)
}

/// A read's body that acknowledges the last frame of each chunk once hyper takes the chunk
/// to write it (one ack per chunk, never ahead of what was handed over).
struct AckBody {
    rx: mpsc::Receiver<Chunk>,
    store: Store,
    name: String,
}

impl hyper::body::Body for AckBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(chunk)) => {
                if let Some(id) = chunk.last {
                    // Queued now, in order; the writer keeps the max.
                    let acked = self.store.ack(&self.name, id);
                    let name = self.name.clone();
                    tokio::spawn(async move {
                        if let Err(e) = acked.await {
                            tracing::warn!(consumer = %name, error = %e, "auto-ack failed");
                        }
                    });
                }
                Poll::Ready(Some(Ok(Frame::data(chunk.bytes))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
