//! `GET /` over raw HTTP: after/from/limit/last, topic filters, timestamps, following
//! (history, one `xs.threshold`, live), `new`, pulses, SSE, and `limit` ending a follow.

use std::time::Duration;

use serde_json::Value;

use crate::helper::http::Stream;
use crate::helper::{ids, topics, Daemon};

fn id(f: &Value) -> &str {
    f["id"].as_str().expect("a frame has an id")
}

#[test]
fn after_is_exclusive_and_from_is_inclusive() {
    let d = Daemon::start();
    let f: Vec<Value> = (0..5)
        .map(|i| d.append("t", format!("{i}").as_bytes()))
        .collect();

    assert_eq!(ids(&d.read(&format!("after={}", id(&f[1])))), ids(&f[2..]));
    assert_eq!(ids(&d.read(&format!("from={}", id(&f[1])))), ids(&f[1..]));
    assert!(d.read(&format!("after={}", id(&f[4]))).is_empty());
    assert_eq!(ids(&d.read(&format!("from={}", id(&f[4])))), ids(&f[4..]));
}

#[test]
fn limit_caps_the_read_and_last_takes_the_newest_in_id_order() {
    let d = Daemon::start();
    let f: Vec<Value> = (0..5)
        .map(|i| d.append("t", format!("{i}").as_bytes()))
        .collect();

    let all = d.frames();
    assert_eq!(topics(&all)[0], "xs.start");
    assert_eq!(ids(&all[1..]), ids(&f));
    assert_eq!(ids(&d.read("limit=2")), ids(&all[..2]));
    assert_eq!(ids(&d.read("topic=t&limit=2")), ids(&f[..2]));
    assert_eq!(ids(&d.read("last=2")), ids(&f[3..]));
    assert_eq!(ids(&d.read("topic=t&last=10")), ids(&f));
}

#[test]
fn topic_filters_exact_descendants_lists_and_all() {
    let d = Daemon::start();
    let a1 = d.append("a", b"");
    let ab = d.append("a.b", b"");
    let abc = d.append("a.b.c", b"");
    let other = d.append("ab", b"");
    let b = d.append("b", b"");
    let a2 = d.append("a", b"");

    assert_eq!(ids(&d.read("topic=a")), ids(&[a1.clone(), a2.clone()]));
    assert_eq!(ids(&d.read("topic=a.b")), ids(std::slice::from_ref(&ab)));
    assert_eq!(
        ids(&d.read("topic=a.*")),
        ids(&[ab.clone(), abc.clone()]),
        "a.* is the descendants of a, not a itself nor ab"
    );
    assert_eq!(ids(&d.read("topic=a.b.*")), ids(std::slice::from_ref(&abc)));
    assert_eq!(
        ids(&d.read("topic=a,b")),
        ids(&[a1.clone(), b.clone(), a2.clone()])
    );
    assert_eq!(
        ids(&d.read("topic=a%2Cb")),
        ids(&[a1.clone(), b.clone(), a2.clone()])
    );
    assert_eq!(
        ids(&d.read("topic=a.*,b")),
        ids(&[ab.clone(), abc.clone(), b.clone()])
    );
    let everything = d.read("topic=*");
    assert_eq!(
        topics(&everything),
        ["xs.start", "a", "a.b", "a.b.c", "ab", "b", "a"]
    );
    assert_eq!(ids(&everything[1..]), ids(&[a1, ab, abc, other, b, a2]));
    assert!(d.read("topic=nothing").is_empty());
}

