//! The content store over HTTP: `POST /cas` stores a body and answers its hash;
//! `GET /cas/{hash}` streams content back. Also the body → content reader appends use.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH};
use hyper::{Request, StatusCode};
use tokio::sync::mpsc;
use xs::backend::ContentReader;
use xs::{Content, Store};

use super::{respond, ApiResult};
use crate::body;
use crate::error::ApiError;

/// Streams a request body into the store. Nothing is kept if the body ends early.
pub async fn read_content(store: &Store, mut body: Incoming) -> Result<Content, ApiError> {
    let mut w = store.content_writer();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            w.write(&data).await?;
        }
    }
    Ok(w.finish().await?)
}

pub async fn post(store: Store, req: Request<Incoming>) -> ApiResult {
    let content = read_content(&store, req.into_body()).await?;
    match store.cas_put(content).await? {
        Some(hash) => Ok(respond(
            StatusCode::OK,
            "text/plain",
            body::full(hash.to_string()),
        )),
        None => Err(ApiError::bad_request("empty body: nothing to store")),
    }
}

pub async fn get(store: Store, hash: &str) -> ApiResult {
    let sri = xs::frame::parse_hash(hash)?;
    let content = store
        .cas_get(&sri)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no content with hash {sri}")))?;
    let len = content.len;
    let mut res = respond(
        StatusCode::OK,
        "application/octet-stream",
        content_body(content),
    );
    res.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(len));
    Ok(res)
}

/// Content as a response body, streamed chunk by chunk. The length was promised: a read
/// error aborts the body, so the client sees it truncated.
pub fn content_body(content: ContentReader) -> body::Body {
    ContentBody(content.chunks).boxed()
}

struct ContentBody(mpsc::Receiver<xs::Result<Bytes>>);

impl hyper::body::Body for ContentBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        self.0.poll_recv(cx).map(|chunk| {
            chunk.map(|r| match r {
                Ok(b) => Ok(hyper::body::Frame::data(b)),
                Err(e) => {
                    tracing::error!(error = %e, "reading content failed");
                    Err(std::io::Error::other(e.to_string()))
                }
            })
        })
    }
}
