//! `GET /topics`: per-topic frame count, first and last id from the writer's index, kept
//! right across appends, removes, `last:n` trimming, time expiry, import and restarts.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helper::{poll_until, Daemon};

fn topics(d: &Daemon, query: &str) -> Vec<Value> {
    let r = d.get(&format!("/topics{query}"));
    assert_eq!(r.status, 200, "GET /topics{query}: {}", r.text());
    r.ndjson()
}

fn entry(topic: &str, count: u64, first: &Value, last: &Value) -> Value {
    json!({"topic": topic, "count": count, "first": first["id"], "last": last["id"]})
}

/// The entry for `topic`, if listed.
fn find(list: &[Value], topic: &str) -> Option<Value> {
    list.iter().find(|t| t["topic"] == topic).cloned()
}

#[test]
fn counts_follow_appends_removes_trims_expiry_import_and_restarts() {
    let mut d = Daemon::start();
    let ab1 = d.append("a.b", b"1");
    let _ab2 = d.append("a.b", b"2");
    let ab3 = d.append("a.b", b"3");
    let ac = d.append("a.c.d", b"4");
    let a = d.append("a", b"5");
    let x = d.append("x", b"6");

    let all = topics(&d, "");
    let names: Vec<&str> = all.iter().map(|t| t["topic"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["a", "a.b", "a.c.d", "x", "xs.start"],
        "sorted by topic"
    );
    assert_eq!(find(&all, "a.b").unwrap(), entry("a.b", 3, &ab1, &ab3));

    assert_eq!(
        topics(&d, "?prefix=a"),
        [
            entry("a", 1, &a, &a),
            entry("a.b", 3, &ab1, &ab3),
            entry("a.c.d", 1, &ac, &ac)
        ]
    );
    assert_eq!(
        topics(&d, "?prefix=a&children=true"),
        [entry("a.b", 3, &ab1, &ab3), entry("a.c", 1, &ac, &ac)]
    );
    let top = topics(&d, "?children=true");
    assert_eq!(find(&top, "a").unwrap(), entry("a", 5, &ab1, &a));
    assert_eq!(find(&top, "x").unwrap(), entry("x", 1, &x, &x));

    // Removing the first (then the last) frame moves first (then last).
    let rm = |id: &Value| {
        let r = d.http("DELETE", &format!("/{}", id.as_str().unwrap()), &[], b"");
        assert_eq!(r.status, 204);
    };
    rm(&ab1["id"]);
    let ab = find(&topics(&d, "?prefix=a.b"), "a.b").unwrap();
    assert_eq!((ab["count"].as_u64(), &ab["last"]), (Some(2), &ab3["id"]));
    rm(&ab3["id"]);
    let ab = find(&topics(&d, "?prefix=a.b"), "a.b").unwrap();
    assert_eq!(ab, entry("a.b", 1, &_ab2, &_ab2));
    rm(&x["id"]);
    assert!(
        find(&topics(&d, ""), "x").is_none(),
        "an empty topic is not listed"
    );

    // last:n trimming.
    let mut trimmed = Vec::new();
    for i in 0..5 {
        let r = d.http(
            "POST",
            "/append/trim?ttl=last:2",
            &[],
            format!("{i}").as_bytes(),
        );
        assert_eq!(r.status, 200);
        trimmed.push(r.json());
    }
    assert_eq!(
        find(&topics(&d, ""), "trim").unwrap(),
        entry("trim", 2, &trimmed[3], &trimmed[4])
    );

    // Time expiry: counted until the sweep removes it, then gone.
    let r = d.http("POST", "/append/brief?ttl=time:50", &[], b"x");
    assert_eq!(r.status, 200);
    poll_until(
        Duration::from_secs(10),
        "the sweep to drop topic brief",
        || find(&topics(&d, ""), "brief").is_none().then_some(()),
    );

    // Import, including a re-import that moves a frame to another topic.
    let id = "03hadbm3pd0va6i6c63lxxwa8";
    let f = json!({"topic": "imp.one", "id": id, "hash": null, "meta": null, "ttl": "forever"});
    assert_eq!(
        d.http("POST", "/import", &[], f.to_string().as_bytes())
            .status,
        200
    );
    assert_eq!(find(&topics(&d, ""), "imp.one").unwrap()["count"], 1);
    assert_eq!(
        d.http("POST", "/import", &[], f.to_string().as_bytes())
            .status,
        200
    );
    assert_eq!(
        find(&topics(&d, ""), "imp.one").unwrap()["count"],
        1,
        "re-import"
    );
    let moved = json!({"topic": "imp.two", "id": id, "ttl": "forever"});
    assert_eq!(
        d.http("POST", "/import", &[], moved.to_string().as_bytes())
            .status,
        200
    );
    let list = topics(&d, "?prefix=imp");
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["topic"], "imp.two");

    // Restarts, clean and not.
    let before: Vec<Value> = topics(&d, "")
        .into_iter()
        .filter(|t| !t["topic"].as_str().unwrap().starts_with("xs."))
        .collect();
    d.kill9();
    d.restart();
    d.stop();
    d.restart();
    let after: Vec<Value> = topics(&d, "")
        .into_iter()
        .filter(|t| !t["topic"].as_str().unwrap().starts_with("xs."))
        .collect();
    assert_eq!(before, after);
    let xs_start = find(&topics(&d, ""), "xs.start").unwrap();
    assert_eq!(xs_start["count"], 3, "one xs.start per start");

    d.get("/topics?prefix=bad..name").assert_error(400);
    d.get("/topics?nope=1").assert_error(400);
    d.assert_no_panic();
}
