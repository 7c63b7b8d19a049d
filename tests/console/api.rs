//! The console listener without a browser: the page and its assets are public and
//! self-contained, `/api/` needs a session cookie (from `POST /login` with the token) or the
//! token, and is read-only whatever the credentials.

use crate::helper::http::tcp_request;
use crate::helper::{topics, Daemon, Resp};

fn console(d: &Daemon, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    tcp_request(&d.console_addr(), method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path} on the console failed: {e}\n{}", d.log()))
}

fn login(d: &Daemon, token: &str) -> Resp {
    let body = serde_json::json!({ "token": token }).to_string();
    console(
        d,
        "POST",
        "/login",
        &[("content-type", "application/json")],
        body.as_bytes(),
    )
}

/// The `xs_session=...` pair of a login's `Set-Cookie`.
fn session_cookie(r: &Resp) -> String {
    let cookie = r.header("set-cookie").expect("a login sets a cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    cookie.split(';').next().unwrap().to_string()
}

#[test]
fn console_page_is_public_and_self_contained() {
    let d = Daemon::start_with(&["--console", "127.0.0.1:0"]);
    assert!(
        d.store.join("token").exists(),
        "--console creates the token"
    );
    let page = console(&d, "GET", "/", &[], b"");
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    let csp = page.header("content-security-policy").expect("a CSP");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    let html = page.text();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no outside URL in the page"
    );
    for (path, ty) in [
        ("/console.js", "text/javascript"),
        ("/console.css", "text/css"),
    ] {
        let r = console(&d, "GET", path, &[], b"");
        assert_eq!(r.status, 200, "{path}");
        assert!(r.header("content-type").unwrap().starts_with(ty), "{path}");
        assert!(
            !r.text().contains("https://"),
            "{path} loads nothing from outside"
        );
    }
    console(&d, "GET", "/nope", &[], b"").assert_error(404);
}

#[test]
fn console_api_needs_a_session_and_is_read_only() {
    let d = Daemon::start_with(&["--console", "127.0.0.1:0"]);
    let token = d.token();

    let r = console(&d, "GET", "/api/version", &[], b"");
    r.assert_error(401);
    assert!(
        !r.headers
            .iter()
            .any(|(k, v)| k == "www-authenticate" && v.starts_with("Basic")),
        "no browser login dialog on the console"
    );
    login(&d, "wrong-wrong-wrong-wrong").assert_error(401);
    login(&d, "").assert_error(401);
    console(&d, "POST", "/login", &[], b"not json").assert_error(400);
    let cross = console(
        &d,
        "POST",
        "/login",
        &[("origin", "http://evil.example")],
        serde_json::json!({ "token": token }).to_string().as_bytes(),
    );
    cross.assert_error(403);

    let ok = login(&d, &token);
    assert_eq!(ok.status, 204, "{}", ok.text());
    let cookie = session_cookie(&ok);
    let with = [("cookie", cookie.as_str())];
    let v = console(&d, "GET", "/api/version", &with, b"");
    assert_eq!(v.status, 200, "{}", v.text());
    d.append("chat", b"hi");
    let frames = console(&d, "GET", "/api/?topic=chat", &with, b"");
    assert_eq!(topics(&frames.ndjson()), ["chat"]);
    let forged = [(
        "cookie",
        "xs_session=00000000000000000000000000000000000000000000000000000000000000ff",
    )];
    console(&d, "GET", "/api/version", &forged, b"").assert_error(401);

    // Read-only, with a session or with the token itself.
    let bearer = format!("Bearer {token}");
    for h in [&with[..], &[("authorization", bearer.as_str())][..]] {
        let r = console(&d, "POST", "/api/append/chat", h, b"no");
        assert!(r.assert_error(403).contains("read-only"));
        console(&d, "POST", "/api/eval", h, b"'evil' | .append evil").assert_error(403);
    }
    assert_eq!(topics(&d.frames()), ["xs.start", "chat"]);

    // Logging out ends the session.
    let out = console(&d, "POST", "/logout", &with, b"");
    assert_eq!(out.status, 204);
    console(&d, "GET", "/api/version", &with, b"").assert_error(401);
}
