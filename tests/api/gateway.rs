//! The `--http` gateway without Nushell: requests become `http.request` frames, a responder
//! (here a test thread driving the real CLI) appends `http.response` frames that name them,
//! and the gateway answers with them — statuses, headers, bodies both ways (large ones
//! streamed), concurrent requests matched by id, 504 on timeout, 502 on a bad response, and
//! bad requests that never hurt it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helper::http::{tcp_exchange, tcp_request};
use crate::helper::{random_bytes, request, sri, xs, Daemon, LiveCli};

/// A daemon with the gateway on a free loopback port; returns it and the gateway's address.
pub fn gateway(extra: &[&str]) -> (Daemon, String) {
    let mut args = vec!["--http", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let d = Daemon::start_with(&args);
    let start = d.read("topic=xs.start");
    let addr = start[0]["meta"]["http"]
        .as_str()
        .expect("xs.start names the gateway's address")
        .to_string();
    (d, addr)
}

/// A test thread answering every `http.request` with what `answer` makes of it (meta and
/// content of the `http.response`; `request_id` is added), until dropped.
pub struct Responder {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Responder {
    pub fn start(
        d: &Daemon,
        answer: impl Fn(&Value, &[u8]) -> (Value, Vec<u8>) + Send + 'static,
    ) -> Responder {
        let (addr, sock) = (d.addr().to_string(), d.sock());
        let cat = LiveCli::spawn(&["cat", &addr, "-f", "-T", "http.request"]);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                let Some(req) = cat.try_next_json(Duration::from_millis(100)) else {
                    continue;
                };
                if req["topic"] != "http.request" {
                    continue; // xs.threshold
                }
                let body = match req["hash"].as_str() {
                    Some(h) => {
                        request(&sock, "GET", &format!("/cas/{h}"), &[], b"")
                            .expect("reading the request body")
                            .body
                    }
                    None => Vec::new(),
                };
                let (mut meta, content) = answer(&req, &body);
                meta["request_id"] = req["id"].clone();
                xs(
                    &[
                        "append",
                        &addr,
                        "http.response",
                        "--meta",
                        &meta.to_string(),
                    ],
                    &content,
                )
                .ok();
            }
        });
        Responder {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn gateway_turns_a_request_into_a_frame_and_serves_its_response() {
    let (d, addr) = gateway(&[]);
    let _r = Responder::start(&d, |req, body| {
        let reply = format!("got {} bytes at {}", body.len(), req["meta"]["path"]);
        let meta = json!({
            "status": 201,
            "headers": {"content-type": "text/plain", "x-tag": ["a", "b"]},
        });
        (meta, reply.into_bytes())
    });
    let r = tcp_request(
        &addr,
        "POST",
        "/things/1?color=dark%20red&n=2",
        &[("x-trace", "abc"), ("content-type", "text/plain")],
        b"hello gateway",
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.text(), "got 13 bytes at \"/things/1\"");
    assert_eq!(r.header("content-type"), Some("text/plain"));
    let tags: Vec<&str> = r
        .headers
        .iter()
        .filter(|(k, _)| k == "x-tag")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(tags, ["a", "b"]);

    let reqs = d.read("topic=http.request");
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    assert_eq!(r.header("xs-request-id"), req["id"].as_str());
    let m = &req["meta"];
    assert_eq!(m["method"], "POST");
    assert_eq!(m["path"], "/things/1");
    assert_eq!(m["query"], json!({"color": "dark red", "n": "2"}));
    assert_eq!(m["uri"], "/things/1?color=dark%20red&n=2");
    assert_eq!(m["headers"]["x-trace"], "abc");
    assert!(m["remote_addr"]
        .as_str()
        .is_some_and(|a| a.starts_with("127.0.0.1:")));
    assert_eq!(req["hash"], sri(b"hello gateway"));
    assert_eq!(req["ttl"], "forever");
    let resp = d.read("topic=http.response");
    assert_eq!(resp[0]["meta"]["request_id"], req["id"]);
    d.assert_no_panic();
}

#[test]
fn gateway_answers_504_when_no_response_comes_in_time() {
    let (d, addr) = gateway(&["--http-timeout", "300ms"]);
    let t = Instant::now();
    let r = tcp_request(&addr, "GET", "/slow", &[], b"").unwrap();
    let took = t.elapsed();
    let msg = r.assert_error(504);
    assert!(msg.contains("no response within 300ms"), "{msg}");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "answered after {took:?}"
    );
    // The request was stored all the same.
    assert_eq!(d.read("topic=http.request").len(), 1);
}

#[test]
fn gateway_matches_concurrent_requests_to_their_responses() {
    let (d, addr) = gateway(&[]);
    let _r = Responder::start(&d, |_req, body| {
        let mut echo = b"echo:".to_vec();
        echo.extend_from_slice(body);
        (json!({}), echo)
    });
    let clients: Vec<_> = (0..12)
        .map(|i| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let body = format!("client {i}");
                let r =
                    tcp_request(&addr, "POST", &format!("/c/{i}"), &[], body.as_bytes()).unwrap();
                (i, r)
            })
        })
        .collect();
    for c in clients {
        let (i, r) = c.join().unwrap();
        assert_eq!(r.status, 200, "client {i}: {}", r.text());
        assert_eq!(r.text(), format!("echo:client {i}"));
    }
    assert_eq!(d.read("topic=http.request").len(), 12);
    assert_eq!(d.read("topic=http.response").len(), 12);
}

