//! The `--http` gateway: a plain HTTP/1.1 listener (no xs token: it is a web app's public
//! face) that turns each request into an `http.request` frame and answers it with the
//! `http.response` frame that names it, or 504 after the timeout, or 502 if its handler fails.
//!
//! One request: start reading the live stream, stream the body into the CAS, append
//! `http.request` (meta: method, path, query, uri, headers, remote_addr), then wait for an
//! `http.response` whose `meta.request_id` (else `meta.frame_id`, which a handler's `.append`
//! stamps) is the request's id — or an `xs.handler.<name>.fin.error` (or an actor's
//! `xs.actor.<name>.fin.error`) whose `meta.frame_id` is.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, CONTENT_LENGTH};
use hyper::{Request, Response, StatusCode};
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use xs::reader::Event;
use xs::{Follow, Frame, Id, NewFrame, ReadOptions, Store, TopicFilter, Ttl};

use crate::body::{self, Body};
use crate::error::{ApiError, ServeError};

/// The topic of a request frame.
pub const REQUEST_TOPIC: &str = "http.request";
/// The topic of a response frame.
pub const RESPONSE_TOPIC: &str = "http.response";
/// How long a request waits for its response unless `--http-timeout` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How the gateway was configured (`--http`, `--http-timeout`, `--http-ttl`).
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// `host:port` or `:port` (loopback).
    pub addr: String,
    /// How long after its frame is stored a request waits for its response.
    pub timeout: Duration,
    /// The TTL of `http.request` frames (not `ephemeral`: handlers only see stored frames).
    pub ttl: Ttl,
}

/// Requests answered, by status, for `GET /metrics`.
#[derive(Default)]
pub struct Stats(Mutex<BTreeMap<u16, u64>>);

impl Stats {
    fn count(&self, status: StatusCode) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(status.as_u16()).or_default() += 1;
    }

    /// `(status, requests)` by status.
    pub fn snapshot(&self) -> Vec<(u16, u64)> {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.iter().map(|(k, v)| (*k, *v)).collect()
    }
}

/// Parses a timeout: `500ms`, `30s`, `2m`, or a bare number of milliseconds; more than 0.
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "ms"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration: write e.g. 500ms, 30s or 2m"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?} (use ms, s or m; a bare number is milliseconds)"
            ))
        }
    };
    if d.is_zero() {
        return Err(format!("{s:?}: the timeout must be more than 0"));
    }
    Ok(d)
}

/// Checks the TTL of request frames: anything but `ephemeral`.
pub fn check_ttl(ttl: Ttl) -> Result<Ttl, String> {
    if ttl == Ttl::Ephemeral {
        return Err("--http-ttl cannot be ephemeral: handlers only see stored frames".into());
    }
    Ok(ttl)
}

/// Binds the gateway's address (`:port` means loopback).
pub async fn bind(addr: &str) -> Result<TcpListener, ServeError> {
    let full = if addr.starts_with(':') {
        format!("127.0.0.1{addr}")
    } else {
        addr.to_string()
    };
    TcpListener::bind(&full)
        .await
        .map_err(|source| ServeError::Io {
            context: format!("binding --http {full}"),
            source,
        })
}

