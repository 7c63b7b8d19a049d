//! Durable consumers: `GET /consumers`, `GET|DELETE /consumers/{name}`,
//! `POST /consumers/{name}/ack?id=ID` (reads with `?consumer=N` are in `read`).

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use xs::consumer::ConsumerInfo;
use xs::Store;

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
    let all = store.consumers().await?;
    let mut out = Vec::new();
    for c in &all {
        out.extend_from_slice(&info_json(c));
        out.push(b'\n');
    }
    Ok(respond(StatusCode::OK, NDJSON, body::full(out)))
}

async fn get(store: Store, name: String) -> ApiResult {
    match store.consumer(&name).await? {
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
