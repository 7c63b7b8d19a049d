//! Batch appends over raw HTTP (`POST /append`, NDJSON): many frames in one atomic commit,
//! answered in order; a bad line or a failed `expect` stores nothing and names its line.

use base64::Engine;
use serde_json::{json, Value};

use crate::helper::http::{parse_response, raw_exchange};
use crate::helper::{ids, Daemon};

/// The NDJSON body of `lines`.
fn ndjson(lines: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend(serde_json::to_vec(l).unwrap());
        out.push(b'\n');
    }
    out
}

fn post(d: &Daemon, body: &[u8]) -> crate::helper::http::Resp {
    d.http("POST", "/append", &[], body)
}

fn content(d: &Daemon, frame: &Value) -> Vec<u8> {
    let r = d.get(&format!("/cas/{}", frame["hash"].as_str().expect("a hash")));
    assert_eq!(r.status, 200, "{}", r.text());
    r.body
}

#[test]
fn a_batch_of_1000_frames_is_stored_in_order_and_answered_as_ndjson() {
    let d = Daemon::start();
    let lines: Vec<Value> = (0..1000)
        .map(|i| match i % 3 {
            0 => json!({"topic": "batch.a", "text": format!("n{i}")}),
            1 => json!({"topic": "batch.b", "meta": {"i": i}, "ttl": "forever",
                        "content": base64::engine::general_purpose::STANDARD.encode(format!("n{i}"))}),
            _ => json!({"topic": "batch.a", "meta": {"i": i}}),
        })
        .collect();
    let r = post(&d, &ndjson(&lines));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    let answered = r.ndjson();
    assert_eq!(answered.len(), 1000);
    let stored: Vec<Value> = d
        .frames()
        .into_iter()
        .filter(|f| f["topic"].as_str().unwrap().starts_with("batch."))
        .collect();
    assert_eq!(ids(&stored), ids(&answered), "stored as answered, in order");
    let mut sorted = ids(&answered);
    sorted.sort();
    assert_eq!(sorted, ids(&answered), "ids ascend in line order");
    for (i, f) in answered.iter().enumerate() {
        assert_eq!(f["topic"], lines[i]["topic"]);
        assert_eq!(f["meta"], lines[i]["meta"], "line {}", i + 1);
    }
    assert_eq!(content(&d, &answered[0]), b"n0");
    assert_eq!(content(&d, &answered[1]), b"n1");
    assert!(answered[2]["hash"].is_null(), "a line without content");
    d.assert_no_panic();
}

#[test]
fn a_failed_expect_in_the_middle_of_a_batch_stores_nothing_and_names_its_line() {
    let d = Daemon::start();
    let base = d.append("acct", b"open");
    let before = d.frames().len();
    let lines = [
        json!({"topic": "other", "text": "a"}),
        json!({"topic": "acct", "text": "b", "expect": base["id"]}),
        json!({"topic": "other", "text": "c"}),
        json!({"topic": "acct", "text": "d", "expect": "none"}),
        json!({"topic": "other", "text": "e"}),
    ];
    let r = post(&d, &ndjson(&lines));
    assert_eq!(r.status, 409, "{}", r.text());
    let v = r.json();
    let msg = v["error"].as_str().unwrap();
    assert!(msg.starts_with("line 4: conflict on topic acct"), "{msg}");
    assert!(v["last"].is_string(), "{v}");
    assert_eq!(d.frames().len(), before, "nothing of the batch is stored");

    // The same batch without the bad expectation goes in whole.
    let mut lines = lines.to_vec();
    lines[3]["expect"].take();
    let r = post(&d, &ndjson(&lines));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(d.frames().len(), before + 5);
    d.assert_no_panic();
}

