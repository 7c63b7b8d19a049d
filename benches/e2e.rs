//! End-to-end benchmark: starts the real `xs serve` on a temp store and drives it over the Unix
//! socket with a hyper HTTP/1.1 client, printing one `bench <name> <value> <unit>` line per figure.
//!
//! Usage: `scripts/bench.sh [--quick] [--nats] [--fsync MODE] [NAME_PREFIX...]`, e.g.
//! `scripts/bench.sh append_1conn`.
//! Figures: fjall_bare_1writer, fjall_bare_batch32 (what the disk allows: a bare fjall loop),
//! append_1conn, append_32conn, append_expect_32conn, append_batch (`POST /append`, 1,000 frames
//! of 100 B per request from 4 connections, durable frames/s), build_store, replay_all, replay_topic,
//! replay_prefix (`?topic=bench.*`, dense through the index),
//! follow_latency_p50, follow_latency_p99, start_time_1m, daemon_rss_peak (+ `_restart`),
//! handler_first_100k (frames/s through a handler with a trivial closure, from the first frame),
//! disk_100k (MB on disk after 100,000 appends of 100 B from 32 connections on a fresh store and
//! a clean stop, `du`-like: allocated blocks; + `_stop`, the SIGTERM stop in ms).
//! `--quick` uses a 100k store and names the restart figure `start_time_quick` instead.
//! `--nats` adds, in the same run, the figures of two daemons A and B on a 3-node JetStream
//! cluster on loopback (`tests/helper/nats.rs`: `sync_interval: always`, replicas 3):
//! nats_append_1conn, nats_append_32conn (on A), nats_follow_latency_p50/_p99 (appended on A,
//! seen by a follower on B), nats_build_store (through A), nats_replay_all (from B's local
//! copy), nats_copy_rebuild (B restarted with its copy deleted, until the copy holds the store);
//! and, each on its own stream, nats_handler_first_100k (handler_first_100k on one `--nats`
//! daemon) and nats_takeover (seconds from kill -9 of a handler's owner to another daemon's
//! `active` frame, two daemons).
//! `XS_BENCH_DIR` picks the parent directory of the temp store (default: the system temp dir);
//! `XS_BENCH_KEEP=1` keeps it (store and daemon logs) for a look afterwards.
//! `XS_BENCH_BIN=path/to/xs` runs another build of our daemon instead of this one.
//! `XS_BENCH_PEER=path/to/xs` also measures, in the same run and by the same load functions, a
//! cross.stream release binary (0.14.2) on a store of its own, started as
//! `PEER serve STORE --fsync MODE` in the mode ours runs in (cross.stream 0.14 takes the same
//! `always`, `interval:<ms>`, `never`; its default is `interval:1000`, ours `always`; the
//! summary says which mode both ran in), and no other flag: after our daemon's
//! figures come `bench peer_<figure> ...` lines for append_1conn, append_32conn, build_store,
//! replay_all/_topic/_prefix, follow_latency_p50/_p99, daemon_rss_peak (+ `_restart`),
//! start_time_*, disk_100k (+ `_stop`), and the summary gives the ratio ours/peer of each. A
//! figure its wire API cannot do prints `# peer_<figure>: not measured: <why>` instead
//! (`?expect=`, batch `POST /append`, handlers and `/ps`, mounted stores, `--nats`). The peer's
//! store is as large as ours, built at its pace (0.14.2 `--fsync always` here: 100k frames from
//! 32 connections in 30 s, so a full run's 1M takes about 5 min).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tokio::sync::mpsc;

#[path = "../tests/helper/nats.rs"]
mod cluster;

const BODY: &[u8; 100] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopqrstuvwxyzAB";
/// Numbers every body, so no two frames share content (the CAS would dedupe them).
static BODY_SEQ: AtomicUsize = AtomicUsize::new(0);

/// A 100-byte body unlike any other this run: a sequence number, then filler.
fn body() -> Bytes {
    let n = BODY_SEQ.fetch_add(1, Ordering::Relaxed);
    let mut b = BODY.to_vec();
    b[..20].copy_from_slice(format!("{n:020}").as_bytes());
    Bytes::from(b)
}
const FIGURES: &[&str] = &[
    "fjall_bare_1writer",
    "fjall_bare_batch32",
    "append_1conn",
    "append_32conn",
    "append_expect_32conn",
    "append_batch",
    "build_store",
    "replay_all",
    "replay_topic",
    "replay_prefix",
    "follow_latency_p50",
    "follow_latency_p99",
    "start_time_1m",
    "daemon_rss_peak",
    "handler_first_100k",
    "stores_100_start",
    "stores_100_rss",
    "disk_100k",
    "disk_100k_stop",
    "nats_append_1conn",
    "nats_append_32conn",
    "nats_follow_latency_p50",
    "nats_follow_latency_p99",
    "nats_build_store",
    "nats_replay_all",
    "nats_copy_rebuild",
    "nats_handler_first_100k",
    "nats_takeover",
];
const CONNS: usize = 32;
/// Frames per request and connections of the `append_batch` figure.
const BATCH_FRAMES: usize = 1_000;
const BATCH_CONNS: usize = 4;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// How much work each figure does.
struct Sizes {
    append_1conn: usize,
    append_32conn: usize,
    append_batch: usize,
    store: usize,
    follow: usize,
}

impl Sizes {
    fn new(quick: bool) -> Self {
        if quick {
            Sizes {
                append_1conn: 2_000,
                append_32conn: 10_000,
                append_batch: 50_000,
                store: 100_000,
                follow: 300,
            }
        } else {
            Sizes {
                append_1conn: 20_000,
                append_32conn: 100_000,
                append_batch: 500_000,
                store: 1_000_000,
                follow: 2_000,
            }
        }
    }
}

/// Which figures to run: every figure whose name starts with one of the given prefixes.
struct Selection(Vec<String>);

impl Selection {
    fn wants(&self, figure: &str) -> bool {
        self.0.is_empty() || self.0.iter().any(|p| figure.starts_with(p.as_str()))
    }
}

fn main() {
    let mut quick = false;
    let mut nats = false;
    let mut names = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--nats" => nats = true,
            "--fsync" => {
                let mode = args.next().unwrap_or_default();
                FSYNC.set(mode).expect("--fsync given once");
            }
            // `cargo bench` passes `--bench`; other harness flags mean nothing here.
            a if a.starts_with('-') => {}
            a => {
                if !FIGURES.iter().any(|f| f.starts_with(a)) {
                    eprintln!("e2e: unknown figure {a:?}; known: {}", FIGURES.join(", "));
                    std::process::exit(2);
                }
                names.push(a.to_string());
            }
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    // Naming a `nats_` figure asks for the cluster too.
    nats |= names.iter().any(|n| n.starts_with("nats"));
    if let Err(e) = rt.block_on(run(Selection(names), Sizes::new(quick), quick, nats)) {
        eprintln!("e2e: {e}");
        std::process::exit(1);
    }
}

