//! 1 GiB through `xs append` and back through `xs cas`, streamed: the daemon and the CLI each
//! stay under 100 MiB of peak memory and the bytes come back exact.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ssri::{Algorithm, IntegrityOpts};

use crate::helper::{vm_hwm_kib, Daemon, XS};

const TOTAL: usize = 1 << 30;
/// Not a power of two, so misplaced or repeated blocks change the hash.
const BLOCK: usize = 1024 * 1024 + 7;
const MAX_RSS_KIB: u64 = 100 * 1024;
const TIME: &str = "/usr/bin/time";

/// Spawns `xs <args>` under `/usr/bin/time -v` when it exists (its exact peak RSS), else bare
/// (its peak is then polled from /proc).
fn spawn_measured(args: &[&str], stdin: Stdio, stdout: Stdio) -> Child {
    let mut cmd = if Path::new(TIME).exists() {
        let mut c = Command::new(TIME);
        c.arg("-v").arg(XS);
        c
    } else {
        Command::new(XS)
    };
    cmd.args(args)
        .env_remove("XS_ADDR")
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning xs")
}

/// Waits for a measured child; returns its stderr without time's report and its peak RSS (KiB).
fn finish_measured(mut child: Child, what: &str) -> (String, u64) {
    let pid = child.id();
    let mut stderr_pipe = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr_pipe.read_to_string(&mut s);
        s
    });
    let mut polled = 0;
    let deadline = Instant::now() + Duration::from_secs(240);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        polled = polled.max(vm_hwm_kib(pid).unwrap_or(0));
        assert!(Instant::now() < deadline, "{what} took too long");
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = stderr.join().unwrap();
    let (own, report) = match stderr.find("\tCommand being timed:") {
        Some(i) => stderr.split_at(i),
        None => (stderr.as_str(), ""),
    };
    let peak = report
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
        .map(|v| v.trim().parse::<u64>().expect("a number"))
        .unwrap_or(polled);
    assert!(status.success(), "{what} failed: {stderr}");
    (own.to_string(), peak)
}

#[test]
fn one_gib_streams_through_append_and_cas_in_bounded_memory() {
    let d = Daemon::start();
    let block = crate::helper::random_bytes(BLOCK, 42);
    let started = Instant::now();

    let mut append = spawn_measured(&["append", d.addr(), "big"], Stdio::piped(), Stdio::piped());
    let mut stdin = append.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let mut hasher = IntegrityOpts::new().algorithm(Algorithm::Sha256);
        let mut left = TOTAL;
        while left > 0 {
            let n = left.min(BLOCK);
            hasher.input(&block[..n]);
            stdin.write_all(&block[..n]).expect("writing to xs append");
            left -= n;
        }
        hasher.result().to_string()
    });
    let mut stdout = append.stdout.take().unwrap();
    let (stderr, append_peak) = finish_measured(append, "xs append");
    let expected = writer.join().unwrap();
    let mut out = String::new();
    stdout.read_to_string(&mut out).unwrap();
    assert_eq!(stderr, "");
    let frame: serde_json::Value = serde_json::from_str(&out).expect("the frame JSON");
    assert_eq!(frame["hash"], expected);
    let appended = started.elapsed();

    let mut cas = spawn_measured(&["cas", d.addr(), &expected], Stdio::null(), Stdio::piped());
    let mut stdout = cas.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut hasher = IntegrityOpts::new().algorithm(Algorithm::Sha256);
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0usize;
        loop {
            let n = stdout.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            hasher.input(&buf[..n]);
            total += n;
        }
        (total, hasher.result().to_string())
    });
    let (stderr, cas_peak) = finish_measured(cas, "xs cas");
    let (total, got) = reader.join().unwrap();
    assert_eq!(stderr, "");
    assert_eq!(total, TOTAL);
    assert_eq!(got, expected, "the content came back different");

    let daemon_peak = vm_hwm_kib(d.pid()).expect("the daemon's VmHWM");
    eprintln!(
        "1 GiB: append {:.1} s, cas {:.1} s; peak RSS KiB: daemon {daemon_peak}, append {append_peak}, cas {cas_peak}",
        appended.as_secs_f64(),
        (started.elapsed() - appended).as_secs_f64()
    );
    assert!(daemon_peak < MAX_RSS_KIB, "daemon peak {daemon_peak} KiB");
    assert!(
        append_peak < MAX_RSS_KIB,
        "xs append peak {append_peak} KiB"
    );
    assert!(cas_peak < MAX_RSS_KIB, "xs cas peak {cas_peak} KiB");
}
