//! `GET /metrics`: the daemon's figures in the Prometheus text format 0.0.4 — appends and
//! bytes by outcome, commit latency, open reads and followers' lag, processors by kind and
//! state, content sizes, and the HTTP gateway's requests. Written by hand (no metrics crate).

use std::collections::BTreeMap;
use std::fmt::Write;

use hyper::StatusCode;
use xs::store::{MetricsSnapshot, Outcome, COMMIT_BUCKETS};

use super::{respond, ApiResult};
use crate::{body, Daemon};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn handle(daemon: Daemon) -> ApiResult {
    let store = daemon.store.clone();
    let snap = tokio::task::spawn_blocking(move || store.metrics())
        .await
        .map_err(|e| xs::Error::Internal(format!("metrics task failed: {e}")))??;
    let processors = crate::ps::list(daemon.store.path());
    let mut by_state: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for p in &processors {
        *by_state.entry((p.kind, p.state)).or_default() += 1;
    }
    let gateway = daemon.gateway.snapshot();
    let text = render(&snap, &by_state, &gateway);
    Ok(respond(StatusCode::OK, CONTENT_TYPE, body::full(text)))
}

/// The whole exposition: every metric with its `# HELP` and `# TYPE` lines.
fn render(
    s: &MetricsSnapshot,
    processors: &BTreeMap<(&str, &str), u64>,
    gateway: &[(u16, u64)],
) -> String {
    let mut out = String::new();
    let mut m = Writer(&mut out);
    m.head("xs_build_info", "gauge", "The daemon's version (always 1)");
    m.line("xs_build_info", &[("version", xs::VERSION)], 1);

    m.head(
        "xs_appends_total",
        "counter",
        "Frames appended, by outcome: ok (stored), rejected (bad input, failed expect: 4xx), failed (the store could not take it: 5xx)",
    );
    for o in Outcome::ALL {
        m.line(
            "xs_appends_total",
            &[("outcome", o.as_str())],
            s.appends[o as usize],
        );
    }
    m.head(
        "xs_append_bytes_total",
        "counter",
        "Content bytes of the frames appended, by outcome",
    );
    for o in Outcome::ALL {
        m.line(
            "xs_append_bytes_total",
            &[("outcome", o.as_str())],
            s.append_bytes[o as usize],
        );
    }

    m.head(
        "xs_commit_duration_seconds",
        "histogram",
        "Time to write and fdatasync one group-commit batch",
    );
    for (i, le) in COMMIT_BUCKETS.iter().enumerate() {
        m.line(
            "xs_commit_duration_seconds_bucket",
            &[("le", &le.to_string())],
            s.commit_buckets[i],
        );
    }
    let count = s.commit_buckets[COMMIT_BUCKETS.len()];
    m.line(
        "xs_commit_duration_seconds_bucket",
        &[("le", "+Inf")],
        count,
    );
    m.value("xs_commit_duration_seconds_sum", &[], s.commit_seconds_sum);
    m.line("xs_commit_duration_seconds_count", &[], count);

    m.head(
        "xs_read_streams_open",
        "gauge",
        "Reads being answered (GET /, GET /last?follow, .cat), history or live",
    );
    m.line("xs_read_streams_open", &[], s.reads_open);
    m.head(
        "xs_followers",
        "gauge",
        "Reads that follow the live stream (past their history)",
    );
    m.line("xs_followers", &[], s.followers);
    m.head(
        "xs_follower_lag_frames_max",
        "gauge",
        "Stored frames the furthest-behind follower has not yet considered (capped at 100000)",
    );
    m.line("xs_follower_lag_frames_max", &[], s.follower_lag_max);

    m.head(
        "xs_processors",
        "gauge",
        "Processors (handlers, generators, actions, webhooks) by kind and state, as GET /ps lists them",
    );
    for ((kind, state), n) in processors {
        m.line("xs_processors", &[("kind", kind), ("state", state)], *n);
    }

    m.head(
        "xs_cas_entries",
        "gauge",
        "Content blobs: inline (in fjall, approximate) and file (cacache)",
    );
    m.line(
        "xs_cas_entries",
        &[("location", "inline")],
        s.inline_entries,
    );
    m.line("xs_cas_entries", &[("location", "file")], s.file_entries);
    m.head(
        "xs_cas_bytes",
        "gauge",
        "Content size in bytes: inline (fjall disk space, compressed) and file (cacache)",
    );
    m.line(
        "xs_cas_bytes",
        &[("location", "inline")],
        s.inline_disk_bytes,
    );
    m.line("xs_cas_bytes", &[("location", "file")], s.file_bytes);

    m.head(
        "xs_http_requests_total",
        "counter",
        "Requests answered by the --http gateway, by status",
    );
    for (status, n) in gateway {
        m.line(
            "xs_http_requests_total",
            &[("status", &status.to_string())],
            *n,
        );
    }
    out
}

struct Writer<'a>(&'a mut String);

impl Writer<'_> {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {}", escape(help, false));
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn line(&mut self, name: &str, labels: &[(&str, &str)], v: u64) {
        self.labels(name, labels);
        let _ = writeln!(self.0, " {v}");
    }

    fn value(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        self.labels(name, labels);
        let _ = writeln!(self.0, " {v}");
    }

    fn labels(&mut self, name: &str, labels: &[(&str, &str)]) {
        self.0.push_str(name);
        if labels.is_empty() {
            return;
        }
        self.0.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                self.0.push(',');
            }
            let _ = write!(self.0, "{k}=\"{}\"", escape(v, true));
        }
        self.0.push('}');
    }
}

/// Escapes a HELP text (`\` and newline) or a label value (also `"`).
fn escape(s: &str, quote: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd", true), "a\\\"b\\\\c\\nd");
        assert_eq!(escape("say \"hi\"", false), "say \"hi\"");
    }

    #[test]
    fn histogram_ends_with_inf_sum_and_count() {
        let mut s = MetricsSnapshot {
            commit_buckets: [1; COMMIT_BUCKETS.len() + 1],
            commit_seconds_sum: 1.5,
            ..MetricsSnapshot::default()
        };
        s.commit_buckets[COMMIT_BUCKETS.len()] = 2;
        let text = render(&s, &BTreeMap::new(), &[(200, 3)]);
        assert!(
            text.contains("xs_commit_duration_seconds_bucket{le=\"0.00005\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("xs_commit_duration_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("xs_commit_duration_seconds_sum 1.5\n"));
        assert!(text.contains("xs_commit_duration_seconds_count 2\n"));
        assert!(text.contains("xs_http_requests_total{status=\"200\"} 3\n"));
    }
}
