//! Optimistic concurrency (`?expect=`) and idempotent appends (`xs-idempotency-key`) over raw
//! HTTP: the check and the write are atomic, and a retried key answers the original frame.

use std::sync::Arc;

use serde_json::Value;

use crate::helper::http::{Conn, Resp};
use crate::helper::Daemon;

/// Asserts a 409 conflict body `{"error", "last"}` and returns `last`.
#[track_caller]
fn assert_conflict(r: &Resp) -> Value {
    assert_eq!(r.status, 409, "expected a conflict: {}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    let obj = v.as_object().expect("an object");
    assert_eq!(obj.len(), 2, "body has error and last: {v}");
    assert!(v["error"]
        .as_str()
        .is_some_and(|m| !m.is_empty() && !m.contains('\n')));
    v["last"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_racing_writers_with_the_same_expectation_one_wins() {
    let d = Daemon::start();
    let base = d.append("race", b"base");
    let expect = base["id"].as_str().unwrap().to_string();
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..16 {
        let sock = d.sock();
        let barrier = barrier.clone();
        let path = format!("/append/race?expect={expect}");
        set.spawn(async move {
            let mut conn = Conn::connect(&sock).await;
            barrier.wait().await;
            conn.request("POST", &path, &[], format!("writer {i}"))
                .await
        });
    }
    let mut answers = Vec::new();
    while let Some(r) = set.join_next().await {
        answers.push(r.expect("a writer panicked"));
    }
    let winners: Vec<&Resp> = answers.iter().filter(|r| r.status == 200).collect();
    assert_eq!(winners.len(), 1, "exactly one writer wins");
    let winner = winners[0].json()["id"].clone();
    for r in answers.iter().filter(|r| r.status != 200) {
        assert_eq!(
            assert_conflict(r),
            winner,
            "every loser sees the winner's id"
        );
    }
    let frames = d.read("topic=race");
    assert_eq!(frames.len(), 2, "base and the one winner");
    assert_eq!(frames[1]["id"], winner);
    d.assert_no_panic();
}

#[test]
fn expect_none_and_exact_topic_and_removed_frames() {
    let d = Daemon::start();
    let r = d.http("POST", "/append/acct?expect=none", &[], b"open");
    assert_eq!(r.status, 200, "{}", r.text());
    let first = r.json()["id"].clone();
    let again = d.http("POST", "/append/acct?expect=none", &[], b"open");
    assert_eq!(assert_conflict(&again), first);

    // Only the exact topic counts: a child topic's frames are not its frames.
    d.append("acct.sub", b"x");
    let ok = d.http(
        "POST",
        &format!("/append/acct?expect={}", first.as_str().unwrap()),
        &[],
        b"next",
    );
    assert_eq!(ok.status, 200, "{}", ok.text());
    let second = ok.json()["id"].clone();

    // Removing the newest frame makes the one before it the newest again.
    let rm = d.http(
        "DELETE",
        &format!("/{}", second.as_str().unwrap()),
        &[],
        b"",
    );
    assert_eq!(rm.status, 204);
    let stale = d.http(
        "POST",
        &format!("/append/acct?expect={}", second.as_str().unwrap()),
        &[],
        b"x",
    );
    assert_eq!(assert_conflict(&stale), first);
    let rm = d.http("DELETE", &format!("/{}", first.as_str().unwrap()), &[], b"");
    assert_eq!(rm.status, 204);
    let empty = d.http(
        "POST",
        &format!("/append/acct?expect={}", first.as_str().unwrap()),
        &[],
        b"x",
    );
    assert_eq!(assert_conflict(&empty), Value::Null);
    assert_eq!(
        d.http("POST", "/append/acct?expect=none", &[], b"x").status,
        200
    );

    // Bad input is a 400 and stores nothing.
    let bad = d.http("POST", "/append/acct?expect=nope", &[], b"x");
    assert!(bad.assert_error(400).contains("expect"));
    d.assert_no_panic();
}

#[test]
fn expired_frames_do_not_count_as_the_newest() {
    let d = Daemon::start();
    let keep = d.append("exp", b"kept");
    let r = d.http("POST", "/append/exp?ttl=time:1", &[], b"gone soon");
    assert_eq!(r.status, 200);
    std::thread::sleep(std::time::Duration::from_millis(5));
    let ok = d.http(
        "POST",
        &format!("/append/exp?expect={}", keep["id"].as_str().unwrap()),
        &[],
        b"x",
    );
    assert_eq!(ok.status, 200, "{}", ok.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotent_append_survives_kill_9() {
    let mut d = Daemon::start();
    let key = [("xs-idempotency-key", "order-42")];
    let first = d.http("POST", "/append/orders", &key, b"pay 42");
    assert_eq!(first.status, 200, "{}", first.text());
    let first = first.json();
    let retry = d.http("POST", "/append/orders", &key, b"pay 42");
    assert_eq!(retry.status, 200);
    assert_eq!(retry.json(), first, "a retry answers the original frame");

    d.kill9();
    d.restart();
    let retry = d.http("POST", "/append/orders", &key, b"pay 42");
    assert_eq!(retry.status, 200);
    assert_eq!(retry.json(), first, "the key survives kill -9");
    assert_eq!(d.read("topic=orders").len(), 1);

    // The key is per topic.
    let other = d.http("POST", "/append/refunds", &key, b"x");
    assert_ne!(other.json()["id"], first["id"]);

    // Concurrent appends with one key (likely in one batch) make one frame.
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let sock = d.sock();
        set.spawn(async move {
            let mut conn = Conn::connect(&sock).await;
            conn.request("POST", "/append/burst", &[("xs-idempotency-key", "b")], "x")
                .await
        });
    }
    let mut ids = Vec::new();
    while let Some(r) = set.join_next().await {
        let r = r.unwrap();
        assert_eq!(r.status, 200);
        ids.push(r.json()["id"].clone());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one frame for one key: {ids:?}");
    assert_eq!(d.read("topic=burst").len(), 1);

    // Once the frame is removed, the key appends anew.
    let id = first["id"].as_str().unwrap();
    assert_eq!(d.http("DELETE", &format!("/{id}"), &[], b"").status, 204);
    let fresh = d.http("POST", "/append/orders", &key, b"pay 42");
    assert_eq!(fresh.status, 200);
    assert_ne!(fresh.json()["id"], first["id"]);

    // A retry wins over a stale expectation: it is the same append.
    let k2 = [("xs-idempotency-key", "k2")];
    let a = d.http("POST", "/append/chain?expect=none", &k2, b"1");
    assert_eq!(a.status, 200);
    let b = d.http("POST", "/append/chain?expect=none", &k2, b"1");
    assert_eq!(b.status, 200, "{}", b.text());
    assert_eq!(a.json(), b.json());

    let bad = d.http(
        "POST",
        "/append/orders",
        &[("xs-idempotency-key", "")],
        b"x",
    );
    bad.assert_error(400);
    d.assert_no_panic();
}
