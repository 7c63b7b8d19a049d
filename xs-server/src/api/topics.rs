//! `GET /topics[?prefix=a.b][&children=true]`: each topic (or each direct child level) with
//! its frame count, first and last id, as NDJSON sorted by topic — read from the topic index.

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use xs::Store;

use super::{respond, ApiResult, NDJSON};
use crate::body;
use crate::error::ApiError;

pub async fn handle(store: Store, req: Request<Incoming>) -> ApiResult {
    let pairs = xs::read::parse_query(req.uri().query().unwrap_or(""))?;
    let mut prefix = None;
    let mut children = false;
    for (k, v) in pairs {
        match k.as_str() {
            "prefix" => prefix = Some(v),
            "children" => children = !matches!(v.as_str(), "false" | "no" | "0"),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {k:?} for GET /topics (known: prefix, children)"
                )))
            }
        }
    }
    let topics = store.topics(prefix.as_deref(), children).await?;
    let mut out = Vec::new();
    for t in &topics {
        serde_json::to_writer(&mut out, t).expect("topic info serializes");
        out.push(b'\n');
    }
    Ok(respond(StatusCode::OK, NDJSON, body::full(out)))
}
