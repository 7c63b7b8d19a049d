//! The daemon fed raw bytes: one in-process `xs_server::run` on a temp store per fuzz
//! process; each input is written to a new connection on its Unix socket. Any panic (in a
//! request task too: libFuzzer's panic hook aborts) or a daemon that stops answering is a crash.
#![no_main]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;

struct Daemon {
    sock: PathBuf,
    _dir: tempfile::TempDir,
}

fn daemon() -> &'static Daemon {
    static D: OnceLock<Daemon> = OnceLock::new();
    D.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("store");
        let store = xs::Store::open_local(&path, xs::LocalOptions::default()).expect("opening store");
        let sock = path.join("sock");
        let (tx, rx) = tokio::sync::watch::channel(false);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            let opts = xs_server::ServeOptions {
                store: path,
                ..Default::default()
            };
            let r = rt.block_on(xs_server::run(store, opts, rx));
            let _keep = tx;
            panic!("the daemon stopped: {r:?}");
        });
        for _ in 0..500 {
            if UnixStream::connect(&sock).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Daemon { sock, _dir: dir }
    })
}

/// Writes `data` and reads the answer. With `half_close`, the write side is shut first (so
/// an incomplete request cannot keep us waiting; hyper may then drop its answer).
fn exchange(sock: &PathBuf, data: &[u8], wait: Duration, half_close: bool) -> Vec<u8> {
    let mut s = UnixStream::connect(sock).expect("the daemon accepts connections");
    s.set_read_timeout(Some(wait)).expect("timeout");
    s.set_write_timeout(Some(wait)).expect("timeout");
    let _ = s.write_all(data);
    if half_close {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fuzz_target!(|data: &[u8]| {
    let d = daemon();
    let out = exchange(&d.sock, data, Duration::from_millis(300), true);
    if out.starts_with(b"HTTP/1.1 5") && !out.starts_with(b"HTTP/1.1 501") {
        // 500 is for failures of the machine or bugs; neither should come from bad input.
        let head = String::from_utf8_lossy(&out[..out.len().min(400)]);
        panic!("a 5xx answer to fuzzed input: {head}");
    }
    let v = exchange(
        &d.sock,
        b"GET /version HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        Duration::from_secs(10),
        false,
    );
    assert!(
        v.starts_with(b"HTTP/1.1 200"),
        "the daemon stopped answering: {:?}",
        String::from_utf8_lossy(&v)
    );
});
