//! The CLI's error contract: one `xs: <message>` line on stderr, nothing on stdout, exit 1,
//! whether the mistake is caught by the client or answered by the daemon.

use crate::helper::{sri, xs, Daemon};

#[test]
fn errors_are_one_xs_line_on_stderr_with_exit_1() {
    let d = Daemon::start();
    let unknown_id = scru128::new().to_string();
    let unknown_hash = sri(b"never stored");
    let cases: Vec<(Vec<&str>, &[u8], &str)> = vec![
        (vec!["append", d.addr(), "1bad"], b"x", "topic"),
        (vec!["append", d.addr(), "t", "--ttl", "soon"], b"x", "ttl"),
        (
            vec!["append", d.addr(), "t", "--meta", "{nope"],
            b"x",
            "meta",
        ),
        (vec!["get", d.addr(), "not-an-id"], b"", "id"),
        (vec!["get", d.addr(), &unknown_id], b"", &unknown_id),
        (vec!["remove", d.addr(), &unknown_id], b"", &unknown_id),
        (vec!["cas", d.addr(), &unknown_hash], b"", "hash"),
        (vec!["cas", d.addr(), "garbage"], b"", "hash"),
        (vec!["cas-post", d.addr()], b"", "empty"),
        (vec!["cat", d.addr(), "-T", "a b"], b"", "a b"),
        (vec!["last", d.addr(), "nothing"], b"", "no frames"),
        (
            vec!["version", "https://localhost:1"],
            b"",
            "no xs daemon at https://localhost:1",
        ),
        (
            vec!["version", "http://localhost:1"],
            b"",
            "no xs daemon at localhost:1",
        ),
        (vec!["scru128", "unpack", "zzz"], b"", "zzz"),
        (vec!["scru128", "pack"], b"{}", "ts_ms"),
    ];
    for (args, stdin, expect) in cases {
        let out = xs(&args, stdin);
        let msg = out.error();
        assert!(
            msg.to_lowercase().contains(&expect.to_lowercase()),
            "xs {}: {msg:?} should mention {expect:?}",
            args.join(" ")
        );
    }
    d.assert_healthy_and_empty();
}

#[test]
fn no_daemon_is_one_line_that_says_how_to_start_one() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    std::fs::create_dir(&store).unwrap();
    let store = store.to_str().unwrap();
    for args in [
        vec!["cat", store],
        vec!["append", store, "t"],
        vec!["version", store],
    ] {
        let msg = xs(&args, b"").error();
        assert!(msg.contains("xs serve"), "{msg}");
    }
}

#[test]
fn import_of_a_bad_frame_reports_the_daemons_message() {
    let d = Daemon::start();
    let out = d.xs("import", &[], b"{\"topic\":\"x\"}\n");
    let msg = out.error();
    assert!(msg.contains("line 1"), "{msg}");
    d.assert_healthy_and_empty();
}
