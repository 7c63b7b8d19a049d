//! `POST /eval` and `xs eval`: results streamed by type, errors with Nushell's report, and the
//! store commands (`.append .cat .last .get .cas .cas-post .remove .import`) inside scripts,
//! with cross.stream's (`.id`, `.id unpack`, `.id pack`, `.rm`, `.cat --detail`, `-T` lists,
//! datetimes for `--with-timestamp`).

use serde_json::Value;

use crate::helper::{topics, Daemon};

fn eval(d: &Daemon, script: &str) -> crate::helper::Resp {
    d.http("POST", "/eval", &[], script.as_bytes())
}

#[test]
fn results_stream_by_type() {
    let d = Daemon::start();
    let r = eval(&d, "1..3 | each {|i| {n: $i} }");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    let rows: Vec<i64> = r
        .ndjson()
        .iter()
        .map(|v| v["n"].as_i64().unwrap())
        .collect();
    assert_eq!(rows, [1, 2, 3]);

    let r = eval(&d, "{a: 1, b: [x y]}");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json(), serde_json::json!({"a": 1, "b": ["x", "y"]}));

    let r = eval(&d, "'hello'");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.text(), "hello");

    let r = eval(&d, "6 * 7");
    assert_eq!(r.text(), "42");

    let r = eval(&d, "0x[00 ff 10]");
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.body, [0u8, 0xff, 0x10]);

    let r = eval(&d, "null");
    assert_eq!(r.status, 204);

    // An external's output streams as bytes.
    let r = eval(&d, "^printf 'a\\nb\\n'");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "a\nb\n");
    d.assert_no_panic();
}

#[test]
fn script_errors_are_400_with_the_report_and_position() {
    let d = Daemon::start();
    let r = eval(&d, "let x = 1\n[1 2] | no-such-command");
    let msg = r.assert_report(400);
    assert!(msg.contains("no-such-command"), "{msg}");
    assert!(msg.contains("eval:2:"), "the report has the line: {msg}");

    let r = eval(&d, "error make {msg: 'boom'}");
    let msg = r.assert_report(400);
    assert!(msg.contains("boom"), "{msg}");

    let r = eval(&d, "{a: 1");
    r.assert_report(400);

    let r = d.http("POST", "/eval", &[], &[0xff, 0xfe]);
    r.assert_error(400);

    // exit does not stop the daemon.
    let r = eval(&d, "exit 3");
    assert!(r.status == 400 || r.status == 204, "{}", r.status);
    d.assert_healthy_and_empty();
}

