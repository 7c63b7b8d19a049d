//! Export / restore over raw HTTP: a 100,000-frame round trip with small and large binary
//! content, `topic` / `after`, and corrupt archives (flipped byte, truncated, bad trailer)
//! refused with a clear 400.

use std::collections::HashMap;
use std::time::Instant;

use serde_json::{json, Value};

use crate::helper::{ids, random_bytes, sri, Daemon};

/// Every frame of `d`, without the `xs.start` frames that `skip` names by id.
fn frames_without(d: &Daemon, skip: &[Value]) -> Vec<Value> {
    let skip = ids(skip);
    d.frames()
        .into_iter()
        .filter(|f| !skip.contains(&f["id"].as_str().unwrap().to_string()))
        .collect()
}

fn export(d: &Daemon, query: &str) -> Vec<u8> {
    let r = d.get(&format!("/export{query}"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/x-xs-export"));
    r.body
}

fn restore(d: &Daemon, archive: &[u8]) -> crate::helper::Resp {
    d.http("POST", "/restore", &[], archive)
}

#[test]
fn round_trip_of_100k_frames_with_binary_content() {
    let t0 = Instant::now();
    let src = Daemon::start();
    // 300 small contents and 3 over the inline limit, all binary.
    let mut blobs: Vec<Vec<u8>> = (0..300)
        .map(|i| random_bytes(1 + (i * 53) % 16_000, i as u64))
        .collect();
    for (i, len) in [16 * 1024 + 1, 200 * 1024, 1024 * 1024]
        .into_iter()
        .enumerate()
    {
        blobs.push(random_bytes(len, 1000 + i as u64));
    }
    let hashes: Vec<String> = blobs
        .iter()
        .map(|b| {
            let r = src.http("POST", "/cas", &[], b);
            assert_eq!(r.status, 200, "{}", r.text());
            r.text()
        })
        .collect();
    let n = 100_000;
    let mut lines = Vec::new();
    for i in 0..n {
        let mut f = json!({ "topic": format!("t{}.x", i % 7), "id": scru128::new().to_string() });
        if i % 3 == 0 {
            f["hash"] = json!(hashes[(i / 3) % hashes.len()]);
        }
        if i % 2 == 0 {
            f["meta"] = json!({ "i": i, "s": "é\"\n" });
        }
        f["ttl"] = json!(if i % 5 == 0 {
            "time:86400000"
        } else {
            "forever"
        });
        lines.push(f.to_string());
    }
    // Small batches: the raw client writes the whole body before it reads the answer.
    for batch in lines.chunks(500) {
        let r = src.http("POST", "/import", &[], batch.join("\n").as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let t_fill = t0.elapsed();

    let t1 = Instant::now();
    let archive = export(&src, "");
    let t_export = t1.elapsed();
    assert!(archive.starts_with(b"xs-export 1\n"));

    let dst = Daemon::start();
    let start = dst.frames();
    let t2 = Instant::now();
    let r = restore(&dst, &archive);
    let t_restore = t2.elapsed();
    assert_eq!(r.status, 200, "{}", r.text());
    let want = src.frames();
    assert_eq!(
        want.len(),
        n + 1,
        "the source holds its xs.start and the imports"
    );
    let total: usize = blobs.iter().map(Vec::len).sum();
    assert_eq!(
        r.json(),
        json!({ "frames": want.len(), "contents": blobs.len(), "bytes": total })
    );
    let got = frames_without(&dst, &start);
    assert_eq!(got.len(), want.len());
    assert!(got == want, "restored frames (ids, meta, ttl, hash) differ");
    for (b, h) in blobs.iter().zip(&hashes) {
        assert_eq!(h, &sri(b));
        let c = dst.get(&format!("/cas/{h}"));
        assert_eq!(c.status, 200);
        assert!(&c.body == b, "content {h} differs");
    }
    eprintln!(
        "round trip: fill {t_fill:?}, export {} bytes in {t_export:?}, restore in {t_restore:?}",
        archive.len()
    );
    // The export of the restored store is the same archive.
    let again = export(&dst, "?topic=t0.*,t1.*,t2.*,t3.*,t4.*,t5.*,t6.*");
    let part = export(&src, "?topic=t0.*,t1.*,t2.*,t3.*,t4.*,t5.*,t6.*");
    assert!(again == part, "re-export differs");
}

/// A small archive: frames with small and large content, and the frames in it.
fn small_archive() -> (Daemon, Vec<Value>, Vec<u8>) {
    let d = Daemon::start();
    let mut frames = vec![
        d.append("a", b"one"),
        d.append("b.c", &random_bytes(40_000, 7)),
        d.append("a", b"one"),
        d.append("a", b""),
    ];
    frames.push(d.append("b.d", b"two"));
    let archive = export(&d, "");
    (d, frames, archive)
}

#[test]
fn export_selects_topics_and_after_and_sends_each_content_once() {
    let (d, f, all) = small_archive();
    let text = String::from_utf8_lossy(&all);
    assert_eq!(text.matches("\nC sha256-").count(), 3, "one, the blob, two");
    assert_eq!(text.matches("\nF ").count(), 6, "xs.start and 5 frames");
    let e: Value =
        serde_json::from_str(text.lines().last().unwrap().strip_prefix("E ").unwrap()).unwrap();
    assert_eq!(e["frames"], 6);
    assert_eq!(e["contents"], 3);
    assert_eq!(e["bytes"], 3 + 40_000 + 3);
    assert_eq!(e["sha256"].as_str().unwrap().len(), 64);

    let part = export(
        &d,
        &format!("?topic=a&after={}", f[0]["id"].as_str().unwrap()),
    );
    let dst = Daemon::start();
    let start = dst.frames();
    let r = restore(&dst, &part);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"frames": 2, "contents": 1, "bytes": 3}));
    assert_eq!(ids(&frames_without(&dst, &start)), ids(&f[2..4]));
    // Restoring twice is harmless: the same frames, the same ids.
    assert_eq!(restore(&dst, &part).status, 200);
    assert_eq!(ids(&frames_without(&dst, &start)), ids(&f[2..4]));
}

#[test]
fn corrupt_archives_are_refused_with_a_clear_error() {
    let (_d, f, good) = small_archive();
    let text = &good;
    // Where the large blob's bytes start.
    let blob_at = {
        let s = String::from_utf8_lossy(text);
        let i = s.find(" 40000\n").expect("the blob's record");
        i + " 40000\n".len()
    };
    let mut cases: HashMap<&str, Vec<u8>> = HashMap::new();
    let mut flipped = good.clone();
    flipped[blob_at + 100] ^= 0x20;
    cases.insert("flipped content byte", flipped);
    cases.insert("truncated", good[..good.len() / 2].to_vec());
    cases.insert("no trailer", {
        let end = good.len() - 1;
        let e = good[..end].iter().rposition(|&b| b == b'\n').unwrap() + 1;
        good[..e].to_vec()
    });
    cases.insert("bad trailer", {
        let mut b = good.clone();
        // The checksum's last hex digit (before `"}` and the newline).
        let i = b.len() - 4;
        b[i] = if b[i] == b'0' { b'1' } else { b'0' };
        b
    });
    cases.insert("not an archive", b"{\"topic\":\"a\"}\n".to_vec());
    cases.insert("empty", Vec::new());
    for (what, archive) in &cases {
        let dst = Daemon::start();
        let start = dst.frames();
        let e = restore(&dst, archive).assert_error(400);
        match *what {
            "flipped content byte" => {
                assert!(e.contains("does not match its hash"), "{what}: {e}");
                // The frame after the blob, and everything later, was not imported.
                let got = ids(&frames_without(&dst, &start));
                assert!(
                    !got.contains(&f[1]["id"].as_str().unwrap().to_string()),
                    "{what}"
                );
            }
            "truncated" | "no trailer" => assert!(e.contains("ends early"), "{what}: {e}"),
            "bad trailer" => assert!(e.contains("does not match the archive"), "{what}: {e}"),
            "not an archive" => assert!(e.contains("not an xs export"), "{what}: {e}"),
            _ => assert!(e.contains("empty archive"), "{what}: {e}"),
        }
        dst.assert_no_panic();
    }
}
