//! `xs append --expect/--key`, `xs topics`, `xs remove --purge` and `xs gc` against a daemon.

use crate::helper::Daemon;

#[test]
fn append_expect_conflict_exits_3_and_key_is_idempotent() {
    let d = Daemon::start();
    let first = d
        .xs("append", &["acct", "--expect", "none"], b"open")
        .ok()
        .json();
    let id = first["id"].as_str().unwrap();
    let out = d.xs("append", &["acct", "--expect", "none"], b"again");
    assert_eq!(out.code, Some(3), "a conflict exits 3: {}", out.stderr);
    assert!(out.stdout.is_empty());
    assert!(
        out.stderr.starts_with("xs: ") && out.stderr.contains(id),
        "names the last id: {}",
        out.stderr
    );
    d.xs("append", &["acct", "--expect", id], b"next").ok();
    let bad = d.xs("append", &["acct", "--expect", "bogus"], b"");
    assert!(bad.error().contains("expect"));

    let a = d.xs("append", &["pay", "--key", "k1"], b"1").ok().json();
    let b = d.xs("append", &["pay", "--key", "k1"], b"1").ok().json();
    assert_eq!(a, b);
    assert_eq!(d.read("topic=pay").len(), 1);
}

#[test]
fn topics_purge_and_gc_commands() {
    let d = Daemon::start();
    let f = d.append("user.alice", b"MARKER-cli-purge");
    d.append("user.bob", b"b");
    d.append("user.bob", b"c");
    let list = d.xs("topics", &["user"], b"").ok().ndjson();
    let names: Vec<&str> = list.iter().map(|t| t["topic"].as_str().unwrap()).collect();
    assert_eq!(names, ["user.alice", "user.bob"]);
    assert_eq!(list[1]["count"], 2);
    let top = d.xs("topics", &["--children"], b"").ok().ndjson();
    let user = top
        .iter()
        .find(|t| t["topic"] == "user")
        .expect("user level");
    assert_eq!(user["count"], 3);

    let hash = f["hash"].as_str().unwrap();
    let id = f["id"].as_str().unwrap();
    d.xs("remove", &[id, "--purge"], b"").ok();
    assert_eq!(d.get(&format!("/cas/{hash}")).status, 404);

    d.xs("cas-post", &[], b"MARKER-unused").ok();
    let gc = d.xs("gc", &[], b"").ok().json();
    assert_eq!(gc, serde_json::json!({"blobs": 1, "bytes": 13}));
}
