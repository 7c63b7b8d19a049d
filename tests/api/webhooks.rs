//! Webhooks against a real HTTP server on loopback that fails, is slow, then recovers: every
//! frame arrives in order with no gaps, across a restart; `xs ps`; term, replace, invalid;
//! topics as a list.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use crate::helper::{ids, poll_until, Daemon};

const FAIL: u8 = 0;
const SLOW: u8 = 1;
pub const OK: u8 = 2;
pub const PACED: u8 = 3;

/// A webhook receiver on 127.0.0.1: answers 500 (`FAIL`), 200 after 1.5 s (`SLOW`), 200
/// after 20 ms (`PACED`) or 200 at once (`OK`), and records the bodies it answered 2xx to.
pub struct Receiver {
    port: u16,
    mode: Arc<AtomicU8>,
    delivered: Arc<Mutex<Vec<Value>>>,
    attempts: Arc<AtomicUsize>,
    headers: Arc<Mutex<Vec<HashMap<String, String>>>>,
}

impl Receiver {
    pub fn start(mode: u8) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the receiver");
        let r = Receiver {
            port: listener.local_addr().unwrap().port(),
            mode: Arc::new(AtomicU8::new(mode)),
            delivered: Arc::default(),
            attempts: Arc::default(),
            headers: Arc::default(),
        };
        let (mode, delivered, attempts, headers) = (
            r.mode.clone(),
            r.delivered.clone(),
            r.attempts.clone(),
            r.headers.clone(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (mode, delivered, attempts, headers) = (
                    mode.clone(),
                    delivered.clone(),
                    attempts.clone(),
                    headers.clone(),
                );
                std::thread::spawn(move || {
                    let _ = serve(conn, &mode, &delivered, &attempts, &headers);
                });
            }
        });
        r
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook?x=1", self.port)
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    pub fn delivered(&self) -> Vec<Value> {
        self.delivered.lock().unwrap().clone()
    }

    /// Waits until `n` bodies were answered 2xx.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Value> {
        poll_until(timeout, &format!("{n} deliveries"), || {
            let d = self.delivered();
            (d.len() >= n).then_some(d)
        })
    }
}

/// Serves one keep-alive connection.
fn serve(
    conn: TcpStream,
    mode: &AtomicU8,
    delivered: &Mutex<Vec<Value>>,
    attempts: &AtomicUsize,
    seen_headers: &Mutex<Vec<HashMap<String, String>>>,
) -> std::io::Result<()> {
    let mut out = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        assert!(line.starts_with("POST /hook?x=1 "), "request line {line:?}");
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            r.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').expect("a header line");
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
        let len: usize = headers["content-length"].parse().unwrap();
        let mut body = vec![0; len];
        r.read_exact(&mut body)?;
        attempts.fetch_add(1, Ordering::SeqCst);
        let m = mode.load(Ordering::SeqCst);
        if m == FAIL {
            out.write_all(
                b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 13\r\n\r\nreceiver down",
            )?;
            continue;
        }
        if m == SLOW {
            std::thread::sleep(Duration::from_millis(1500));
        }
        if m == PACED {
            std::thread::sleep(Duration::from_millis(20));
        }
        seen_headers.lock().unwrap().push(headers);
        delivered
            .lock()
            .unwrap()
            .push(serde_json::from_slice(&body).expect("a JSON body"));
        out.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")?;
    }
}

pub fn create(d: &Daemon, name: &str, config: &Value) -> Value {
    d.append(
        &format!("xs.webhook.{name}.create"),
        config.to_string().as_bytes(),
    )
}

/// The lifecycle frames of webhook `name` with event `event`.
fn lifecycle(d: &Daemon, name: &str, event: &str) -> Vec<Value> {
    d.read(&format!("topic=xs.webhook.{name}.{event}"))
}

fn ps(d: &Daemon) -> Vec<Value> {
    d.xs("ps", &[], b"").ok().ndjson()
}

/// Ids of `delivered` with repeats of the same frame in a row (retried requests) removed.
pub fn dedupe(delivered: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for id in ids(delivered) {
        if out.last() != Some(&id) {
            out.push(id);
        }
    }
    out
}

