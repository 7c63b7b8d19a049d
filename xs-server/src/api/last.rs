//! `GET /last[/{topic}]`: the newest frame (or newest `last=N`) of a topic pattern;
//! with `follow`, those frames, `xs.threshold`, then live frames.

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use xs::{ReadOptions, Store, TopicFilter};

use super::stream::{self, Format};
use super::{json_response, respond, ApiResult, NDJSON};
use crate::body;
use crate::error::ApiError;

pub async fn handle(store: Store, req: Request<Incoming>, topic: Option<String>) -> ApiResult {
    let mut opts = ReadOptions::from_query(req.uri().query())?;
    let n = opts.last.unwrap_or(1);
    if n == 0 {
        return Err(ApiError::bad_request("last must be at least 1"));
    }
    opts.last = Some(n);
    opts.from = None;
    opts.after = None;
    opts.new = false;
    if let Some(t) = topic {
        opts.topic = TopicFilter::parse(&t)?;
    }
    if opts.is_follow() {
        return Ok(stream::response(store, opts, Format::Ndjson, None));
    }
    let wt = opts.with_timestamp;
    let mut reader = store.read_quiet(opts);
    let mut out = Vec::new();
    let mut count = 0;
    while let Some(events) = reader.next_batch().await {
        let events = events?;
        count += events.len();
        stream::encode_events(&mut out, &events, Format::Ndjson, wt);
    }
    if count == 0 {
        return Err(ApiError::not_found("no frames match"));
    }
    if n == 1 {
        let mut one = out;
        one.pop(); // a single object, without the NDJSON newline
        return Ok(json_response(one));
    }
    Ok(respond(StatusCode::OK, NDJSON, body::full(out)))
}
