//! `--expose` over TCP: every request needs the token (Bearer or Basic) and is checked before
//! its body is read or a route runs; `--expose-read-only` allows only reads; a browser's
//! cross-origin request is refused; the Unix socket needs no token.

use std::os::unix::fs::PermissionsExt;

use base64::Engine;

use crate::helper::http::tcp_request;
use crate::helper::{topics, Daemon, Resp};

fn tcp(d: &Daemon, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let addr = d.expose_addr();
    tcp_request(&addr, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path} over TCP failed: {e}\n{}", d.log()))
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Asserts a 401 with both challenges and a one-line JSON error.
#[track_caller]
fn assert_401(r: &Resp) {
    r.assert_error(401);
    let challenges: Vec<&str> = r
        .headers
        .iter()
        .filter(|(k, _)| k == "www-authenticate")
        .map(|(_, v)| v.as_str())
        .collect();
    assert!(
        challenges.iter().any(|c| c.starts_with("Bearer")),
        "{challenges:?}"
    );
    assert!(
        challenges.iter().any(|c| c.starts_with("Basic")),
        "{challenges:?}"
    );
}

#[test]
fn expose_creates_an_owner_only_token_and_requires_it() {
    let d = Daemon::start_with(&["--expose", "127.0.0.1:0"]);
    let token = d.token();
    assert_eq!(token.len(), 64, "32 random bytes as hex");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    let mode = std::fs::metadata(d.store.join("token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let r = tcp(&d, "GET", "/version", &[], b"");
    assert_401(&r);
    // It tells a cross.stream user what to do.
    let why = r.json()["error"].as_str().unwrap().to_string();
    for hint in [
        "<store>/token",
        "XS_TOKEN",
        "Authorization: Bearer",
        "--expose ./path.sock",
    ] {
        assert!(why.contains(hint), "{why}");
    }
    assert_401(&tcp(
        &d,
        "GET",
        "/",
        &[("authorization", &bearer("0".repeat(64).as_str()))],
        b"",
    ));
    assert_401(&tcp(&d, "GET", "/", &[("authorization", "Bearer")], b""));
    assert_401(&tcp(&d, "GET", "/", &[("authorization", &token)], b""));
    let short = &token[..63];
    assert_401(&tcp(
        &d,
        "GET",
        "/",
        &[("authorization", &bearer(short))],
        b"",
    ));

    let ok = tcp(
        &d,
        "GET",
        "/version",
        &[("authorization", &bearer(&token))],
        b"",
    );
    assert_eq!(ok.status, 200, "{}", ok.text());
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("anyone:{token}"));
    let ok = tcp(
        &d,
        "GET",
        "/",
        &[("authorization", &format!("Basic {basic}"))],
        b"",
    );
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(topics(&ok.ndjson()), ["xs.start"]);
    let wrong = base64::engine::general_purpose::STANDARD.encode(format!("{token}:x"));
    assert_401(&tcp(
        &d,
        "GET",
        "/",
        &[("authorization", &format!("Basic {wrong}"))],
        b"",
    ));

    // The socket needs none.
    assert_eq!(d.get("/version").status, 200);

    // A restart keeps the token.
    let mut d = d;
    d.stop();
    d.restart();
    assert_eq!(d.token(), token);
    let ok = tcp(
        &d,
        "GET",
        "/version",
        &[("authorization", &bearer(&token))],
        b"",
    );
    assert_eq!(ok.status, 200);
}

#[test]
fn a_bad_token_writes_nothing() {
    let d = Daemon::start_with(&["--expose", "127.0.0.1:0"]);
    let id = d.append("keep", b"kept")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let bad = bearer(&"f".repeat(64));
    for (method, path, body) in [
        ("POST", "/append/chat", &b"hello"[..]),
        ("POST", "/append/chat?ttl=forever", &[b'x'; 200_000][..]),
        ("POST", "/cas", b"content"),
        (
            "POST",
            "/import",
            br#"{"topic":"imp","id":"03hadbm3pd0va6i6c63lxxwa8"}"#,
        ),
        ("DELETE", &format!("/{id}"), b""),
        ("POST", "/gc", b""),
        ("POST", "/consumers/c/ack?id=03hadbm3pd0va6i6c63lxxwa8", b""),
        ("GET", "/?consumer=c&ack=auto", b""),
    ] {
        for auth in [None, Some(bad.as_str())] {
            let headers: Vec<(&str, &str)> =
                auth.map(|a| ("authorization", a)).into_iter().collect();
            let r = tcp(&d, method, path, &headers, body);
            assert_401(&r);
        }
    }
    assert_eq!(topics(&d.frames()), ["xs.start", "keep"]);
    assert_eq!(
        d.get("/consumers").body,
        b"",
        "no consumer position was written"
    );
    let cas = d.get(&format!("/cas/{}", crate::helper::sri(b"content")));
    assert_eq!(cas.status, 404, "no content was stored");
    d.assert_no_panic();
}

#[cfg(feature = "nu")]
#[test]
fn a_bad_token_to_eval_runs_nothing() {
    let d = Daemon::start_with(&["--expose", "127.0.0.1:0"]);
    let marker = d.dir().join("ran");
    let script = format!("'x' | save {}; 'evil' | .append evil; 1", marker.display());
    for auth in [
        None,
        Some(bearer(&"0".repeat(64))),
        Some("Basic Og==".into()),
    ] {
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        let r = tcp(&d, "POST", "/eval", &headers, script.as_bytes());
        assert_401(&r);
    }
    // Give a script that had started every chance to show it.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!marker.exists(), "the script ran");
    assert_eq!(topics(&d.frames()), ["xs.start"]);

    // The same request with the token does run (so the checks above can fail).
    let token = d.token();
    let r = tcp(
        &d,
        "POST",
        "/eval",
        &[("authorization", &bearer(&token))],
        script.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(marker.exists());
    assert_eq!(topics(&d.frames()), ["xs.start", "evil"]);
}

#[test]
fn read_only_allows_reads_only() {
    let d = Daemon::start_with(&["--expose", "127.0.0.1:0", "--expose-read-only"]);
    let frame = d.append("chat", b"hi");
    let id = frame["id"].as_str().unwrap();
    let hash = frame["hash"].as_str().unwrap();
    let token = d.token();
    let auth = bearer(&token);
    let h = [("authorization", auth.as_str())];
    for path in [
        "/".to_string(),
        "/?topic=chat&last=1".into(),
        format!("/{id}"),
        "/last/chat".into(),
        format!("/cas/{hash}"),
        "/topics".into(),
        "/ps".into(),
        "/consumers".into(),
        "/export".into(),
        "/version".into(),
        "/?consumer=c".into(),
    ] {
        let r = tcp(&d, "GET", &path, &h, b"");
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    }
    for (method, path, body) in [
        ("POST", "/append/chat".to_string(), &b"no"[..]),
        ("POST", "/cas".into(), b"no"),
        (
            "POST",
            "/import".into(),
            br#"{"topic":"imp","id":"03hadbm3pd0va6i6c63lxxwa8"}"#,
        ),
        ("POST", "/restore".into(), b"xs-export 1\n"),
        ("DELETE", format!("/{id}"), b""),
        ("POST", "/gc".into(), b""),
        ("POST", "/eval".into(), b"'evil' | .append evil"),
        ("POST", format!("/consumers/c/ack?id={id}"), b""),
        ("DELETE", "/consumers/c".into(), b""),
        ("GET", "/?consumer=c&ack=auto".into(), b""),
    ] {
        let r = tcp(&d, method, &path, &h, body);
        let msg = r.assert_error(403);
        assert!(msg.contains("read-only"), "{method} {path}: {msg}");
        // Without the token it is a 401 first.
        assert_401(&tcp(&d, method, &path, &[], body));
    }
    assert_eq!(topics(&d.frames()), ["xs.start", "chat"]);
    assert_eq!(d.get("/consumers").body, b"");
    // The socket still writes.
    d.append("chat", b"socket");
    d.assert_no_panic();
}

#[test]
fn cross_origin_browser_requests_are_refused() {
    let d = Daemon::start_with(&["--expose", "127.0.0.1:0"]);
    let addr = d.expose_addr();
    let auth = bearer(&d.token());
    let r = tcp(
        &d,
        "POST",
        "/append/chat",
        &[("authorization", &auth), ("origin", "http://evil.example")],
        b"x",
    );
    let msg = r.assert_error(403);
    assert!(msg.contains("cross-origin"), "{msg}");
    assert_eq!(topics(&d.frames()), ["xs.start"]);
    let same = format!("http://{addr}");
    let r = tcp(
        &d,
        "POST",
        "/append/chat",
        &[("authorization", &auth), ("origin", &same)],
        b"x",
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn token_file_flag_replaces_the_store_token() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("my-token");
    std::fs::write(&file, "  correct-horse-battery-staple\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let store = tmp.path().join("store");
    let d = Daemon::start_on_with(
        tmp,
        store,
        &[
            "--expose",
            "127.0.0.1:0",
            "--token-file",
            file.to_str().unwrap(),
        ],
    );
    assert!(
        !d.store.join("token").exists(),
        "no store token with --token-file"
    );
    let ok = tcp(
        &d,
        "GET",
        "/version",
        &[("authorization", "Bearer correct-horse-battery-staple")],
        b"",
    );
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_401(&tcp(
        &d,
        "GET",
        "/version",
        &[("authorization", "Bearer correct-horse-battery")],
        b"",
    ));
}

#[test]
fn any_interface_can_be_exposed_now() {
    let d = Daemon::start_with(&["--expose", "0.0.0.0:0"]);
    let port = d.expose_addr().rsplit_once(':').unwrap().1.to_string();
    let r = tcp_request(&format!("127.0.0.1:{port}"), "GET", "/version", &[], b"").unwrap();
    assert_401(&r);
}

#[test]
fn an_existing_token_file_is_never_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    std::fs::create_dir(&store).unwrap();
    std::fs::write(store.join("token"), "a-token-that-was-already-here\n").unwrap();
    std::fs::set_permissions(store.join("token"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let d = Daemon::start_on_with(tmp, store, &["--expose", "127.0.0.1:0"]);
    assert_eq!(d.token(), "a-token-that-was-already-here");
    let ok = tcp(
        &d,
        "GET",
        "/version",
        &[("authorization", "Bearer a-token-that-was-already-here")],
        b"",
    );
    assert_eq!(ok.status, 200);
}
