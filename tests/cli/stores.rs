//! One daemon, many stores: `xs store add/remove` and `xs stores` through the control stream,
//! each mounted store a full store on its own socket, failing alone, back after a restart.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helper::{poll_until, request, topics, xs, Daemon, LiveCli};

fn s(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// `xs stores` as rows, by name.
fn stores(d: &Daemon) -> Vec<Value> {
    d.xs("stores", &[], b"").ok().ndjson()
}

fn row(d: &Daemon, name: &str) -> Value {
    stores(d)
        .into_iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no store {name} in xs stores"))
}

/// `POST /append/{topic}` over `sock`; asserts 200.
fn append(sock: &Path, topic: &str, body: &[u8]) -> Value {
    let r = request(sock, "POST", &format!("/append/{topic}"), &[], body).expect("append");
    assert_eq!(
        r.status,
        200,
        "append to {topic} on {}: {}",
        sock.display(),
        r.text()
    );
    r.json()
}

fn read(sock: &Path, query: &str) -> Vec<Value> {
    let r = request(sock, "GET", &format!("/?{query}"), &[], b"").expect("read");
    assert_eq!(r.status, 200, "read on {}: {}", sock.display(), r.text());
    r.ndjson()
}

fn add(d: &Daemon, name: &str, path: &Path) -> Value {
    xs(&["store", "add", d.addr(), name, s(path)], b"")
        .ok()
        .json()
}

/// `xs store add` refused: its report (exit code 1).
fn add_refused(d: &Daemon, name: &str, path: &Path, more: &[&str]) -> String {
    let mut args = vec!["store", "add", d.addr(), name, s(path)];
    args.extend_from_slice(more);
    xs(&args, b"").report()
}

/// The `state` of `xs stores`' row `name`, once that row says `state` (the rows are rebuilt
/// as the daemon replays its control stream).
fn wait_state(d: &Daemon, name: &str, state: &str) -> Value {
    poll_until(Duration::from_secs(10), &format!("{name} {state}"), || {
        stores(d)
            .into_iter()
            .find(|r| r["name"] == name && r["state"] == state)
    })
}

#[test]
fn stores_two_mounted_each_full_and_independent_then_removed_and_restarted() {
    let mut d = Daemon::start();
    let (a, b) = (d.dir().join("a"), d.dir().join("b"));
    let answer = add(&d, "a", &a);
    assert_eq!(answer["topic"], "xs.store.a.active");
    assert_eq!(add(&d, "b", &b)["topic"], "xs.store.b.active");
    // `active` means the socket answers.
    let (sa, sb) = (a.join("sock"), b.join("sock"));
    for sock in [&sa, &sb] {
        assert_eq!(read(sock, "topic=xs.start").len(), 1);
    }

    // Append and follow through each socket, each store seeing only its own frames.
    // Only the live part: the history topic matches nothing yet, then the threshold says the
    // follower is live (no wait by the clock).
    let follow_a = LiveCli::spawn(&["cat", s(&a), "-f", "-T", "note"]);
    let follow_b = LiveCli::spawn(&["cat", s(&b), "-f", "-T", "note"]);
    for f in [&follow_a, &follow_b] {
        assert_eq!(f.next_json()["topic"], "xs.threshold");
    }
    append(&sa, "note", b"to a");
    xs(&["append", s(&b), "note"], b"to b").ok();
    assert_eq!(follow_a.next_json()["topic"], "note");
    assert_eq!(follow_b.next_json()["topic"], "note");
    let in_a = read(&sa, "topic=note");
    let in_b = read(&sb, "topic=note");
    assert_eq!((in_a.len(), in_b.len()), (1, 1));
    assert_ne!(in_a[0]["id"], in_b[0]["id"]);
    assert!(
        !topics(&d.frames()).contains(&"note".to_string()),
        "the control store got a mounted store's frame"
    );

    // Processors are per store: a webhook in a is not in b (nor in the control store).
    append(
        &sa,
        "xs.webhook.w.create",
        br#"{"url":"http://127.0.0.1:9/"}"#,
    );
    let ps_a = poll_until(Duration::from_secs(10), "a's webhook", || {
        let r = request(&sa, "GET", "/ps", &[], b"").ok()?;
        let rows = r.ndjson();
        (!rows.is_empty()).then_some(rows)
    });
    assert_eq!(ps_a[0]["kind"], "webhook");
    let ps_b = request(&sb, "GET", "/ps", &[], b"").expect("ps").ndjson();
    assert!(ps_b.is_empty(), "b has a's processor: {ps_b:?}");
    let ra = row(&d, "a");
    assert_eq!(ra["state"], "active");
    assert_eq!(ra["path"], s(&a));
    assert_eq!(ra["socket"], s(&sa));
    assert!(ra["frames"].as_u64().unwrap() >= 3, "{ra}");
    assert_eq!(ra["processors"][0]["name"], "w");
    // Metrics on each store's own socket, labelled with it.
    let m = request(&sb, "GET", "/metrics", &[], b"")
        .expect("metrics")
        .text();
    assert!(m.contains(&format!("store=\"{}\"", s(&b))), "{m}");

    // Remove a: its socket goes, its data stays; b goes on.
    let e = xs(&["store", "remove", d.addr(), "nosuch"], b"").error();
    assert!(e.contains("no store named nosuch"), "{e}");
    assert!(d.read("topic=xs.store.nosuch.*").is_empty());
    xs(&["store", "remove", d.addr(), "a"], b"").ok();
    assert!(!sa.exists(), "a's socket is still there");
    assert!(a.join("fjall").is_dir(), "a's data is gone");
    assert_eq!(row(&d, "a")["state"], "terminated");
    append(&sb, "note", b"still here");
    drop((follow_a, follow_b));

    // A restart mounts b again, not a; a can then be served on its own.
    assert!(d.stop().success());
    assert!(!sb.exists(), "b's socket outlived the daemon");
    d.restart();
    let stopped = d.read("topic=xs.store.b.stopped");
    assert_eq!(stopped.len(), 1, "b was not answered stopped");
    poll_until(Duration::from_secs(10), "b mounted again", || {
        (row(&d, "b")["state"] == "active").then_some(())
    });
    assert_eq!(read(&sb, "topic=note").len(), 2);
    assert!(!sa.exists(), "a came back after its removal");
    let mut alone = Daemon::start_on(tempfile::tempdir().unwrap(), a.clone());
    assert_eq!(alone.read("topic=note").len(), 1);
    assert!(alone.stop().success());
    d.assert_no_panic();
}

#[test]
fn stores_unusable_paths_and_locked_stores_are_answered_invalid() {
    let d = Daemon::start();
    let file = d.dir().join("file");
    std::fs::write(&file, b"x").unwrap();
    let junk = d.dir().join("junk");
    std::fs::create_dir_all(&junk).unwrap();
    std::fs::write(junk.join("notes.txt"), b"x").unwrap();
    let other = Daemon::start();
    let cases: [(&str, PathBuf, &str); 4] = [
        ("f", file.clone(), "path unusable"),
        ("under", file.join("sub"), "path unusable"),
        ("junk", junk, "not a store"),
        ("taken", other.store.clone(), "locked by another daemon"),
    ];
    for (name, path, why) in cases {
        let out = xs(&["store", "add", d.addr(), name, s(&path)], b"");
        let report = out.report();
        assert!(report.contains(why), "{name}: {report}");
        let r = row(&d, name);
        assert_eq!(r["state"], "invalid");
        assert!(r["last_error"].as_str().unwrap().contains(why), "{r}");
        let answered = d.read(&format!("topic=xs.store.{name}.invalid"));
        assert_eq!(answered.len(), 1);
    }
    // The other daemon's store is untouched and still served by it.
    assert_eq!(other.get("/version").status, 200);
    d.assert_no_panic();
}

#[test]
fn stores_a_vanished_directory_fails_alone_and_stays_failed_after_a_restart() {
    let mut d = Daemon::start();
    let (gone, kept) = (d.dir().join("gone"), d.dir().join("kept"));
    add(&d, "gone", &gone);
    add(&d, "kept", &kept);
    std::fs::remove_dir_all(&gone).unwrap();
    let fin = poll_until(
        Duration::from_secs(10),
        "fin.error for the vanished store",
        || d.read("topic=xs.store.gone.fin.error").pop(),
    );
    assert!(
        fin["meta"]["error"]
            .as_str()
            .unwrap()
            .contains("storage failed"),
        "{fin}"
    );
    assert_eq!(row(&d, "gone")["state"], "failed");
    assert_eq!(row(&d, "kept")["state"], "active");
    append(&kept.join("sock"), "note", b"fine");
    assert_eq!(d.get("/version").status, 200);
    d.append("note", b"control fine");

    // After a restart it is still listed as failed, with its error, and not mounted again.
    assert!(d.stop().success());
    d.restart();
    wait_state(&d, "kept", "active");
    let r = row(&d, "gone");
    assert_eq!(r["state"], "failed", "{r}");
    assert!(
        r["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("storage failed")),
        "{r}"
    );
    assert!(!gone.exists(), "the vanished store was created again");
    d.assert_no_panic();
}

/// A restart mounts again the stores that were active, and only those: creates answered
/// `invalid` (a path already mounted under another name, a store another daemon held) stay
/// invalid even once their reason is gone, are not answered again, and do not knock the
/// active store out by racing it for its lock.
#[test]
fn stores_a_restart_mounts_only_the_stores_that_were_active() {
    let mut d = Daemon::start();
    let a = d.dir().join("a");
    assert_eq!(add(&d, "a", &a)["topic"], "xs.store.a.active");
    let report = add_refused(&d, "dup", &a, &[]);
    assert!(report.contains("already mounted as a"), "{report}");
    let mut other = Daemon::start();
    let report = add_refused(&d, "lk", &other.store, &[]);
    assert!(report.contains("locked by another daemon"), "{report}");
    assert!(other.stop().success());
    for _ in 0..2 {
        assert!(d.stop().success());
        d.restart();
        wait_state(&d, "a", "active");
        for (name, why) in [
            ("dup", "already mounted as a"),
            ("lk", "locked by another daemon"),
        ] {
            let r = row(&d, name);
            assert_eq!(r["state"], "invalid", "{r}");
            assert!(r["last_error"].as_str().unwrap().contains(why), "{r}");
            assert_eq!(d.read(&format!("topic=xs.store.{name}.invalid")).len(), 1);
            assert!(d.read(&format!("topic=xs.store.{name}.active")).is_empty());
        }
        append(&a.join("sock"), "note", b"a is served");
    }
    assert!(d.read("topic=xs.store.a.fin.error").is_empty());
    // The other daemon's store was left alone: it is served on its own again.
    other.restart();
    assert_eq!(other.get("/version").status, 200);
    d.assert_no_panic();
}

/// `xs store add` answers at once when the store cannot come up: a directory that cannot be
/// created, a NATS cluster that cannot be reached. Such a create never became active: it is
/// answered `invalid` with the reason (not `fin.error`), exit code 1.
#[test]
fn stores_add_that_cannot_come_up_is_answered_invalid_at_once() {
    let d = Daemon::start();
    let t0 = Instant::now();
    let report = add_refused(&d, "bad", Path::new("/proc/nope/x"), &[]);
    assert!(
        report.contains("store bad is invalid")
            && report.contains("path unusable")
            && report.contains("/proc/nope/x"),
        "{report}"
    );
    let far = d.dir().join("far");
    let report = add_refused(&d, "far", &far, &["--nats", "nats://127.0.0.1:1"]);
    assert!(
        report.contains("store far is invalid") && report.contains("127.0.0.1:1"),
        "{report}"
    );
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
    for name in ["bad", "far"] {
        assert_eq!(row(&d, name)["state"], "invalid");
        assert_eq!(d.read(&format!("topic=xs.store.{name}.invalid")).len(), 1);
        assert!(d
            .read(&format!("topic=xs.store.{name}.fin.error"))
            .is_empty());
    }
    d.assert_no_panic();
}

/// A store's create appended to a mounted store is answered `invalid`: stores are added
/// through the control store. Served on its own later, that store is a control store, and the
/// create stays invalid (not mounted).
#[test]
fn stores_a_create_on_a_mounted_store_is_answered_invalid_and_never_mounted() {
    let d = Daemon::start();
    let m = d.dir().join("m");
    add(&d, "m", &m);
    let x = d.dir().join("x");
    let report = xs(&["store", "add", s(&m), "x", s(&x)], b"").report();
    assert!(
        report.contains("stores are added through the control store")
            && report.contains(s(&d.store)),
        "{report}"
    );
    assert!(!x.exists(), "a mounted store mounted a store");
    xs(&["store", "remove", d.addr(), "m"], b"").ok();
    let mut alone = Daemon::start_on(tempfile::tempdir().unwrap(), m.clone());
    let r = wait_state(&alone, "x", "invalid");
    assert!(
        r["last_error"]
            .as_str()
            .unwrap()
            .contains("added through the control store"),
        "{r}"
    );
    assert!(
        !x.exists(),
        "served on its own, it mounted the refused store"
    );
    assert_eq!(alone.read("topic=xs.store.x.invalid").len(), 1);
    // Served on its own, it is a control store: a create there mounts.
    let y = alone.dir().join("y");
    assert_eq!(add(&alone, "y", &y)["topic"], "xs.store.y.active");
    assert!(alone.stop().success());
    alone.assert_no_panic();
    d.assert_no_panic();
}

/// A store's `lock` file says who holds it (pid, and for a mount its name and control store),
/// and so do the errors of whoever finds it locked: `xs serve PATH`, `xs store add`.
#[test]
fn stores_the_lock_says_who_holds_it() {
    let d = Daemon::start();
    let a = d.dir().join("a");
    add(&d, "a", &a);
    let held = format!(
        "pid {}: mounted as a by the xs serve of control store {}",
        d.pid(),
        s(&d.store)
    );
    let note = std::fs::read_to_string(a.join("lock")).unwrap();
    assert_eq!(note.trim(), held);
    let out = xs(&["serve", s(&a)], b"");
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stderr.contains(&held), "{}", out.stderr);

    let other = Daemon::start();
    let held = format!("pid {}: xs serve {}", other.pid(), s(&other.store));
    let note = std::fs::read_to_string(other.store.join("lock")).unwrap();
    assert_eq!(note.trim(), held);
    let out = xs(&["serve", s(&other.store)], b"");
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stderr.contains(&held), "{}", out.stderr);
    let report = add_refused(&d, "lk", &other.store, &[]);
    assert!(
        report.contains("locked by another daemon") && report.contains(&held),
        "{report}"
    );
    // Both are still served by their holders.
    append(&a.join("sock"), "note", b"a");
    other.append("note", b"other");
    d.assert_no_panic();
}