#[test]
fn a_malformed_line_refuses_the_whole_batch_and_names_it() {
    let d = Daemon::start();
    let before = d.frames().len();
    let good = r#"{"topic":"t","text":"ok"}"#;
    let cases = [
        (
            format!("{good}\n{good}\n{{\"topic\":\"t\",}}\n{good}\n"),
            "line 3",
        ),
        (format!("{good}\n\n{{\"topic\":\"bad topic\"}}\n"), "line 3"),
        (
            format!("{good}\n{{\"topic\":\"t\",\"tll\":\"x\"}}\n"),
            "line 2",
        ),
        (
            r#"{"topic":"t","text":"a","content":"YQ=="}"#.to_string(),
            "line 1",
        ),
        (
            format!("{good}\n{{\"topic\":\"t\",\"content\":\"!!\"}}"),
            "line 2",
        ),
        (
            format!("{good}\n{{\"topic\":\"t\",\"ttl\":\"often\"}}"),
            "line 2",
        ),
        (
            format!("{good}\n{{\"topic\":\"t\",\"expect\":\"soon\"}}"),
            "line 2",
        ),
        (
            format!("{good}\n{{\"topic\":\"t\",\"key\":\"\"}}"),
            "line 2",
        ),
        (format!("{good}\nnot json"), "line 2"),
    ];
    for (body, line) in cases {
        let msg = post(&d, body.as_bytes()).assert_error(400);
        assert!(msg.starts_with(&format!("{line}: ")), "{body:?}: {msg}");
    }
    assert_eq!(d.frames().len(), before, "nothing stored");
    assert_eq!(d.http("GET", "/append", &[], b"").status, 405);
    d.assert_no_panic();
}

#[test]
fn a_retried_batch_answers_the_original_frames() {
    let d = Daemon::start();
    let lines: Vec<Value> = (0..3)
        .map(|i| json!({"topic": "orders", "text": format!("o{i}"), "key": format!("k{i}")}))
        .collect();
    let first = post(&d, &ndjson(&lines));
    assert_eq!(first.status, 200, "{}", first.text());
    let retry = post(&d, &ndjson(&lines));
    assert_eq!(retry.status, 200, "{}", retry.text());
    assert_eq!(
        ids(&retry.ndjson()),
        ids(&first.ndjson()),
        "the original frames"
    );

    // A retry that carries one more line adds only that one.
    let mut more = lines.clone();
    more.push(json!({"topic": "orders", "text": "o3", "key": "k3"}));
    let r = post(&d, &ndjson(&more));
    assert_eq!(r.status, 200, "{}", r.text());
    let got = r.ndjson();
    assert_eq!(ids(&got[..3]), ids(&first.ndjson()));
    assert_eq!(d.read("topic=orders").len(), 4);
    d.assert_no_panic();
}

#[test]
fn large_content_in_a_batch_is_stored_before_its_frame() {
    let d = Daemon::start();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&big);
    let lines = [
        json!({"topic": "files", "text": "small"}),
        json!({"topic": "files", "content": b64}),
        json!({"topic": "files", "text": "x".repeat(17 * 1024)}),
    ];
    let r = post(&d, &ndjson(&lines));
    assert_eq!(r.status, 200, "{}", r.text());
    let got = r.ndjson();
    assert_eq!(content(&d, &got[0]), b"small");
    assert_eq!(content(&d, &got[1]), big);
    assert_eq!(content(&d, &got[2]), "x".repeat(17 * 1024).as_bytes());
    d.assert_no_panic();
}

#[test]
fn a_batch_over_the_caps_is_refused_with_413() {
    let d = Daemon::start();
    let before = d.frames().len();
    let lines: Vec<Value> = (0..=xs::BATCH_MAX_FRAMES)
        .map(|_| json!({"topic": "many"}))
        .collect();
    let msg = post(&d, &ndjson(&lines)).assert_error(413);
    assert!(msg.contains("at most 10000 frames"), "{msg}");
    assert!(msg.contains("line 10001"), "{msg}");
    assert_eq!(d.frames().len(), before, "nothing stored");

    // A declared length over the byte cap is refused from the head alone.
    let head = format!(
        "POST /append HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        xs::BATCH_MAX_BYTES + 1
    );
    let raw = raw_exchange(&d.sock(), head.as_bytes(), true).unwrap();
    let r = parse_response(&raw).unwrap();
    let msg = r.assert_error(413);
    assert!(msg.contains("at most 67108864"), "{msg}");
    d.assert_no_panic();
}