/// Accepts connections until `shutdown` turns true; returns the handle that finishes the
/// open ones.
pub async fn serve(
    listener: TcpListener,
    store: Store,
    stats: Arc<Stats>,
    opts: GatewayOptions,
    mut shutdown: watch::Receiver<bool>,
) -> GracefulShutdown {
    let graceful = GracefulShutdown::new();
    let opts = Arc::new(opts);
    loop {
        tokio::select! {
            _ = crate::daemon::stopped(&mut shutdown) => return graceful,
            conn = listener.accept() => match conn {
                Ok((stream, remote)) => {
                    let _ = stream.set_nodelay(true);
                    let (store, stats, opts) = (store.clone(), stats.clone(), opts.clone());
                    let handler = move |req| {
                        handle(store.clone(), stats.clone(), opts.clone(), remote, req)
                    };
                    crate::listener::serve_http1(stream, handler, &graceful, "gateway connection");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "gateway accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Answers one request; never fails (errors are a status and a `{"error"}` body).
async fn handle(
    store: Store,
    stats: Arc<Stats>,
    opts: Arc<GatewayOptions>,
    remote: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let res = match answer(&store, &opts, remote, req).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%method, %path, status = %e.status, error = %e.message, "gateway request not answered by a handler");
            crate::api::error_response(&e)
        }
    };
    stats.count(res.status());
    Ok(res)
}

async fn answer(
    store: &Store,
    opts: &GatewayOptions,
    remote: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let meta = match request_meta(&req, remote) {
        Ok(m) => m,
        Err(e) => {
            crate::api::drain(req.into_body()).await;
            return Err(e);
        }
    };
    // Reading before the request exists, so its response cannot be missed.
    let mut answers_read = store.read_quiet(ReadOptions {
        follow: Follow::On,
        new: true,
        topic: TopicFilter::parse(&format!("{RESPONSE_TOPIC},xs.handler.*,xs.actor.*"))?,
        ..ReadOptions::default()
    });
    let content = crate::api::read_content(store, req.into_body()).await?;
    let request = store
        .append(NewFrame {
            topic: REQUEST_TOPIC.into(),
            meta: Some(meta),
            ttl: opts.ttl,
            content,
            ..NewFrame::default()
        })
        .await?;
    let id = request.id;
    let deadline = tokio::time::sleep(opts.timeout);
    tokio::pin!(deadline);
    let answer = loop {
        tokio::select! {
            _ = &mut deadline => {
                tracing::warn!(request = %id, timeout = ?opts.timeout, "no http.response in time");
                return Err(ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!("no response within {:?} (request {id})", opts.timeout),
                ));
            }
            e = answers_read.next() => match e {
                Some(Ok(Event::Frame(r))) => {
                    if let Some(a) = r.frame().ok().and_then(|f| answers(f, &id)) {
                        break a;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => {
                    return Err(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the server is stopping",
                    ));
                }
            },
        }
    };
    match answer {
        Answer::Response(frame) => respond(store, &frame).await.map_err(|e| {
            tracing::warn!(request = %id, response = %frame.id, error = %e, "bad http.response");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("the response to request {id} is not valid"),
            )
        }),
        Answer::Failed(frame) => {
            tracing::warn!(request = %id, failure = %frame.topic, "the handler failed on a request");
            Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("the handler failed on request {id}"),
            ))
        }
    }
}

/// What ends a wait: a response, or a handler's failure on the request.
enum Answer {
    Response(Frame),
    Failed(Frame),
}

fn answers(frame: Frame, id: &Id) -> Option<Answer> {
    if frame.topic == RESPONSE_TOPIC && names(&frame, id, &["request_id", "frame_id"]) {
        return Some(Answer::Response(frame));
    }
    if is_handler_failure(&frame.topic) && names(&frame, id, &["frame_id"]) {
        return Some(Answer::Failed(frame));
    }
    None
}

/// Whether the first of `keys` present in the frame's meta is `id`.
fn names(frame: &Frame, id: &Id, keys: &[&str]) -> bool {
    let Some(meta) = frame.meta.as_ref().and_then(Value::as_object) else {
        return false;
    };
    keys.iter()
        .find_map(|k| meta.get(*k))
        .and_then(Value::as_str)
        .is_some_and(|s| s == id.to_string())
}

fn is_handler_failure(topic: &str) -> bool {
    (topic.starts_with("xs.handler.") || topic.starts_with("xs.actor."))
        && topic.ends_with(".fin.error")
}