#[test]
fn stores_a_hundred_mounted_all_answer() {
    let mut d = Daemon::start();
    let t0 = Instant::now();
    let paths: Vec<PathBuf> = (0..100).map(|i| d.dir().join(format!("s{i}"))).collect();
    for (i, p) in paths.iter().enumerate() {
        let config = serde_json::json!({ "path": p }).to_string();
        d.append(&format!("xs.store.s{i}.create"), config.as_bytes());
    }
    poll_until(Duration::from_secs(60), "100 stores active", || {
        let active = d
            .read("topic=xs.store.*")
            .iter()
            .filter(|f| f["topic"].as_str().unwrap().ends_with(".active"))
            .count();
        (active == 100).then_some(())
    });
    let mounted = t0.elapsed();
    for p in &paths {
        let sock = p.join("sock");
        let f = append(&sock, "note", b"hi");
        let got = read(&sock, "topic=note");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["id"], f["id"]);
    }
    assert_eq!(stores(&d).len(), 100);
    let t1 = Instant::now();
    assert!(d.stop().success());
    let stopped = t1.elapsed();
    eprintln!("100 stores: mounted in {mounted:?}, stopped in {stopped:?}");
    assert!(
        stopped < Duration::from_secs(8),
        "stopping took {stopped:?}"
    );
    d.restart();
    let t2 = Instant::now();
    poll_until(Duration::from_secs(60), "100 stores mounted again", || {
        let rows = stores(&d);
        (rows.iter().filter(|r| r["state"] == "active").count() == 100).then_some(())
    });
    eprintln!("100 stores: mounted again in {:?}", t2.elapsed());
    assert_eq!(
        d.read("topic=xs.store.*")
            .iter()
            .filter(|f| f["topic"].as_str().unwrap().ends_with(".stopped"))
            .count(),
        100
    );
    d.assert_no_panic();
}

