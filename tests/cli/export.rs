//! `xs export` / `xs restore` through the real binary: a round trip, and a corrupt archive.

use serde_json::json;

use crate::helper::{ids, random_bytes, Daemon};

#[test]
fn export_then_restore_into_a_fresh_store() {
    let src = Daemon::start();
    let big = random_bytes(100_000, 3);
    src.append("a", b"small");
    src.append("b", &big);
    src.append("a", b"");
    let dump = src.xs("export", &[], b"").ok().stdout;
    assert!(dump.starts_with(b"xs-export 1\n"));

    let dst = Daemon::start();
    let start = dst.frames();
    let summary = dst.xs("restore", &[], &dump).ok().json();
    assert_eq!(
        summary,
        json!({"frames": 4, "contents": 2, "bytes": 5 + 100_000})
    );
    let mut want = start.clone();
    want.extend(src.frames());
    want.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    assert_eq!(ids(&dst.frames()), ids(&want));

    let only_a = src.xs("export", &["-T", "a"], b"").ok().stdout;
    let dst2 = Daemon::start();
    let summary = dst2.xs("restore", &[], &only_a).ok().json();
    assert_eq!(summary, json!({"frames": 2, "contents": 1, "bytes": 5}));
}

#[test]
fn restore_of_a_corrupt_archive_fails_with_one_line() {
    let src = Daemon::start();
    src.append("a", &random_bytes(30_000, 9));
    let mut dump = src.xs("export", &[], b"").ok().stdout;
    let n = dump.len();
    dump[n / 2] ^= 0x01;
    let dst = Daemon::start();
    let e = dst.xs("restore", &[], &dump).error();
    assert!(e.contains("does not match its hash"), "{e}");
    let e = dst.xs("restore", &[], &dump[..n / 3]).error();
    assert!(e.contains("ends early"), "{e}");
}
