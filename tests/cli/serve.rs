//! `xs serve`: creates the store, announces itself with `xs.start`, owns its socket (mode 0600,
//! stale ones replaced, removed on exit), stops cleanly on SIGTERM, and refuses a locked store.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::Duration;

use crate::helper::{topics, wait_bounded, xs, Daemon, LiveCli};

#[test]
fn serve_creates_a_missing_store_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("deep").join("nested").join("store");
    assert!(!store.exists());
    let d = Daemon::start_on(tmp, store.clone());
    assert!(store.is_dir());
    assert!(d.sock().exists());
}

#[test]
fn serve_appends_xs_start_with_its_version() {
    let d = Daemon::start();
    let frames = d.frames();
    assert_eq!(topics(&frames), ["xs.start"]);
    let start = &frames[0];
    assert_eq!(start["meta"]["version"], xs::VERSION);
    assert_eq!(start["meta"]["expose"], serde_json::Value::Null);
    assert_eq!(start["hash"], serde_json::Value::Null);
    assert_eq!(start["ttl"], "forever");
}

#[test]
fn socket_is_owner_only() {
    let d = Daemon::start();
    let meta = std::fs::metadata(d.sock()).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
}

#[test]
fn sigterm_appends_xs_stopping_removes_the_socket_and_exits_0() {
    let mut d = Daemon::start();
    d.append("t", b"before");
    let status = d.stop();
    assert_eq!(status.code(), Some(0), "log:\n{}", d.log());
    assert!(!d.sock().exists(), "the socket is removed on exit");

    d.restart();
    assert_eq!(
        topics(&d.frames()),
        ["xs.start", "t", "xs.stopping", "xs.start"],
        "xs.stopping is the last frame of the first run"
    );
}

#[test]
fn stale_socket_or_file_is_replaced() {
    for dead_socket in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let store = tmp.path().join("store");
        std::fs::create_dir(&store).unwrap();
        let sock = store.join("sock");
        if dead_socket {
            // Bound, then closed: the file stays but nobody listens.
            drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
        } else {
            std::fs::write(&sock, b"not a socket").unwrap();
        }
        assert!(sock.exists());
        let d = Daemon::start_on(tmp, store);
        assert!(std::fs::metadata(d.sock()).unwrap().file_type().is_socket());
        assert_eq!(topics(&d.frames()), ["xs.start"]);
    }
}

/// A storage failure (here the store's directory vanishes) ends in a clear log line and an
/// exit within a few seconds, whether or not the daemon is also told to stop.
#[test]
fn a_vanished_store_directory_stops_the_daemon() {
    for sigterm in [false, true] {
        let mut d = Daemon::start();
        d.append("t", b"before");
        std::fs::remove_dir_all(&d.store).unwrap();
        if sigterm {
            let sent = std::process::Command::new("kill")
                .args(["-TERM", &d.pid().to_string()])
                .status()
                .unwrap();
            assert!(sent.success());
        }
        let status = d.wait_exit(Duration::from_secs(10));
        let log = d.log();
        assert_ne!(status.code(), Some(0), "sigterm {sigterm}, log:\n{log}");
        assert!(
            log.contains("vanished") || log.contains("did not close"),
            "sigterm {sigterm}, log:\n{log}"
        );
    }
}

#[test]
fn second_serve_on_the_same_store_fails_saying_locked() {
    let d = Daemon::start();
    let out = xs(&["serve", d.addr()], b"");
    assert_eq!(out.code, Some(1), "stderr: {}", out.stderr);
    assert!(out.stderr.contains("locked"), "stderr: {}", out.stderr);
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("xs: "), "stderr: {}", out.stderr);
    // The first daemon is untouched.
    assert!(d.sock().exists());
    assert_eq!(topics(&d.frames()), ["xs.start"]);
}

#[test]
fn followers_get_xs_stopping_and_exit_0_when_the_daemon_stops() {
    let mut d = Daemon::start();
    let follower = LiveCli::spawn(&["cat", d.addr(), "-f"]);
    // History (xs.start), then the threshold: from here on the follower is live.
    assert_eq!(follower.next_json()["topic"], "xs.start");
    assert_eq!(follower.next_json()["topic"], "xs.threshold");
    let status = d.stop();
    assert_eq!(status.code(), Some(0), "log:\n{}", d.log());
    assert_eq!(follower.next_json()["topic"], "xs.stopping");
    let mut child = follower;
    let exit = wait_bounded(&mut child.child, Duration::from_secs(10), "xs cat -f");
    assert_eq!(exit.code(), Some(0), "the follow stream ends cleanly");
}

#[test]
fn fsync_interval_and_never_survive_a_process_crash() {
    for mode in ["interval:50", "never", "always"] {
        let mut d = Daemon::start_with(&["--fsync", mode, "--ttl-sweep", "200ms"]);
        let a = d.append("durable", b"kept");
        d.kill9();
        d.restart();
        let after = d.read("topic=durable");
        assert_eq!(after.len(), 1, "--fsync {mode}");
        assert_eq!(after[0]["id"], a["id"]);
        // And a clean stop.
        d.append("durable", b"two");
        assert!(d.stop().success());
        d.restart();
        assert_eq!(d.read("topic=durable").len(), 2, "--fsync {mode}");
    }
}

#[test]
fn fsync_and_ttl_sweep_refuse_bad_values() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("s");
    for args in [
        ["--fsync", "sometimes"],
        ["--fsync", "interval:0"],
        ["--ttl-sweep", "soon"],
    ] {
        let out = xs(
            &[&["serve", store.to_str().unwrap()][..], &args].concat(),
            b"",
        );
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(args[0]), "{}", out.stderr);
    }
}