#[test]
fn webhook_delivers_in_order_through_failures_slowness_and_a_restart() {
    let rx = Receiver::start(FAIL);
    let mut d = Daemon::start();
    let c = create(
        &d,
        "w",
        &json!({"url": rx.url(), "topics": "t", "start": "first", "headers": {"x-token": "s3cret"}}),
    );
    let mut sent: Vec<Value> = (0..4)
        .map(|i| d.append("t", format!("f{i}").as_bytes()))
        .collect();
    d.append("other", b"not for the webhook");

    // Failing: retried, shown by `xs ps` with the last error, nothing skipped.
    let row = poll_until(Duration::from_secs(10), "ps to show the error", || {
        let rows = ps(&d);
        let w = rows.into_iter().find(|r| r["name"] == "w")?;
        (w["state"] == "retrying" && rx.attempts.load(Ordering::SeqCst) >= 3).then_some(w)
    });
    assert_eq!(row["kind"], "webhook");
    assert_eq!(row["create_id"], c["id"]);
    assert!(
        row["last_error"].as_str().unwrap().contains("500"),
        "last_error: {row}"
    );
    assert!(row["since"].is_string() && row["position"].is_null());
    assert!(rx.delivered().is_empty());
    let active = lifecycle(&d, "w", "active");
    assert_eq!(active.len(), 1);
    assert_eq!(active[0]["meta"]["create_id"], c["id"]);

    // Slow (1.5 s per answer, under the 10 s attempt timeout): delivered, one at a time.
    rx.set(SLOW);
    rx.wait_for(2, Duration::from_secs(15));
    rx.set(OK);
    let got = rx.wait_for(4, Duration::from_secs(10));
    assert_eq!(dedupe(&got), ids(&sent), "in order, nothing skipped");
    let first = &got[0];
    assert_eq!(first["topic"], "t");
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(first["content"].as_str().unwrap())
            .unwrap(),
        b"f0"
    );
    let h = rx.headers.lock().unwrap()[0].clone();
    assert_eq!(h["x-token"], "s3cret");
    assert_eq!(h["content-type"], "application/json");
    let row = poll_until(Duration::from_secs(5), "ps to show active", || {
        let w = ps(&d).into_iter().find(|r| r["name"] == "w")?;
        (w["state"] == "active" && w["position"] == sent[3]["id"]).then_some(w)
    });
    assert_eq!(row["failures"], 0);

    // Failing again while frames arrive, then the daemon stops: the position survives, and
    // the frames appended before the restart are delivered after it.
    rx.set(FAIL);
    sent.extend((4..7).map(|i| d.append("t", format!("f{i}").as_bytes())));
    poll_until(Duration::from_secs(5), "a failed attempt", || {
        let w = ps(&d).into_iter().find(|r| r["name"] == "w")?;
        (w["state"] == "retrying").then_some(())
    });
    d.stop();
    let before_restart = rx.delivered().len();
    rx.set(OK);
    d.restart();
    let stopped = lifecycle(&d, "w", "stopped");
    assert_eq!(stopped.len(), 1);
    assert_eq!(stopped[0]["meta"]["create_id"], c["id"]);
    sent.push(d.append("t", b"f7"));
    let got = rx.wait_for(8, Duration::from_secs(10));
    assert_eq!(before_restart, 4);
    assert_eq!(
        dedupe(&got),
        ids(&sent),
        "every frame once, in order, across the restart"
    );
    assert_eq!(
        lifecycle(&d, "w", "active").len(),
        2,
        "active again after the restart"
    );
    assert!(got.iter().all(|f| f["topic"] == "t"));
    d.assert_no_panic();
}

