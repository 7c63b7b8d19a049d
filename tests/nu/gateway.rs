//! The `--http` gateway answered by handlers: `.append http.response` from inside a handler
//! (with `request_id`, or with only the `frame_id` the handler's stamp adds), how promptly
//! the answer arrives through the handler's atomic commit, and 502 when the handler fails on
//! the request.

use std::time::{Duration, Instant};

use crate::api::gateway::gateway;
use crate::helper::http::tcp_request;
use crate::nu::handlers::{create, on};

const HELLO: &str = r#"{
    topics: "http.request"
    run: {|frame, state|
        let name = $frame.meta.query.name? | default "world"
        let meta = if $frame.meta.path == "/implicit" {
            {status: 202}
        } else {
            {request_id: $frame.id, status: 200, headers: {content-type: "text/plain"}}
        }
        $"hello ($name)" | .append http.response --meta $meta
        {next: ($state + 1)}
    }
    initial: 0
}"#;

#[test]
fn a_handler_answers_requests_promptly() {
    let (d, addr) = gateway(&[]);
    let active = create(&d, "handler", "hello", HELLO);
    assert!(
        active["topic"].as_str().unwrap().ends_with(".active"),
        "{active}"
    );

    let mut took = Vec::new();
    for i in 0..20 {
        let t = Instant::now();
        let r = tcp_request(&addr, "GET", &format!("/?name=n{i}"), &[], b"").unwrap();
        took.push(t.elapsed());
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), format!("hello n{i}"));
        assert_eq!(r.header("content-type"), Some("text/plain"));
    }
    took.sort();
    let (median, max) = (took[took.len() / 2], took[took.len() - 1]);
    eprintln!("gateway round trip through a handler: median {median:?}, max {max:?}");
    // The handler commits its burst (here one request) atomically before the response is
    // broadcast: one fsync, not a wait for more frames.
    assert!(median < Duration::from_millis(500), "median {median:?}");

    // Without request_id, the frame_id the handler stamps on its output names the request.
    let r = tcp_request(&addr, "GET", "/implicit", &[], b"").unwrap();
    assert_eq!(r.status, 202);
    assert_eq!(r.text(), "hello world");
    let responses = on(&d, "http.response");
    assert_eq!(responses.len(), 21);
    d.assert_no_panic();
}

#[test]
fn a_handler_that_fails_on_a_request_gives_502() {
    let (d, addr) = gateway(&["--http-timeout", "10s"]);
    let script = r#"{
        topics: "http.request"
        run: {|frame, state| error make {msg: "boom"} }
    }"#;
    create(&d, "handler", "broken", script);
    let t = Instant::now();
    let r = tcp_request(&addr, "GET", "/", &[], b"").unwrap();
    let msg = r.assert_error(502);
    assert!(msg.contains("the handler failed"), "{msg}");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "502 before the timeout"
    );
    let req = &on(&d, "http.request")[0];
    let fin = &on(&d, "xs.handler.broken.fin.error")[0];
    assert_eq!(fin["meta"]["frame_id"], req["id"]);
    assert!(fin["meta"]["error"].as_str().unwrap().contains("boom"));
    // Nushell's report stays in the store and the log, not in the public answer.
    assert!(!msg.contains("boom"));
}

#[test]
fn a_handler_answers_concurrent_requests_each_with_its_own_response() {
    let (d, addr) = gateway(&[]);
    create(&d, "handler", "hello", HELLO);
    let t = Instant::now();
    let clients: Vec<_> = (0..32)
        .map(|i| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let t = Instant::now();
                let r = tcp_request(&addr, "GET", &format!("/?name=c{i}"), &[], b"").unwrap();
                (i, r, t.elapsed())
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for c in clients {
        let (i, r, took) = c.join().unwrap();
        assert_eq!(r.status, 200, "client {i}: {}", r.text());
        assert_eq!(r.text(), format!("hello c{i}"));
        slowest = slowest.max(took);
    }
    // Requests stored while the handler runs a burst are answered when that burst commits.
    eprintln!(
        "32 concurrent requests through a handler: slowest {slowest:?}, all in {:?}",
        t.elapsed()
    );
    assert_eq!(on(&d, "http.response").len(), 32);
}
