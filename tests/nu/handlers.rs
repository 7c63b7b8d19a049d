//! Handlers: frames in order with state threaded through, `{out, next}` / `{next}` / finish,
//! outputs stamped and never seen again, topics and start, the CLI sugar, and exactly-once
//! output across `kill -9` mid-run.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;

use crate::helper::{poll_until, xs, Daemon};

/// Registers handler `name` with `script` (HTTP) and waits for its `active` (or `invalid`).
pub fn create(d: &Daemon, kind: &str, name: &str, script: &str) -> Value {
    let created = d.append(&format!("xs.{kind}.{name}.create"), script.as_bytes());
    let id = created["id"].as_str().unwrap().to_string();
    poll_until(
        Duration::from_secs(20),
        &format!("{kind} {name} to answer"),
        || {
            d.frames().into_iter().find(|f| {
                f["meta"]["create_id"] == id.as_str()
                    && f["topic"]
                        .as_str()
                        .is_some_and(|t| t.ends_with(".active") || t.ends_with(".invalid"))
            })
        },
    )
}

/// Frames on `topic`.
pub fn on(d: &Daemon, topic: &str) -> Vec<Value> {
    d.read(&format!("topic={topic}"))
}

/// Waits until `topic` has `n` frames, then returns them.
pub fn wait_for(d: &Daemon, topic: &str, n: usize) -> Vec<Value> {
    poll_until(
        Duration::from_secs(30),
        &format!("{n} frames on {topic}"),
        || {
            let f = on(d, topic);
            (f.len() >= n).then_some(f)
        },
    )
}

pub fn content(d: &Daemon, frame: &Value) -> String {
    d.get(&format!("/cas/{}", frame["hash"].as_str().expect("a hash")))
        .text()
}

const COUNTER: &str = r#"{
    initial: 0
    start: "first"
    topics: "tick"
    run: {|frame, state|
        let n = $state + 1
        {out: {count: $n}, next: $n}
    }
}"#;

#[test]
fn counter_threads_state_and_stamps_outputs() {
    let d = Daemon::start();
    for _ in 0..3 {
        d.append("tick", b"");
    }
    let active = create(&d, "handler", "counter", COUNTER);
    assert_eq!(active["topic"], "xs.handler.counter.active", "{active}");
    let out = wait_for(&d, "counter.out", 3);
    let counts: Vec<i64> = out
        .iter()
        .map(|f| f["meta"]["count"].as_i64().unwrap())
        .collect();
    assert_eq!(counts, [1, 2, 3]);
    let ticks = on(&d, "tick");
    for (o, t) in out.iter().zip(&ticks) {
        assert_eq!(o["meta"]["frame_id"], t["id"]);
        assert_eq!(o["meta"]["handler_id"], active["meta"]["create_id"]);
    }
    // Live frames too.
    d.append("tick", b"");
    let out = wait_for(&d, "counter.out", 4);
    assert_eq!(out[3]["meta"]["count"], 4);
    d.assert_no_panic();
}

#[test]
fn topics_may_be_a_list_of_patterns() {
    let d = Daemon::start();
    for t in ["a.x", "c", "b", "a"] {
        d.append(t, b"");
    }
    let script =
        r#"{ start: "first", topics: ["a.*", "b"], run: {|f, s| {out: {t: $f.topic}, next: $s}} }"#;
    let active = create(&d, "handler", "seen", script);
    assert_eq!(active["topic"], "xs.handler.seen.active", "{active}");
    let out = wait_for(&d, "seen.out", 2);
    let seen: Vec<&str> = out
        .iter()
        .map(|f| f["meta"]["t"].as_str().unwrap())
        .collect();
    assert_eq!(seen, ["a.x", "b"]);
    for bad in [r#"["a", 1]"#, "[]", "{|| 1}"] {
        let v = format!("{{ topics: {bad}, run: {{|f, s| 1}} }}");
        let a = create(&d, "handler", "bad", &v);
        assert_eq!(a["topic"], "xs.handler.bad.invalid", "{v}: {a}");
    }
    d.assert_no_panic();
}

#[test]
fn next_only_finish_and_errors() {
    let d = Daemon::start();
    // Emits content (a string) for `go`, nothing for `skip`, finishes on `stop`.
    let script = r#"{
        run: {|frame, state|
            match $frame.topic {
                "go" => {out: $"seen ($state)", next: ($state + 1)}
                "skip" => {next: $state}
                "stop" => {out: "bye"}
                _ => {next: $state}
            }
        }
        initial: 0
    }"#;
    create(&d, "handler", "h", script);
    d.append("go", b"");
    d.append("skip", b"");
    d.append("go", b"");
    d.append("stop", b"");
    d.append("go", b"");
    let fin = poll_until(Duration::from_secs(20), "fin.ok", || {
        on(&d, "xs.handler.h.fin.ok").into_iter().next()
    });
    assert!(fin["meta"]["create_id"].is_string());
    let out = on(&d, "h.out");
    let texts: Vec<String> = out.iter().map(|f| content(&d, f)).collect();
    assert_eq!(texts, ["seen 0", "seen 1", "bye"]);

    // A closure error: fin.error with the message; outputs before it are kept.
    let script = r#"{
        run: {|frame, state|
            if $frame.topic == "bad" { error make {msg: "kaboom"} }
            {out: {ok: true}, next: null}
        }
    }"#;
    create(&d, "handler", "e", script);
    d.append("fine", b"");
    d.append("bad", b"");
    let fin = poll_until(Duration::from_secs(20), "fin.error", || {
        on(&d, "xs.handler.e.fin.error").into_iter().next()
    });
    assert!(
        fin["meta"]["error"].as_str().unwrap().contains("kaboom"),
        "{fin}"
    );
    assert_eq!(on(&d, "e.out").len(), 1);
    let ps = d.xs("ps", &[], b"").ok().ndjson();
    let row = ps.iter().find(|r| r["name"] == "e").expect("e in ps");
    assert_eq!(row["kind"], "handler");
    assert_eq!(row["state"], "failed");
    assert!(row["last_error"].as_str().unwrap().contains("kaboom"));
    d.assert_no_panic();
}

