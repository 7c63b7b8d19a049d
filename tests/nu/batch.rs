//! `.append` of a list in scripts: one frame per item, all or nothing in one batch; inside a
//! handler, committed with its checkpoint like any other `.append`.

use serde_json::json;

use super::handlers::{content, create, wait_for};
use crate::helper::Daemon;

fn eval(d: &Daemon, script: &str) -> crate::helper::http::Resp {
    d.http("POST", "/eval", &[], script.as_bytes())
}

#[test]
fn append_of_a_list_appends_each_item_in_one_batch() {
    let d = Daemon::start();
    let r = eval(
        &d,
        r#"["a" {x: 1} 0x[01 02]] | .append batch.l --meta {m: 1} | get topic | to json -r"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), r#"["batch.l","batch.l","batch.l"]"#);
    let frames = d.read("topic=batch.l");
    assert_eq!(frames.len(), 3);
    assert!(frames.iter().all(|f| f["meta"] == json!({"m": 1})));
    assert_eq!(content(&d, &frames[0]), "a");
    assert_eq!(content(&d, &frames[1]), r#"{"x":1}"#);

    // A list stream too; and with a key, a repeat answers the same frames.
    let script =
        r#"1..3 | each {|i| $"n($i)"} | .append batch.s --key run-1 | get id | to json -r"#;
    let first = eval(&d, script);
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(eval(&d, script).text(), first.text());
    assert_eq!(d.read("topic=batch.s").len(), 3);

    // --expect guards the whole list: refused, nothing stored.
    let r = eval(&d, r#"[x y] | .append batch.s --expect none"#);
    r.assert_report(400);
    assert_eq!(d.read("topic=batch.s").len(), 3);
    d.assert_no_panic();
}

#[test]
fn a_handler_appending_a_list_commits_it_with_its_output() {
    let d = Daemon::start();
    let script = r#"{
        topics: "batch.in"
        run: {|frame| [one two] | .append batch.out; null }
    }"#;
    let active = create(&d, "handler", "lister", script);
    assert_eq!(active["topic"], "xs.handler.lister.active", "{active}");
    let tick = d.append("batch.in", b"go");
    let out = wait_for(&d, "batch.out", 2);
    assert_eq!(out.len(), 2);
    for f in &out {
        assert_eq!(
            f["meta"]["frame_id"], tick["id"],
            "stamped as the handler's"
        );
    }
    assert_eq!(content(&d, &out[0]), "one");
    d.assert_no_panic();
}
