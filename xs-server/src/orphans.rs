//! Generator processes never outlive their daemon, however it ends (even `kill -9`), so a
//! generator never runs twice.
//!
//! Nushell spawns a generator's externals itself, with no hook for a parent-death signal. So
//! every process a generator starts carries its daemon run's [`Tag`] in its environment
//! (`XS_GENERATOR_OF=<store>#<run>`, inherited by what it starts in turn), and two sweeps
//! end the tagged processes:
//!
//! - the **guard**, a small process the daemon starts (`xs __guard TAG`), waits for its stdin
//!   pipe to close — the kernel closes it when the daemon dies, by any means — and then kills
//!   every process tagged with that run;
//! - at **start-up**, before any generator runs, the daemon kills every process tagged with
//!   any earlier run of the same store (in case the guard died too).
//!
//! A process is matched by its environment as it is now, read through a pidfd that the kill
//! then goes through: only a descendant of a generator of this store can carry the tag, and a
//! pid recycled in between is never signalled (the pidfd names the process, not the number).
//! A process that clears its environment (`env -i`) escapes; processes of other users cannot
//! be read or signalled and are skipped.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use rustix::process::{pidfd_open, pidfd_send_signal, Pid, PidfdFlags, Signal};

/// The environment variable that tags a generator's processes.
pub const ENV: &str = "XS_GENERATOR_OF";

/// The hidden subcommand the guard runs as: `<exe> __guard TAG`.
pub const GUARD_ARG: &str = "__guard";

/// One daemon run of one store: `<canonical store path>#<run>`, where `<run>` is unique to
/// this daemon process.
#[derive(Clone, Debug)]
pub struct Tag(String);

impl Tag {
    pub fn new(store: &Path) -> Tag {
        let run = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        );
        Tag(format!("{}#{run}", store_key(store)))
    }

    /// The tag of another store mounted by the same daemon run: same run, so the run's one
    /// guard covers it.
    pub fn sibling(&self, store: &Path) -> Tag {
        let run = self.0.rsplit_once('#').map_or("", |(_, r)| r);
        Tag(format!("{}#{run}", store_key(store)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn store_key(store: &Path) -> String {
    std::fs::canonicalize(store)
        .unwrap_or_else(|_| store.to_path_buf())
        .to_string_lossy()
        .into_owned()
}

/// Kills every process tagged by an earlier run of the daemon on `store`; returns how many.
pub fn sweep_store(store: &Path) -> usize {
    let key = store_key(store);
    sweep(|tag| tag.rsplit_once('#').is_some_and(|(s, _)| s == key))
}

/// Kills every process tagged with `tag`'s run (of any store that run mounted); returns how
/// many.
pub fn sweep_run(tag: &str) -> usize {
    let run = |t: &str| t.rsplit_once('#').map(|(_, r)| r.to_string());
    let mine = run(tag);
    sweep(|t| t == tag || (mine.is_some() && run(t) == mine))
}

/// Kills (SIGKILL) every process whose environment has `XS_GENERATOR_OF` with a value
/// `matches` accepts, except this process.
fn sweep(matches: impl Fn(&str) -> bool) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let me = std::process::id();
    let mut killed = 0;
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid as u32 == me {
            continue;
        }
        let Some(p) = Pid::from_raw(pid) else {
            continue;
        };
        // Open the pidfd first: the environment read next is then that process's, and the
        // signal cannot reach another process that got the same pid meanwhile.
        let Ok(fd) = pidfd_open(p, PidfdFlags::empty()) else {
            continue;
        };
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if tag_of(&env).is_some_and(&matches) && pidfd_send_signal(&fd, Signal::KILL).is_ok() {
            killed += 1;
        }
    }
    killed
}

/// The `XS_GENERATOR_OF` value in a `/proc/<pid>/environ` image (NUL-separated `K=V`).
fn tag_of(environ: &[u8]) -> Option<&str> {
    environ.split(|b| *b == 0).find_map(|kv| {
        let v = kv.strip_prefix(ENV.as_bytes())?.strip_prefix(b"=")?;
        std::str::from_utf8(v).ok()
    })
}

/// The running guard of this daemon run. Dropping it closes the pipe: the guard sweeps (by
/// then the daemon has ended its generators, so normally nothing is left) and exits.
pub struct Guard {
    child: Child,
}

impl Guard {
    /// Starts `<exe> __guard TAG` in a process group of its own (a Ctrl-C meant for the
    /// daemon does not end it), its stdin a pipe only this process holds.
    pub fn spawn(exe: &PathBuf, tag: &Tag) -> std::io::Result<Guard> {
        use std::os::unix::process::CommandExt;
        let child = Command::new(exe)
            .arg(GUARD_ARG)
            .arg(tag.as_str())
            .env_remove(ENV)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()?;
        Ok(Guard { child })
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        // It exits at once; reap it if it already has, else init will.
        let _ = self.child.try_wait();
    }
}

/// The guard's whole life (`xs __guard TAG`): wait until stdin reaches end of file (the
/// daemon is gone), kill the processes tagged with `tag`'s run, exit.
pub fn guard_main(tag: &str) -> std::process::ExitCode {
    let mut buf = [0u8; 64];
    let mut stdin = std::io::stdin();
    loop {
        match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let n = sweep_run(tag);
    if n > 0 {
        eprintln!("xs guard: the daemon is gone; killed {n} generator process(es) of {tag}");
    }
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_tag_in_an_environ_image() {
        let env = b"A=1\0XS_GENERATOR_OF_X=no\0XS_GENERATOR_OF=/s#1-2\0B=\0";
        assert_eq!(tag_of(env), Some("/s#1-2"));
        assert_eq!(tag_of(b"XS_GENERATOR_OFX=1\0"), None);
        assert_eq!(tag_of(b""), None);
    }

    #[test]
    fn a_store_matches_its_own_runs_only() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        let ab = tmp.path().join("a#b");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&ab).unwrap();
        let key = store_key(&a);
        let of_ab = Tag::new(&ab);
        let (store, _) = of_ab.as_str().rsplit_once('#').unwrap();
        assert_ne!(store, key, "a#b is another store than a");
        let of_a = Tag::new(&a);
        assert_eq!(of_a.as_str().rsplit_once('#').unwrap().0, key);
    }
}