#[test]
fn gateway_streams_large_bodies_both_ways() {
    let (d, addr) = gateway(&[]);
    let _r = Responder::start(&d, |_req, body| {
        let mut reversed = body.to_vec();
        reversed.reverse();
        let meta = json!({"headers": {"content-type": "application/octet-stream"}});
        (meta, reversed)
    });
    let big = random_bytes(3 * 1024 * 1024 + 7, 5);
    let r = tcp_request(&addr, "PUT", "/upload", &[], &big).unwrap();
    assert_eq!(r.status, 200);
    let mut expected = big.clone();
    expected.reverse();
    assert_eq!(r.body.len(), expected.len());
    assert!(r.body == expected, "the response body differs");
    assert_eq!(
        r.header("content-length"),
        Some(&*expected.len().to_string())
    );
    assert_eq!(d.read("topic=http.request")[0]["hash"], sri(&big));
}

#[test]
fn gateway_answers_502_for_a_response_it_cannot_serve() {
    let (d, addr) = gateway(&[]);
    let _r = Responder::start(&d, |req, _| {
        let meta = match req["meta"]["path"].as_str() {
            Some("/status") => json!({"status": 42}),
            Some("/headers") => json!({"headers": {"bad name": "x"}}),
            _ => json!({"headers": "not a record"}),
        };
        (meta, Vec::new())
    });
    for path in ["/status", "/headers", "/other"] {
        let r = tcp_request(&addr, "GET", path, &[], b"").unwrap();
        let msg = r.assert_error(502);
        assert!(msg.contains("is not valid"), "{path}: {msg}");
    }
    assert!(
        d.log().contains("bad http.response"),
        "the reason is logged"
    );
    d.assert_no_panic();
}

#[test]
fn gateway_survives_bad_requests() {
    let (d, addr) = gateway(&["--http-timeout", "2s"]);
    let r = tcp_request(&addr, "GET", "/?a=%zz", &[], b"").unwrap();
    r.assert_error(400);
    let huge = "x".repeat(100 * 1024);
    let r = tcp_request(&addr, "GET", "/", &[("x-huge", &huge)], b"").unwrap();
    assert_eq!(r.status, 431);
    for junk in [
        &b"\x00\x01\x02garbage\r\n\r\n"[..],
        b"GET / HTTP/9.9\r\n\r\n",
        b"POST / HTTP/1.1\r\ncontent-length: 10\r\n\r\nshort",
        b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
    ] {
        let _ = tcp_exchange(&addr, junk, true);
    }
    // No request above was answered by a handler, and none was stored.
    assert!(d.read("topic=http.request").is_empty());
    let _r = Responder::start(&d, |_, _| (json!({}), b"still here".to_vec()));
    let r = tcp_request(&addr, "GET", "/", &[], b"").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "still here");
    d.assert_no_panic();
}

#[test]
fn gateway_options_are_checked() {
    for (args, want) in [
        (&["--http-timeout", "soon"][..], "not a duration"),
        (&["--http-timeout", "0s"][..], "more than 0"),
        (&["--http-ttl", "ephemeral"][..], "cannot be ephemeral"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let store = tmp.path().join("store");
        let mut all = vec!["serve", store.to_str().unwrap(), "--http", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let out = xs(&all, b"");
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(want), "{args:?}: {}", out.stderr);
    }
}

#[test]
fn request_frames_take_the_http_ttl() {
    let (d, addr) = gateway(&["--http-ttl", "last:2", "--http-timeout", "200ms"]);
    for _ in 0..3 {
        let r = tcp_request(&addr, "GET", "/", &[], b"").unwrap();
        assert_eq!(r.status, 504);
    }
    let reqs = d.read("topic=http.request");
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0]["ttl"], "last:2");
}

/// The metrics count the gateway's answers by status (`xs_http_requests_total`).
#[test]
fn gateway_requests_are_counted_by_status() {
    let (d, addr) = gateway(&["--http-timeout", "200ms"]);
    tcp_request(&addr, "GET", "/", &[], b"").unwrap();
    tcp_request(&addr, "GET", "/?a=%zz", &[], b"").unwrap();
    let text = d.get("/metrics").text();
    assert!(
        text.contains(&format!(
            "xs_http_requests_total{{store=\"{}\",status=\"504\"}} 1\n",
            d.addr()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "xs_http_requests_total{{store=\"{}\",status=\"400\"}} 1\n",
            d.addr()
        )),
        "{text}"
    );
}
