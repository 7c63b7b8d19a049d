//! The HTTP API (docs/DESIGN.md §5): the access gate, routing a parsed [`Route`], and the helpers
//! every route uses to answer. One module per route, mirrored by the CLI's `commands/`.

mod append;
mod append_batch;
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
mod route;
mod stores;
mod stream;
mod topics;
mod version;

/// The `xs-meta` header decoder, public for the fuzz targets.
#[doc(hidden)]
pub use append::decode_meta;
pub(crate) use cas::{content_body, read_content};
use route::Route;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST, ORIGIN, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};

use crate::auth::{Auth, Refused};
use crate::body::{self, Body};
use crate::daemon::Daemon;
use crate::error::ApiError;

pub type ApiResult = Result<Response<Body>, ApiError>;

/// Largest request head (request line and headers) answered; hyper itself refuses heads
/// over `listener::MAX_BUF_BYTES` before they reach us.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

pub const JSON: &str = "application/json";
pub const NDJSON: &str = "application/x-ndjson";

/// Who may do what through one listener.
#[derive(Clone)]
pub enum Access {
    /// The Unix socket: its 0600 mode is the access control, and everything is allowed.
    Owner,
    /// A TCP listener: a valid token is needed (or, with `cookies`, a console session), and
    /// with `read_only` only reads are allowed.
    Token {
        auth: Arc<Auth>,
        read_only: bool,
        cookies: bool,
    },
}

/// How much of a refused unauthenticated request's body is read (and dropped) so that the
/// client gets the 401 instead of a reset connection.
const UNAUTHORIZED_DRAIN: usize = 64 * 1024;

/// Answers one request. Never fails: errors become a status and a `{"error"}` body.
/// Access is checked first, from the request head alone: a refused request's body is never
/// used and no route runs.
pub async fn handle(
    daemon: Daemon,
    req: Request<Incoming>,
    access: Access,
) -> Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    // `/stores/NAME/...` is that mounted store's API (one TCP listener serves them all).
    let (daemon, route) = match mounted(&daemon, &path) {
        Some(Ok((store, rest))) => (store, Route::parse(rest)),
        Some(Err(e)) => {
            drain(req.into_body()).await;
            return Ok(error_response(&e));
        }
        None => (daemon, Route::parse(&path)),
    };
    if let Access::Token {
        auth,
        read_only,
        cookies,
    } = &access
    {
        if let Err(Refused::Unauthorized(why)) = auth.check(req.headers(), *cookies) {
            tracing::info!(%method, %path, reason = why, "unauthorized request refused");
            // A client waiting for `100 Continue` never gets it: it sends no body at all.
            if !req.headers().contains_key(hyper::header::EXPECT) {
                drain_bounded(req.into_body(), UNAUTHORIZED_DRAIN, Duration::from_secs(1)).await;
            }
            return Ok(unauthorized(why, !*cookies));
        }
        let refused = read_only
            .then(|| Route::read_only_refusal(&method, &path, req.uri().query()))
            .flatten();
        let refusal = match refused {
            Some(what) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("this listener is read-only: {what} is not allowed"),
            )),
            None => Ok(()),
        };
        if let Err(e) = same_origin(&req).and(refusal) {
            tracing::info!(%method, %path, error = %e.message, "request refused");
            drain(req.into_body()).await;
            return Ok(error_response(&e));
        }
    }
    let res = if head_size(&req) > MAX_HEAD_BYTES {
        let e = ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("request head is over {MAX_HEAD_BYTES} bytes"),
        );
        Err(e)
    } else {
        dispatch(daemon, req, route).await
    };
    let res = res.unwrap_or_else(|e| {
        tracing::debug!(%method, %path, status = %e.status, error = %e.message, "request refused");
        error_response(&e)
    });
    Ok(res)
}

/// For a path `/stores/NAME[/REST]`: the daemon of mounted store NAME and `/REST`, or a 404
/// naming the stores that are mounted.
fn mounted<'a>(daemon: &Daemon, path: &'a str) -> Option<Result<(Daemon, &'a str), ApiError>> {
    let rest = path.strip_prefix("/stores/")?;
    let (name, rest) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let stores = daemon.stores.lock().unwrap_or_else(|e| e.into_inner());
    Some(match stores.get(name) {
        Some(m) => Ok((m.daemon.clone(), rest)),
        None => {
            let names: Vec<&str> = stores.keys().map(String::as_str).collect();
            Err(ApiError::not_found(format!(
                "no store named {name:?} is mounted here (mounted: {})",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            )))
        }
    })
}