async fn run(sel: Selection, sizes: Sizes, quick: bool, nats: bool) -> Result<()> {
    let parent = std::env::var_os("XS_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::Builder::new()
        .prefix("xs-bench-")
        .tempdir_in(&parent)?;
    let store = tmp.path().join("store");
    if std::env::var_os("XS_BENCH_KEEP").is_some() {
        eprintln!("e2e: keeping {}", tmp.path().display());
    }
    let mut summary = Vec::new();
    let load_start = loadavg();
    summary.push(format!(
        "mode: {}, --fsync {}, store: {}, cpus: {}",
        if quick { "quick" } else { "full" },
        fsync_mode(),
        store.display(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    ));

    // What this disk allows: bare fjall, one entry per frame, in the same minutes.
    let mut bare = [None, None];
    let yardsticks = [
        ("fjall_bare_1writer", 1, "append_1conn"),
        ("fjall_bare_batch32", CONNS, "append_32conn"),
    ];
    for (i, (name, per_commit, paired)) in yardsticks.into_iter().enumerate() {
        if sel.wants(name) || sel.wants(paired) {
            let n = if per_commit == 1 {
                sizes.append_1conn
            } else {
                sizes.append_32conn
            };
            let dir = tmp.path().join(name);
            let rate =
                tokio::task::spawn_blocking(move || fjall_bare(&dir, n, per_commit)).await??;
            report(name, rate, "frames/s");
            bare[i] = Some(rate);
        }
    }

    let mut ours = Side::ours();
    daemon_figures(
        &mut ours,
        &sel,
        &sizes,
        quick,
        tmp.path(),
        bare,
        &mut summary,
    )
    .await?;
    // XS_BENCH_PEER: the same figures of another daemon (cross.stream), printed as `peer_`.
    let mut peer = std::env::var_os("XS_BENCH_PEER").map(|bin| Side {
        peer: Some(bin.into()),
        figures: Vec::new(),
    });
    if let Some(peer) = peer.as_mut() {
        let figures = daemon_figures(peer, &sel, &sizes, quick, tmp.path(), bare, &mut summary);
        if let Err(e) = figures.await {
            println!("# peer: stopped: {e}");
        }
    }
    let peer_skip = |wanted: bool, figure: &str, why: &str| {
        if peer.is_some() && wanted {
            not_measured(figure, why);
        }
    };
    peer_skip(
        sel.wants("handler_first_100k"),
        "handler_first_100k",
        "it needs our handlers (xs.handler.NAME.create), their checkpoints in GET /ps and an NDJSON POST /import; cross.stream has no /ps and imports one frame a request",
    );
    peer_skip(
        sel.wants("stores_100"),
        "stores_100",
        "cross.stream serves one store: no xs.store.NAME.create, no GET /stores",
    );
    peer_skip(nats, "nats", "cross.stream has no --nats (JetStream)");

    if sel.wants("handler_first_100k") {
        let n = 100_000;
        let store2 = tmp.path().join("store-handler");
        let (daemon, _) = Daemon::start(None, &store2, tmp.path().join("daemon3.log"), &[]).await?;
        let el = handler_throughput(&store2.join("sock"), n).await?;
        report(
            "handler_first_100k",
            n as f64 / el.as_secs_f64(),
            "frames/s",
        );
        summary.push(format!(
            "handler_first_100k: {n} imported frames (meta {{i}}) through `{{|frame, state| {{next: ($state + 1)}}}}` from start: first, checkpointed, in {el:.2?} (from the create frame to the last frame's checkpoint)"
        ));
        daemon.stop()?;
    }

    if sel.wants("stores_100") {
        stores_figures(tmp.path(), &mut summary).await?;
    }

    if sel.wants("disk_100k") {
        disk_figure(&mut ours, tmp.path(), &mut summary).await?;
        if let Some(peer) = peer.as_mut() {
            if let Err(e) = disk_figure(peer, tmp.path(), &mut summary).await {
                println!("# peer_disk_100k: stopped: {e}");
            }
        }
    }

    if nats {
        nats_figures(&sel, &sizes, tmp.path(), &mut summary).await?;
    }

    if std::env::var_os("XS_BENCH_KEEP").is_some() {
        let _ = tmp.keep();
    }
    if let Some(peer) = &peer {
        let ratios: Vec<String> = ours
            .figures
            .iter()
            .filter_map(|(name, v)| {
                let (_, p) = peer.figures.iter().find(|(n, _)| n == name)?;
                Some(format!("{name} {:.2}", v / p))
            })
            .collect();
        summary.push(format!(
            "ours/peer: {} (above 1 is more: better for frames/s, worse for us, ms, MiB, MB)",
            ratios.join(", ")
        ));
    }
    summary.push(format!(
        "loadavg (1/5/15 min) at start: {load_start}, at end: {} (other work on the machine skews every figure)",
        loadavg()
    ));
    println!("# summary");
    for line in summary {
        println!("#   {line}");
    }
    Ok(())
}

const MIB: f64 = 1024.0 * 1024.0;

/// The daemon a run of figures measures, with the figures measured on it so far (for the
/// ours/peer ratios of the summary).
struct Side {
    /// None: ours (this build, or `XS_BENCH_BIN`); else the peer's binary (`XS_BENCH_PEER`,
    /// cross.stream), started as `PEER serve STORE` without our flags.
    peer: Option<PathBuf>,
    figures: Vec<(&'static str, f64)>,
}

impl Side {
    fn ours() -> Side {
        Side {
            peer: None,
            figures: Vec::new(),
        }
    }

    /// A figure's (or file's) name for this side: `peer_` in front for the peer.
    fn name(&self, figure: &str) -> String {
        match self.peer {
            Some(_) => format!("peer_{figure}"),
            None => figure.to_string(),
        }
    }

    /// Prints `bench <name> <value> <unit>` and keeps the figure.
    fn report(&mut self, figure: &'static str, value: f64, unit: &str) {
        report(&self.name(figure), value, unit);
        self.figures.push((figure, value));
    }

    /// The daemon's commit count and time so far (`GET /metrics`), ours only.
    async fn commits(&self, sock: &Path) -> Result<Option<(f64, f64)>> {
        match self.peer {
            Some(_) => Ok(None),
            None => Ok(Some(commits(sock).await?)),
        }
    }
}

/// The figures of one daemon on a store of its own, from its start to a restart: the append
/// figures, build_store, the replays, follow latency, RSS and start time. Run for ours, then
/// for the peer, which skips what cross.stream's wire API lacks (`?expect=`, batch
/// `POST /append`, our `/metrics` commit counters: its `/metrics` is JSON of other counts);
/// `bare` are the yardsticks measured before.
async fn daemon_figures(
    side: &mut Side,
    sel: &Selection,
    sizes: &Sizes,
    quick: bool,
    dir: &Path,
    bare: [Option<f64>; 2],
    summary: &mut Vec<String>,
) -> Result<()> {
    let peer = side.peer.clone();
    let store = dir.join(side.name("store"));
    let log = dir.join(side.name("daemon1.log"));
    let (daemon, _) = Daemon::start(peer.as_deref(), &store, log, &[]).await?;
    let sock = store.join("sock");
    if let Some(bin) = &peer {
        summary.push(format!(
            "peer: {} (GET /version: {}), run as `serve STORE --fsync {}`, the mode ours ran in (cross.stream 0.14's default is interval:1000, ours always; give --fsync to pick another for both)",
            bin.display(),
            version(&sock).await?,
            fsync_mode()
        ));
    }

    if sel.wants("append_1conn") {
        let mut ceiling = None;
        if peer.is_none() {
            let rtt = version_rtt_p50(&sock, 2_000).await?;
            summary.push(format!(
                "baseline: GET /version round trip p50 {:.0} us (HTTP + scheduling, no store)",
                rtt.as_secs_f64() * 1e6
            ));
            let path = dir.join("sync-write");
            let sync = tokio::task::spawn_blocking(move || sync_write_p50(&path, 2_000)).await??;
            summary.push(format!(
                "baseline: pwrite + fdatasync of {SYNC_WRITE} bytes p50 {:.0} us; with the round trip above, one connection's ceiling is {:.0} appends/s",
                sync.as_secs_f64() * 1e6,
                1.0 / (sync + rtt).as_secs_f64()
            ));
            ceiling = Some(1.0 / (sync + rtt).as_secs_f64());
        }
        let n = sizes.append_1conn;
        let cpu = CpuMeter::start(daemon.pid());
        let c0 = side.commits(&sock).await?;
        let el = append_load(&sock, 1, n, |_| "bench.one").await?;
        let rate = n as f64 / el.as_secs_f64();
        side.report("append_1conn", rate, "frames/s");
        summary.push(format!(
            "{}: {n} frames in {el:.2?}{}{}; {}{}",
            side.name("append_1conn"),
            of_bare(rate, bare[0], "fjall_bare_1writer"),
            ceiling.map_or(String::new(), |c| format!(
                ", {:.0}% of the disk-floor ceiling",
                100.0 * rate / c
            )),
            cpu.describe_frames(el, n),
            describe_commits(c0, side.commits(&sock).await?, n)
        ));
    }
    if sel.wants("append_32conn") {
        let n = sizes.append_32conn;
        let cpu = CpuMeter::start(daemon.pid());
        let c0 = side.commits(&sock).await?;
        let el = append_load(&sock, CONNS, n, |_| "bench.one").await?;
        let rate = n as f64 / el.as_secs_f64();
        side.report("append_32conn", rate, "frames/s");
        summary.push(format!(
            "{}: {n} frames in {el:.2?}{}; {}{}",
            side.name("append_32conn"),
            of_bare(rate, bare[1], "fjall_bare_batch32"),
            cpu.describe_frames(el, n),
            describe_commits(c0, side.commits(&sock).await?, n)
        ));
    }
    if sel.wants("append_expect_32conn") && peer.is_some() {
        not_measured(
            "append_expect_32conn",
            "cross.stream's POST /append/TOPIC has no ?expect= (it reads only ttl from the query)",
        );
    } else if sel.wants("append_expect_32conn") {
        let n = sizes.append_32conn;
        let cpu = CpuMeter::start(daemon.pid());
        let el = append_expect_load(&sock, CONNS, n).await?;
        side.report(
            "append_expect_32conn",
            n as f64 / el.as_secs_f64(),
            "frames/s",
        );
        summary.push(format!(
            "append_expect_32conn: {n} frames, each connection chaining ?expect=<its previous id> on its own topic, in {el:.2?}; {}",
            cpu.describe_frames(el, n)
        ));
    }
    if sel.wants("append_batch") && peer.is_some() {
        not_measured(
            "append_batch",
            "cross.stream has no batch POST /append (NDJSON of frames), only POST /append/TOPIC with one frame's content",
        );
    } else if sel.wants("append_batch") {
        let n = sizes.append_batch;
        let cpu = CpuMeter::start(daemon.pid());
        let c0 = side.commits(&sock).await?;
        let el = append_batch_load(&sock, BATCH_CONNS, n / BATCH_FRAMES).await?;
        let rate = n as f64 / el.as_secs_f64();
        side.report("append_batch", rate, "frames/s");
        summary.push(format!(
            "append_batch: {n} frames, {BATCH_FRAMES} a request (POST /append) from {BATCH_CONNS} connections, in {el:.2?}; {}{}",
            cpu.describe_frames(el, n),
            describe_commits(c0, side.commits(&sock).await?, n)
        ));
    }
    let needs_store = [
        "build_store",
        "replay_all",
        "replay_topic",
        "replay_prefix",
        "start_time_1m",
    ]
    .iter()
    .any(|f| sel.wants(f));
    let mut rare = 0;
    if needs_store {
        let n = sizes.store;
        rare = (0..n).filter(|i| i % 10 == 9).count();
        let cpu = CpuMeter::start(daemon.pid());
        let el = append_load(&sock, CONNS, n, |i| {
            if i % 10 == 9 {
                "bench.rare"
            } else {
                "bench.common"
            }
        })
        .await?;
        side.report("build_store", n as f64 / el.as_secs_f64(), "frames/s");
        summary.push(format!(
            "{}: {n} frames ({rare} bench.rare) from {CONNS} connections in {el:.2?}; {}",
            side.name("build_store"),
            cpu.describe_frames(el, n)
        ));
    }
    if sel.wants("replay_all") {
        replay_figure(side, &sock, daemon.pid(), "replay_all", "/", "", summary).await?;
    }
    if sel.wants("replay_topic") {
        let q = "/?topic=bench.rare";
        let lines =
            replay_figure(side, &sock, daemon.pid(), "replay_topic", q, "", summary).await?;
        if needs_store && lines != rare {
            return Err(
                format!("replay_topic: expected {rare} bench.rare frames, got {lines}").into(),
            );
        }
    }
    if sel.wants("replay_prefix") {
        let what = "`?topic=bench.*` (every frame the bench appended, through the topic index): ";
        let q = "/?topic=bench.*";
        replay_figure(side, &sock, daemon.pid(), "replay_prefix", q, what, summary).await?;
    }
    if sel.wants("follow_latency") {
        let mut lat = follow_latency(&sock, &sock, sizes.follow).await?;
        lat.sort_unstable();
        let p = |q: f64| percentile_us(&lat, q);
        if sel.wants("follow_latency_p50") {
            side.report("follow_latency_p50", p(0.50), "us");
        }
        if sel.wants("follow_latency_p99") {
            side.report("follow_latency_p99", p(0.99), "us");
        }
        summary.push(format!(
            "{}: {} frames, min {:.0} us, p90 {:.0} us, max {:.0} us",
            side.name("follow_latency"),
            lat.len(),
            p(0.0),
            p(0.90),
            p(1.0)
        ));
    }
    let (first, restarted) = match peer {
        Some(_) => ("peer's first daemon", "restarted peer daemon"),
        None => ("first daemon", "restarted daemon"),
    };
    let hwm1 = vm_hwm_mib(daemon.pid())?;
    let rss1 = rss_now(daemon.pid());
    summary.push(format!(
        "{first} CPU by thread: {}",
        cpu_by_thread(daemon.pid())
    ));
    if sel.wants("daemon_rss_peak") {
        side.report("daemon_rss_peak", hwm1, "MiB");
    }
    let t = Instant::now();
    daemon.stop()?;
    let dirty = meminfo_mib("Dirty") + meminfo_mib("Writeback");
    let (journals, journal_mib) = journal_size(&store);
    summary.push(format!(
        "{first}: VmHWM {hwm1:.1} MiB, {rss1}, SIGTERM → exit in {:.2?}; then {dirty:.0} MiB of the machine's page cache still dirty/under writeback; {journals} journal file(s) of {journal_mib:.1} MiB left to replay",
        t.elapsed()
    ));

    if sel.wants("start_time_1m") {
        let frames = if needs_store { sizes.store } else { 0 };
        let log = dir.join(side.name("daemon2.log"));
        let (daemon, el) = Daemon::start(peer.as_deref(), &store, log, &[]).await?;
        let name = if quick {
            "start_time_quick"
        } else {
            "start_time_1m"
        };
        side.report(name, el.as_secs_f64() * 1e3, "ms");
        summary.push(format!(
            "{}: restart on a store of ~{frames} frames until GET /version answered: {el:.2?}",
            side.name(name)
        ));
        let hwm2 = vm_hwm_mib(daemon.pid())?;
        if sel.wants("daemon_rss_peak") {
            side.report("daemon_rss_peak_restart", hwm2, "MiB");
        }
        summary.push(format!("{restarted}: VmHWM {hwm2:.1} MiB"));
        daemon.stop()?;
    }
    Ok(())
}

/// One line saying that the peer's figure was left out, and why.
fn not_measured(figure: &str, why: &str) {
    println!("# peer_{figure}: not measured: {why}");
}

/// The daemon's answer to `GET /version`.
async fn version(sock: &Path) -> Result<String> {
    let mut conn = Conn::open(sock, false).await?;
    let res = conn.request(Method::GET, "/version", None).await?;
    let body = res.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).trim().to_string())
}

/// The issue's yardstick for appends: a bare fjall loop writing one 250-byte entry per frame
/// (about a stored frame with its content), `per_commit` entries per batch, each batch
/// persisted with fdatasync. Frames per second.
fn fjall_bare(dir: &Path, frames: usize, per_commit: usize) -> Result<f64> {
    let db = fjall::Database::builder(dir).open()?;
    let ks = db.keyspace("frames", fjall::KeyspaceCreateOptions::default)?;
    let value = [b'x'; 250];
    let t = Instant::now();
    for start in (0..frames).step_by(per_commit) {
        let mut batch = db.batch().durability(Some(fjall::PersistMode::SyncData));
        for i in start..(start + per_commit).min(frames) {
            batch.insert(&ks, (i as u64).to_be_bytes(), value);
        }
        batch.commit()?;
    }
    Ok(frames as f64 / t.elapsed().as_secs_f64())
}

/// About the journal bytes of one append (its fjall batch).
const SYNC_WRITE: usize = 680;

/// The disk's floor for one durable append: median time of a `SYNC_WRITE`-byte `pwrite` +
/// `fdatasync` loop on a plain file, nothing else.
fn sync_write_p50(path: &Path, n: usize) -> Result<Duration> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::create(path)?;
    let buf = [b'x'; SYNC_WRITE];
    let mut took = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        file.write_all_at(&buf, (i * SYNC_WRITE) as u64)?;
        file.sync_data()?;
        took.push(t.elapsed());
    }
    took.sort_unstable();
    Ok(took[n / 2])
}

