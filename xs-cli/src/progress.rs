//! Progress of long transfers (`xs export`, `xs restore`): frames, bytes and rate on stderr,
//! at most once a second, and only when stderr is a terminal.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    what: &'static str,
    enabled: bool,
    started: Instant,
    shown: Option<Instant>,
}

impl Progress {
    pub fn new(what: &'static str) -> Progress {
        Progress {
            what,
            enabled: std::io::stderr().is_terminal(),
            started: Instant::now(),
            shown: None,
        }
    }

    /// Shows the counts if a second has passed since the last time.
    pub fn update(&mut self, frames: u64, bytes: u64) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        let due = self.shown.unwrap_or(self.started) + Duration::from_secs(1);
        if now >= due {
            self.show(frames, bytes, false);
            self.shown = Some(now);
        }
    }

    /// Shows the final counts (if anything was shown before) and ends the line.
    pub fn finish(&mut self, frames: u64, bytes: u64) {
        if self.enabled && self.shown.is_some() {
            self.show(frames, bytes, true);
        }
    }

    fn show(&self, frames: u64, bytes: u64, last: bool) {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let mib = bytes as f64 / (1024.0 * 1024.0);
        let line = format!(
            "\rxs {}: {frames} frames, {mib:.1} MiB, {:.1} MiB/s, {:.0} frames/s{}",
            self.what,
            mib / secs,
            frames as f64 / secs,
            if last { "\n" } else { "" }
        );
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
}