#[test]
fn with_timestamp_adds_the_ids_rfc3339_time() {
    let d = Daemon::start();
    d.append("t", b"x");
    let plain = d.read("topic=t");
    let obj = plain[0].as_object().expect("an object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["hash", "id", "meta", "topic", "ttl"]);

    for f in d.read("with-timestamp") {
        let parsed = xs::frame::parse_id(id(&f)).expect("a valid id");
        let ts = f["timestamp"].as_str().expect("timestamp is a string");
        assert_eq!(ts, xs::frame::id_timestamp(&parsed));
        assert!(
            ts.ends_with('Z') && ts.len() == "2024-01-01T00:00:00.000Z".len(),
            "{ts}"
        );
    }
    assert!(d.read("with-timestamp=false")[0].get("timestamp").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follow_sends_history_then_one_threshold_then_live_frames() {
    let d = Daemon::start();
    let h1 = d.append("t", b"1");
    let h2 = d.append("t", b"2");
    d.append("other", b"");

    let mut s = Stream::open(&d.sock(), "/?follow&topic=t", &[]).await;
    assert_eq!(s.status, 200);
    assert_eq!(s.content_type.as_deref(), Some("application/x-ndjson"));
    assert_eq!(id(&s.next().await), id(&h1));
    assert_eq!(id(&s.next().await), id(&h2));
    let th = s.next().await;
    assert_eq!(th["topic"], "xs.threshold");
    assert_eq!(th["ttl"], "ephemeral");
    assert_eq!(th["hash"], Value::Null);

    let l1 = d.append("t", b"3");
    d.append("other", b"");
    let l2 = d.append("t", b"4");
    assert_eq!(id(&s.next().await), id(&l1));
    assert_eq!(
        id(&s.next().await),
        id(&l2),
        "only one threshold, and filtered topics stay out"
    );
    assert!(
        !topics(&d.frames()).contains(&"xs.threshold".to_string()),
        "the threshold is never stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follow_new_skips_history_and_threshold() {
    let d = Daemon::start();
    // Rounds, because what it guards against is a race: the frame appended just before the
    // read started must not come to it live (it did when the writer answered an append
    // before broadcasting its frame).
    for round in 0..30 {
        d.append("t", b"old");
        let mut s = Stream::open(&d.sock(), "/?follow&new", &[]).await;
        assert_eq!(s.status, 200);
        let live = d.append("t", b"new");
        let first = s.next().await;
        assert_eq!(first["topic"], "t");
        assert_eq!(id(&first), id(&live), "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follow_with_pulse_sends_xs_pulse_frames() {
    let d = Daemon::start();
    let mut s = Stream::open(&d.sock(), "/?follow=100&topic=quiet", &[]).await;
    assert_eq!(s.next().await["topic"], "xs.threshold");
    let mut last_id = String::new();
    for _ in 0..3 {
        let p = s
            .next_within(Duration::from_secs(5))
            .await
            .expect("a pulse");
        assert_eq!(p["topic"], "xs.pulse");
        assert_eq!(p["ttl"], "ephemeral");
        assert!(id(&p) > last_id.as_str(), "pulse ids increase");
        last_id = id(&p).to_string();
    }
    let live = d.append("quiet", b"");
    loop {
        let f = s.next().await;
        if f["topic"] == "xs.pulse" {
            continue;
        }
        assert_eq!(id(&f), id(&live));
        break;
    }
    assert!(!topics(&d.frames()).contains(&"xs.pulse".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accept_event_stream_answers_server_sent_events() {
    let d = Daemon::start();
    let f = d.append("t", b"x");
    let sse = [("accept", "text/event-stream")];

    let mut s = Stream::open(&d.sock(), "/?topic=t", &sse).await;
    assert_eq!(s.status, 200);
    assert_eq!(s.content_type.as_deref(), Some("text/event-stream"));
    let ev = s.next_event().await.expect("one event");
    let (head, data) = ev.split_once('\n').expect("two lines");
    assert_eq!(head, format!("id: {}", id(&f)));
    let data: Value =
        serde_json::from_str(data.strip_prefix("data: ").expect("a data line")).expect("JSON");
    assert_eq!(data, f);
    assert!(s.next_event().await.is_none(), "no follow: the stream ends");

    let mut s = Stream::open(&d.sock(), "/?follow&topic=t", &sse).await;
    s.next_event().await.expect("the history event");
    let th = s.next_event().await.expect("the threshold event");
    assert!(
        th.starts_with("id: ") && th.contains("\ndata: {\"topic\":\"xs.threshold\""),
        "{th:?}"
    );
    let live = d.append("t", b"y");
    let ev = s.next_event().await.expect("a live event");
    assert!(
        ev.starts_with(&format!("id: {}\ndata: ", id(&live))),
        "{ev:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn limit_ends_a_follow_after_n_frames() {
    let d = Daemon::start();
    let h1 = d.append("t", b"1");
    let h2 = d.append("t", b"2");

    let mut s = Stream::open(&d.sock(), "/?follow&topic=t&limit=3", &[]).await;
    assert_eq!(id(&s.next().await), id(&h1));
    assert_eq!(id(&s.next().await), id(&h2));
    assert_eq!(s.next().await["topic"], "xs.threshold");
    let l1 = d.append("t", b"3");
    d.append("t", b"4");
    assert_eq!(id(&s.next().await), id(&l1));
    assert!(s.ends().await, "the stream ends after 3 frames");

    // A limit reached within the history ends the stream there.
    let mut s = Stream::open(&d.sock(), "/?follow&topic=t&limit=1", &[]).await;
    assert_eq!(id(&s.next().await), id(&h1));
    assert!(s.ends().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn last_endpoint_answers_newest_frames_and_follows() {
    let d = Daemon::start();
    let a1 = d.append("a.x", b"1");
    let a2 = d.append("a.y", b"2");
    let b = d.append("b", b"3");

    let r = d.get("/last");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json(), b);
    assert_eq!(d.get("/last/a.*").json(), a2);
    let two = d.get("/last/a.*?last=2");
    assert_eq!(two.status, 200);
    assert_eq!(ids(&two.ndjson()), ids(&[a1, a2.clone()]));
    d.get("/last/nothing").assert_error(404);

    let mut s = Stream::open(&d.sock(), "/last/a.*?follow", &[]).await;
    assert_eq!(s.next().await, a2);
    assert_eq!(s.next().await["topic"], "xs.threshold");
    d.append("b", b"");
    let live = d.append("a.z", b"");
    assert_eq!(id(&s.next().await), id(&live));
}
