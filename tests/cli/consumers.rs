//! `xs cat --consumer`, `xs ack`, `xs consumers` through the real binary.

use serde_json::Value;

use crate::helper::{ids, Daemon};

fn id(f: &Value) -> &str {
    f["id"].as_str().expect("a frame has an id")
}

#[test]
fn cat_as_a_consumer_resumes_after_acks_and_auto_acks() {
    let d = Daemon::start();
    let f: Vec<Value> = (0..4).map(|_| d.append("t", b"x")).collect();
    let cat = |extra: &[&str]| {
        let mut args = vec!["--consumer", "c", "-T", "t"];
        args.extend_from_slice(extra);
        d.xs("cat", &args, b"").ok().ndjson()
    };
    assert_eq!(ids(&cat(&[])), ids(&f));
    let out = d.xs("ack", &["c", id(&f[1])], b"").ok();
    assert!(out.stdout.is_empty());
    assert_eq!(ids(&cat(&[])), ids(&f[2..]));

    let list = d.xs("consumers", &[], b"").ok().ndjson();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["name"], "c");
    assert_eq!(list[0]["position"], f[1]["id"]);
    assert_eq!(list[0]["lag"], 2);

    // --ack-auto: what was printed is acknowledged.
    assert_eq!(ids(&cat(&["--ack-auto"])), ids(&f[2..]));
    crate::helper::poll_until(std::time::Duration::from_secs(5), "the auto-ack", || {
        let l = d.xs("consumers", &[], b"").ok().ndjson();
        (l.len() == 1 && l[0]["position"] == f[3]["id"]).then_some(())
    });
    assert!(cat(&[]).is_empty());

    // A new consumer with --start.
    let got = d
        .xs(
            "cat",
            &["--consumer", "n", "--start", id(&f[2]), "-T", "t"],
            b"",
        )
        .ok()
        .ndjson();
    assert_eq!(ids(&got), ids(&f[3..]));

    d.xs("consumers", &["--remove", "c"], b"").ok();
    assert_eq!(ids(&cat(&[])), ids(&f));
}

#[test]
fn consumer_errors_are_one_line() {
    let d = Daemon::start();
    let f = d.append("t", b"");
    let e = d.xs("ack", &["9bad", id(&f)], b"").error();
    assert!(e.contains("consumer name"), "{e}");
    let e = d.xs("ack", &["c", "nope"], b"").error();
    assert!(e.contains("invalid frame id"), "{e}");
    let e = d
        .xs("cat", &["--consumer", "c", "--start", "soon"], b"")
        .error();
    assert!(e.contains("invalid start"), "{e}");
    let e = d.xs("consumers", &["--remove", "zz"], b"").error();
    assert!(e.contains("no consumer"), "{e}");
}
