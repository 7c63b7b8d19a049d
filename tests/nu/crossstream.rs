//! cross.stream 0.14's words on the same engines: `xs.actor.*` runs as a handler and
//! `xs.service.*` as a generator, answered in the words and meta keys the user wrote
//! (`actor_id`, `source_id`, `update_id`, `service_id`); creates of unknown kinds are answered
//! `invalid`; the state parameter's default is the first state. Scripts as cross.stream's
//! docs write them.

use std::time::Duration;

use serde_json::Value;

use crate::helper::{poll_until, Daemon};
use crate::nu::handlers::{on, wait_for};

/// Appends `xs.<kind>.<name>.create` and waits for the answer pointing at it by `key`.
fn create_as(d: &Daemon, kind: &str, name: &str, key: &str, script: &str) -> (String, Value) {
    let created = d.append(&format!("xs.{kind}.{name}.create"), script.as_bytes());
    let id = created["id"].as_str().unwrap().to_string();
    let answer = poll_until(
        Duration::from_secs(20),
        &format!("{kind} {name} to answer"),
        || {
            d.read(&format!("topic=xs.{kind}.{name}.*"))
                .into_iter()
                .find(|f| {
                    f["meta"][key] == id.as_str()
                        && f["topic"]
                            .as_str()
                            .is_some_and(|t| t.ends_with(".active") || t.ends_with(".invalid"))
                })
        },
    );
    (id, answer)
}

// An actor as cross.stream's docs write one: the state parameter's default is the first
// state.
const COUNTER_ACTOR: &str = r#"{
  run: {|frame, state = {count: 0}|
    if $frame.topic != "count.me" { return {next: $state} }
    let state = $state | upsert count ($state.count + 1)
    {out: $state, next: $state}
  }
}"#;

#[test]
fn an_actor_answers_in_its_words_with_its_parameter_default() {
    let d = Daemon::start();
    let (id, active) = create_as(&d, "actor", "counter", "actor_id", COUNTER_ACTOR);
    assert_eq!(active["topic"], "xs.actor.counter.active", "{active}");
    assert!(active["meta"].get("create_id").is_none(), "{active}");
    d.append("count.me", b"");
    d.append("count.me", b"");
    let out = wait_for(&d, "counter.out", 2);
    let counts: Vec<i64> = out
        .iter()
        .map(|f| f["meta"]["count"].as_i64().unwrap())
        .collect();
    assert_eq!(counts, [1, 2]);
    let asks = on(&d, "count.me");
    assert_eq!(out[0]["meta"]["actor_id"], id.as_str());
    assert_eq!(out[0]["meta"]["frame_id"], asks[0]["id"]);
    assert!(out[0]["meta"].get("handler_id").is_none());

    // xs ps lists it as an actor.
    let ps = d.xs("ps", &[], b"").ok().ndjson();
    assert!(
        ps.iter()
            .any(|r| r["kind"] == "actor" && r["name"] == "counter" && r["state"] == "active"),
        "{ps:?}"
    );

    // Replaced: cross.stream's `frame_id` names the newer create.
    let (id2, _) = create_as(&d, "actor", "counter", "actor_id", COUNTER_ACTOR);
    let replaced = wait_for(&d, "xs.actor.counter.replaced", 1);
    assert_eq!(replaced[0]["meta"]["actor_id"], id.as_str());
    assert_eq!(replaced[0]["meta"]["frame_id"], id2.as_str());

    // Term: fin.term with actor_id.
    d.append("xs.actor.counter.term", b"");
    let fin = wait_for(&d, "xs.actor.counter.fin.term", 1);
    assert_eq!(fin[0]["meta"]["actor_id"], id2.as_str());

    // A broken actor: invalid, with actor_id and error.
    let (bad, invalid) = create_as(&d, "actor", "bad", "actor_id", "{run: {|| }");
    assert_eq!(invalid["topic"], "xs.actor.bad.invalid");
    assert_eq!(invalid["meta"]["actor_id"], bad.as_str());
    assert!(invalid["meta"]["error"].is_string(), "{invalid}");
    d.assert_no_panic();
}

