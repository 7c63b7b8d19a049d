//! `GET /`: reads the stream (history, `xs.threshold`, live) as NDJSON, or SSE when the
//! client accepts `text/event-stream`.

use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, CACHE_CONTROL};
use hyper::{Request, StatusCode};
use tokio::sync::mpsc;
use xs::reader::Format;
use xs::{ReadOptions, Store};

use super::{respond, ApiResult, NDJSON};
use crate::body;

pub async fn handle(store: Store, req: Request<Incoming>) -> ApiResult {
    let opts = ReadOptions::from_query(req.uri().query())?;
    let sse = req
        .headers()
        .get_all(ACCEPT)
        .iter()
        .any(|v| v.to_str().is_ok_and(|s| s.contains("text/event-stream")));
    let format = if sse { Format::Sse } else { Format::Ndjson };
    if let Some(c) = xs::consumer::ConsumerRead::from_query(req.uri().query())? {
        return super::consumers::read(store, c, opts, format);
    }
    Ok(stream(store, opts, format))
}

/// Starts the read and answers with its streamed body.
pub fn stream(store: Store, opts: ReadOptions, format: Format) -> hyper::Response<body::Body> {
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        if let Err(e) = xs::reader::run(store, opts, format, tx).await {
            tracing::error!(error = %e, "read ended with an error");
        }
    });
    let content_type = match format {
        Format::Ndjson => NDJSON,
        Format::Sse => "text/event-stream",
    };
    let mut res = respond(StatusCode::OK, content_type, body::channel(rx));
    res.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}
