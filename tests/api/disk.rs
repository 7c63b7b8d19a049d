//! A full filesystem: the daemon's store on a small tmpfs (needs root to mount; skipped with a
//! message otherwise). Appends on a full disk answer 507 and store nothing, the daemon keeps
//! serving, and appends work again as soon as space is back, without a restart.

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
