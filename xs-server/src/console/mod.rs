//! The web console (`--console`): one page (HTML, JS, CSS compiled into the binary), a login
//! that turns the token into a session cookie, and the API, read-only, under `/api/`.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, SET_COOKIE};
use hyper::{Method, Request, Response, StatusCode};

use crate::api::{self, Access};
use crate::auth::{Auth, SESSION_COOKIE};
use crate::body::{self, Body};
use crate::daemon::Daemon;
use crate::error::ApiError;

const INDEX_HTML: &str = include_str!("index.html");
const CONSOLE_JS: &str = include_str!("console.js");
const CONSOLE_CSS: &str = include_str!("console.css");

/// Largest login body (`{"token": "..."}`).
const MAX_LOGIN_BYTES: usize = 4096;

/// The page may load only its own script, style and images (and `blob:` images it makes from
/// content), may talk only to this server, and may not be framed.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; \
                   connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Answers one request on the console listener.
pub async fn handle(
    daemon: Daemon,
    mut req: Request<Incoming>,
    auth: Arc<Auth>,
    secure: bool,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    if let Some(rest) = path.strip_prefix("/api/") {
        let query = req
            .uri()
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        match format!("/{rest}{query}").parse() {
            Ok(uri) => *req.uri_mut() = uri,
            Err(_) => return Ok(api::error_response(&ApiError::bad_request("bad path"))),
        }
        let access = Access::Token {
            auth,
            read_only: true,
            cookies: true,
        };
        return api::handle(daemon, req, access).await;
    }
    let res = match (req.method(), path.as_str()) {
        (&Method::GET, "/") => Ok(asset(INDEX_HTML, "text/html; charset=utf-8")),
        (&Method::GET, "/console.js") => Ok(asset(CONSOLE_JS, "text/javascript; charset=utf-8")),
        (&Method::GET, "/console.css") => Ok(asset(CONSOLE_CSS, "text/css; charset=utf-8")),
        (&Method::POST, "/login") => login(req, &auth, secure).await,
        (&Method::POST, "/logout") => {
            auth.end_session(req.headers());
            Ok(with_cookie(
                empty(StatusCode::NO_CONTENT),
                &format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
            ))
        }
        (_, "/" | "/console.js" | "/console.css" | "/login" | "/logout") => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {} is not allowed here", req.method()),
        )),
        _ => Err(ApiError::not_found(format!(
            "no console page {path} (the API is under /api/)"
        ))),
    };
    Ok(res.unwrap_or_else(|e| api::error_response(&e)))
}

/// `POST /login` with `{"token": "..."}`: a session cookie for the right token, else 401.
async fn login(req: Request<Incoming>, auth: &Auth, secure: bool) -> api::ApiResult {
    let origin_ok = match req.headers().get(hyper::header::ORIGIN) {
        None => true,
        Some(o) => {
            let host = req.headers().get(hyper::header::HOST);
            let o = o.to_str().unwrap_or("");
            let o = o.split_once("://").map_or("", |(_, h)| h);
            host.and_then(|h| h.to_str().ok())
                .is_some_and(|h| h.eq_ignore_ascii_case(o))
        }
    };
    if !origin_ok {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross-origin login refused",
        ));
    }
    let body = Limited::new(req.into_body(), MAX_LOGIN_BYTES)
        .collect()
        .await
        .map_err(|_| ApiError::bad_request(format!("login body over {MAX_LOGIN_BYTES} bytes")))?
        .to_bytes();
    let token = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("token")?.as_str().map(|t| t.trim().to_string()))
        .ok_or_else(|| ApiError::bad_request(r#"the login body is {"token": "<token>"}"#))?;
    if !auth.is_token(token.as_bytes()) {
        tracing::info!("console login refused: wrong token");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the token is not valid",
        ));
    }
    let id = auth.new_session().map_err(|e| {
        tracing::error!(error = %e, "cannot make a console session");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    })?;
    let secure = if secure { "; Secure" } else { "" };
    Ok(with_cookie(
        empty(StatusCode::NO_CONTENT),
        &format!("{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict{secure}"),
    ))
}

fn asset(text: &'static str, content_type: &str) -> Response<Body> {
    let mut res = api::respond(StatusCode::OK, content_type, body::full(text));
    let h = res.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    res
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut res = Response::new(body::empty());
    *res.status_mut() = status;
    res
}

fn with_cookie(mut res: Response<Body>, cookie: &str) -> Response<Body> {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        res.headers_mut().insert(SET_COOKIE, v);
    }
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    res
}