#[test]
fn our_handler_also_takes_its_parameter_default() {
    let d = Daemon::start();
    let script = r#"{
      topics: "n"
      run: {|frame, sum = 10| let s = $sum + ($frame.meta.v? | default 1); {out: {sum: $s}, next: $s} }
    }"#;
    let (_, active) = create_as(&d, "handler", "sum", "create_id", script);
    assert_eq!(active["topic"], "xs.handler.sum.active", "{active}");
    d.append("n", b"");
    d.append("n", b"");
    let out = wait_for(&d, "sum.out", 2);
    let sums: Vec<i64> = out
        .iter()
        .map(|f| f["meta"]["sum"].as_i64().unwrap())
        .collect();
    assert_eq!(sums, [11, 12]);
    // `initial` wins over the default.
    let script = r#"{ initial: 100, topics: "m", run: {|frame, s = 10| {out: {s: ($s + 1)}, next: ($s + 1)} } }"#;
    create_as(&d, "handler", "init", "create_id", script);
    d.append("m", b"");
    let out = wait_for(&d, "init.out", 1);
    assert_eq!(out[0]["meta"]["s"], 101);
}

#[test]
fn a_service_answers_in_its_words() {
    let d = Daemon::start();
    let script = r#"{
  run: {|| .append ping.note --meta {n: 1}; "hello" }
}"#;
    let (id, active) = create_as(&d, "service", "greeter", "source_id", script);
    assert_eq!(active["topic"], "xs.service.greeter.active", "{active}");
    let recv = wait_for(&d, "greeter.recv", 1);
    assert_eq!(recv[0]["meta"]["source_id"], id.as_str());
    let note = wait_for(&d, "ping.note", 1);
    assert_eq!(note[0]["meta"]["service_id"], id.as_str(), "{}", note[0]);

    let ps = d.xs("ps", &[], b"").ok().ndjson();
    assert!(
        ps.iter()
            .any(|r| r["kind"] == "service" && r["name"] == "greeter"),
        "{ps:?}"
    );

    // Hot replace: replaced with update_id.
    let (id2, _) = create_as(&d, "service", "greeter", "source_id", script);
    let replaced = wait_for(&d, "xs.service.greeter.replaced", 1);
    assert_eq!(replaced[0]["meta"]["source_id"], id.as_str());
    assert_eq!(replaced[0]["meta"]["update_id"], id2.as_str());

    d.append("xs.service.greeter.term", b"");
    let fin = wait_for(&d, "xs.service.greeter.fin.term", 1);
    assert_eq!(fin[0]["meta"]["source_id"], id2.as_str());

    // A broken service: invalid with source_id and reason.
    let (bad, invalid) = create_as(&d, "service", "bad", "source_id", "{run: {|x| }}");
    assert_eq!(invalid["topic"], "xs.service.bad.invalid");
    assert_eq!(invalid["meta"]["source_id"], bad.as_str());
    assert!(invalid["meta"]["reason"].is_string(), "{invalid}");
    d.assert_no_panic();
}

