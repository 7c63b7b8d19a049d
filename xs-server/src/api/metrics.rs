//! `GET /metrics`: the daemon's figures in the Prometheus text format 0.0.4 — appends and
//! bytes by outcome, commit latency, open reads and followers' lag, processors by kind and
//! state, content sizes, and the HTTP gateway's requests. Written by hand (no metrics crate).

use std::collections::BTreeMap;
use std::fmt::Write;

use hyper::StatusCode;
use xs::backend::Metric;

use super::{respond, ApiResult};
use crate::body;
use crate::daemon::Daemon;
use crate::error::ApiError;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// This store's figures, and on the control store those of every store mounted through it;
/// every sample labelled `store="<its directory>"`.
pub async fn handle(daemon: Daemon) -> ApiResult {
    let mut all = store_metrics(&daemon).await?;
    let mut mounted = crate::stores::mounted(&daemon.stores);
    mounted.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, entry) in mounted {
        all.extend(store_metrics(&entry.daemon).await?);
    }
    // Each metric's samples together, under one HELP and TYPE.
    all.sort_by_key(|(_, m)| m.name);
    Ok(respond(
        StatusCode::OK,
        CONTENT_TYPE,
        body::full(render(&all)),
    ))
}

/// One store's figures, each with the store's directory.
async fn store_metrics(daemon: &Daemon) -> Result<Vec<(String, Metric)>, ApiError> {
    let mut all = vec![Metric {
        name: "xs_build_info",
        kind: "gauge",
        help: "The daemon's version, for each store it serves (always 1)",
        sample: None,
        labels: vec![("version", xs::VERSION.to_string())],
        value: 1.0,
    }];
    all.extend(daemon.store.metrics().await?);
    let mut by_state: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for p in crate::ps::list(&daemon.ps) {
        *by_state.entry((p.kind, p.state)).or_default() += 1;
    }
    for ((kind, state), n) in by_state {
        all.push(Metric {
            name: "xs_processors",
            kind: "gauge",
            help: "Processors (handlers, generators, actions, webhooks) by kind and state, as GET /ps lists them",
            sample: None,
            labels: vec![("kind", kind.to_string()), ("state", state.to_string())],
            value: n as f64,
        });
    }
    for (status, n) in daemon.gateway.snapshot() {
        all.push(Metric {
            name: "xs_http_requests_total",
            kind: "counter",
            help: "Requests answered by the --http gateway, by status",
            sample: None,
            labels: vec![("status", status.to_string())],
            value: n as f64,
        });
    }
    let store = daemon.state.display().to_string();
    Ok(all.into_iter().map(|m| (store.clone(), m)).collect())
}

/// The whole exposition: each metric's `# HELP` and `# TYPE` lines before its first sample,
/// `store` the first label of every sample.
fn render(metrics: &[(String, Metric)]) -> String {
    let mut out = String::new();
    let mut w = Writer(&mut out);
    let mut current = "";
    for (store, m) in metrics {
        if m.name != current {
            w.head(m.name, m.kind, m.help);
            current = m.name;
        }
        let mut labels: Vec<(&str, &str)> = vec![("store", store.as_str())];
        labels.extend(m.labels.iter().map(|(k, v)| (*k, v.as_str())));
        w.value(m.sample.unwrap_or(m.name), &labels, m.value);
    }
    out
}

struct Writer<'a>(&'a mut String);

impl Writer<'_> {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {}", escape(help, false));
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn value(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        self.labels(name, labels);
        let _ = writeln!(self.0, " {v}");
    }

    fn labels(&mut self, name: &str, labels: &[(&str, &str)]) {
        self.0.push_str(name);
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
    fn one_head_per_metric_then_its_samples() {
        let m = |sample, le: &str, value| Metric {
            name: "h",
            kind: "histogram",
            help: "a histogram",
            sample: Some(sample),
            labels: if le.is_empty() {
                vec![]
            } else {
                vec![("le", le.to_string())]
            },
            value,
        };
        let s = |m| ("/s".to_string(), m);
        let text = render(&[
            s(m("h_bucket", "0.00005", 1.0)),
            s(m("h_bucket", "+Inf", 2.0)),
            s(m("h_sum", "", 1.5)),
            s(m("h_count", "", 2.0)),
        ]);
        assert_eq!(
            text,
            "# HELP h a histogram\n# TYPE h histogram\nh_bucket{store=\"/s\",le=\"0.00005\"} 1\n\
             h_bucket{store=\"/s\",le=\"+Inf\"} 2\nh_sum{store=\"/s\"} 1.5\nh_count{store=\"/s\"} 2\n"
        );
    }
}