/// ", N% of <bare figure>" when that figure was measured in this run.
fn of_bare(rate: f64, bare: Option<f64>, name: &str) -> String {
    bare.map_or(String::new(), |b| {
        format!(
            " ({:.0}% of {name}, measured minutes before)",
            rate / b * 100.0
        )
    })
}

fn report(name: &str, value: f64, unit: &str) {
    let v = if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    };
    println!("bench {name} {v} {unit}");
}

/// CPU time (user + system, all threads) of a process so far, from /proc/<pid>/stat.
fn cpu_time(pid: u32) -> Duration {
    stat_cpu(&format!("/proc/{pid}/stat"))
}

/// utime + stime of a `/proc/.../stat` file.
fn stat_cpu(path: &str) -> Duration {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let ticks = *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    });
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    Duration::from_secs_f64(f.iter().sum::<f64>() / ticks)
}

/// The daemon's CPU time so far by thread name (threads of one name summed), largest first.
fn cpu_by_thread(pid: u32) -> String {
    let mut by_name: std::collections::BTreeMap<String, Duration> = Default::default();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let dir = task.path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let cpu = stat_cpu(&dir.join("stat").to_string_lossy());
        *by_name.entry(name.trim().to_string()).or_default() += cpu;
    }
    let mut v: Vec<_> = by_name.into_iter().collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.1));
    v.iter()
        .map(|(n, d)| format!("{n} {:.1} s", d.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// CPU used by the daemon and by this client over one phase.
struct CpuMeter {
    daemon: u32,
    start: (Duration, Duration),
}

impl CpuMeter {
    fn start(daemon: u32) -> CpuMeter {
        CpuMeter {
            daemon,
            start: (cpu_time(daemon), cpu_time(std::process::id())),
        }
    }

    /// "daemon CPU 1.23 s, client CPU 0.45 s" over `wall`, with the share of the machine.
    fn describe(&self, wall: Duration) -> String {
        self.describe_frames(wall, 0)
    }

    /// [`CpuMeter::describe`], with the daemon's CPU per frame when `frames` is not 0.
    fn describe_frames(&self, wall: Duration, frames: usize) -> String {
        let d = cpu_time(self.daemon).saturating_sub(self.start.0);
        let c = cpu_time(std::process::id()).saturating_sub(self.start.1);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let per_frame = match frames {
            0 => String::new(),
            n => format!(" ({:.1} us a frame)", d.as_secs_f64() * 1e6 / n as f64),
        };
        format!(
            "daemon CPU {:.2} s{per_frame}, client CPU {:.2} s ({:.0}% of {cores} cores busy), daemon VmHWM so far {:.1} MiB",
            d.as_secs_f64(),
            c.as_secs_f64(),
            (d + c).as_secs_f64() / wall.as_secs_f64() / cores * 100.0,
            vm_hwm_mib(self.daemon).unwrap_or(0.0)
        )
    }
}

/// The store engine's journal files (`fjall/*.jnl`) that the next start must replay: count, MiB.
fn journal_size(store: &Path) -> (usize, f64) {
    let Ok(dir) = std::fs::read_dir(store.join("fjall")) else {
        return (0, 0.0);
    };
    let sizes: Vec<u64> = dir
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "jnl"))
        .filter_map(|e| e.metadata().ok().map(|m| m.len()))
        .collect();
    (sizes.len(), sizes.iter().sum::<u64>() as f64 / MIB)
}

