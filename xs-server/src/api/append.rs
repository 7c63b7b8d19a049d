//! `POST /append/{topic}`: appends a frame. Body = content (streamed), `xs-meta` header =
//! base64 JSON meta, `?ttl=`, `?expect=<id>|none`, `xs-idempotency-key` header; answers the
//! frame once it is durable.

use base64::Engine;
use hyper::body::Incoming;
use hyper::Request;
use xs::{NewFrame, Store, Ttl};

use super::{cas::read_content, drain, frame_json, json_response, with_timestamp, ApiResult};
use crate::error::ApiError;

pub async fn handle(store: Store, req: Request<Incoming>, topic: &str) -> ApiResult {
    let checked = (|| {
        xs::validate_topic(topic)?;
        let ttl = ttl_param(req.uri().query())?;
        let expect = expect_param(req.uri().query())?;
        let wt = with_timestamp(&req)?;
        let meta = match req.headers().get("xs-meta") {
            Some(v) => Some(decode_meta(v.as_bytes())?),
            None => None,
        };
        let key = match req.headers().get(IDEMPOTENCY_KEY) {
            Some(v) => Some(idempotency_key(v.as_bytes())?),
            None => None,
        };
        Ok::<_, ApiError>((ttl, wt, meta, expect, key))
    })();
    let (ttl, wt, meta, expect, key) = match checked {
        Ok(c) => c,
        Err(e) => {
            store.count_append(xs::store::Outcome::Rejected, 0);
            drain(req.into_body()).await;
            return Err(e);
        }
    };
    let content = read_content(&store, req.into_body()).await?;
    let frame = store
        .append(NewFrame {
            topic: topic.to_string(),
            meta,
            ttl,
            content,
            expect,
            key,
        })
        .await?;
    Ok(json_response(frame_json(&frame, wt)))
}

fn ttl_param(query: Option<&str>) -> Result<Ttl, ApiError> {
    let pairs = xs::read::parse_query(query.unwrap_or(""))?;
    match pairs.iter().rev().find(|(k, _)| k == "ttl") {
        Some((_, v)) => Ok(v.parse()?),
        None => Ok(Ttl::Forever),
    }
}

/// The header naming an append's idempotency key.
pub const IDEMPOTENCY_KEY: &str = "xs-idempotency-key";

fn expect_param(query: Option<&str>) -> Result<Option<xs::Expect>, ApiError> {
    let pairs = xs::read::parse_query(query.unwrap_or(""))?;
    match pairs.iter().rev().find(|(k, _)| k == "expect") {
        Some((_, v)) => Ok(Some(v.parse()?)),
        None => Ok(None),
    }
}

/// Checks an idempotency key: 1 to 256 visible ASCII characters.
fn idempotency_key(raw: &[u8]) -> Result<String, ApiError> {
    use xs::batch::IDEMPOTENCY_KEY_MAX;
    let key = raw.trim_ascii();
    if !xs::batch::valid_idempotency_key(key) {
        return Err(ApiError::bad_request(format!(
            "{IDEMPOTENCY_KEY} must be 1 to {IDEMPOTENCY_KEY_MAX} visible ASCII characters"
        )));
    }
    Ok(String::from_utf8_lossy(key).into_owned())
}

/// Decodes the `xs-meta` header: standard base64 (padding optional) of a JSON value.
pub fn decode_meta(raw: &[u8]) -> Result<serde_json::Value, ApiError> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
    let trimmed = raw.trim_ascii();
    let bytes = STANDARD
        .decode(trimmed)
        .or_else(|_| STANDARD_NO_PAD.decode(trimmed))
        .map_err(|e| ApiError::bad_request(format!("xs-meta isn't valid base64: {e}")))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("xs-meta isn't valid JSON: {e}")))
}
