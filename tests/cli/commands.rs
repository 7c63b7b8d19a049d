//! The client commands through the real `xs` binary: append, cat, last, get, remove, cas,
//! cas-post, import, version and scru128, with exact output.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::helper::{
    ids, random_bytes, sri, topics, wait_bounded, xs, xs_env, Daemon, LiveCli, XS,
};

fn id(f: &Value) -> &str {
    f["id"].as_str().expect("a frame has an id")
}

#[test]
fn append_prints_the_frame_and_cas_returns_the_content() {
    let d = Daemon::start();
    let f = d
        .xs(
            "append",
            &["chat", "--meta", r#"{"who":"ann","n":1}"#],
            b"hello world",
        )
        .ok()
        .json();
    assert_eq!(f["topic"], "chat");
    assert_eq!(f["hash"], sri(b"hello world"));
    assert_eq!(f["meta"], json!({"who": "ann", "n": 1}));
    assert_eq!(f["ttl"], "forever");
    assert_eq!(f.as_object().unwrap().len(), 5);
    assert!(xs::frame::parse_id(id(&f)).is_ok());
    assert_eq!(d.get(&format!("/{}", id(&f))).json(), f);

    let out = d.xs("cas", &[f["hash"].as_str().unwrap()], b"").ok();
    assert_eq!(out.stdout, b"hello world", "raw bytes, no newline added");

    let data = random_bytes(50_000, 1);
    let f = d.xs("append", &["bin"], &data).ok().json();
    assert_eq!(f["hash"], sri(&data));
    let out = d.xs("cas", &[f["hash"].as_str().unwrap()], b"").ok();
    assert!(out.stdout == data, "binary content differs");
}

#[test]
fn append_with_ttl_and_timestamp() {
    let d = Daemon::start();
    let f = d
        .xs(
            "append",
            &["t", "--ttl", "time:60000", "--with-timestamp"],
            b"",
        )
        .ok()
        .json();
    assert_eq!(f["ttl"], "time:60000");
    assert_eq!(f["hash"], Value::Null, "empty stdin: no content");
    let parsed = xs::frame::parse_id(id(&f)).unwrap();
    assert_eq!(f["timestamp"], xs::frame::id_timestamp(&parsed));
    assert!(f["timestamp"].as_str().unwrap().ends_with('Z'));

    let e = d
        .xs("append", &["e", "--ttl", "ephemeral"], b"x")
        .ok()
        .json();
    assert_eq!(e["ttl"], "ephemeral");
    for i in 0..3 {
        d.xs(
            "append",
            &["l", "--ttl", "last:1"],
            format!("{i}").as_bytes(),
        )
        .ok();
    }
    assert_eq!(topics(&d.frames()), ["xs.start", "t", "l"]);
}

#[test]
fn single_positional_is_the_topic_and_xs_addr_is_the_address() {
    let d = Daemon::start();
    let env = [("XS_ADDR", d.addr())];
    let f = xs_env(&["append", "chat"], b"hi", &env).ok().json();
    assert_eq!(f["topic"], "chat");
    let all = xs_env(&["cat"], b"", &env).ok().ndjson();
    assert_eq!(topics(&all), ["xs.start", "chat"]);
    let got = xs_env(&["get", id(&f)], b"", &env).ok().json();
    assert_eq!(got, f);
}

#[test]
fn cat_prints_ndjson_with_read_options() {
    let d = Daemon::start();
    let a1 = d.append("a", b"1");
    let b1 = d.append("b", b"2");
    let a2 = d.append("a", b"3");

    let out = d.xs("cat", &[], b"").ok();
    let all = out.ndjson();
    assert_eq!(topics(&all), ["xs.start", "a", "b", "a"]);
    assert_eq!(all[1..], [a1.clone(), b1.clone(), a2.clone()]);
    assert_eq!(
        d.xs("cat", &["-T", "a"], b"").ok().ndjson(),
        [a1.clone(), a2.clone()]
    );
    assert_eq!(
        d.xs("cat", &["--last", "1"], b"").ok().ndjson(),
        std::slice::from_ref(&a2)
    );
    assert_eq!(
        ids(&d.xs("cat", &["--limit", "2"], b"").ok().ndjson()),
        ids(&all[..2])
    );
    assert_eq!(
        d.xs("cat", &["--after", id(&a1)], b"").ok().ndjson(),
        [b1.clone(), a2.clone()]
    );
    assert_eq!(
        d.xs("cat", &["--from", id(&b1)], b"").ok().ndjson(),
        [b1.clone(), a2.clone()]
    );
    for f in d.xs("cat", &["--with-timestamp"], b"").ok().ndjson() {
        let parsed = xs::frame::parse_id(id(&f)).unwrap();
        assert_eq!(f["timestamp"], xs::frame::id_timestamp(&parsed));
    }

    // --sse prints the raw events: the same frame JSON, framed as SSE.
    let ndjson = d.xs("cat", &["-T", "a"], b"").ok();
    let expected: String = ndjson
        .stdout_str()
        .lines()
        .zip([&a1, &a2])
        .map(|(line, f)| format!("id: {}\ndata: {line}\n\n", id(f)))
        .collect();
    let sse = d.xs("cat", &["-T", "a", "--sse"], b"").ok();
    assert_eq!(sse.stdout_str(), expected);
}

#[test]
fn cat_follow_is_live() {
    let d = Daemon::start();
    let old = d.append("live", b"old");
    let cat = LiveCli::spawn(&["cat", d.addr(), "-f", "-T", "live"]);
    assert_eq!(cat.next_json(), old);
    assert_eq!(cat.next_json()["topic"], "xs.threshold");
    let f = d.append("live", b"new");
    assert_eq!(
        cat.next_json(),
        f,
        "followed frames are printed as they arrive"
    );

    let pulses = LiveCli::spawn(&["cat", d.addr(), "--pulse", "50", "--new"]);
    assert_eq!(pulses.next_json()["topic"], "xs.pulse");
    assert_eq!(pulses.next_json()["topic"], "xs.pulse");
}

#[test]
fn cat_exits_0_when_stdout_closes() {
    let d = Daemon::start();
    let mut child = Command::new(XS)
        .args(["cat", d.addr(), "-f"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert!(first.contains("\"xs.start\""), "{first}");
    // Close the reading end (as `xs cat -f | head -n 1` does), then give xs more to write.
    drop(reader);
    for _ in 0..3 {
        d.append("t", b"");
    }
    let status = wait_bounded(&mut child, Duration::from_secs(10), "xs cat -f");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert_eq!(stderr, "", "a closed stdout is not an error");
}

#[test]
fn last_prints_the_newest_frames() {
    let d = Daemon::start();
    let ax = d.append("a.x", b"");
    let ay = d.append("a.y", b"");
    let b = d.append("b", b"");

    assert_eq!(d.xs("last", &[], b"").ok().json(), b);
    assert_eq!(d.xs("last", &["a.*"], b"").ok().json(), ay);
    assert_eq!(
        d.xs("last", &["a.*", "2"], b"").ok().ndjson(),
        [ax, ay.clone()]
    );
    assert_eq!(
        d.xs("last", &["-n", "2"], b"").ok().ndjson(),
        [ay, b.clone()]
    );
    let ts = d.xs("last", &["b", "--with-timestamp"], b"").ok().json();
    assert_eq!(ts["id"], b["id"]);
    assert!(ts["timestamp"].is_string());
    let msg = d.xs("last", &["nothing"], b"").error();
    assert!(msg.contains("no frames"), "{msg}");
}

#[test]
fn get_prints_one_frame() {
    let d = Daemon::start();
    let f = d.append("t", b"x");
    assert_eq!(d.xs("get", &[id(&f)], b"").ok().json(), f);
    let ts = d.xs("get", &[id(&f), "--with-timestamp"], b"").ok().json();
    let parsed = xs::frame::parse_id(id(&f)).unwrap();
    assert_eq!(ts["timestamp"], xs::frame::id_timestamp(&parsed));
}

#[test]
fn remove_deletes_a_frame() {
    let d = Daemon::start();
    let f = d.append("t", b"x");
    let out = d.xs("remove", &[id(&f)], b"").ok();
    assert!(out.stdout.is_empty());
    d.get(&format!("/{}", id(&f))).assert_error(404);
    assert_eq!(topics(&d.frames()), ["xs.start"]);
    d.xs("remove", &[id(&f)], b"").error();
}

#[test]
fn cas_post_prints_the_hash_and_cas_streams_it_back() {
    let d = Daemon::start();
    let data = random_bytes(30_000, 3);
    let out = d.xs("cas-post", &[], &data).ok();
    assert_eq!(out.stdout_str(), format!("{}\n", sri(&data)));
    let back = d.xs("cas", &[&sri(&data)], b"").ok();
    assert!(back.stdout == data);
    assert_eq!(topics(&d.frames()), ["xs.start"]);
}

#[test]
fn import_keeps_ids_and_prints_the_frames() {
    let d = Daemon::start();
    let hash = d
        .xs("cas-post", &[], b"payload")
        .ok()
        .stdout_str()
        .trim()
        .to_string();
    let f1 = json!({"topic": "imp", "id": scru128::new().to_string(), "hash": hash, "meta": {"m": true}, "ttl": "forever"});
    let f2 = json!({"topic": "imp", "id": scru128::new().to_string(), "hash": null, "meta": null, "ttl": "last:3"});
    let input = format!("{f1}\n{f2}\n");
    let out = d.xs("import", &[], input.as_bytes()).ok();
    assert_eq!(out.ndjson(), [f1.clone(), f2.clone()]);
    assert_eq!(d.read("topic=imp"), [f1.clone(), f2]);
    assert_eq!(d.xs("cas", &[&hash], b"").ok().stdout, b"payload");
    assert_eq!(d.xs("get", &[id(&f1)], b"").ok().json(), f1);
}

#[test]
fn version_prints_the_daemons_version() {
    let d = Daemon::start();
    assert_eq!(
        d.xs("version", &[], b"").ok().json(),
        json!({"version": xs::VERSION})
    );
}

#[test]
fn scru128_makes_unpacks_and_packs_ids() {
    let out = xs(&["scru128"], b"").ok();
    let line = out.stdout_str().trim_end();
    assert_eq!(line.len(), 25);
    let id: scru128::Id = line.parse().expect("a SCRU128 id");

    let fields = xs(&["scru128", "unpack", line], b"").ok().json();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let ts = fields["ts_ms"]
        .as_u64()
        .expect("ts_ms, integer milliseconds");
    assert!(now.abs_diff(ts) < 60_000, "ts_ms {ts} is not now ({now})");
    assert_eq!(ts, id.timestamp());
    assert!(fields.get("timestamp").is_none(), "{fields}");
    assert_eq!(fields["counter_hi"], id.counter_hi());
    assert_eq!(fields["counter_lo"], id.counter_lo());
    assert_eq!(fields["node"], format!("{:08x}", id.entropy()));

    let from_stdin = xs(&["scru128", "unpack", "-"], format!("{line}\n").as_bytes())
        .ok()
        .json();
    assert_eq!(from_stdin, fields);
    let packed = xs(&["scru128", "pack"], fields.to_string().as_bytes()).ok();
    assert_eq!(packed.stdout_str(), format!("{line}\n"));

    // What cross.stream's `.id unpack` gives (a `when` beside ts_ms) packs too.
    let mut with_when = fields.clone();
    with_when["when"] = json!("2025-01-01T00:00:00Z");
    let packed = xs(&["scru128", "pack"], with_when.to_string().as_bytes()).ok();
    assert_eq!(packed.stdout_str(), format!("{line}\n"));
    // The old shape is refused with one line saying what is expected.
    let old = json!({"timestamp": 1.5, "counter_hi": 0, "counter_lo": 0, "node": "00"});
    let err = xs(&["scru128", "pack"], old.to_string().as_bytes()).error();
    assert!(err.contains("ts_ms") && !err.contains('\n'), "{err}");
}
