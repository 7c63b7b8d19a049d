//! Generators (a file tailed into frames, duplex, restart with back-off, no orphan processes
//! after terminate or daemon stop), actions (call → response / error, concurrently, via the
//! CLI), and modules from the stream.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::helper::{poll_until, xs, Daemon};
use crate::nu::handlers::{content, create, on, wait_for};

/// Whether a process with this pid is still alive (and not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"))
}

/// Pids of processes whose command line contains `needle`.
fn pids_with(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd)
            .replace('\0', " ")
            .contains(needle)
            && alive(pid)
        {
            out.push(pid);
        }
    }
    out
}

#[test]
fn tails_a_file_and_kills_its_processes_on_terminate() {
    let d = Daemon::start();
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("app.log");
    std::fs::write(&log, "one\ntwo\n").unwrap();
    let script = format!(r#"{{ run: {{|| ^tail -n +1 -F {} }} }}"#, log.display());
    let active = create(&d, "generator", "tail", &script);
    assert_eq!(active["topic"], "xs.generator.tail.active", "{active}");
    let got = wait_for(&d, "tail.recv", 2);
    assert_eq!(content(&d, &got[0]), "one");
    assert_eq!(content(&d, &got[1]), "two");
    assert_eq!(got[0]["meta"]["source_id"], active["meta"]["create_id"]);
    // Appended, not rewritten: a rewrite truncates the file and `tail -F` may then re-read it
    // from the start.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .and_then(|mut f| f.write_all(b"three\n"))
        .unwrap();
    let got = wait_for(&d, "tail.recv", 3);
    assert_eq!(content(&d, &got[2]), "three");

    let needle = log.to_str().unwrap();
    assert!(!pids_with(needle).is_empty(), "tail runs");
    let out = xs(&["generator", "terminate", d.addr(), "tail"], b"").ok();
    assert_eq!(out.json()["topic"], "xs.generator.tail.term");
    poll_until(Duration::from_secs(10), "tail to be killed", || {
        pids_with(needle).is_empty().then_some(())
    });
    poll_until(Duration::from_secs(10), "fin.term", || {
        on(&d, "xs.generator.tail.fin.term").into_iter().next()
    });
    d.assert_no_panic();
}

#[test]
fn processes_die_with_the_daemon_and_the_generator_resumes() {
    let mut d = Daemon::start();
    let marker = format!("xs-gen-test-{}", std::process::id());
    // A shell whose child sleeps: the grandchild must die too (process group).
    let script = format!(r#"{{ run: {{|| ^sh -c 'echo up; sleep 1000 # {marker}' }} }}"#);
    create(&d, "generator", "sleeper", &script);
    wait_for(&d, "sleeper.recv", 1);
    poll_until(Duration::from_secs(10), "the sleeper", || {
        (!pids_with(&marker).is_empty()).then_some(())
    });
    assert!(d.stop().success());
    poll_until(Duration::from_secs(10), "no orphans", || {
        pids_with(&marker).is_empty().then_some(())
    });
    d.restart();
    assert_eq!(on(&d, "xs.generator.sleeper.stopped").len(), 1);
    // `stopped` does not stop it: it runs again after the restart.
    wait_for(&d, "sleeper.recv", 2);
    drop(d);
}

#[test]
fn restarts_after_its_pipeline_ends() {
    let d = Daemon::start();
    let started = Instant::now();
    create(&d, "generator", "once", r#"{ run: {|| "hello" } }"#);
    let got = wait_for(&d, "once.recv", 3);
    // Back-off 1 s then 2 s between runs.
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(content(&d, &got[0]), "hello");
    let ps = xs(&["ps", d.addr()], b"").ok().ndjson();
    let row = ps.iter().find(|r| r["name"] == "once").unwrap();
    assert_eq!(row["kind"], "generator");
}

#[test]
fn duplex_feeds_send_frames_to_the_pipeline() {
    let d = Daemon::start();
    let script = r#"{
        duplex: true
        run: {|| lines | each {|l| $l | str upcase } }
    }"#;
    create(&d, "generator", "up", script);
    d.append("up.send", b"hello");
    d.append("up.send", b"world\n");
    let got = wait_for(&d, "up.recv", 2);
    assert_eq!(content(&d, &got[0]), "HELLO");
    assert_eq!(content(&d, &got[1]), "WORLD");
}

#[test]
fn actions_answer_calls() {
    let d = Daemon::start();
    let script = r#"{
        run: {|frame|
            let input = $in
            if ($frame.meta.args?.fail? | default false) { error make {msg: "asked to fail"} }
            $"($input) x ($frame.meta.args.times)"
        }
    }"#;
    let active = create(&d, "action", "rep", script);
    assert_eq!(active["topic"], "xs.action.rep.active");
    let out = xs(
        &[
            "action",
            "call",
            d.addr(),
            "rep",
            "--args",
            r#"{"times": 3}"#,
        ],
        b"ab",
    )
    .ok();
    assert_eq!(out.stdout_str(), "ab x 3");
    let out = xs(
        &[
            "action",
            "call",
            d.addr(),
            "rep",
            "--args",
            r#"{"fail": true}"#,
        ],
        b"",
    );
    let report = out.report();
    assert!(report.contains("asked to fail"), "{report}");
    let resp = on(&d, "rep.response");
    assert_eq!(resp.len(), 1);
    let calls = on(&d, "rep.call");
    assert_eq!(resp[0]["meta"]["frame_id"], calls[0]["id"]);
    assert_eq!(resp[0]["meta"]["action_id"], active["meta"]["create_id"]);
    let err = on(&d, "rep.error");
    assert_eq!(err[0]["meta"]["frame_id"], calls[1]["id"]);

    // Calls run concurrently: 4 calls of 1 s each take well under 4 s.
    let slow = r#"{ run: {|frame| sleep 1sec; {done: $frame.id} } }"#;
    create(&d, "action", "slow", slow);
    let t = Instant::now();
    for _ in 0..4 {
        d.append("slow.call", b"");
    }
    let r = wait_for(&d, "slow.response", 4);
    assert!(
        t.elapsed() < Duration::from_millis(3500),
        "{:?}",
        t.elapsed()
    );
    assert!(r.iter().all(|f| f["meta"]["done"].is_string()));
    d.assert_no_panic();
}

#[test]
fn modules_as_of_create() {
    let d = Daemon::start();
    d.append("xs.module.greet", b"export def hi [n] { $\"hi ($n)\" }");
    d.append("xs.module.deep.util", b"export def twice [x] { $x * 2 }");
    let r = d.http(
        "POST",
        "/eval",
        &[],
        b"use greet; use deep/util; [(greet hi bob) (util twice 21)]",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), serde_json::json!(["hi bob", 42]));

    let script = r#"use greet
    { run: {|frame| greet hi $frame.topic } }"#;
    create(&d, "action", "g", script);
    // A newer version of the module does not change the action (it saw the old one).
    d.append("xs.module.greet", b"export def hi [n] { $\"hello ($n)\" }");
    d.append("g.call", b"");
    let resp = wait_for(&d, "g.response", 1);
    assert_eq!(content(&d, &resp[0]), "hi g.call");
    let r = d.http("POST", "/eval", &[], b"use greet; greet hi x");
    assert_eq!(r.text(), "hello x");
}
