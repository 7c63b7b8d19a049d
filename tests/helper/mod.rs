//! Fixtures for the end-to-end tests: a real `xs serve` daemon on a temp store (killed on drop),
//! the real `xs` binary with stdin bytes, and bounded polling instead of sleeps.

pub mod http;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

pub use http::{request, Resp};

/// The `xs` binary under test.
pub const XS: &str = env!("CARGO_BIN_EXE_xs");

/// How long the daemon may take to start answering.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a CLI command may run before the test fails instead of hanging.
const CLI_TIMEOUT: Duration = Duration::from_secs(120);

/// Polls `f` every 10 ms until it returns `Some`, panicking with `what` after `timeout`.
pub fn poll_until<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether the optional tool `cmd` runs (`cmd arg`, e.g. `--version`). When it does not, the
/// caller skips its test: outside CI with one `SKIPPED` line naming what to install, under
/// `CI` with a failure (`.ci/run` installs every tool, so CI runs every test).
pub fn have_tool(cmd: &str, arg: &str, install: &str) -> bool {
    if Command::new(cmd).arg(arg).output().is_ok() {
        return true;
    }
    skip_without(cmd, install);
    false
}

/// Reports a test skipped because `what` is missing (see [`have_tool`]); fails under `CI`.
pub fn skip_without(what: &str, install: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{what} is needed in CI (.ci/run installs it: {install})"
    );
    eprintln!("SKIPPED: {what} is not installed ({install})");
}

/// A running `xs serve` on a store in its own temp dir; killed (and reaped) on drop.
pub struct Daemon {
    tmp: TempDir,
    pub store: PathBuf,
    child: Option<Child>,
    starts: usize,
    /// Extra `xs serve` arguments (`--expose`, ...), used again by `restart`.
    pub args: Vec<String>,
}

impl Daemon {
    /// A daemon on a fresh store `<tmp>/store` (the directory does not exist beforehand).
    pub fn start() -> Daemon {
        let tmp = tempfile::tempdir().expect("creating a temp dir");
        let store = tmp.path().join("store");
        Daemon::start_on(tmp, store)
    }

    /// A daemon on `store` (which may already exist), logging into `tmp`.
    pub fn start_on(tmp: TempDir, store: PathBuf) -> Daemon {
        Daemon::start_on_with(tmp, store, &[])
    }

    /// A daemon on a fresh store with extra `xs serve` arguments.
    pub fn start_with(args: &[&str]) -> Daemon {
        let tmp = tempfile::tempdir().expect("creating a temp dir");
        let store = tmp.path().join("store");
        Daemon::start_on_with(tmp, store, args)
    }

    /// A daemon on `store` with extra `xs serve` arguments.
    pub fn start_on_with(tmp: TempDir, store: PathBuf, args: &[&str]) -> Daemon {
        let mut d = Daemon {
            tmp,
            store,
            child: None,
            starts: 0,
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        d.spawn();
        d
    }

    /// The fixture's temp dir (the store is `store` inside it).
    #[cfg_attr(not(feature = "nu"), allow(dead_code))]
    pub fn dir(&self) -> &std::path::Path {
        self.tmp.path()
    }

    /// The meta of the newest `xs.start` frame (the addresses the daemon bound).
    pub fn start_meta(&self) -> Value {
        let r = self.get("/last/xs.start");
        assert_eq!(r.status, 200, "GET /last/xs.start: {}", r.text());
        r.json()["meta"].clone()
    }

    /// The `host:port` the `--expose` listener is bound to.
    pub fn expose_addr(&self) -> String {
        let m = self.start_meta();
        m["expose"]
            .as_str()
            .expect("the daemon has --expose")
            .to_string()
    }

    /// The `host:port` the `--console` listener is bound to.
    pub fn console_addr(&self) -> String {
        let m = self.start_meta();
        m["console"]
            .as_str()
            .expect("the daemon has --console")
            .to_string()
    }

    /// The token in the store's token file.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.store.join("token"))
            .expect("reading <store>/token")
            .trim()
            .to_string()
    }

    pub fn sock(&self) -> PathBuf {
        self.store.join("sock")
    }

    /// The store path as a CLI argument.
    pub fn addr(&self) -> &str {
        self.store.to_str().expect("temp paths are UTF-8")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the daemon is running").id()
    }

