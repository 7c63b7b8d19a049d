//! Content deletion: `DELETE /{id}?purge=true` removes content no other frame references, and
//! `POST /gc` collects unreferenced blobs; afterwards the bytes are gone from the store's disk
//! (but for fjall's write-ahead journal, which keeps inline bytes until it rotates: see README).

use std::path::Path;

use serde_json::json;

use crate::helper::{poll_until, random_bytes, Daemon};

/// Whether any file under `dir` (but the journals, `*.jnl`) contains `needle`.
fn disk_has(dir: &Path, needle: &[u8]) -> bool {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return false;
    };
    rd.flatten().any(|e| {
        let p = e.path();
        if p.is_dir() {
            disk_has(&p, needle)
        } else if p.extension().is_some_and(|x| x == "jnl") {
            false
        } else {
            std::fs::read(&p)
                .map(|b| b.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
        }
    })
}

fn content(marker: &str, len: usize) -> Vec<u8> {
    let mut v = marker.as_bytes().to_vec();
    v.extend(random_bytes(len - marker.len(), len as u64));
    v
}

#[test]
fn purge_removes_inline_and_large_content_from_disk() {
    let d = Daemon::start();
    for (marker, len) in [
        ("MARKER-inline-7f3a9c", 200),
        ("MARKER-large-b41e02", 100_000),
    ] {
        let body = content(marker, len);
        let f = d.append("secret", &body);
        let hash = f["hash"].as_str().unwrap().to_string();
        if len > 16 * 1024 {
            assert!(disk_has(&d.store, marker.as_bytes()), "written: {marker}");
        }
        let id = f["id"].as_str().unwrap();
        let r = d.http("DELETE", &format!("/{id}?purge=true"), &[], b"");
        assert_eq!(r.status, 204, "{}", r.text());
        d.get(&format!("/cas/{hash}")).assert_error(404);
        d.get(&format!("/{id}")).assert_error(404);
        poll_until(
            std::time::Duration::from_secs(10),
            "the bytes to leave the disk",
            || (!disk_has(&d.store, marker.as_bytes())).then_some(()),
        );
    }
    d.assert_no_panic();
}

#[test]
fn shared_content_survives_purge_of_one_frame() {
    let d = Daemon::start();
    for len in [300, 50_000] {
        let body = content("MARKER-shared", len);
        let a = d.append("one", &body);
        let b = d.append("two", &body);
        assert_eq!(a["hash"], b["hash"]);
        let hash = a["hash"].as_str().unwrap();
        let r = d.http(
            "DELETE",
            &format!("/{}?purge=true", a["id"].as_str().unwrap()),
            &[],
            b"",
        );
        assert_eq!(r.status, 204);
        let c = d.get(&format!("/cas/{hash}"));
        assert_eq!(c.status, 200);
        assert_eq!(c.body, body, "still referenced by the other frame");
        // Neither gc takes it.
        let gc = d.http("POST", "/gc", &[], b"");
        assert_eq!(gc.status, 200);
        assert_eq!(d.get(&format!("/cas/{hash}")).status, 200);
        // The last reference goes with purge.
        let r = d.http(
            "DELETE",
            &format!("/{}?purge=true", b["id"].as_str().unwrap()),
            &[],
            b"",
        );
        assert_eq!(r.status, 204);
        d.get(&format!("/cas/{hash}")).assert_error(404);
    }
    d.http("DELETE", "/03hadbm3pd0va6i6c63lxxwa8?purge=true", &[], b"")
        .assert_error(404);
    d.assert_no_panic();
}

#[test]
fn gc_collects_unreferenced_inline_content_and_reports_it() {
    let mut d = Daemon::start();
    let keep = d.append("keep", b"MARKER-kept-content");
    // Removed without purge: the content stays until gc.
    let gone = d.append("gone", b"MARKER-collect-me-1");
    let id = gone["id"].as_str().unwrap();
    assert_eq!(d.http("DELETE", &format!("/{id}"), &[], b"").status, 204);
    // Posted content no frame uses.
    let posted = d.http("POST", "/cas", &[], b"MARKER-collect-me-2");
    assert_eq!(posted.status, 200);
    // Across a restart: the reference counts are durable.
    d.kill9();
    d.restart();

    let gc = d.http("POST", "/gc", &[], b"");
    assert_eq!(gc.status, 200, "{}", gc.text());
    assert_eq!(gc.json(), json!({"blobs": 2, "bytes": 38}));
    let again = d.http("POST", "/gc", &[], b"");
    assert_eq!(again.json(), json!({"blobs": 0, "bytes": 0}));
    assert_eq!(
        d.get(&format!("/cas/{}", keep["hash"].as_str().unwrap()))
            .status,
        200
    );
    poll_until(
        std::time::Duration::from_secs(10),
        "the bytes to leave the disk",
        || (!disk_has(&d.store, b"MARKER-collect-me")).then_some(()),
    );
    d.assert_no_panic();
}
