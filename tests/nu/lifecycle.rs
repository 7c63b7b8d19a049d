//! The processor lifecycle rules (docs/DESIGN.md §6), across daemon restarts: terminated stays
//! stopped; running resumes; a finished one stays finished; a broken replacement falls back
//! to the last good version; one live instance per name (`replaced`); every runtime frame
//! points at its create; `stopped` at shutdown does not stop resumption.

use std::time::Duration;

use serde_json::Value;

use crate::helper::{poll_until, Daemon};
use crate::nu::handlers::{create, on, wait_for};

const ECHO: &str = r#"{ topics: "ping", run: {|frame, state| {out: {v: 1}, next: null} } }"#;
const ECHO2: &str = r#"{ topics: "ping", run: {|frame, state| {out: {v: 2}, next: null} } }"#;

fn versions(d: &Daemon, topic: &str) -> Vec<i64> {
    on(d, topic)
        .iter()
        .map(|f| f["meta"]["v"].as_i64().unwrap())
        .collect()
}

fn ping_and_wait(d: &Daemon, topic: &str, n: usize) -> Vec<Value> {
    d.append("ping", b"");
    wait_for(d, topic, n)
}

#[test]
fn replace_fall_back_terminate_and_restart() {
    let mut d = Daemon::start();
    let v1 = create(&d, "handler", "e", ECHO);
    ping_and_wait(&d, "e.out", 1);

    // A new version replaces the old: `replaced` points at v1's create.
    let v2 = create(&d, "handler", "e", ECHO2);
    let replaced = on(&d, "xs.handler.e.replaced");
    assert_eq!(replaced.len(), 1);
    assert_eq!(replaced[0]["meta"]["create_id"], v1["meta"]["create_id"]);
    ping_and_wait(&d, "e.out", 2);
    assert_eq!(versions(&d, "e.out"), [1, 2]);

    // A broken replacement is `invalid`; v2 keeps running.
    let bad = create(&d, "handler", "e", "{run: {|| }");
    assert_eq!(bad["topic"], "xs.handler.e.invalid");
    ping_and_wait(&d, "e.out", 3);
    assert_eq!(versions(&d, "e.out"), [1, 2, 2]);

    // Across a restart (kill -9): v2 runs again (not the broken one, not v1), once.
    d.kill9();
    d.restart();
    poll_until(Duration::from_secs(20), "v2 active again", || {
        (on(&d, "xs.handler.e.active")
            .iter()
            .filter(|f| f["meta"]["create_id"] == v2["meta"]["create_id"])
            .count()
            == 2)
            .then_some(())
    });
    ping_and_wait(&d, "e.out", 4);
    assert_eq!(versions(&d, "e.out"), [1, 2, 2, 2]);

    // Terminated: fin.term points at v2; after a clean restart it stays stopped.
    d.append("xs.handler.e.term", b"");
    let fin = poll_until(Duration::from_secs(10), "fin.term", || {
        on(&d, "xs.handler.e.fin.term").into_iter().next()
    });
    assert_eq!(fin["meta"]["create_id"], v2["meta"]["create_id"]);
    assert!(d.stop().success());
    d.restart();
    d.append("ping", b"");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        versions(&d, "e.out").len(),
        4,
        "a terminated handler ran again"
    );
    let actives = on(&d, "xs.handler.e.active").len();
    assert_eq!(actives, 3, "no new active after the restart");

    // Every runtime frame points at a create of this name.
    let creates: Vec<Value> = on(&d, "xs.handler.e.create")
        .iter()
        .map(|f| f["id"].clone())
        .collect();
    for f in d.read("topic=xs.handler.e.*") {
        let t = f["topic"].as_str().unwrap();
        if t.ends_with(".create") || t.ends_with(".term") {
            continue;
        }
        assert!(creates.contains(&f["meta"]["create_id"]), "{f}");
    }
    d.assert_no_panic();
}

#[test]
fn stopped_does_not_stop_resumption_and_finished_stays_finished() {
    let mut d = Daemon::start();
    create(&d, "handler", "run", ECHO);
    // Finishes on its first frame: `{out}` without `next`.
    create(
        &d,
        "handler",
        "fin",
        r#"{ topics: "ping", run: {|frame, state| {out: {v: 9}} } }"#,
    );
    ping_and_wait(&d, "fin.out", 1);
    poll_until(Duration::from_secs(10), "fin.ok", || {
        on(&d, "xs.handler.fin.fin.ok").into_iter().next()
    });
    assert!(d.stop().success());
    d.restart();
    let stopped = on(&d, "xs.handler.run.stopped");
    assert_eq!(stopped.len(), 1, "stopped on shutdown");
    assert!(
        on(&d, "xs.handler.fin.stopped").is_empty(),
        "a finished handler isn't stopped"
    );
    ping_and_wait(&d, "run.out", 2);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(on(&d, "fin.out").len(), 1, "a finished handler ran again");
    d.assert_no_panic();
}

#[test]
fn created_while_down_is_answered_at_start() {
    let mut d = Daemon::start();
    assert!(d.stop().success());
    // Written straight into the store while no daemon runs: import the create frame.
    let store = xs::Store::open_local(&d.store, xs::LocalOptions::default()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(store.append(xs::NewFrame {
        content: xs::Content::inline(bytes::Bytes::from_static(ECHO.as_bytes())),
        ..xs::NewFrame::new("xs.handler.late.create")
    }))
    .unwrap();
    rt.block_on(store.close());
    drop(store);
    d.restart();
    poll_until(Duration::from_secs(10), "active", || {
        on(&d, "xs.handler.late.active").into_iter().next()
    });
    ping_and_wait(&d, "late.out", 1);
}