/// One TCP listener serves every mounted store under `/stores/NAME/...`, with the same token
/// and the same access rules; an unknown name is a 404 naming the mounted ones.
#[test]
fn stores_are_served_under_their_name_on_the_exposed_listener() {
    let d = Daemon::start_with(&["--expose", "127.0.0.1:0", "--console", "127.0.0.1:0"]);
    let a = d.dir().join("a");
    assert_eq!(add(&d, "a", &a)["topic"], "xs.store.a.active");
    let addr = d.expose_addr();
    let auth = format!("Bearer {}", d.token());
    let tcp = |method: &str, path: &str, body: &[u8], token: bool| {
        let headers: Vec<(&str, &str)> = if token {
            vec![("authorization", auth.as_str())]
        } else {
            vec![]
        };
        crate::helper::http::tcp_request(&addr, method, path, &headers, body).expect("request")
    };
    let r = tcp("POST", "/stores/a/append/via.tcp", b"hello", true);
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    // It went to store a (its own socket sees it), not to the control store.
    assert!(read(&a.join("sock"), "topic=via.tcp")
        .iter()
        .any(|f| f["id"] == id.as_str()));
    assert!(d.read("topic=via.tcp").is_empty());
    let frames = tcp("GET", "/stores/a/?topic=via.tcp", b"", true).ndjson();
    assert_eq!(topics(&frames), ["via.tcp"]);
    let got = tcp("GET", &format!("/stores/a/{id}"), b"", true);
    assert_eq!(got.json()["id"], id.as_str());
    // The token is needed there as everywhere on TCP; an unknown store is a clear 404.
    assert_eq!(tcp("GET", "/stores/a/", b"", false).status, 401);
    let e = tcp("GET", "/stores/nope/", b"", true).assert_error(404);
    assert!(e.contains("mounted: a"), "{e}");
    // The console reads the same way (its store picker switches to /api/stores/NAME/).
    let console = d.console_addr();
    let headers = [("authorization", auth.as_str())];
    let r =
        crate::helper::http::tcp_request(&console, "GET", "/api/stores/a/topics", &headers, b"")
            .expect("console request");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.ndjson().iter().any(|t| t["topic"] == "via.tcp"));
}