/// The request frame's meta: `{method, path, query, uri, headers, remote_addr}`.
fn request_meta(req: &Request<Incoming>, remote: SocketAddr) -> Result<Value, ApiError> {
    let head: usize = req.uri().to_string().len()
        + req
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum::<usize>();
    if head > crate::api::MAX_HEAD_BYTES {
        return Err(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("request head is over {} bytes", crate::api::MAX_HEAD_BYTES),
        ));
    }
    let raw_query = req.uri().query().unwrap_or("");
    let mut query = Map::new();
    for (k, v) in xs::read::parse_query(raw_query)? {
        query.insert(k, Value::String(v));
    }
    let mut headers = Map::new();
    for (k, v) in req.headers() {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        match headers.get_mut(k.as_str()) {
            Some(Value::String(prev)) => {
                prev.push_str(", ");
                prev.push_str(&v);
            }
            _ => {
                headers.insert(k.as_str().to_string(), Value::String(v));
            }
        }
    }
    let uri = req
        .uri()
        .path_and_query()
        .map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
    Ok(json!({
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "query": query,
        "uri": uri,
        "headers": headers,
        "remote_addr": remote.to_string(),
    }))
}

/// The HTTP response an `http.response` frame describes: `meta.status` (default 200),
/// `meta.headers` (`{name: value}`, a value may be a list for repeated headers), and its
/// content as the body.
async fn respond(store: &Store, frame: &Frame) -> Result<Response<Body>, String> {
    let meta = frame.meta.as_ref().and_then(Value::as_object);
    let status = match meta.and_then(|m| m.get("status")) {
        None | Some(Value::Null) => StatusCode::OK,
        Some(v) => v
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .filter(|n| (100..=599).contains(n))
            .and_then(|n| StatusCode::from_u16(n).ok())
            .ok_or_else(|| format!("status must be a number from 100 to 599, not {v}"))?,
    };
    let (body, len) = match &frame.hash {
        None => (body::empty(), 0),
        Some(h) => {
            let content = store
                .cas_get(h)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("its content {h} is not in the store"))?;
            let len = content.len;
            (crate::api::content_body(content), len)
        }
    };
    let mut res = Response::new(body);
    *res.status_mut() = status;
    let h = res.headers_mut();
    match meta.and_then(|m| m.get("headers")) {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (name, v) in map {
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| format!("{name:?} is not a header name"))?;
                if is_framing(&name) {
                    continue;
                }
                let values = match v {
                    Value::Array(vs) => vs.clone(),
                    v => vec![v.clone()],
                };
                for v in values {
                    let text = match v {
                        Value::String(s) => s,
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        other => return Err(format!("header {name}: {other} is not a value")),
                    };
                    let value = HeaderValue::from_str(&text)
                        .map_err(|_| format!("header {name}: {text:?} is not a header value"))?;
                    h.append(name.clone(), value);
                }
            }
        }
        Some(other) => return Err(format!("headers must be a record, not {other}")),
    }
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&frame_request_id(frame)) {
        h.insert("xs-request-id", v);
    }
    Ok(res)
}

/// Headers that describe the message framing, which the gateway sets itself.
fn is_framing(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "content-length" | "transfer-encoding" | "connection" | "keep-alive" | "upgrade"
    )
}

fn frame_request_id(frame: &Frame) -> String {
    frame
        .meta
        .as_ref()
        .and_then(|m| m.get("request_id").or_else(|| m.get("frame_id")))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_have_units_and_bare_numbers_are_milliseconds() {
        assert_eq!(parse_timeout("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_timeout("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_timeout("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_timeout("250"), Ok(Duration::from_millis(250)));
        for bad in ["", "0", "0s", "-1s", "1h", "s", "1.5s"] {
            assert!(parse_timeout(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn request_ttl_cannot_be_ephemeral() {
        assert!(check_ttl(Ttl::Ephemeral).is_err());
        assert_eq!(check_ttl(Ttl::Forever), Ok(Ttl::Forever));
    }

    #[test]
    fn handler_failures_are_recognized_by_topic() {
        assert!(is_handler_failure("xs.handler.todo.fin.error"));
        assert!(!is_handler_failure("xs.handler.todo.fin.ok"));
        assert!(is_handler_failure("xs.actor.todo.fin.error"));
        assert!(!is_handler_failure("xs.action.todo.fin.error"));
    }
}
