//! The content store over HTTP: `POST /cas` stores a body and answers its hash;
//! `GET /cas/{hash}` streams content back. Also the body → content reader appends use.

use std::io::Read;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH};
use hyper::{Request, StatusCode};
use tokio::sync::mpsc;
use xs::store::CasContent;
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
        .cas_get(&sri)?
        .ok_or_else(|| ApiError::not_found(format!("no content with hash {sri}")))?;
    let len = content.len();
    let body = content_body(content);
    let mut res = respond(StatusCode::OK, "application/octet-stream", body);
    res.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(len));
    Ok(res)
}

/// Content as a response body: whole when inline, streamed from its file otherwise.
pub fn content_body(content: CasContent) -> body::Body {
    match content {
        CasContent::Inline(b) => body::full(b),
        CasContent::File { file, .. } => {
            let (tx, rx) = mpsc::channel(4);
            tokio::task::spawn_blocking(move || stream_file(file, tx));
            body::channel(rx)
        }
    }
}

fn stream_file(mut file: std::fs::File, tx: mpsc::Sender<Bytes>) {
    loop {
        let mut buf = vec![0u8; 256 * 1024];
        match file.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                buf.truncate(n);
                if tx.blocking_send(buf.into()).is_err() {
                    return;
                }
            }
            Err(e) => {
                // The length was promised; ending early makes the client see a truncated body.
                tracing::error!(error = %e, "reading content failed");
                return;
            }
        }
    }
}