#[test]
fn store_commands_inside_scripts() {
    let d = Daemon::start();
    let r = eval(
        &d,
        r#"
        let a = ("hi" | .append chat --meta {u: bob})
        {a: 1} | .append obj
        0x[01 02] | .append bin
        .append empty
        [ ($a.meta.u) (.cas $a.hash) (.last chat | get id | $in == $a.id) (.get $a.id | get topic) ]
    "#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), serde_json::json!(["bob", "hi", true, "chat"]));

    let frames = d.frames();
    assert_eq!(topics(&frames[1..]), ["chat", "obj", "bin", "empty"]);
    let obj = &frames[2];
    let content = d.get(&format!("/cas/{}", obj["hash"].as_str().unwrap()));
    assert_eq!(content.json(), serde_json::json!({"a": 1}));
    assert!(frames[4]["hash"].is_null());

    // .cat is a list stream with the read flags; .last N is a list.
    let r = eval(&d, ".cat --topic chat,obj | get topic");
    assert_eq!(r.ndjson(), ["chat", "obj"]);
    let r = eval(&d, ".cat --last 2 | get topic | to json -r");
    assert_eq!(r.text(), r#"["bin","empty"]"#);
    let r = eval(&d, ".last chat 5 | length");
    assert_eq!(r.text(), "1");

    // .cas-post / .remove / .import
    let r = eval(&d, "'stored' | .cas-post");
    let hash = r.text();
    assert!(hash.starts_with("sha256-"), "{hash}");
    assert_eq!(d.get(&format!("/cas/{hash}")).text(), "stored");
    let id = frames[1]["id"].as_str().unwrap();
    let r = eval(&d, &format!(".remove {id}"));
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(d.get(&format!("/{id}")).status, 404);
    let r = eval(
        &d,
        &format!("{{topic: back, id: '{id}', hash: '{hash}'}} | .import | get id"),
    );
    assert_eq!(r.text(), id);
    assert_eq!(d.get(&format!("/{id}")).json()["topic"], "back");

    // Bad input to a store command is a script error, nothing stored.
    let before = d.frames().len();
    eval(&d, "'x' | .append 'bad topic!'").assert_report(400);
    eval(&d, "'x' | .append ok --ttl forever-ish").assert_report(400);
    eval(&d, ".get nope").assert_report(400);
    assert_eq!(d.frames().len(), before);
    d.assert_no_panic();
}

/// A script as cross.stream 0.14 users write them runs unchanged.
#[test]
fn cross_stream_script_commands() {
    let d = Daemon::start();
    let r = eval(
        &d,
        r#"
        let a = ("x" | .append t1 --ttl last:5)
        "y" | .append t2
        "z" | .append t3
        $a.id
    "#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let a = r.text();

    // -T: a string (commas allowed) or a list.
    assert_eq!(
        eval(&d, ".cat -T [t1 t3] | get topic").ndjson(),
        ["t1", "t3"]
    );
    assert_eq!(eval(&d, ".cat -T t1,t2 | get topic").ndjson(), ["t1", "t2"]);
    let r = eval(&d, "let ts = [t2 t3]; let t = 't1'; [(.cat -T $ts | length) (.cat -T $t | length)] | to json -r");
    assert_eq!(r.text(), "[2,1]");
    let e = eval(&d, ".cat -T ['t1' ''] | length").assert_report(400);
    assert!(e.contains("topic pattern"), "{e}");
    // Without --detail the fields cross.stream gives; --detail adds ttl.
    let r = eval(&d, ".cat -T t1 | first | columns | to json -r");
    assert_eq!(r.text(), r#"["topic","id","hash","meta"]"#);
    let r = eval(&d, ".cat -T t1 --detail | first | get ttl");
    assert_eq!(r.text(), "last:5");
    // --with-timestamp: a datetime, the id's time.
    let r = eval(
        &d,
        ".cat -T t1 --with-timestamp | first | [($in.timestamp | describe) ($in.timestamp == (.id unpack $in.id).when)] | to json -r",
    );
    assert_eq!(r.text(), r#"["datetime",true]"#);
    let r = eval(
        &d,
        &format!(".get {a} --with-timestamp | get timestamp | describe"),
    );
    assert_eq!(r.text(), "datetime");

    // .id, .id unpack, .id pack: the shape `xs scru128` prints, plus `when`.
    let r = eval(
        &d,
        r#"
        let i = (.id)
        let u = ($i | .id unpack)
        [$i ($u | columns) ($u.when | describe) ((date now) - $u.when < 1min) ($u | .id pack) (.id pack $u)]
        | to json -r
    "#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v: Value = serde_json::from_str(&r.text()).unwrap();
    let id = v[0].as_str().unwrap();
    assert_eq!(id.len(), 25);
    assert_eq!(
        v[1],
        serde_json::json!(["ts_ms", "when", "counter_hi", "counter_lo", "node"])
    );
    assert_eq!(v[2], "datetime");
    assert_eq!(v[3], true);
    assert_eq!(v[4], id);
    assert_eq!(v[5], id);
    let cli = crate::helper::xs(&["scru128", "unpack", id], b"")
        .ok()
        .json();
    let r = eval(&d, &format!(".id unpack {id} | reject when | to json -r"));
    assert_eq!(serde_json::from_str::<Value>(&r.text()).unwrap(), cli);
    let e = eval(&d, ".id unpack nope").assert_report(400);
    assert!(e.contains("nope") || e.contains("id"), "{e}");
    let e = eval(
        &d,
        "{ts_ms: 1, counter_hi: 0, counter_lo: 0, node: zz} | .id pack",
    )
    .assert_report(400);
    assert!(e.contains("node"), "{e}");
    let e = eval(&d, "{counter_hi: 0, counter_lo: 0, node: '0'} | .id pack").assert_report(400);
    assert!(e.contains("ts_ms"), "{e}");

    // The standard library, as in `nu`.
    let r = eval(
        &d,
        "use std/random; use std/assert; assert equal 1 1; random dice --dice 2 | length",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "2");

    // .rm is .remove.
    let r = eval(&d, &format!(".rm {a}"));
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(d.get(&format!("/{a}")).status, 404);
    d.assert_no_panic();
}

#[test]
fn cat_follow_is_lazy() {
    let d = Daemon::start();
    d.append("a", b"1");
    // `first 2` ends the follow once two frames (history + threshold) were read.
    let r = eval(&d, ".cat --follow | first 2 | get topic");
    assert_eq!(r.status, 200, "{}", r.text());
    let got: Vec<Value> = r.ndjson();
    assert_eq!(got, ["xs.start", "a"]);
}

#[test]
fn cli_eval_file_stdin_and_commands() {
    let d = Daemon::start();
    let out = d
        .xs(
            "eval",
            &["-c", "[1 2] | each {|x| $x * 10} | to json -r"],
            b"",
        )
        .ok();
    assert_eq!(out.stdout_str(), "[10,20]\n");
    let out = d
        .xs("eval", &["-c", "[1 2] | each {|x| {n: $x} }"], b"")
        .ok();
    assert_eq!(out.stdout_str(), "{\"n\":1}\n{\"n\":2}\n");

    let out = d.xs("eval", &["-"], b"{x: 1}").ok();
    assert_eq!(out.json(), serde_json::json!({"x": 1}));

    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("s.nu");
    std::fs::write(&f, "'from a file'").unwrap();
    let out = d.xs("eval", &[f.to_str().unwrap()], b"").ok();
    assert_eq!(out.stdout_str(), "from a file\n");

    let out = d.xs("eval", &["-c", "1 | nope"], b"");
    let report = out.report();
    assert!(
        report.contains("nope") && report.contains("eval:1:"),
        "{report}"
    );
}

#[test]
fn a_script_that_never_ends_blocks_nothing() {
    let d = Daemon::start();
    let sock = d.sock();
    // A client that starts an endless script and is never answered...
    std::thread::spawn(move || {
        let _ = crate::helper::request(&sock, "POST", "/eval", &[], b"loop { }");
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    // ...does not keep anyone else waiting.
    let t = std::time::Instant::now();
    assert_eq!(eval(&d, "1 + 1").text(), "2");
    d.append("still", b"writable");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        t.elapsed()
    );
}

/// Issue 4's surfaces from scripts: `--expect`, `--key`, `--consumer`, `.topics`, purge, `.gc`.
#[test]
fn event_sourcing_surfaces_in_scripts() {
    let d = Daemon::start();
    let r = eval(
        &d,
        r#"
        let a = ("1" | .append acct.1 --expect none)
        let b = ("2" | .append acct.1 --expect $a.id)
        let lost = (try { "3" | .append acct.1 --expect $a.id; "appended" } catch {|e| $e.msg })
        let k1 = ("x" | .append pay --key k-1)
        let k2 = ("x" | .append pay --key k-1)
        [($lost) ($k1.id == $k2.id) (.topics acct --children | get 0.topic) (.topics acct.1 | get 0.count)]
    "#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert!(v[0].as_str().unwrap().contains("expect"), "{v}");
    assert_eq!(v[1], true);
    assert_eq!(v[2], "acct.1");
    assert_eq!(v[3], 2);
    assert_eq!(d.read("topic=pay").len(), 1);

    // A durable consumer: the second read starts after what the first acknowledged.
    let r = eval(&d, ".cat --consumer c1 --ack-auto --topic acct.1 | length");
    assert_eq!(r.text(), "2");
    d.append("acct.1", b"later");
    let r = eval(
        &d,
        ".cat --consumer c1 --ack-auto --topic acct.1 | get topic | to json -r",
    );
    assert_eq!(r.text(), r#"["acct.1"]"#);

    // Purge and gc.
    let f = d.append("secret", b"pii");
    let r = eval(
        &d,
        &format!(
            ".remove {} --purge; .gc | get blobs",
            f["id"].as_str().unwrap()
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        d.get(&format!("/cas/{}", f["hash"].as_str().unwrap()))
            .status,
        404
    );
}

/// SQLite commands as cross.stream has them (nu-command's `sqlite` feature): `into sqlite`
/// writes a table to a file, `query db` reads it back, and `stor` keeps an in-memory database.
#[test]
fn sqlite_commands_in_scripts() {
    let d = Daemon::start();
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("t.db");
    let script = format!(
        r#"[[name n]; [a 1] [b 2] [c 3]] | into sqlite {db} --table-name t
        open {db} | query db "select name, n from t where n >= 2 order by n" | to json -r"#,
        db = db.display()
    );
    let out = d.xs("eval", &["-c", &script], b"").ok();
    assert_eq!(
        out.stdout_str(),
        "[{\"name\":\"b\",\"n\":2},{\"name\":\"c\",\"n\":3}]\n"
    );
    assert!(db.is_file());
    // `query db` on the path's value, and the file survives the script.
    let out = d
        .xs(
            "eval",
            &[
                "-c",
                &format!(
                    "open {} | query db 'select count(*) as c from t' | get 0.c",
                    db.display()
                ),
            ],
            b"",
        )
        .ok();
    assert_eq!(out.stdout_str(), "3\n");

    let out = d
        .xs(
            "eval",
            &[
                "-c",
                r#"stor reset
                stor create --table-name notes --columns {id: int, body: str}
                stor insert --table-name notes --data-record {id: 1, body: "hi"}
                {id: 2, body: "there"} | stor insert --table-name notes
                stor open | query db "select body from notes order by id" | get body | to json -r"#,
            ],
            b"",
        )
        .ok();
    assert_eq!(out.stdout_str(), "[\"hi\",\"there\"]\n");
    // The in-memory database lives as long as the daemon: a later script sees the table.
    let out = d
        .xs(
            "eval",
            &[
                "-c",
                "stor open | query db 'select count(*) as c from notes' | get 0.c",
            ],
            b"",
        )
        .ok();
    assert_eq!(out.stdout_str(), "2\n");
}
