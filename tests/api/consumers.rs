//! Durable consumers over raw HTTP: reads that resume after the last ack (also across a
//! restart), `start`, `ack=auto`, acks that never go backwards, lag, removal, and 400s.

use std::time::Duration;

use serde_json::Value;

use crate::helper::http::Stream;
use crate::helper::{ids, poll_until, Daemon};

fn id(f: &Value) -> &str {
    f["id"].as_str().expect("a frame has an id")
}

fn ack(d: &Daemon, name: &str, id: &str) -> u16 {
    d.http("POST", &format!("/consumers/{name}/ack?id={id}"), &[], b"")
        .status
}

/// A consumer's position, or null if it has none.
fn position(d: &Daemon, name: &str) -> Value {
    let r = d.get(&format!("/consumers/{name}"));
    match r.status {
        404 => Value::Null,
        _ => consumer(d, name)["position"].clone(),
    }
}

fn consumer(d: &Daemon, name: &str) -> Value {
    let r = d.get(&format!("/consumers/{name}"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

#[test]
fn consumer_resumes_after_the_last_ack_across_a_restart() {
    let mut d = Daemon::start();
    let f: Vec<Value> = (0..5).map(|i| d.append("t", &[b'0' + i])).collect();
    // No position yet: from the first frame.
    assert_eq!(ids(&d.read("consumer=c&topic=t")), ids(&f));
    assert_eq!(ack(&d, "c", id(&f[2])), 204);
    assert_eq!(ids(&d.read("consumer=c&topic=t")), ids(&f[3..]));

    d.stop();
    d.restart();
    assert_eq!(
        ids(&d.read("consumer=c&topic=t")),
        ids(&f[3..]),
        "the ack survived the restart"
    );
    let c = consumer(&d, "c");
    assert_eq!(c["name"], "c");
    assert_eq!(c["position"], f[2]["id"]);
    // Lag: every stored frame after the position (t frames, xs.stopping, the new xs.start).
    let after = d.read(&format!("after={}", id(&f[2]))).len();
    assert_eq!(after, 4);
    assert_eq!(c["lag"], after);
    let list = d.get("/consumers");
    assert_eq!(list.status, 200);
    assert_eq!(list.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(list.ndjson(), vec![c]);
}

#[test]
fn acks_never_move_a_position_backwards() {
    let d = Daemon::start();
    let f: Vec<Value> = (0..4).map(|_| d.append("t", b"")).collect();
    assert_eq!(ack(&d, "c", id(&f[3])), 204);
    assert_eq!(ack(&d, "c", id(&f[1])), 204);
    assert_eq!(consumer(&d, "c")["position"], f[3]["id"]);
    assert!(d.read("consumer=c").is_empty());
    assert_eq!(consumer(&d, "c")["lag"], 0);
}

#[test]
fn start_applies_only_until_the_first_ack() {
    let d = Daemon::start();
    let f: Vec<Value> = (0..4).map(|_| d.append("t", b"")).collect();
    let q = format!("consumer=c&topic=t&start={}", id(&f[1]));
    assert_eq!(ids(&d.read(&q)), ids(&f[2..]));
    assert!(d.read("consumer=c&start=new").is_empty(), "new: no history");
    assert_eq!(ack(&d, "c", id(&f[0])), 204);
    assert_eq!(
        ids(&d.read(&q)),
        ids(&f[1..]),
        "the position wins over start"
    );
    assert_eq!(
        ids(&d.read(&format!("consumer=c&topic=t&after={}", id(&f[2])))),
        ids(&f[1..]),
        "and over after"
    );
}

#[test]
fn auto_ack_moves_the_position_as_frames_are_delivered() {
    let d = Daemon::start();
    let f: Vec<Value> = (0..3).map(|_| d.append("t", b"x")).collect();
    let got = d.read("consumer=c&topic=t&ack=auto");
    assert_eq!(ids(&got), ids(&f));
    poll_until(Duration::from_secs(5), "the auto-ack", || {
        (position(&d, "c") == f[2]["id"]).then_some(())
    });
    assert!(d.read("consumer=c&topic=t").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn auto_ack_while_following_acknowledges_live_frames() {
    let d = Daemon::start();
    let h = d.append("t", b"h");
    let mut s = Stream::open(&d.sock(), "/?consumer=w&topic=t&follow&ack=auto", &[]).await;
    assert_eq!(s.status, 200);
    assert_eq!(id(&s.next().await), id(&h));
    assert_eq!(s.next().await["topic"], "xs.threshold");
    for i in 0..3 {
        let l = d.append("t", &[b'a' + i]);
        assert_eq!(id(&s.next().await), id(&l));
        poll_until(Duration::from_secs(5), "the live auto-ack", || {
            (position(&d, "w") == l["id"]).then_some(())
        });
    }
    drop(s);
    // A new follower for the same consumer starts after what was delivered. The dropped
    // follower may still have been handed `z` (and so acknowledged it) before its connection
    // closed: auto-ack is at-most-once for a client that goes away.
    let l = d.append("t", b"z");
    let mut s = Stream::open(&d.sock(), "/?consumer=w&topic=t&follow", &[]).await;
    let first = s.next().await;
    if first["topic"] == "xs.threshold" {
        assert_eq!(
            position(&d, "w"),
            l["id"],
            "z was skipped, so it was acknowledged"
        );
    } else {
        assert_eq!(id(&first), id(&l));
        assert_eq!(s.next().await["topic"], "xs.threshold");
    }
}

#[test]
fn delete_forgets_a_consumer() {
    let d = Daemon::start();
    let f = d.append("t", b"");
    assert_eq!(ack(&d, "c", id(&f)), 204);
    assert_eq!(d.http("DELETE", "/consumers/c", &[], b"").status, 204);
    d.get("/consumers/c").assert_error(404);
    d.http("DELETE", "/consumers/c", &[], b"").assert_error(404);
    assert!(d.get("/consumers").body.is_empty());
    assert_eq!(ids(&d.read("consumer=c&topic=t")), ids(&[f]));
}

#[test]
fn bad_names_ids_and_options_are_400() {
    let d = Daemon::start();
    let f = d.append("t", b"");
    let e = d.get("/?consumer=9bad").assert_error(400);
    assert!(e.contains("consumer name"), "{e}");
    d.get("/?consumer=a%20b").assert_error(400);
    d.get("/?consumer=c&start=soon").assert_error(400);
    d.get("/?consumer=c&ack=yes").assert_error(400);
    d.get("/?ack=auto").assert_error(400);
    d.http("POST", "/consumers/9bad/ack?id=x", &[], b"")
        .assert_error(400);
    d.http("POST", "/consumers/c/ack", &[], b"")
        .assert_error(400);
    d.http("POST", "/consumers/c/ack?id=nope", &[], b"")
        .assert_error(400);
    // An id after the newest frame cannot be acknowledged.
    let last = xs::frame::parse_id(id(&f)).unwrap();
    let future = xs::Id::from_u128(last.to_u128() + (1 << 90));
    let e = d
        .http("POST", &format!("/consumers/c/ack?id={future}"), &[], b"")
        .assert_error(400);
    assert!(e.contains("after the newest frame"), "{e}");
    d.get("/consumers/c").assert_error(404);
    d.http("GET", "/consumers/c/ack", &[], b"")
        .assert_error(405);
    d.http("POST", "/consumers", &[], b"").assert_error(405);
    d.assert_no_panic();
}