#[test]
fn the_cli_speaks_both_vocabularies() {
    let d = Daemon::start();
    let dir = d.dir().to_path_buf();
    let cli = |verb: &str, args: &[&str], stdin: &[u8]| {
        let mut all = vec![args[0], d.addr()];
        all.extend_from_slice(&args[1..]);
        crate::helper::xs(&[&[verb][..], &all].concat(), stdin)
    };
    let actor = dir.join("actor.nu");
    std::fs::write(&actor, COUNTER_ACTOR).unwrap();
    let out = cli(
        "actor",
        &["register", "counter", actor.to_str().unwrap()],
        b"",
    )
    .ok()
    .json();
    assert_eq!(out["topic"], "xs.actor.counter.active", "{out}");
    let bad = cli("actor", &["register", "bad", "-"], b"{run: {|| }");
    assert!(
        bad.report().contains("actor bad is invalid"),
        "{}",
        bad.report()
    );
    let service = dir.join("service.nu");
    std::fs::write(&service, r#"{ run: {|| "hi" } }"#).unwrap();
    let out = cli("service", &["spawn", "hi", service.to_str().unwrap()], b"")
        .ok()
        .json();
    assert_eq!(out["topic"], "xs.service.hi.active", "{out}");
    cli("service", &["terminate", "hi"], b"").ok();
    wait_for(&d, "xs.service.hi.fin.term", 1);
    cli("actor", &["unregister", "counter"], b"").ok();
    wait_for(&d, "xs.actor.counter.fin.term", 1);
    // A name that was never created: an error, and no `.term` appended.
    let e = cli("service", &["terminate", "nosuch"], b"").error();
    assert!(e.contains("no service named nosuch"), "{e}");
    assert!(d.read("topic=xs.service.nosuch.*").is_empty());
}

#[test]
fn a_create_of_an_unknown_kind_is_answered_once() {
    let mut d = Daemon::start();
    let created = d.append("xs.robot.r2.create", b"{run: {|| }}");
    let invalid = wait_for(&d, "xs.robot.r2.invalid", 1);
    assert_eq!(invalid[0]["meta"]["create_id"], created["id"]);
    assert_eq!(
        invalid[0]["meta"]["error"],
        "unknown kind robot: known are handler, generator, action, webhook, store, actor, service"
    );
    // Not kinds: no answer. Answered once across a restart.
    d.append("xs.start.x.create", b"");
    assert!(d.stop().success());
    d.restart();
    d.append("xs.robot.r3.create", b"");
    wait_for(&d, "xs.robot.r3.invalid", 1);
    assert_eq!(on(&d, "xs.robot.r2.invalid").len(), 1);
    assert!(on(&d, "xs.start.x.invalid").is_empty());
}

#[test]
fn a_service_restart_option_says_whether_it_runs_again() {
    let d = Daemon::start();
    // never: one run, then fin.ok.
    let (id, _) = create_as(
        &d,
        "service",
        "once",
        "source_id",
        r#"{ restart: "never", run: {|| "only once" } }"#,
    );
    let fin = wait_for(&d, "xs.service.once.fin.ok", 1);
    assert_eq!(fin[0]["meta"]["source_id"], id.as_str());
    assert_eq!(on(&d, "once.recv").len(), 1);

    // never, failing: fin.error with cross.stream's `message`.
    create_as(
        &d,
        "service",
        "boom",
        "source_id",
        r#"{ restart: "never", run: {|| error make {msg: "boom"} } }"#,
    );
    let fin = wait_for(&d, "xs.service.boom.fin.error", 1);
    assert!(
        fin[0]["meta"]["message"].as_str().unwrap().contains("boom"),
        "{}",
        fin[0]
    );

    // on-failure: a failing run runs again (after the 1 s back-off); an end finishes.
    create_as(
        &d,
        "generator",
        "flaky",
        "create_id",
        r#"{ restart: "on-failure", run: {|| .append flaky.try; error make {msg: "again"} } }"#,
    );
    wait_for(&d, "flaky.try", 2);
    assert!(on(&d, "xs.generator.flaky.fin.error").is_empty());
    create_as(
        &d,
        "generator",
        "ends",
        "create_id",
        r#"{ restart: "on-failure", run: {|| "done" } }"#,
    );
    wait_for(&d, "xs.generator.ends.fin.ok", 1);

    // A wrong value: invalid.
    let (_, invalid) = create_as(
        &d,
        "service",
        "odd",
        "source_id",
        r#"{ restart: "sometimes", run: {|| "x" } }"#,
    );
    assert_eq!(invalid["topic"], "xs.service.odd.invalid");
    assert!(invalid["meta"]["reason"]
        .as_str()
        .unwrap()
        .contains("restart must be"));
    // A finished service stays finished after a restart of the daemon.
    let mut d = d;
    assert!(d.stop().success());
    d.restart();
    poll_until(Duration::from_secs(10), "the daemon back", || {
        (on(&d, "xs.start").len() == 2).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(on(&d, "once.recv").len(), 1, "a finished service ran again");
    d.assert_no_panic();
}

/// A store exported from cross.stream (its `.export DIR`: `DIR/frames.jsonl` from `xs cat`,
/// `DIR/cas/<base64 of the hash>` for each content) loads with `xs import --dir DIR`; after a
/// daemon restart its actor and service run: answered `active`, listed by `xs ps`, producing
/// output.
#[test]
fn a_cross_stream_export_imports_and_its_processors_run() {
    use base64::Engine;
    let export = tempfile::tempdir().unwrap();
    let cas = export.path().join("cas");
    std::fs::create_dir_all(&cas).unwrap();
    let mut lines = Vec::new();
    let mut frame = |topic: &str, content: Option<&str>, meta: Value| -> String {
        let id = scru128::new_string();
        let hash = content.map(|c| {
            let hash = ssri::Integrity::from(c.as_bytes()).to_string();
            // cross.stream names each file by the hash in base64 (a `/` in it is a directory).
            let path = cas.join(base64::engine::general_purpose::STANDARD.encode(&hash));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, c).unwrap();
            hash
        });
        lines.push(
            serde_json::json!({"topic": topic, "id": id, "hash": hash, "meta": meta, "ttl": "forever"})
                .to_string(),
        );
        id
    };
    frame("xs.start", None, serde_json::json!({"version": "0.14.2"}));
    frame(
        "note",
        Some("from cross.stream"),
        serde_json::json!({"u": "bob"}),
    );
    let actor = frame("xs.actor.counter.create", Some(COUNTER_ACTOR), Value::Null);
    frame(
        "xs.actor.counter.active",
        None,
        serde_json::json!({"actor_id": actor}),
    );
    let service = frame(
        "xs.service.greeter.create",
        Some(r#"{ run: {|| "hello" }, restart: "never" }"#),
        Value::Null,
    );
    frame(
        "xs.service.greeter.active",
        None,
        serde_json::json!({"source_id": service}),
    );
    frame(
        "greeter.recv",
        Some("hello"),
        serde_json::json!({"source_id": service}),
    );
    std::fs::write(export.path().join("frames.jsonl"), lines.join("\n") + "\n").unwrap();

    let mut d = Daemon::start();
    let out = d
        .xs("import", &["--dir", export.path().to_str().unwrap()], b"")
        .ok();
    assert_eq!(out.json()["frames"], 7, "{}", out.stdout_str());
    assert_eq!(out.json()["contents"], 4, "{}", out.stdout_str());
    let note = on(&d, "note");
    assert_eq!(note[0]["meta"]["u"], "bob");
    let hash = note[0]["hash"].as_str().unwrap();
    assert_eq!(d.get(&format!("/cas/{hash}")).text(), "from cross.stream");

    d.stop();
    d.restart();
    let ps = poll_until(Duration::from_secs(20), "both to be listed", || {
        let ps = d.xs("ps", &[], b"").ok().ndjson();
        let up = |kind: &str, name: &str| {
            ps.iter()
                .any(|r| r["kind"] == kind && r["name"] == name && r["create_id"] != Value::Null)
        };
        (up("actor", "counter") && up("service", "greeter")).then_some(ps)
    });
    let actor_row = ps.iter().find(|r| r["name"] == "counter").unwrap();
    assert_eq!(actor_row["state"], "active", "{ps:?}");

    // Each answered `active` again, in its words, after the restart.
    let answered = |topic: &str, key: &str, id: &str| {
        poll_until(Duration::from_secs(20), topic, || {
            (on(&d, topic)
                .iter()
                .filter(|f| f["meta"][key] == id)
                .count()
                >= 2)
                .then_some(())
        })
    };
    answered("xs.actor.counter.active", "actor_id", &actor);
    answered("xs.service.greeter.active", "source_id", &service);

    // And each produces output.
    d.append("count.me", b"");
    let out = wait_for(&d, "counter.out", 1);
    assert_eq!(out[0]["meta"]["count"], 1);
    assert_eq!(out[0]["meta"]["actor_id"], actor.as_str());
    let recv = wait_for(&d, "greeter.recv", 2);
    assert_eq!(recv[1]["meta"]["source_id"], service.as_str());
    d.assert_no_panic();
}