#[test]
fn term_stops_a_webhook_and_a_second_create_replaces_the_first() {
    let a = Receiver::start(OK);
    let b = Receiver::start(OK);
    let d = Daemon::start();
    // Default topics (`*`): every user frame, never runtime frames (`xs.*`).
    let c1 = create(&d, "w", &json!({"url": a.url()}));
    let f1 = d.append("t", b"1");
    a.wait_for(1, Duration::from_secs(10));

    let c2 = create(&d, "w", &json!({"url": b.url()}));
    let replaced = poll_until(Duration::from_secs(5), "replaced", || {
        let r = lifecycle(&d, "w", "replaced");
        (!r.is_empty()).then_some(r)
    });
    assert_eq!(replaced[0]["meta"]["create_id"], c1["id"]);
    assert_eq!(replaced[0]["meta"]["replaced_by"], c2["id"]);
    let f2 = d.append("u", b"2");
    let got = b.wait_for(1, Duration::from_secs(10));
    assert_eq!(
        ids(&got),
        ids(std::slice::from_ref(&f2)),
        "the replacement resumes the position"
    );

    // A broken replacement is answered `.invalid` and the running one goes on.
    let bad = create(&d, "w", &json!({"url": "https://example.com/"}));
    let inv = poll_until(Duration::from_secs(5), "invalid", || {
        let r = lifecycle(&d, "w", "invalid");
        (!r.is_empty()).then_some(r)
    });
    assert_eq!(inv[0]["meta"]["create_id"], bad["id"]);
    let f3 = d.append("t", b"3");
    b.wait_for(2, Duration::from_secs(10));

    d.append("xs.webhook.w.term", b"");
    let fin = poll_until(Duration::from_secs(5), "fin.term", || {
        let r = lifecycle(&d, "w", "fin.term");
        (!r.is_empty()).then_some(r)
    });
    assert_eq!(fin[0]["meta"]["create_id"], c2["id"]);
    let row = ps(&d).into_iter().find(|r| r["name"] == "w").unwrap();
    assert_eq!(row["state"], "terminated");
    d.append("t", b"after term");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(ids(&a.delivered()), ids(std::slice::from_ref(&f1)));
    assert_eq!(ids(&b.delivered()), ids(&[f2, f3]));
    d.assert_no_panic();
}

#[test]
fn a_webhook_takes_a_list_of_topic_patterns() {
    let rx = Receiver::start(OK);
    let d = Daemon::start();
    create(&d, "w", &json!({"url": rx.url(), "topics": ["a.*", "b"]}));
    poll_until(Duration::from_secs(5), "active", || {
        (!lifecycle(&d, "w", "active").is_empty()).then_some(())
    });
    let mut wanted = Vec::new();
    for (topic, sent) in [
        ("a.x", true),
        ("c", false),
        ("b", true),
        ("a", false),
        ("a.y.z", true),
    ] {
        let f = d.append(topic, topic.as_bytes());
        if sent {
            wanted.push(f);
        }
    }
    let got = rx.wait_for(3, Duration::from_secs(10));
    assert_eq!(dedupe(&got), ids(&wanted), "a.* and b, in order");
    assert!(lifecycle(&d, "w", "invalid").is_empty());
    d.assert_no_panic();
}

#[test]
fn invalid_configs_are_answered_with_invalid() {
    let d = Daemon::start();
    for (name, body) in [
        ("tls", json!({"url": "https://example.com/"}).to_string()),
        ("notjson", "url=http://x".to_string()),
        (
            "topics",
            json!({"url": "http://127.0.0.1:9/", "topics": "a..b"}).to_string(),
        ),
    ] {
        let c = d.append(&format!("xs.webhook.{name}.create"), body.as_bytes());
        let inv = poll_until(Duration::from_secs(5), "invalid", || {
            let r = lifecycle(&d, name, "invalid");
            (!r.is_empty()).then_some(r)
        });
        assert_eq!(inv[0]["meta"]["create_id"], c["id"]);
        assert!(inv[0]["meta"]["error"].as_str().unwrap().len() > 5);
        assert!(lifecycle(&d, name, "active").is_empty());
    }
    let rows = ps(&d);
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r["state"] == "invalid"), "{rows:?}");
    assert!(rows
        .iter()
        .any(|r| r["last_error"].as_str().unwrap().contains("https")));
}
