//! The store on disk. A full filesystem: the daemon's store on a small tmpfs (needs root to
//! mount; skipped with a message otherwise). Appends on a full disk answer 507 and store
//! nothing, the daemon keeps serving, and appends work again as soon as space is back, without
//! a restart. A clean stop leaves a small store: no journal to replay, at most twice the raw
//! bytes of the frames.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::helper::{random_bytes, topics, Daemon};

/// Unmounts the tmpfs on drop (after the daemon, declared later, is gone).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Writes zeros into `path` until the filesystem is full.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("creating the filler");
    let chunk = vec![0u8; 1024 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let small = [0u8; 4096];
    while f.write_all(&small).is_ok() {}
    let _ = f.sync_all();
}

fn cacache_tmp_files(store: &Path) -> usize {
    std::fs::read_dir(store.join("cacache").join("tmp")).map_or(0, |d| d.count())
}

#[test]
fn full_disk_answers_507_stores_nothing_and_recovers() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mnt = tmp.path().join("mnt");
    // 160 MiB: the default reserve (64 MiB) plus room; tmpfs uses memory only when filled.
    let Some(_tmpfs) = Tmpfs::mount(&mnt, "160m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let store = mnt.join("store");
    let d = Daemon::start_on(tempfile::tempdir().expect("temp dir"), store.clone());
    d.append("before", b"small");
    let before = d.frames();

    // Below the reserve (the filler leaves no free byte at all): refused, nothing stored.
    let filler = mnt.join("filler");
    fill(&filler);
    let small = d.http("POST", "/append/full", &[], b"hello");
    let msg = small.assert_error(507);
    assert!(msg.contains("free"), "{msg}");
    let large = random_bytes(200 * 1024, 7);
    d.http("POST", "/append/full", &[], &large)
        .assert_error(507);
    d.http("POST", "/cas", &[], &large).assert_error(507);
    d.http("POST", "/append/full?ttl=last:1", &[], b"")
        .assert_error(507);
    assert_eq!(d.frames(), before, "nothing is stored on a full disk");
    assert_eq!(cacache_tmp_files(&store), 0, "no temp file is left behind");
    assert_eq!(d.get("/version").status, 200, "the daemon keeps serving");
    assert_eq!(d.read("topic=full").len(), 0);

    // Space is back: appends work again, without a restart.
    std::fs::remove_file(&filler).expect("removing the filler");
    let f = d.append("full", b"hello");
    let g = d.append("full", &large);
    assert_eq!(topics(&d.read("topic=full")), ["full", "full"]);
    let h = g["hash"].as_str().expect("a hash");
    assert_eq!(d.get(&format!("/cas/{h}")).body, large);
    assert_ne!(f["id"], g["id"]);

    // Large content that runs into the full disk while streaming: 507, temp file removed.
    let free = {
        let st = free_bytes(&mnt);
        st.saturating_sub(64 * 1024 * 1024)
    };
    let too_big = random_bytes(free as usize + 4 * 1024 * 1024, 9);
    d.http("POST", "/append/big", &[], &too_big)
        .assert_error(507);
    assert_eq!(cacache_tmp_files(&store), 0, "no temp file is left behind");
    assert_eq!(d.read("topic=big").len(), 0);
    d.append("after", b"ok");
    d.assert_no_panic();
}

/// Free bytes on the filesystem of `p` (via `df`, to keep the test free of extra crates).
fn free_bytes(p: &Path) -> u64 {
    let out = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(p)
        .output()
        .expect("running df");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df prints the free bytes")
}

/// Bytes a directory takes on disk, like `du` (allocated blocks), and the largest fjall journal
/// (`fjall/*.jnl`) in it.
fn disk_use(store: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let (mut total, mut journal) = (0, 0);
    let mut dirs = vec![store.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir)
            .expect("reading the store")
            .flatten()
        {
            let m = std::fs::symlink_metadata(e.path()).expect("a file's metadata");
            if m.is_dir() {
                dirs.push(e.path());
                continue;
            }
            total += m.blocks() * 512;
            if e.path().extension().is_some_and(|x| x == "jnl") {
                journal = journal.max(m.blocks() * 512);
            }
        }
    }
    (total, journal)
}

#[test]
fn a_clean_stop_leaves_no_journal_and_a_store_under_twice_the_raw_bytes() {
    const FRAMES: usize = 20_000;
    const PER_REQUEST: usize = 1_000;
    let mut d = Daemon::start();
    for r in 0..FRAMES / PER_REQUEST {
        let mut body = Vec::new();
        for i in 0..PER_REQUEST {
            // 100 bytes of content each, as hex: distinct, and as hard to compress as text is.
            let seed = (r * PER_REQUEST + i) as u64;
            let text: String = random_bytes(50, seed)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            body.extend_from_slice(
                format!("{{\"topic\":\"disk\",\"text\":\"{text}\"}}\n").as_bytes(),
            );
        }
        let res = d.http("POST", "/append", &[], &body);
        assert_eq!(res.status, 200, "{}", res.text());
    }
    let all = d.get("/");
    let raw = (all.body.len() + FRAMES * 100) as u64;
    let before = d.frames().len();
    assert!(d.stop().success(), "{}", d.log());

    let (total, journal) = disk_use(&d.store);
    eprintln!("after a clean stop: {total} bytes on disk, largest journal {journal}; raw {raw}");
    assert!(
        journal <= 64 * 1024,
        "a clean stop left a fjall journal of {journal} bytes to replay"
    );
    assert!(
        total <= 2 * raw,
        "the store takes {total} bytes on disk, more than twice the raw {raw}"
    );

    // The emptied journal takes new appends, and they survive a kill -9.
    d.restart();
    assert_eq!(
        d.frames().len(),
        before + 2,
        "every frame, then xs.stopping and xs.start"
    );
    let f = d.append("after", b"after the clean stop");
    d.kill9();
    d.restart();
    let frames = d.frames();
    assert_eq!(frames.len(), before + 4);
    assert!(
        frames.iter().any(|g| g["id"] == f["id"]),
        "the acknowledged append survived kill -9"
    );
    d.assert_no_panic();
}