async fn dispatch(daemon: Daemon, req: Request<Incoming>, route: Route) -> ApiResult {
    let store = daemon.store.clone();
    let m = req.method().clone();
    match (route, &m) {
        (Route::Read, &Method::GET) => read::handle(store, req).await,
        (Route::Version, &Method::GET) => version::handle().await,
        (Route::Last(None), &Method::GET) => last::handle(store, req, None).await,
        (Route::Cas(None), &Method::POST) => cas::post(store, req).await,
        (Route::Import, &Method::POST) => import::handle(store, req).await,
        (Route::Consumers, &Method::GET) => consumers::list(store).await,
        (Route::Export, &Method::GET) => export::handle(store, req).await,
        (Route::Restore, &Method::POST) => restore::handle(store, req).await,
        (Route::Topics, &Method::GET) => topics::handle(store, req).await,
        (Route::Gc, &Method::POST) => gc::handle(store).await,
        (Route::Ps, &Method::GET) => ps::handle(daemon).await,
        (Route::Stores, &Method::GET) => stores::handle(daemon).await,
        (Route::Metrics, &Method::GET) => metrics::handle(daemon).await,
        (Route::AppendBatch, &Method::POST) => append_batch::handle(store, req).await,
        #[cfg(feature = "nu")]
        (Route::Eval, &Method::POST) => eval::handle(daemon, req).await,
        #[cfg(not(feature = "nu"))]
        (Route::Eval, &Method::POST) => Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "POST /eval is not available: this daemon was built without the Nushell engine",
        )),
        (Route::Last(Some(topic)), _) => {
            only(&m, &[Method::GET])?;
            let topic = decode(&topic)?;
            last::handle(store, req, Some(topic)).await
        }
        (Route::Cas(Some(hash)), _) => {
            only(&m, &[Method::GET])?;
            cas::get(store, &decode(&hash)?).await
        }
        (Route::Consumer { name, ack }, _) => consumers::route(store, req, &name, ack).await,
        (Route::Append(topic), _) => {
            only(&m, &[Method::POST])?;
            let topic = decode(&topic)?;
            append::handle(store, req, &topic).await
        }
        (Route::Frame(id), &Method::GET) => get::handle(store, req, &id).await,
        (Route::Frame(id), &Method::DELETE) => remove::handle(store, req, &id).await,
        (Route::Frame(_), _) => Err(method_not_allowed(&m, &["GET", "DELETE"])),
        (Route::NotFound, _) => Err(ApiError::not_found(format!(
            "no route for {m} {}",
            req.uri().path()
        ))),
        // A named route with another method.
        _ => Err(method_not_allowed(&m, &[])),
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

/// A 401: the reason, and the schemes a client may use (`Bearer`, and with `basic` also
/// `Basic` with the token as the password; not for the console's page, where a browser would
/// open its own login dialog).
fn unauthorized(why: &str, basic: bool) -> Response<Body> {
    let e = ApiError::new(StatusCode::UNAUTHORIZED, why);
    let mut res = error_response(&e);
    let h = res.headers_mut();
    h.append(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"xs\""),
    );
    if basic {
        h.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"xs\", charset=\"UTF-8\""),
        );
    }
    res
}

/// Refuses a request a browser sent from another origin (its `Origin` is not this host), so a
/// web page cannot use credentials the browser remembers (Basic auth, a console session).
fn same_origin(req: &Request<Incoming>) -> Result<(), ApiError> {
    let Some(origin) = req.headers().get(ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("");
    let origin_host = origin.split_once("://").map_or("", |(_, h)| h);
    let host = req
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !host.is_empty() && origin_host.eq_ignore_ascii_case(host) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        format!("cross-origin request refused (Origin {origin} is not this server)"),
    ))
}

/// Reads and drops what is left of a refused request's body (up to a bound), so the client,
/// still sending, gets the error answer instead of a reset connection.
pub async fn drain(body: Incoming) {
    drain_bounded(body, 64 * 1024 * 1024, Duration::from_secs(5)).await;
}

async fn drain_bounded(mut body: Incoming, max: usize, within: Duration) {
    use http_body_util::BodyExt;
    let mut seen = 0;
    let deadline = tokio::time::sleep(within);
    tokio::pin!(deadline);
    while seen < max {
        tokio::select! {
            f = body.frame() => match f {
                Some(Ok(f)) => seen += f.data_ref().map_or(0, |d| d.len()),
                _ => return,
            },
            _ = &mut deadline => return,
        }
    }
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
