//! The content store over HTTP: `POST /cas` stores a body and answers its hash;
//! `GET /cas/{hash}` streams content back. Also the body → content reader appends use.

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

/// Content as a response body, streamed chunk by chunk.
pub fn content_body(mut content: ContentReader) -> body::Body {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        while let Some(chunk) = content.chunk().await {
            match chunk {
                Ok(b) => {
                    if tx.send(b).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    // The length was promised; ending early makes the client see a truncated
                    // body.
                    tracing::error!(error = %e, "reading content failed");
                    return;
                }
            }
        }
    });
    body::channel(rx)
}
