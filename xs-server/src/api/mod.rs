//! The HTTP API (DESIGN.md §5): routing, and the helpers every route uses to answer.
//! One module per route, mirrored by the CLI's `commands/`.

mod append;
mod cas;
mod consumers;
#[cfg(feature = "nu")]
mod eval;
mod export;
mod gc;
mod get;
mod import;
mod last;
pub mod metrics;
mod ps;
mod read;
mod remove;
mod restore;
mod topics;
mod version;

/// The `xs-meta` header decoder, public for the fuzz targets.
#[doc(hidden)]
pub use append::decode_meta;
pub(crate) use cas::{content_body, read_content};

use std::convert::Infallible;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};

use crate::body::{self, Body};
use crate::error::ApiError;
use crate::Daemon;

pub type ApiResult = Result<Response<Body>, ApiError>;

/// Largest request head (request line and headers) answered; hyper itself refuses heads
/// over `listener::MAX_BUF_BYTES` before they reach us.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

pub const JSON: &str = "application/json";
pub const NDJSON: &str = "application/x-ndjson";

/// Answers one request. Never fails: errors become a status and a `{"error"}` body.
pub async fn handle(daemon: Daemon, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let res = if head_size(&req) > MAX_HEAD_BYTES {
        let e = ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("request head is over {MAX_HEAD_BYTES} bytes"),
        );
        Err(e)
    } else {
        route(daemon, req).await
    };
    let res = res.unwrap_or_else(|e| {
        tracing::debug!(%method, %path, status = %e.status, error = %e.message, "request refused");
        error_response(&e)
    });
    Ok(res)
}

async fn route(daemon: Daemon, req: Request<Incoming>) -> ApiResult {
    let store = daemon.store.clone();
    let path = req.uri().path().to_string();
    let m = req.method().clone();
    let rest = path.strip_prefix('/').unwrap_or(&path);
    match (rest, &m) {
        ("", &Method::GET) => read::handle(store, req).await,
        ("version", &Method::GET) => version::handle().await,
        ("last", &Method::GET) => last::handle(store, req, None).await,
        ("cas", &Method::POST) => cas::post(store, req).await,
        ("import", &Method::POST) => import::handle(store, req).await,
        ("consumers", &Method::GET) => consumers::list(store).await,
        ("export", &Method::GET) => export::handle(store, req).await,
        ("restore", &Method::POST) => restore::handle(store, req).await,
        ("topics", &Method::GET) => topics::handle(store, req).await,
        ("gc", &Method::POST) => gc::handle(store).await,
        ("ps", &Method::GET) => ps::handle(store).await,
        ("metrics", &Method::GET) => metrics::handle(daemon).await,
        #[cfg(feature = "nu")]
        ("eval", &Method::POST) => eval::handle(daemon, req).await,
        #[cfg(not(feature = "nu"))]
        ("eval", &Method::POST) => Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "POST /eval is not available: this daemon was built without the Nushell engine",
        )),
        _ => {
            if let Some(topic) = rest.strip_prefix("last/") {
                only(&m, &[Method::GET])?;
                let topic = decode(topic)?;
                last::handle(store, req, Some(topic)).await
            } else if let Some(hash) = rest.strip_prefix("cas/") {
                only(&m, &[Method::GET])?;
                cas::get(store, &decode(hash)?).await
            } else if let Some(consumer) = rest.strip_prefix("consumers/") {
                consumers::route(store, req, consumer).await
            } else if let Some(topic) = rest.strip_prefix("append/") {
                only(&m, &[Method::POST])?;
                let topic = decode(topic)?;
                append::handle(store, req, &topic).await
            } else if !rest.is_empty() && !rest.contains('/') && !is_known(rest) {
                match m {
                    Method::GET => get::handle(store, req, rest).await,
                    Method::DELETE => remove::handle(store, req, rest).await,
                    _ => Err(method_not_allowed(&m, &["GET", "DELETE"])),
                }
            } else if is_known(rest) {
                Err(method_not_allowed(&m, &[]))
            } else {
                Err(ApiError::not_found(format!("no route for {m} {path}")))
            }
        }
    }
}

fn head_size(req: &Request<Incoming>) -> usize {
    let uri = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    let headers: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    uri + headers
}

/// Reads and drops what is left of a refused request's body (up to a bound), so the client,
/// still sending, gets the error answer instead of a reset connection.
pub async fn drain(mut body: Incoming) {
    use http_body_util::BodyExt;
    const MAX_DRAIN: usize = 64 * 1024 * 1024;
    let mut seen = 0;
    let deadline = tokio::time::sleep(std::time::Duration::from_secs(5));
    tokio::pin!(deadline);
    while seen < MAX_DRAIN {
        tokio::select! {
            f = body.frame() => match f {
                Some(Ok(f)) => seen += f.data_ref().map_or(0, |d| d.len()),
                _ => return,
            },
            _ = &mut deadline => return,
        }
    }
}

fn is_known(rest: &str) -> bool {
    matches!(
        rest,
        "" | "version"
            | "last"
            | "cas"
            | "import"
            | "eval"
            | "consumers"
            | "export"
            | "restore"
            | "topics"
            | "gc"
            | "ps"
            | "metrics"
    )
}

fn only(m: &Method, allowed: &[Method]) -> Result<(), ApiError> {
    if allowed.contains(m) {
        return Ok(());
    }
    let names: Vec<&str> = allowed.iter().map(Method::as_str).collect();
    Err(method_not_allowed(m, &names))
}

fn method_not_allowed(m: &Method, allowed: &[&str]) -> ApiError {
    let msg = if allowed.is_empty() {
        format!("method {m} is not allowed here")
    } else {
        format!(
            "method {m} is not allowed here (allowed: {})",
            allowed.join(", ")
        )
    };
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, msg)
}

fn decode(s: &str) -> Result<String, ApiError> {
    xs::read::decode_component(&s.replace('+', "%2B"))
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

pub fn error_response(e: &ApiError) -> Response<Body> {
    respond(e.status, JSON, body::full(e.body()))
}

pub fn respond(status: StatusCode, content_type: &str, body: Body) -> Response<Body> {
    let mut res = Response::new(body);
    *res.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        res.headers_mut().insert(CONTENT_TYPE, v);
    }
    res
}

/// A frame (or any JSON) as a 200 `application/json` answer.
pub fn json_response(json: Vec<u8>) -> Response<Body> {
    respond(StatusCode::OK, JSON, body::full(json))
}

/// The query string's `with-timestamp` flag (present and not false).
pub fn with_timestamp(req: &Request<Incoming>) -> Result<bool, ApiError> {
    let pairs = xs::read::parse_query(req.uri().query().unwrap_or(""))?;
    Ok(pairs
        .iter()
        .any(|(k, v)| k == "with-timestamp" && !matches!(v.as_str(), "false" | "no" | "0")))
}

/// A frame's JSON, with `timestamp` when asked.
pub fn frame_json(frame: &xs::Frame, with_timestamp: bool) -> Vec<u8> {
    let mut out = Vec::new();
    xs::frame::write_json(&mut out, &frame.to_json(), &frame.id, with_timestamp);
    out
}
