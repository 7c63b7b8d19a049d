//! `xs append TOPIC --lines`: each stdin line a frame, sent in atomic batches, printed as NDJSON.

use crate::helper::{ids, Daemon};

fn content(d: &Daemon, frame: &serde_json::Value) -> Vec<u8> {
    match frame["hash"].as_str() {
        Some(h) => d.get(&format!("/cas/{h}")).body,
        None => Vec::new(),
    }
}

#[test]
fn append_lines_makes_one_frame_per_line_in_one_batch() {
    let d = Daemon::start();
    let stdin = b"one\ntwo\n\n\xff\xfe binary\nlast without newline";
    let out = d
        .xs(
            "append",
            &[
                "logs",
                "--lines",
                "--meta",
                r#"{"src":"cli"}"#,
                "--ttl",
                "last:10",
            ],
            stdin,
        )
        .ok();
    let frames = out.ndjson();
    assert_eq!(frames.len(), 5);
    let stored = d.read("topic=logs");
    assert_eq!(ids(&stored), ids(&frames));
    let contents: Vec<Vec<u8>> = frames.iter().map(|f| content(&d, f)).collect();
    assert_eq!(
        contents,
        [
            &b"one"[..],
            b"two",
            b"",
            b"\xff\xfe binary",
            b"last without newline"
        ]
    );
    for f in &frames {
        assert_eq!(f["meta"]["src"], "cli");
        assert_eq!(f["ttl"], "last:10");
    }
    d.assert_no_panic();
}

#[test]
fn append_lines_with_a_key_is_idempotent_and_expect_guards_the_batch() {
    let d = Daemon::start();
    let first = d
        .xs(
            "append",
            &["jobs", "--lines", "--key", "import-1"],
            b"a\nb\n",
        )
        .ok();
    let again = d
        .xs(
            "append",
            &["jobs", "--lines", "--key", "import-1"],
            b"a\nb\n",
        )
        .ok();
    assert_eq!(ids(&again.ndjson()), ids(&first.ndjson()));
    assert_eq!(d.read("topic=jobs").len(), 2);

    let out = d.xs(
        "append",
        &["jobs", "--lines", "--expect", "none"],
        b"c\nd\n",
    );
    assert_eq!(out.code, Some(3), "a conflict exits 3: {}", out.stderr);
    assert!(out.stderr.contains("line 1"), "{}", out.stderr);
    assert_eq!(d.read("topic=jobs").len(), 2, "nothing of the batch stored");
    d.assert_no_panic();
}

#[test]
fn append_lines_splits_a_long_input_into_batches() {
    let d = Daemon::start();
    let n = xs::BATCH_MAX_FRAMES + 5;
    let stdin: String = (0..n).map(|i| format!("{i}\n")).collect();
    let out = d
        .xs("append", &["batch.many", "--lines"], stdin.as_bytes())
        .ok();
    let frames = out.ndjson();
    assert_eq!(frames.len(), n);
    assert_eq!(ids(&d.read("topic=batch.many")), ids(&frames));
    assert_eq!(content(&d, &frames[n - 1]), (n - 1).to_string().as_bytes());
    d.assert_no_panic();
}
