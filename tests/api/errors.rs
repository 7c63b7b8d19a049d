//! Bad input over raw HTTP never panics the daemon: each is answered with the right status and
//! a JSON `{"error"}` body, nothing junk is stored, and the daemon keeps serving.

use base64::Engine;

use crate::helper::http::{parse_response, raw_exchange};
use crate::helper::{sri, Daemon};

#[test]
fn invalid_topic_is_400() {
    let d = Daemon::start();
    let long = "a".repeat(256);
    for topic in [
        "1abc",
        "a..b",
        "a.",
        ".a",
        "a%20b",
        "a%2Fb",
        "",
        "a*",
        "caf%C3%A9",
        &long,
    ] {
        let r = d.http("POST", &format!("/append/{topic}"), &[], b"body");
        let msg = r.assert_error(400);
        assert!(msg.to_lowercase().contains("topic"), "{topic:?}: {msg}");
    }
    d.assert_healthy_and_empty();
}

#[test]
fn bad_ttl_is_400() {
    let d = Daemon::start();
    for ttl in [
        "forever2", "time:abc", "time:-5", "last:0", "last:x", "", "%ZZ",
    ] {
        let r = d.http("POST", &format!("/append/t?ttl={ttl}"), &[], b"body");
        r.assert_error(400);
    }
    d.assert_healthy_and_empty();
}

#[test]
fn bad_xs_meta_is_400() {
    let d = Daemon::start();
    let not_json = base64::engine::general_purpose::STANDARD.encode("{not json");
    for (meta, expect) in [("!!!not base64", "base64"), (not_json.as_str(), "JSON")] {
        let r = d.http("POST", "/append/t", &[("xs-meta", meta)], b"body");
        let msg = r.assert_error(400);
        assert!(msg.contains(expect), "{meta:?}: {msg}");
    }
    d.assert_healthy_and_empty();
}

#[test]
fn malformed_id_is_400_and_unknown_id_is_404() {
    let d = Daemon::start();
    for bad in [
        "not-an-id",
        "03d4q1qhbiv09ovtuhokw5yx",
        "03d4q1qhbiv09ovtuhokw5yxvv",
    ] {
        d.get(&format!("/{bad}")).assert_error(400);
        d.http("DELETE", &format!("/{bad}"), &[], b"")
            .assert_error(400);
    }
    let unknown = scru128::new();
    d.get(&format!("/{unknown}")).assert_error(404);
    d.http("DELETE", &format!("/{unknown}"), &[], b"")
        .assert_error(404);
    d.assert_healthy_and_empty();
}

#[test]
fn bad_read_options_are_400() {
    let d = Daemon::start();
    for q in [
        "follow=maybe",
        "follow=0",
        "limit=-1",
        "last=x",
        "after=zzz",
        "from=zzz",
        "topic=a%20b",
        "topic=a..b",
        "topic=%ZZ",
    ] {
        d.get(&format!("/?{q}")).assert_error(400);
    }
    d.get("/last/a..b").assert_error(400);
    d.get("/last?last=0").assert_error(400);
    d.assert_healthy_and_empty();
}

#[test]
fn unknown_hash_is_404_and_malformed_hash_is_400() {
    let d = Daemon::start();
    d.get(&format!("/cas/{}", sri(b"never stored")))
        .assert_error(404);
    // Wrong digest lengths too: an empty or one-byte sha256 digest is malformed.
    for bad in ["garbage", "sha256-!!!", "md5", "sha256-", "sha256-AA=="] {
        d.get(&format!("/cas/{bad}")).assert_error(400);
    }
    d.assert_healthy_and_empty();
}

#[test]
fn unknown_route_is_404() {
    let d = Daemon::start();
    for (method, path) in [("GET", "/foo/bar"), ("POST", "/nope/x"), ("GET", "/a/b/c")] {
        let msg = d.http(method, path, &[], b"").assert_error(404);
        assert!(!msg.is_empty());
    }
    d.assert_healthy_and_empty();
}

#[test]
fn truncated_body_stores_nothing() {
    let d = Daemon::start();
    // Small (inline) and large (cacache) partial bodies, on /append and /cas.
    for (path, sent) in [
        ("/append/t", 10),
        ("/append/t", 40_000),
        ("/cas", 10),
        ("/cas", 40_000),
    ] {
        let mut req =
            format!("POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-length: 100000\r\n\r\n")
                .into_bytes();
        req.extend(std::iter::repeat_n(b'x', sent));
        // Half-close, then read until the daemon closes: by then it has handled the request.
        let raw = raw_exchange(&d.sock(), &req, true).expect("exchange");
        if !raw.is_empty() {
            let r = parse_response(&raw).expect("an HTTP answer");
            assert!(
                r.status >= 400,
                "{path} with {sent} of 100000 bytes answered {}",
                r.status
            );
        }
    }
    d.assert_healthy_and_empty();
    for sent in [10, 40_000] {
        let partial = vec![b'x'; sent];
        d.get(&format!("/cas/{}", sri(&partial))).assert_error(404);
    }
}

#[test]
fn oversized_header_is_431() {
    let d = Daemon::start();
    let big = "a".repeat(100 * 1024);
    let req =
        format!("GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\nx-big: {big}\r\n\r\n");
    let raw = raw_exchange(&d.sock(), req.as_bytes(), false).expect("exchange");
    let r = parse_response(&raw).expect("an HTTP answer");
    assert_eq!(r.status, 431);
    if !r.body.is_empty() {
        r.assert_error(431);
    }
    d.assert_healthy_and_empty();
}