    /// Everything every `xs serve` of this fixture wrote to stderr.
    pub fn log(&self) -> String {
        (1..=self.starts)
            .map(|n| std::fs::read_to_string(self.log_path(n)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Asserts the daemon never panicked (its log has no panic message).
    pub fn assert_no_panic(&self) {
        let log = self.log();
        assert!(!log.contains("panicked"), "the daemon panicked:\n{log}");
    }

    fn log_path(&self, n: usize) -> PathBuf {
        self.tmp.path().join(format!("serve-{n}.log"))
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let log = File::create(self.log_path(self.starts)).expect("creating the daemon log");
        let child = Command::new(XS)
            .arg("serve")
            .arg(&self.store)
            .args(&self.args)
            .env_remove("XS_ADDR")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning xs serve");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Waits until the socket accepts a connection and `GET /version` answers 200.
    fn wait_ready(&mut self) {
        let sock = self.sock();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("spawned");
            if let Some(status) = child.try_wait().expect("polling xs serve") {
                panic!(
                    "xs serve exited with {status} before it was ready:\n{}",
                    self.log()
                );
            }
            if UnixStream::connect(&sock).is_ok() {
                if let Ok(r) = request(&sock, "GET", "/version", &[], b"") {
                    if r.status == 200 {
                        return;
                    }
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "xs serve did not answer within {READY_TIMEOUT:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the daemon with SIGKILL (no clean shutdown) and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits (up to 10 s) for the daemon to exit; returns its exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the daemon is running");
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("running kill");
        assert!(sent.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().expect("polling xs serve") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "xs serve did not exit within 10 s of SIGTERM:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits (up to `timeout`) for the daemon to exit by itself; returns its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("the daemon is running");
        wait_bounded(&mut child, timeout, "xs serve")
    }

    /// Starts the daemon again on the same store (after `kill9` or `stop`).
    pub fn restart(&mut self) {
        assert!(
            self.child.is_none(),
            "stop or kill the daemon before restarting it"
        );
        self.spawn();
    }

    /// Runs `xs <cmd> <store> <args...>` with `stdin`.
    pub fn xs(&self, cmd: &str, args: &[&str], stdin: &[u8]) -> Out {
        let mut all = vec![cmd, self.addr()];
        all.extend_from_slice(args);
        xs(&all, stdin)
    }

    /// One HTTP request over the daemon's socket (a new connection, `Connection: close`).
    pub fn http(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        request(&self.sock(), method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path} failed: {e}\n{}", self.log()))
    }

    pub fn get(&self, path: &str) -> Resp {
        self.http("GET", path, &[], b"")
    }

    /// `POST /append/{topic}` with `body`; asserts 200 and returns the frame.
    pub fn append(&self, topic: &str, body: &[u8]) -> Value {
        let r = self.http("POST", &format!("/append/{topic}"), &[], body);
        assert_eq!(r.status, 200, "append to {topic}: {}", r.text());
        r.json()
    }

    /// Every stored frame (`GET /`), in order.
    pub fn frames(&self) -> Vec<Value> {
        self.read("")
    }

    /// `GET /?{query}` (no follow), as frames.
    pub fn read(&self, query: &str) -> Vec<Value> {
        let r = self.get(&format!("/?{query}"));
        assert_eq!(r.status, 200, "GET /?{query}: {}", r.text());
        r.ndjson()
    }

    /// Asserts the daemon still answers, and stores nothing but its `xs.start` frame.
    pub fn assert_healthy_and_empty(&self) {
        let v = self.get("/version");
        assert_eq!(
            v.status,
            200,
            "the daemon stopped answering:\n{}",
            self.log()
        );
        assert_eq!(
            topics(&self.frames()),
            ["xs.start"],
            "junk frames were stored"
        );
        self.assert_no_panic();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The topics of `frames`, in order.
pub fn topics(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .map(|f| {
            f["topic"]
                .as_str()
                .expect("a frame has a topic")
                .to_string()
        })
        .collect()
}

/// The ids of `frames`, in order.
pub fn ids(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .map(|f| f["id"].as_str().expect("a frame has an id").to_string())
        .collect()
}

/// What a finished `xs` command did.
#[derive(Debug)]
pub struct Out {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Out {
    pub fn stdout_str(&self) -> &str {
        std::str::from_utf8(&self.stdout).expect("stdout is UTF-8")
    }

    /// Asserts exit code 0 and an empty stderr; returns self.
    #[track_caller]
    pub fn ok(self) -> Out {
        assert_eq!(
            self.code,
            Some(0),
            "xs failed: stderr: {}\nstdout: {}",
            self.stderr,
            String::from_utf8_lossy(&self.stdout)
        );
        self
    }

    /// Stdout as exactly one JSON line.
    #[track_caller]
    pub fn json(&self) -> Value {
        let s = self.stdout_str();
        assert!(
            s.ends_with('\n') && s.matches('\n').count() == 1,
            "expected one line, got {s:?}"
        );
        serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s:?}"))
    }

    /// Stdout as NDJSON.
    #[track_caller]
    pub fn ndjson(&self) -> Vec<Value> {
        parse_ndjson(&self.stdout)
    }

    /// Asserts the CLI's error contract: exit code 1, nothing on stdout, and exactly one
    /// stderr line starting with `xs: `. Returns that line.
    #[track_caller]
    pub fn error(&self) -> String {
        assert_eq!(
            self.code,
            Some(1),
            "expected exit code 1; stderr: {}",
            self.stderr
        );
        assert!(
            self.stdout.is_empty(),
            "expected no stdout, got {:?}",
            String::from_utf8_lossy(&self.stdout)
        );
        assert!(
            self.stderr.starts_with("xs: ")
                && self.stderr.ends_with('\n')
                && self.stderr.matches('\n').count() == 1,
            "expected one `xs: ...` line on stderr, got {:?}",
            self.stderr
        );
        self.stderr.trim_end().to_string()
    }

    /// Like [`Out::error`], for a Nushell report printed as it is (it may span lines).
    #[track_caller]
    #[cfg_attr(not(feature = "nu"), allow(dead_code))]
    pub fn report(&self) -> String {
        assert_eq!(
            self.code,
            Some(1),
            "expected exit code 1; stderr: {}",
            self.stderr
        );
        assert!(self.stdout.is_empty(), "expected no stdout");
        assert!(self.stderr.starts_with("xs: "), "{:?}", self.stderr);
        self.stderr.clone()
    }
}

/// Parses NDJSON bytes (each line one JSON value).
#[track_caller]
pub fn parse_ndjson(bytes: &[u8]) -> Vec<Value> {
    let s = std::str::from_utf8(bytes).expect("NDJSON is UTF-8");
    assert!(
        s.is_empty() || s.ends_with('\n'),
        "NDJSON must end in a newline: {s:?}"
    );
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad NDJSON line ({e}): {l:?}")))
        .collect()
}

/// Runs `xs <args>` with `stdin` (written from a thread), bounded by [`CLI_TIMEOUT`].
pub fn xs(args: &[&str], stdin: &[u8]) -> Out {
    xs_env(args, stdin, &[])
}

/// [`xs`] with extra environment variables (`XS_ADDR` is otherwise unset).
pub fn xs_env(args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Out {
    let mut child = Command::new(XS)
        .args(args)
        .env_remove("XS_ADDR")
        .env_remove("XS_TOKEN")
        .env_remove("XS_TOKEN_FILE")
        .env_remove("XS_CACERT")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning xs");
    let mut input = child.stdin.take().expect("piped");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        // The command may not read stdin at all; a closed pipe is fine.
        let _ = input.write_all(&data);
    });
    let stdout = read_all_thread(child.stdout.take().expect("piped"));
    let stderr = read_all_thread(child.stderr.take().expect("piped"));
    let status = wait_bounded(&mut child, CLI_TIMEOUT, &format!("xs {}", args.join(" ")));
    let _ = writer.join();
    Out {
        code: status.code(),
        stdout: stdout.join().expect("stdout reader"),
        stderr: String::from_utf8_lossy(&stderr.join().expect("stderr reader")).into_owned(),
    }
}

fn read_all_thread(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        v
    })
}

/// Waits for `child` to exit; kills it and panics after `timeout`.
pub fn wait_bounded(child: &mut Child, timeout: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("polling a child") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A long-running `xs` command (like `xs cat -f`) whose stdout lines arrive on a channel.
pub struct LiveCli {
    pub child: Child,
    lines: mpsc::Receiver<String>,
}

impl LiveCli {
    pub fn spawn(args: &[&str]) -> LiveCli {
        let mut child = Command::new(XS)
            .args(args)
            .env_remove("XS_ADDR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning xs");
        let stdout: ChildStdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        LiveCli { child, lines }
    }

    /// The next stdout line as JSON; panics if none arrives within 10 s.
    #[track_caller]
    pub fn next_json(&self) -> Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(10))
            .expect("no line from xs within 10 s");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
    }
}

impl LiveCli {
    /// The next stdout line as JSON, or `None` if none arrives within `timeout`.
    pub fn try_next_json(&self, timeout: Duration) -> Option<Value> {
        let line = self.lines.recv_timeout(timeout).ok()?;
        Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}")))
    }
}

impl Drop for LiveCli {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Deterministic pseudo-random bytes (xorshift64*), so failures are reproducible.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The ssri hash string (`sha256-...`) of `bytes`, as frames carry it.
pub fn sri(bytes: &[u8]) -> String {
    ssri::Integrity::from(bytes).to_string()
}

/// Peak resident memory (VmHWM) of a live process, in KiB.
pub fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}