/// `disk_100k`: a fresh store of `side`'s daemon, 100,000 appends of 100 B from [`CONNS`]
/// connections, a clean stop (SIGTERM); then the store directory's size on disk against the
/// raw bytes (the frames' JSON as `GET /` answers it, plus their content), and the SIGTERM stop
/// time.
async fn disk_figure(side: &mut Side, dir: &Path, summary: &mut Vec<String>) -> Result<()> {
    const MB: f64 = 1e6;
    let n = 100_000;
    let store = dir.join(side.name("store-disk"));
    let log = dir.join(side.name("daemon-disk.log"));
    let (daemon, _) = Daemon::start(side.peer.as_deref(), &store, log, &[]).await?;
    let sock = store.join("sock");
    append_load(&sock, CONNS, n, |_| "bench.disk").await?;
    let (frames, json, _) = replay(&sock, "/").await?;
    let raw = json + n * BODY.len();
    let t = Instant::now();
    daemon.stop()?;
    let stop = t.elapsed();
    let size = DiskUse::of(&store);
    side.report("disk_100k", size.total.0 as f64 / MB, "MB");
    side.report("disk_100k_stop", stop.as_secs_f64() * 1e3, "ms");
    let mb = |(blocks, _): (u64, u64)| blocks as f64 / MB;
    summary.push(format!(
        "{}: {n} frames of {} B from {CONNS} connections, then SIGTERM → exit in {stop:.2?}: the store takes {:.1} MB on disk ({:.1} MB apparent): fjall journal {:.1} MB ({} file(s), {:.1} MB apparent), keyspaces {:.1} MB, other {:.1} MB; raw {:.1} MB ({frames} frames' JSON as GET / answers them, {:.1} MB, + content {:.1} MB): store/raw {:.2}",
        side.name("disk_100k"),
        BODY.len(),
        mb(size.total),
        size.total.1 as f64 / MB,
        mb(size.journal),
        size.journals,
        size.journal.1 as f64 / MB,
        mb(size.keyspaces),
        mb(size.other),
        raw as f64 / MB,
        json as f64 / MB,
        (n * BODY.len()) as f64 / MB,
        size.total.0 as f64 / raw as f64
    ));
    Ok(())
}

/// A store directory's size, like `du` (allocated blocks) and apparent (file lengths), each as
/// (allocated, apparent) bytes: in total, fjall's journals (`fjall/*.jnl`), its keyspaces
/// (`fjall/keyspaces/`), and everything else.
#[derive(Default)]
struct DiskUse {
    total: (u64, u64),
    journal: (u64, u64),
    journals: usize,
    keyspaces: (u64, u64),
    other: (u64, u64),
}

impl DiskUse {
    fn of(store: &Path) -> DiskUse {
        let mut d = DiskUse::default();
        d.walk(store, store);
        d
    }

    fn walk(&mut self, store: &Path, dir: &Path) {
        use std::os::unix::fs::MetadataExt;
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = e.path();
            let Ok(m) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if m.is_dir() {
                self.walk(store, &path);
                continue;
            }
            let size = (m.blocks() * 512, m.len());
            let add = |a: &mut (u64, u64)| {
                a.0 += size.0;
                a.1 += size.1;
            };
            add(&mut self.total);
            let rel = path.strip_prefix(store).unwrap_or(&path);
            if rel.starts_with("fjall/keyspaces") {
                add(&mut self.keyspaces);
            } else if rel.parent() == Some(Path::new("fjall"))
                && path.extension().is_some_and(|x| x == "jnl")
            {
                add(&mut self.journal);
                self.journals += 1;
            } else {
                add(&mut self.other);
            }
        }
    }
}

/// One `kB` field of /proc/meminfo, in MiB (0 if missing).
fn meminfo_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':').map(str::to_string))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The first three fields of /proc/loadavg.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// `--fsync MODE` of the bench: every daemon of the local figures runs with it.
static FSYNC: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The local daemons' fsync mode: the bench's `--fsync`, else our default.
fn fsync_mode() -> &'static str {
    FSYNC.get().map_or("always", String::as_str)
}

