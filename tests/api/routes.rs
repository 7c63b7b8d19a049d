//! The other routes over raw HTTP: append (content, meta, ttl), get, delete, the CAS, import,
//! version, and 405 for a wrong method.

use base64::Engine;
use serde_json::{json, Value};

use crate::helper::{ids, random_bytes, sri, topics, Daemon};

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn append_answers_the_durable_frame_with_content_hash_meta_and_ttl() {
    let d = Daemon::start();
    let meta = b64(r#"{"user":"ann","n":[1,2]}"#);
    let r = d.http(
        "POST",
        "/append/chat.msg?ttl=last:5",
        &[("xs-meta", &meta)],
        b"hello",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let f = r.json();
    assert_eq!(f["topic"], "chat.msg");
    assert_eq!(f["hash"], sri(b"hello"));
    assert_eq!(f["meta"], json!({"user": "ann", "n": [1, 2]}));
    assert_eq!(f["ttl"], "last:5");
    assert_eq!(f["id"].as_str().map(str::len), Some(25));

    let got = d.get(&format!("/{}", f["id"].as_str().unwrap()));
    assert_eq!(got.status, 200);
    assert_eq!(got.json(), f);
    let c = d.get(&format!("/cas/{}", f["hash"].as_str().unwrap()));
    assert_eq!(c.status, 200);
    assert_eq!(c.header("content-type"), Some("application/octet-stream"));
    assert_eq!(c.body, b"hello");
}

#[test]
fn append_with_empty_body_has_no_hash_and_defaults_to_forever() {
    let d = Daemon::start();
    let f = d.append("t", b"");
    assert_eq!(f["hash"], Value::Null);
    assert_eq!(f["meta"], Value::Null);
    assert_eq!(f["ttl"], "forever");
    // Unpadded base64 meta is accepted too.
    let r = d.http("POST", "/append/t", &[("xs-meta", "eyJhIjoxfQ")], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["meta"], json!({"a": 1}));
}

#[test]
fn append_with_timestamp_adds_timestamp() {
    let d = Daemon::start();
    let r = d.http("POST", "/append/t?with-timestamp", &[], b"");
    let f = r.json();
    let id = xs::frame::parse_id(f["id"].as_str().unwrap()).unwrap();
    assert_eq!(f["timestamp"], xs::frame::id_timestamp(&id));
    let g = d.get(&format!("/{id}?with-timestamp")).json();
    assert_eq!(g, f);
}

#[test]
fn large_and_small_content_round_trip_byte_exact() {
    let d = Daemon::start();
    for (i, len) in [1, 16 * 1024, 16 * 1024 + 1, 300 * 1024]
        .into_iter()
        .enumerate()
    {
        let data = random_bytes(len, i as u64);
        let f = d.append("blob", &data);
        assert_eq!(f["hash"], sri(&data), "len {len}");
        let c = d.get(&format!("/cas/{}", f["hash"].as_str().unwrap()));
        assert_eq!(c.status, 200);
        assert_eq!(c.header("content-length"), Some(len.to_string().as_str()));
        assert!(c.body == data, "content of {len} bytes differs");
    }
}

#[test]
fn delete_removes_the_frame_from_get_and_reads() {
    let d = Daemon::start();
    let keep = d.append("t", b"keep");
    let gone = d.append("t", b"gone");
    let path = format!("/{}", gone["id"].as_str().unwrap());
    let r = d.http("DELETE", &path, &[], b"");
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    d.get(&path).assert_error(404);
    d.http("DELETE", &path, &[], b"").assert_error(404);
    assert_eq!(ids(&d.read("topic=t")), ids(&[keep]));
}

#[test]
fn cas_post_stores_content_and_answers_its_hash() {
    let d = Daemon::start();
    let data = random_bytes(40_000, 7);
    let r = d.http("POST", "/cas", &[], &data);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.text(), sri(&data));
    assert!(d.get(&format!("/cas/{}", r.text())).body == data);
    d.http("POST", "/cas", &[], b"").assert_error(400);
    assert_eq!(
        topics(&d.frames()),
        ["xs.start"],
        "POST /cas makes no frame"
    );
}

#[test]
fn import_keeps_ids_and_reports_a_bad_line() {
    let d = Daemon::start();
    let hash = d.http("POST", "/cas", &[], b"imported").text();
    let id1 = scru128::new();
    let id2 = scru128::new();
    let f1 = json!({"topic": "imp", "id": id1.to_string(), "hash": hash, "meta": {"k": 1}, "ttl": "forever"});
    let f2 = json!({"topic": "imp.b", "id": id2.to_string(), "hash": null, "meta": null, "ttl": "forever"});
    let body = format!("{f1}\n\n{f2}\n");
    let r = d.http("POST", "/import", &[], body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(r.ndjson(), [f1.clone(), f2.clone()]);
    assert_eq!(d.get(&format!("/{id1}")).json(), f1);
    assert_eq!(d.read("topic=imp.*"), [f2]);

    // A bad first line: 400 naming the line, nothing imported.
    let r = d.http("POST", "/import", &[], b"{\"topic\":\"x\"}\n");
    let msg = r.assert_error(400);
    assert!(msg.contains("line 1"), "{msg}");
    // A bad later line: the lines before it are imported and the line is named, either as a
    // 400 (when the daemon saw it before answering) or as a final `{"error"}` NDJSON line.
    let id3 = scru128::new();
    let good = json!({"topic": "imp2", "id": id3.to_string(), "hash": null, "meta": null, "ttl": "forever"});
    let r = d.http(
        "POST",
        "/import",
        &[],
        format!("{good}\nnot json\n").as_bytes(),
    );
    let err = if r.status == 200 {
        let lines = r.ndjson();
        assert_eq!(lines[0], good);
        assert_eq!(lines.len(), 2, "{}", r.text());
        lines[1]["error"]
            .as_str()
            .expect("an error line")
            .to_string()
    } else {
        r.assert_error(400)
    };
    assert!(err.contains("line 2"), "{err}");
    assert_eq!(
        d.read("topic=imp2"),
        [good],
        "the lines before a bad line are imported by the time the answer arrives"
    );
    assert_eq!(
        topics(&d.frames()),
        ["xs.start", "imp", "imp.b", "imp2"].map(String::from),
        "frames are stored by id"
    );
}

#[test]
fn version_answers_the_daemon_version() {
    let d = Daemon::start();
    let r = d.get("/version");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json(), json!({"version": xs::VERSION}));
}

#[test]
fn wrong_method_on_a_known_route_is_405() {
    let d = Daemon::start();
    for (method, path) in [
        ("POST", "/"),
        ("DELETE", "/version"),
        ("GET", "/append/t"),
        ("GET", "/cas"),
        ("POST", "/cas/sha256-abc"),
        ("PUT", "/03d4q1qhbiv09ovtuhokw5yxv"),
    ] {
        let r = d.http(method, path, &[], b"");
        assert_eq!(r.status, 405, "{method} {path}: {}", r.text());
        assert!(r.json()["error"].is_string(), "{method} {path}");
    }
    d.assert_healthy_and_empty();
}

#[test]
fn import_refuses_frames_whose_content_is_missing_and_defaults_ttl_to_forever() {
    let d = Daemon::start();
    let missing = sri(b"never posted");
    let id = scru128::new();
    let f = json!({"topic": "imp", "id": id.to_string(), "hash": missing});
    let msg = d
        .http("POST", "/import", &[], f.to_string().as_bytes())
        .assert_error(400);
    assert!(msg.contains("not in the store"), "{msg}");
    assert_eq!(d.get(&format!("/{id}")).status, 404);

    let f = json!({"topic": "imp", "id": id.to_string()});
    let r = d.http("POST", "/import", &[], f.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(d.get(&format!("/{id}")).json()["ttl"], "forever");
}