#[test]
fn invalid_scripts_and_the_cli() {
    let d = Daemon::start();
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.nu");
    std::fs::write(&bad, "{run: {|frame, state| $frame | no-such-cmd }").unwrap();
    let out = xs(
        &[
            "handler",
            "register",
            d.addr(),
            "bad",
            bad.to_str().unwrap(),
        ],
        b"",
    );
    let report = out.report();
    assert!(
        report.contains("invalid") && report.contains("no-such-cmd"),
        "{report}"
    );
    let good = tmp.path().join("good.nu");
    std::fs::write(&good, COUNTER).unwrap();
    let out = xs(
        &["handler", "register", d.addr(), "c", good.to_str().unwrap()],
        b"",
    )
    .ok();
    assert_eq!(out.json()["topic"], "xs.handler.c.active");
    for v in [
        "{run: 5}",
        "{run: {|| 1}}",
        "{run: {|f, s| 1}, bogus: 1}",
        "{run: {|f, s| 1}, start: 'middle'}",
        "[1 2]",
    ] {
        let a = create(&d, "handler", "x", v);
        assert_eq!(a["topic"], "xs.handler.x.invalid", "{v}: {a}");
        assert!(a["meta"]["error"].is_string());
    }
    let out = xs(&["handler", "unregister", d.addr(), "c"], b"").ok();
    assert_eq!(out.json()["topic"], "xs.handler.c.term");
    poll_until(Duration::from_secs(10), "fin.term", || {
        on(&d, "xs.handler.c.fin.term").into_iter().next()
    });
    d.assert_no_panic();
}

#[test]
fn appends_in_a_handler_are_committed_with_it_and_never_seen_again() {
    let d = Daemon::start();
    // Every frame it sees, it `.append`s a copy: if it saw its own appends, it would loop.
    let script = r#"{
        start: "first"
        run: {|frame, state|
            $frame.topic | .append echo
            {next: ($state + 1)}
        }
        initial: 0
    }"#;
    d.append("a", b"");
    d.append("b", b"");
    create(&d, "handler", "echoer", script);
    // xs.start, a and b (not its own lifecycle frames, not its own echoes).
    let echoes = wait_for(&d, "echo", 3);
    std::thread::sleep(Duration::from_millis(500));
    let echoes2 = on(&d, "echo");
    assert_eq!(
        echoes.len(),
        echoes2.len(),
        "the handler saw its own output"
    );
    for e in &echoes2 {
        assert!(e["meta"]["handler_id"].is_string());
        assert!(e["meta"]["frame_id"].is_string());
    }
}

#[test]
fn exactly_once_across_kill_9() {
    let mut d = Daemon::start();
    const N: usize = 3000;
    let mut body = Vec::new();
    for _ in 0..N {
        body.extend_from_slice(
            format!("{{\"topic\":\"in\",\"id\":\"{}\"}}\n", scru128::new()).as_bytes(),
        );
    }
    let r = d.http("POST", "/import", &[], &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let script = r#"{
        start: "first"
        topics: "in"
        initial: 0
        run: {|frame, state|
            let n = $state + 1
            # slow enough that the kill lands mid-run
            if $n mod 100 == 0 { sleep 20ms }
            {out: {n: $n}, next: $n}
        }
    }"#;
    create(&d, "handler", "once", script);
    poll_until(Duration::from_secs(30), "some output", || {
        (on(&d, "once.out").len() > 200).then_some(())
    });
    d.kill9();
    d.restart();
    let out = wait_for(&d, "once.out", N);
    std::thread::sleep(Duration::from_millis(300));
    let out2 = on(&d, "once.out");
    assert_eq!(out2.len(), N, "duplicated output after kill -9");
    let ns: Vec<i64> = out
        .iter()
        .map(|f| f["meta"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(
        ns,
        (1..=N as i64).collect::<Vec<_>>(),
        "state resumed exactly"
    );
    let inputs: HashSet<String> = on(&d, "in")
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect();
    let seen: HashSet<String> = out
        .iter()
        .map(|f| f["meta"]["frame_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(inputs, seen);
    d.assert_no_panic();
}

#[test]
fn a_handler_that_loops_forever_blocks_nothing_and_can_be_terminated() {
    let d = Daemon::start();
    create(
        &d,
        "handler",
        "spin",
        r#"{ topics: "go", run: {|f, s| loop { } } }"#,
    );
    create(&d, "handler", "counter", COUNTER);
    d.append("go", b"");
    d.append("tick", b"");
    wait_for(&d, "counter.out", 1);
    d.append("xs.handler.spin.term", b"");
    poll_until(
        Duration::from_secs(10),
        "the spinning handler to stop",
        || on(&d, "xs.handler.spin.fin.term").into_iter().next(),
    );
    d.append("tick", b"");
    wait_for(&d, "counter.out", 2);
    d.assert_no_panic();
}

#[test]
fn pulse_calls_the_closure_while_idle() {
    let d = Daemon::start();
    let script = r#"{
        pulse: 100
        topics: "never"
        run: {|frame, state| {out: {topic: $frame.topic}, next: null} }
    }"#;
    create(&d, "handler", "beat", script);
    let out = wait_for(&d, "beat.out", 2);
    assert!(
        out.iter().all(|f| f["meta"]["topic"] == "xs.pulse"),
        "{out:?}"
    );
}