/// The daemon child process; killed when dropped (even on panic) unless stopped cleanly.
struct Daemon {
    child: Option<Child>,
}

impl Daemon {
    /// Starts `xs serve <store>` and returns once `GET /version` answers, with the time it took.
    /// `args` follow the store (e.g. `--nats URLS`). `peer`: run that binary instead, as
    /// `PEER serve <store> --fsync MODE` (cross.stream 0.14's `serve` takes `--expose`,
    /// `--fsync` with our modes, `--ttl-sweep`), in our mode rather than its default.
    async fn start(
        peer: Option<&Path>,
        store: &Path,
        log: PathBuf,
        args: &[&str],
    ) -> Result<(Daemon, Duration)> {
        let log_file = std::fs::File::create(&log)?;
        let t = Instant::now();
        // XS_BENCH_BIN runs another build of the daemon (to compare two builds in one sitting).
        let bin: std::ffi::OsString = match peer {
            Some(peer) => {
                std::fs::create_dir_all(store)?;
                peer.into()
            }
            None => std::env::var_os("XS_BENCH_BIN").unwrap_or(env!("CARGO_BIN_EXE_xs").into()),
        };
        let mut cmd = Command::new(bin);
        cmd.arg("serve").arg(store).args(args);
        if peer.is_some() {
            cmd.arg("--fsync").arg(fsync_mode());
        } else if let (Some(mode), false) = (FSYNC.get(), args.contains(&"--nats")) {
            cmd.arg("--fsync").arg(mode);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()?;
        let mut daemon = Daemon { child: Some(child) };
        let sock = store.join("sock");
        loop {
            if let Ok(mut conn) = Conn::open(&sock, false).await {
                if let Ok(res) = conn.request(Method::GET, "/version", None).await {
                    if res.status() == StatusCode::OK {
                        let el = t.elapsed();
                        res.into_body().collect().await?;
                        return Ok((daemon, el));
                    }
                }
            }
            if let Some(status) = daemon
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("xs serve exited with {status}: {log}").into());
            }
            if t.elapsed() > Duration::from_secs(60) {
                return Err("xs serve did not answer GET /version within 60 s".into());
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL (kill -9), then reaps it.
    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for a clean exit.
    fn stop(mut self) -> Result<()> {
        let mut child = self.child.take().ok_or("daemon already stopped")?;
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()?
            .success();
        if !ok {
            let _ = child.kill();
            return Err("kill -TERM failed".into());
        }
        let status = child.wait()?;
        if !status.success() {
            return Err(format!("xs serve exited with {status} after SIGTERM").into());
        }
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// VmHWM (peak resident set) of a process, in MiB.
fn vm_hwm_mib(pid: u32) -> Result<f64> {
    proc_status_mib(pid, "VmHWM")
}

/// One `kB` field of /proc/<pid>/status, in MiB.
fn proc_status_mib(pid: u32, field: &str) -> Result<f64> {
    let f = std::fs::File::open(format!("/proc/{pid}/status"))?;
    for line in BufReader::new(f).lines() {
        let line = line?;
        if let Some(rest) = line.strip_prefix(field).and_then(|r| r.strip_prefix(':')) {
            let kb: f64 = rest.trim().trim_end_matches("kB").trim().parse()?;
            return Ok(kb / 1024.0);
        }
    }
    Err(format!("no {field} in /proc/{pid}/status").into())
}

/// The daemon's resident memory now, split as the kernel counts it.
fn rss_now(pid: u32) -> String {
    let f = |k| proc_status_mib(pid, k).unwrap_or(0.0);
    format!(
        "VmRSS now {:.1} MiB (anon {:.1}, file {:.1}, shmem {:.1})",
        f("VmRSS"),
        f("RssAnon"),
        f("RssFile"),
        f("RssShmem")
    )
}

/// One keep-alive HTTP/1.1 connection to the daemon's socket.
struct Conn {
    tx: SendRequest<Full<Bytes>>,
}

impl Conn {
    /// Connects; `big_reads` sizes the read buffer for streaming large bodies.
    async fn open(sock: &Path, big_reads: bool) -> Result<Conn> {
        let stream = UnixStream::connect(sock).await?;
        let mut builder = http1::Builder::new();
        if big_reads {
            builder.max_buf_size(8 << 20);
        }
        let (tx, conn) = builder.handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn { tx })
    }

    async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Response<Incoming>> {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .body(Full::new(body.unwrap_or_default()))?;
        self.tx.ready().await?;
        Ok(self.tx.send_request(req).await?)
    }

    /// Appends one frame with a distinct 100-byte body and returns the answer (the frame JSON).
    async fn append(&mut self, path: &str) -> Result<Bytes> {
        self.post(path, body()).await
    }

    /// `POST path` with `body`; answers the response body, an error unless 200.
    async fn post(&mut self, path: &str, body: Bytes) -> Result<Bytes> {
        let res = self.request(Method::POST, path, Some(body)).await?;
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        if status != StatusCode::OK {
            return Err(format!("POST {path}: {status} {}", String::from_utf8_lossy(&body)).into());
        }
        Ok(body)
    }
}

/// How many stores `stores_100_*` mounts in one daemon (issue 17: start under 3 s and RSS
/// under 200 MiB on the 2-core machine).
const STORES: usize = 100;

/// One daemon with [`STORES`] stores mounted through its control stream: the time to add them
/// until all are active, RSS, the SIGTERM stop, then the figures: a restart until every store
/// is active again, and the RSS once each has taken an append and a follower.
async fn stores_figures(dir: &Path, summary: &mut Vec<String>) -> Result<()> {
    let ctl = dir.join("stores-ctl");
    let (daemon, _) = Daemon::start(None, &ctl, dir.join("daemon-stores.log"), &[]).await?;
    let sock = ctl.join("sock");
    let idle = proc_status_mib(daemon.pid(), "VmRSS")?;
    let mut conn = Conn::open(&sock, false).await?;
    let t = Instant::now();
    for i in 0..STORES {
        let path = dir.join(format!("stores-{i}"));
        let config = serde_json::json!({ "path": path }).to_string();
        conn.post(
            &format!("/append/xs.store.s{i}.create"),
            Bytes::from(config),
        )
        .await?;
    }
    wait_stores_active(&sock).await?;
    let added = t.elapsed();
    let rss_added = proc_status_mib(daemon.pid(), "VmRSS")?;
    let t = Instant::now();
    daemon.stop()?;
    let stopped = t.elapsed();

    let t = Instant::now();
    let (daemon, _) = Daemon::start(None, &ctl, dir.join("daemon-stores2.log"), &[]).await?;
    wait_stores_active(&sock).await?;
    let start = t.elapsed();
    report("stores_100_start", start.as_secs_f64() * 1e3, "ms");
    // Each store takes an append and keeps a live follower, as a store in use does.
    let mut followers = Vec::new();
    for i in 0..STORES {
        let s = dir.join(format!("stores-{i}")).join("sock");
        Conn::open(&s, false).await?.append("/append/note").await?;
        let mut f = Conn::open(&s, false).await?;
        let res = f
            .request(Method::GET, "/?follow=true&new=true", None)
            .await?;
        if res.status() != StatusCode::OK {
            return Err(format!("following store s{i}: {}", res.status()).into());
        }
        followers.push((f, res));
    }
    let rss = proc_status_mib(daemon.pid(), "VmRSS")?;
    report("stores_100_rss", rss, "MiB");
    let t = Instant::now();
    daemon.stop()?;
    summary.push(format!(
        "stores: idle daemon {idle:.1} MiB; {STORES} stores added (one POST /append of xs.store.NAME.create each) and all active in {added:.2?}, RSS {rss_added:.1} MiB; SIGTERM stop {stopped:.2?}; restart until all active {start:.2?}; with one append and one follower each {rss:.1} MiB ({:.2} MiB a store over the idle daemon); stop {:.2?}",
        (rss - idle) / STORES as f64,
        t.elapsed()
    ));
    Ok(())
}

/// Polls `GET /stores` until [`STORES`] stores are active (60 s at most).
async fn wait_stores_active(sock: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut conn = Conn::open(sock, true).await?;
    loop {
        let res = conn.request(Method::GET, "/stores", None).await?;
        let body = res.into_body().collect().await?.to_bytes();
        let active = body
            .split(|&b| b == b'\n')
            .filter(|l| find(l, b"\"state\":\"active\"").is_some())
            .count();
        if active >= STORES {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("only {active} of {STORES} stores active after 60 s").into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Imports `n` frames, registers a handler with a trivial closure from the first frame, and
/// times it until its checkpoint is at the last frame (`GET /ps`).
async fn handler_throughput(sock: &Path, n: usize) -> Result<Duration> {
    let mut conn = Conn::open(sock, true).await?;
    let mut last = String::new();
    let mut i = 0;
    while i < n {
        let mut body = String::new();
        for _ in 0..10_000.min(n - i) {
            last = scru128::new().to_string();
            body.push_str(&format!(
                "{{\"topic\":\"bench.h\",\"id\":\"{last}\",\"meta\":{{\"i\":{i}}}}}\n"
            ));
            i += 1;
        }
        conn.post("/import", Bytes::from(body)).await?;
    }
    let script = r#"{ start: "first", topics: "bench.h", initial: 0, run: {|frame, state| {next: ($state + 1)} } }"#;
    let t = Instant::now();
    conn.post(
        "/append/xs.handler.bench.create",
        Bytes::from_static(script.as_bytes()),
    )
    .await?;
    loop {
        let res = conn.request(Method::GET, "/ps", None).await?;
        let body = res.into_body().collect().await?.to_bytes();
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let row: serde_json::Value = serde_json::from_slice(line)?;
            if row["name"] == "bench" {
                // `waiting`: a `--nats` daemon has not taken its lease yet.
                if row["state"] != "active" && row["state"] != "waiting" {
                    return Err(format!("the bench handler is {row}").into());
                }
                if row["position"] == last.as_str() {
                    return Ok(t.elapsed());
                }
            }
        }
        if t.elapsed() > Duration::from_secs(300) {
            return Err("the bench handler did not finish within 300 s".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Median round trip of `GET /version` on one keep-alive connection: the cost of a request
/// that touches no store, to set against the append figures.
/// The daemon's commit count and total commit time so far (from `GET /metrics`).
async fn commits(sock: &Path) -> Result<(f64, f64)> {
    let mut conn = Conn::open(sock, false).await?;
    let res = conn.request(Method::GET, "/metrics", None).await?;
    let text = res.into_body().collect().await?.to_bytes();
    let text = String::from_utf8_lossy(&text);
    // `name{labels} value` or `name value`.
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| {
                let rest = l.strip_prefix(name)?;
                if !rest.starts_with([' ', '{']) {
                    return None;
                }
                rest.rsplit(' ').next()?.parse().ok()
            })
            .unwrap_or(0.0)
    };
    Ok((
        value("xs_commit_duration_seconds_count"),
        value("xs_commit_duration_seconds_sum"),
    ))
}

/// "; N frames per commit, commits took X us on average" over a phase of `frames` appends
/// (nothing for a daemon without our `/metrics`).
fn describe_commits(
    before: Option<(f64, f64)>,
    after: Option<(f64, f64)>,
    frames: usize,
) -> String {
    let (Some(before), Some(after)) = (before, after) else {
        return String::new();
    };
    let n = after.0 - before.0;
    if n <= 0.0 {
        return "; no commits counted".into();
    }
    format!(
        "; {:.1} frames per commit, a commit (write + fdatasync) took {:.0} us on average",
        frames as f64 / n,
        (after.1 - before.1) / n * 1e6
    )
}

async fn version_rtt_p50(sock: &Path, n: usize) -> Result<Duration> {
    let mut conn = Conn::open(sock, false).await?;
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let res = conn.request(Method::GET, "/version", None).await?;
        res.into_body().collect().await?;
        lat.push(t.elapsed());
    }
    lat.sort_unstable();
    Ok(lat[n / 2])
}

/// Appends `n` frames from `conns` concurrent connections (each sequential); `topic(i)` names
/// frame i's topic. Returns the wall time from the first request to the last answer.
async fn append_load(
    sock: &Path,
    conns: usize,
    n: usize,
    topic: fn(usize) -> &'static str,
) -> Result<Duration> {
    let mut opened = Vec::with_capacity(conns);
    for _ in 0..conns {
        opened.push(LoadConn::open(sock).await?);
    }
    let next = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let tasks: Vec<_> = opened
        .into_iter()
        .map(|mut conn| {
            let next = next.clone();
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return Ok::<_, Box<dyn std::error::Error + Send + Sync>>(());
                    }
                    conn.append(topic(i)).await?;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(t.elapsed())
}

/// Sends `requests` batch appends of [`BATCH_FRAMES`] distinct 100-byte frames each, from
/// `conns` concurrent connections (each sequential). The bodies are built before the clock
/// starts. Returns the wall time from the first request to the last answer.
async fn append_batch_load(sock: &Path, conns: usize, requests: usize) -> Result<Duration> {
    let (tx, rx) = async_channel(requests);
    for _ in 0..requests {
        let mut b = Vec::with_capacity(BATCH_FRAMES * 150);
        for _ in 0..BATCH_FRAMES {
            b.extend_from_slice(br#"{"topic":"bench.batch","text":""#);
            b.extend_from_slice(&body());
            b.extend_from_slice(b"\"}\n");
        }
        tx.send(Bytes::from(b)).await?;
    }
    drop(tx);
    let mut opened = Vec::with_capacity(conns);
    for _ in 0..conns {
        opened.push(Conn::open(sock, true).await?);
    }
    let t = Instant::now();
    let tasks: Vec<_> = opened
        .into_iter()
        .map(|mut conn| {
            let rx = rx.clone();
            tokio::spawn(async move {
                loop {
                    let Some(batch) = rx.lock().await.recv().await else {
                        return Ok::<_, Box<dyn std::error::Error + Send + Sync>>(());
                    };
                    let res = conn.request(Method::POST, "/append", Some(batch)).await?;
                    let status = res.status();
                    let body = res.into_body().collect().await?.to_bytes();
                    let lines = body.iter().filter(|&&b| b == b'\n').count();
                    if status != StatusCode::OK || lines != BATCH_FRAMES {
                        let why =
                            String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
                        return Err(format!("POST /append: {status}, {lines} frames: {why}").into());
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(t.elapsed())
}

/// A channel several tasks take from: an mpsc receiver behind a lock.
fn async_channel(
    cap: usize,
) -> (
    mpsc::Sender<Bytes>,
    Arc<tokio::sync::Mutex<mpsc::Receiver<Bytes>>>,
) {
    let (tx, rx) = mpsc::channel(cap.max(1));
    (tx, Arc::new(tokio::sync::Mutex::new(rx)))
}

/// A load generator's keep-alive connection for the append figures: writes each request
/// in one write and reads the answer by `content-length`, like `wrk` would, so that the
/// client (which shares the machine's cores with the daemon) costs as little as it can.
struct LoadConn {
    stream: UnixStream,
    buf: Vec<u8>,
}

impl LoadConn {
    async fn open(sock: &Path) -> Result<LoadConn> {
        Ok(LoadConn {
            stream: UnixStream::connect(sock).await?,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Appends one frame with a distinct 100-byte body; fails unless the answer is a 200.
    async fn append(&mut self, topic: &str) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        let body = body();
        let mut req = format!(
            "POST /append/{topic} HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(&body);
        self.stream.write_all(&req).await?;
        self.buf.clear();
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..end])?.to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .ok_or("answer without content-length")?;
                let total = end + 4 + len;
                while self.buf.len() < total {
                    self.read_more().await?;
                }
                if !head.starts_with("HTTP/1.1 200") {
                    let body = String::from_utf8_lossy(&self.buf[end + 4..total]);
                    return Err(format!("POST /append/{topic}: {head} {body}").into());
                }
                return Ok(());
            }
            self.read_more().await?;
        }
    }

    async fn read_more(&mut self) -> Result<()> {
        use tokio::io::AsyncReadExt;
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            return Err("the daemon closed the connection".into());
        }
        Ok(())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Like [`append_load`] with optimistic concurrency: connection c appends to its own topic
/// `bench.expect<c>` (as deep as `bench.one`), each append expecting the id the previous one answered (`none` first).
async fn append_expect_load(sock: &Path, conns: usize, n: usize) -> Result<Duration> {
    let mut opened = Vec::with_capacity(conns);
    for _ in 0..conns {
        opened.push(Conn::open(sock, false).await?);
    }
    let next = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let tasks: Vec<_> = opened
        .into_iter()
        .enumerate()
        .map(|(c, mut conn)| {
            let next = next.clone();
            tokio::spawn(async move {
                let mut expect = "none".to_string();
                loop {
                    if next.fetch_add(1, Ordering::Relaxed) >= n {
                        return Ok::<_, Box<dyn std::error::Error + Send + Sync>>(());
                    }
                    let path = format!("/append/bench.expect{c}?expect={expect}");
                    let body = conn.append(&path).await?;
                    let id = frame_id(&body).ok_or("append answered no id")?;
                    expect = String::from_utf8_lossy(&id).into_owned();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(t.elapsed())
}

/// Replays `path` as `side`'s figure `name` (frames/s), with its summary line; returns the
/// frames read.
async fn replay_figure(
    side: &mut Side,
    sock: &Path,
    pid: u32,
    name: &'static str,
    path: &str,
    what: &str,
    summary: &mut Vec<String>,
) -> Result<usize> {
    let cpu = CpuMeter::start(pid);
    let (lines, bytes, el) = replay(sock, path).await?;
    side.report(name, lines as f64 / el.as_secs_f64(), "frames/s");
    summary.push(format!(
        "{}: {what}{lines} frames, {:.1} MiB in {el:.2?}; {}",
        side.name(name),
        bytes as f64 / MIB,
        cpu.describe(el)
    ));
    Ok(lines)
}

/// Reads `path` to its end, counting newline-terminated lines as bytes arrive.
/// Returns (lines, bytes, time from sending the request to the body's end).
async fn replay(sock: &Path, path: &str) -> Result<(usize, usize, Duration)> {
    let mut conn = Conn::open(sock, true).await?;
    let t = Instant::now();
    let res = conn.request(Method::GET, path, None).await?;
    if res.status() != StatusCode::OK {
        return Err(format!("GET {path}: {}", res.status()).into());
    }
    let mut body = res.into_body();
    let (mut lines, mut bytes) = (0usize, 0usize);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            bytes += data.len();
            lines += data.iter().filter(|&&b| b == b'\n').count();
        }
    }
    Ok((lines, bytes, t.elapsed()))
}

/// Follows `GET /?follow=true&new=true` on `follow_sock` while appending `n` frames one at a
/// time through `append_sock` (the same daemon, or another on the same stream); each latency
/// runs from just before the append is sent to the follower receiving that frame's line.
async fn follow_latency(append_sock: &Path, follow_sock: &Path, n: usize) -> Result<Vec<Duration>> {
    let mut follower = Conn::open(follow_sock, false).await?;
    let res = follower
        .request(Method::GET, "/?follow=true&new=true", None)
        .await?;
    if res.status() != StatusCode::OK {
        return Err(format!("GET /?follow=true&new=true: {}", res.status()).into());
    }
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<([u8; 25], Instant)>();
    let reader = tokio::spawn(async move {
        let mut body = res.into_body();
        let mut partial: Vec<u8> = Vec::with_capacity(4096);
        while let Some(Ok(frame)) = body.frame().await {
            let at = Instant::now();
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let mut rest = &data[..];
            while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
                let line = if partial.is_empty() {
                    &rest[..nl]
                } else {
                    partial.extend_from_slice(&rest[..nl]);
                    &partial[..]
                };
                if let Some(id) = frame_id(line) {
                    if seen_tx.send((id, at)).is_err() {
                        return;
                    }
                }
                partial.clear();
                rest = &rest[nl + 1..];
            }
            partial.extend_from_slice(rest);
        }
    });

    let mut writer = Conn::open(append_sock, false).await?;
    // Warm up until the follower is live (its subscription may start after the headers).
    let warm = Instant::now();
    'warm: loop {
        let id = frame_id(&writer.append("/append/bench.follow.warm").await?)
            .ok_or("append answered no id")?;
        let deadline = tokio::time::sleep(Duration::from_millis(200));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                got = seen_rx.recv() => {
                    let (seen, _) = got.ok_or("the follower's stream ended")?;
                    if seen == id { break 'warm; }
                }
                _ = &mut deadline => break,
            }
        }
        if warm.elapsed() > Duration::from_secs(10) {
            return Err("the follower saw nothing within 10 s".into());
        }
    }
    for _ in 0..20 {
        let id = frame_id(&writer.append("/append/bench.follow.warm").await?)
            .ok_or("append answered no id")?;
        while seen_rx.recv().await.ok_or("the follower's stream ended")?.0 != id {}
    }

    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let body = writer.append("/append/bench.follow").await?;
        let id = frame_id(&body).ok_or("append answered no id")?;
        let at = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let (seen, at) = seen_rx.recv().await?;
                if seen == id {
                    return Some(at);
                }
            }
        })
        .await
        .map_err(|_| "the follower did not see an appended frame within 10 s")?
        .ok_or("the follower's stream ended")?;
        lat.push(at.saturating_duration_since(t));
    }
    reader.abort();
    Ok(lat)
}

/// The `q` quantile of sorted latencies, in microseconds.
fn percentile_us(sorted: &[Duration], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e6
}

/// The `--nats` figures: daemons A and B on one stream in a 3-node JetStream cluster on
/// loopback, every node fsyncing each write (`sync_interval: always`), replicas 3.
async fn nats_figures(
    sel: &Selection,
    sizes: &Sizes,
    dir: &Path,
    summary: &mut Vec<String>,
) -> Result<()> {
    let cluster = cluster::NatsCluster::start().ok_or(
        "--nats needs nats-server >= 2.12.3: run scripts/nats-server.sh (or set XS_NATS_SERVER)",
    )?;
    let urls = cluster.urls();
    if sel.wants("nats_handler_first_100k") {
        nats_handler_figure(&urls, dir, summary).await?;
    }
    if sel.wants("nats_takeover") {
        nats_takeover_figure(&urls, dir, summary).await?;
    }
    let args = ["--nats", urls.as_str()];
    let (dir_a, dir_b) = (dir.join("nats-a"), dir.join("nats-b"));
    let (a, _) = Daemon::start(None, &dir_a, dir.join("nats-a.log"), &args).await?;
    let (b, _) = Daemon::start(None, &dir_b, dir.join("nats-b.log"), &args).await?;
    let (sock_a, sock_b) = (dir_a.join("sock"), dir_b.join("sock"));
    for (name, conns, n) in [
        ("nats_append_1conn", 1, sizes.append_1conn),
        ("nats_append_32conn", CONNS, sizes.append_32conn),
    ] {
        if sel.wants(name) {
            let cpu = CpuMeter::start(a.pid());
            let el = append_load(&sock_a, conns, n, |_| "bench.one").await?;
            report(name, n as f64 / el.as_secs_f64(), "frames/s");
            summary.push(format!(
                "{name}: {n} frames through A in {el:.2?}, each answered once the cluster stored it and A's copy applied it; A: {}",
                cpu.describe(el)
            ));
        }
    }
    if sel.wants("nats_follow_latency") {
        let mut lat = follow_latency(&sock_a, &sock_b, sizes.follow).await?;
        lat.sort_unstable();
        for (name, q) in [
            ("nats_follow_latency_p50", 0.5),
            ("nats_follow_latency_p99", 0.99),
        ] {
            if sel.wants(name) {
                report(name, percentile_us(&lat, q), "us");
            }
        }
        summary.push(format!(
            "nats_follow_latency: {} frames appended on A, seen by a follower on B: min {:.0} us, p90 {:.0} us, max {:.0} us",
            lat.len(),
            percentile_us(&lat, 0.0),
            percentile_us(&lat, 0.9),
            percentile_us(&lat, 1.0)
        ));
    }
    let needs_store = ["nats_build_store", "nats_replay_all", "nats_copy_rebuild"]
        .iter()
        .any(|f| sel.wants(f));
    if !needs_store {
        return Ok(());
    }
    let n = sizes.store;
    let cpu = CpuMeter::start(a.pid());
    let el = append_load(&sock_a, CONNS, n, |_| "bench.common").await?;
    report("nats_build_store", n as f64 / el.as_secs_f64(), "frames/s");
    summary.push(format!(
        "nats_build_store: {n} frames through A from {CONNS} connections in {el:.2?}; A: {}",
        cpu.describe(el)
    ));
    // Everything A stored is in B's copy once B has this frame (a copy applies in order).
    let end = Conn::open(&sock_a, false)
        .await?
        .append("/append/bench.end")
        .await?;
    let end = frame_id(&end).ok_or("append answered no id")?;
    let t = Instant::now();
    wait_for_frame(&sock_b, "bench.end", &end, Duration::from_secs(600)).await?;
    summary.push(format!(
        "B's copy held A's last frame {:.2?} after A answered it",
        t.elapsed()
    ));
    if sel.wants("nats_replay_all") {
        let what = "from B's local copy: ";
        let mut side = Side::ours();
        replay_figure(
            &mut side,
            &sock_b,
            b.pid(),
            "nats_replay_all",
            "/",
            what,
            summary,
        )
        .await?;
    }
    if sel.wants("nats_copy_rebuild") {
        b.stop()?;
        let copy = dir_b.join("copy");
        std::fs::remove_dir_all(&copy).map_err(|e| format!("removing {}: {e}", copy.display()))?;
        let t = Instant::now();
        let (b, answered) = Daemon::start(None, &dir_b, dir.join("nats-b2.log"), &args).await?;
        wait_for_frame(&sock_b, "bench.end", &end, Duration::from_secs(1800)).await?;
        let el = t.elapsed();
        report("nats_copy_rebuild", el.as_secs_f64(), "s");
        summary.push(format!(
            "nats_copy_rebuild: B restarted with its copy deleted answered in {answered:.2?}, held all ~{n} frames after {el:.2?} ({:.0} frames/s); B: VmHWM {:.1} MiB",
            n as f64 / el.as_secs_f64(),
            vm_hwm_mib(b.pid())?
        ));
        b.stop()?;
    }
    a.stop()?;
    Ok(())
}

/// Polls `GET /last/{topic}` on `sock` until it answers the frame `id`.
async fn wait_for_frame(sock: &Path, topic: &str, id: &[u8; 25], timeout: Duration) -> Result<()> {
    let t = Instant::now();
    let mut conn = Conn::open(sock, false).await?;
    loop {
        let res = conn
            .request(Method::GET, &format!("/last/{topic}"), None)
            .await?;
        let ok = res.status() == StatusCode::OK;
        let body = res.into_body().collect().await?.to_bytes();
        if ok && frame_id(&body).as_ref() == Some(id) {
            return Ok(());
        }
        if t.elapsed() > timeout {
            return Err(format!(
                "{} never showed {topic} frame within {timeout:?}",
                sock.display()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The 25-character id from a frame's JSON (`"id":"..."`), without parsing the JSON.
fn frame_id(json: &[u8]) -> Option<[u8; 25]> {
    const KEY: &[u8] = b"\"id\":\"";
    let at = json.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    json.get(at..at + 25)?.try_into().ok()
}

/// `nats_handler_first_100k`: `handler_first_100k` on a `--nats` daemon alone on stream
/// `HANDLER` (its checkpoints commit in the cluster).
async fn nats_handler_figure(urls: &str, dir: &Path, summary: &mut Vec<String>) -> Result<()> {
    let n = 100_000;
    let store = dir.join("nats-h");
    let args = ["--nats", urls, "--nats-stream", "HANDLER", "--name", "h"];
    let (daemon, _) = Daemon::start(None, &store, dir.join("nats-h.log"), &args).await?;
    let el = handler_throughput(&store.join("sock"), n)
        .await
        .map_err(|e| with_log(e, &dir.join("nats-h.log")))?;
    report(
        "nats_handler_first_100k",
        n as f64 / el.as_secs_f64(),
        "frames/s",
    );
    summary.push(format!(
        "nats_handler_first_100k: as handler_first_100k, on one --nats daemon: {n} frames checkpointed in the cluster in {el:.2?}"
    ));
    daemon.stop()
}

/// `e` followed by the last lines of a daemon's log.
fn with_log(
    e: Box<dyn std::error::Error + Send + Sync>,
    log: &Path,
) -> Box<dyn std::error::Error + Send + Sync> {
    let log = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(10).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    format!("{e}; the daemon's log ends with:\n{}", tail.join("\n")).into()
}

/// `nats_takeover`: two daemons on stream `TAKEOVER`, a handler running on one; seconds from
/// kill -9 of its owner until the other appends the handler's `active` frame.
async fn nats_takeover_figure(urls: &str, dir: &Path, summary: &mut Vec<String>) -> Result<()> {
    let mut daemons = Vec::new();
    for name in ["ta", "tb"] {
        let store = dir.join(format!("nats-{name}"));
        let args = ["--nats", urls, "--nats-stream", "TAKEOVER", "--name", name];
        let (d, _) =
            Daemon::start(None, &store, dir.join(format!("nats-{name}.log")), &args).await?;
        daemons.push((name, store.join("sock"), d));
    }
    let mut conn = Conn::open(&daemons[0].1, false).await?;
    let script = r#"{ topics: "bench.t", run: {|frame, state| {next: $state} } }"#;
    conn.post(
        "/append/xs.handler.takeover.create",
        Bytes::from_static(script.as_bytes()),
    )
    .await?;
    let t = Instant::now();
    let owner = loop {
        let res = conn.request(Method::GET, "/ps", None).await?;
        let body = res.into_body().collect().await?.to_bytes();
        let on = body
            .split(|b| *b == b'\n')
            .filter_map(|l| serde_json::from_slice::<serde_json::Value>(l).ok())
            .find(|r| r["name"] == "takeover" && r["state"] == "active")
            .and_then(|r| r["daemon"].as_str().map(String::from));
        if let Some(on) = on {
            break on;
        }
        if t.elapsed() > Duration::from_secs(60) {
            return Err("the takeover handler did not start within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let o = daemons
        .iter()
        .position(|(n, _, _)| *n == owner)
        .ok_or_else(|| format!("the handler runs on {owner}, not on ta or tb"))?;
    let (_, sock, survivor) = daemons.remove(1 - o);
    let (_, _, mut dead) = daemons.remove(0);
    let t = Instant::now();
    dead.kill9();
    let mut conn = Conn::open(&sock, false).await?;
    loop {
        let res = conn
            .request(Method::GET, "/last/xs.handler.takeover.active", None)
            .await?;
        let body = res.into_body().collect().await?.to_bytes();
        let next = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|f| f["meta"]["daemon"].as_str().map(String::from));
        if next.is_some_and(|n| n != owner) {
            break;
        }
        if t.elapsed() > Duration::from_secs(60) {
            return Err("no other daemon took the handler over within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let el = t.elapsed();
    report("nats_takeover", el.as_secs_f64(), "s");
    summary.push(format!(
        "nats_takeover: kill -9 of the handler's owner ({owner}) to the other daemon's active frame: {el:.2?} (2 daemons)"
    ));
    survivor.stop()
}
