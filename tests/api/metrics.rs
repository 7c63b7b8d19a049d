//! `GET /metrics` / `xs metrics`: every line parses as the Prometheus text format 0.0.4 (a
//! small parser below checks names, labels, values, HELP/TYPE), and the figures reflect what
//! the test did: appends and bytes by outcome, commits, open reads and followers, processors
//! by kind and state, content sizes.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::helper::{poll_until, random_bytes, xs, Daemon, LiveCli};

/// One sample: metric name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses an exposition, panicking on any line that is not valid text format 0.0.4, on a
/// sample whose family has no `# TYPE` before it, and on a family typed twice.
fn parse(text: &str) -> Vec<Sample> {
    assert!(text.ends_with('\n'), "the exposition ends with a newline");
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashMap<String, String> = HashMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP has a name and a text");
            assert!(valid_name(name), "bad name in {line:?}");
            assert!(!help.is_empty(), "empty HELP in {line:?}");
            assert!(
                helps.insert(name.into(), help.into()).is_none(),
                "HELP twice: {line:?}"
            );
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE has a name and a type");
            assert!(valid_name(name), "bad name in {line:?}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "bad type in {line:?}"
            );
            assert!(
                types.insert(name.into(), kind.into()).is_none(),
                "TYPE twice: {line:?}"
            );
        } else {
            assert!(
                !line.starts_with('#') && !line.is_empty(),
                "stray line {line:?}"
            );
            let s = sample(line);
            let family = family_of(&s.name, &types);
            assert!(types.contains_key(&family), "no TYPE before {line:?}");
            assert!(helps.contains_key(&family), "no HELP before {line:?}");
            samples.push(s);
        }
    }
    samples
}

fn valid_name(n: &str) -> bool {
    let mut cs = n.chars();
    cs.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The family a sample belongs to (`x_bucket`, `x_sum`, `x_count` of histogram `x`).
fn family_of(name: &str, types: &HashMap<String, String>) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if types.get(base).is_some_and(|t| t == "histogram") {
                return base.to_string();
            }
        }
    }
    name.to_string()
}

fn sample(line: &str) -> Sample {
    let b = line.as_bytes();
    let name_end = line
        .find(['{', ' '])
        .unwrap_or_else(|| panic!("no value in {line:?}"));
    let name = &line[..name_end];
    assert!(valid_name(name), "bad metric name in {line:?}");
    let mut i = name_end;
    let mut labels = BTreeMap::new();
    if b[i] == b'{' {
        i += 1;
        while b.get(i) != Some(&b'}') {
            let eq = line[i..]
                .find('=')
                .unwrap_or_else(|| panic!("label without = in {line:?}"))
                + i;
            let key = &line[i..eq];
            assert!(
                valid_name(key) && !key.contains(':'),
                "bad label name in {line:?}"
            );
            assert_eq!(
                b.get(eq + 1),
                Some(&b'"'),
                "unquoted label value in {line:?}"
            );
            i = eq + 2;
            let mut value = String::new();
            loop {
                match b.get(i).copied() {
                    None => panic!("unterminated label value in {line:?}"),
                    Some(b'\\') => {
                        match b.get(i + 1) {
                            Some(b'\\') => value.push('\\'),
                            Some(b'"') => value.push('"'),
                            Some(b'n') => value.push('\n'),
                            _ => panic!("bad escape in {line:?}"),
                        }
                        i += 2;
                    }
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(_) => {
                        let c = line[i..].chars().next().expect("a char");
                        value.push(c);
                        i += c.len_utf8();
                    }
                }
            }
            assert!(
                labels.insert(key.to_string(), value).is_none(),
                "label twice in {line:?}"
            );
            match b.get(i) {
                Some(b',') => i += 1,
                Some(b'}') => {}
                _ => panic!("bad label list in {line:?}"),
            }
        }
        i += 1;
    }
    let value = line[i..]
        .strip_prefix(' ')
        .unwrap_or_else(|| panic!("no space before the value in {line:?}"));
    assert!(!value.contains(' '), "timestamps are not used: {line:?}");
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}")),
    };
    Sample {
        name: name.to_string(),
        labels,
        value,
    }
}

/// The value of the one sample of `name` with exactly `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name && s.labels == want)
        .collect();
    assert_eq!(found.len(), 1, "one sample {name}{labels:?}: {found:?}");
    found[0].value
}

/// The daemon's samples, each checked to be labelled with its store's directory, which is
/// then left out of the labels.
fn metrics(d: &Daemon) -> Vec<Sample> {
    let r = d.get("/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let mut samples = parse(&r.text());
    for s in &mut samples {
        assert_eq!(s.labels.remove("store").as_deref(), Some(d.addr()), "{s:?}");
    }
    samples
}

#[test]
fn metrics_parse_and_reflect_what_was_done() {
    let d = Daemon::start();
    d.append("chat", b"hello");
    d.append("chat", b"");
    let big = random_bytes(100_000, 9);
    d.append("big", &big);
    // Two rejected appends: a bad topic (refused by the route), a failed expect (by the store).
    d.http("POST", "/append/bad..topic", &[], b"x")
        .assert_error(400);
    let conflict = d.http("POST", "/append/chat?expect=none", &[], b"xyz");
    assert_eq!(conflict.status, 409, "{}", conflict.text());
    // A webhook (a processor that needs no Nushell), and a follower.
    let hook = br#"{"url": "http://127.0.0.1:9/hook", "topics": "nothing"}"#;
    d.append("xs.webhook.w.create", hook);
    poll_until(Duration::from_secs(10), "the webhook to be active", || {
        d.get("/ps")
            .ndjson()
            .iter()
            .any(|p| p["state"] == "active")
            .then_some(())
    });
    let follower = LiveCli::spawn(&["cat", d.addr(), "-f"]);
    poll_until(Duration::from_secs(10), "the follower's threshold", || {
        (follower.next_json()["topic"] == "xs.threshold").then_some(())
    });

    let s = poll_until(Duration::from_secs(10), "the follower to catch up", || {
        let s = metrics(&d);
        (value(&s, "xs_follower_lag_frames_max", &[]) == 0.0).then_some(s)
    });
    // Every stored frame was an append (the daemon's own frames too).
    let frames = d.frames();
    let stored_bytes: u64 = frames
        .iter()
        .filter_map(|f| f["hash"].as_str())
        .map(|h| d.get(&format!("/cas/{h}")).body.len() as u64)
        .sum();
    assert_eq!(
        value(&s, "xs_appends_total", &[("outcome", "ok")]),
        frames.len() as f64
    );
    assert_eq!(
        value(&s, "xs_appends_total", &[("outcome", "rejected")]),
        2.0
    );
    assert_eq!(value(&s, "xs_appends_total", &[("outcome", "failed")]), 0.0);
    assert_eq!(
        value(&s, "xs_append_bytes_total", &[("outcome", "ok")]),
        stored_bytes as f64
    );
    assert_eq!(
        value(&s, "xs_append_bytes_total", &[("outcome", "rejected")]),
        3.0
    );

    // The commit histogram: cumulative buckets, +Inf equal to the count, at least one commit
    // per append (group commit may share one among several).
    let buckets: Vec<&Sample> = s
        .iter()
        .filter(|x| x.name == "xs_commit_duration_seconds_bucket")
        .collect();
    assert!(buckets.len() >= 2);
    for w in buckets.windows(2) {
        assert!(w[0].value <= w[1].value, "buckets are cumulative: {w:?}");
        let le = |x: &Sample| x.labels["le"].parse::<f64>().unwrap_or(f64::INFINITY);
        assert!(le(w[0]) < le(w[1]), "bounds increase: {w:?}");
    }
    let count = value(&s, "xs_commit_duration_seconds_count", &[]);
    assert_eq!(buckets.last().unwrap().labels["le"], "+Inf");
    assert_eq!(buckets.last().unwrap().value, count);
    assert!(
        count >= 1.0 && count <= frames.len() as f64 + 2.0,
        "{count} commits"
    );
    assert!(value(&s, "xs_commit_duration_seconds_sum", &[]) > 0.0);

    // Reads: the follower (and nothing else) is open and following.
    assert_eq!(value(&s, "xs_read_streams_open", &[]), 1.0);
    assert_eq!(value(&s, "xs_followers", &[]), 1.0);
    assert_eq!(
        value(
            &s,
            "xs_processors",
            &[("kind", "webhook"), ("state", "active")]
        ),
        1.0
    );
    assert_eq!(value(&s, "xs_cas_entries", &[("location", "file")]), 1.0);
    assert_eq!(
        value(&s, "xs_cas_bytes", &[("location", "file")]),
        big.len() as f64
    );
    assert!(value(&s, "xs_cas_entries", &[("location", "inline")]) >= 2.0);
    assert_eq!(
        value(
            &s,
            "xs_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );

    // The follower goes away: so does its read.
    drop(follower);
    poll_until(Duration::from_secs(10), "the read to close", || {
        let s = metrics(&d);
        (value(&s, "xs_read_streams_open", &[]) == 0.0 && value(&s, "xs_followers", &[]) == 0.0)
            .then_some(())
    });

    // `xs metrics` prints the same exposition.
    let out = xs(&["metrics", d.addr()], b"").ok();
    let cli = parse(out.stdout_str());
    assert!(cli.iter().any(|x| x.name == "xs_appends_total"));
    d.assert_no_panic();
}

#[test]
fn a_lagging_follower_shows_in_the_lag() {
    let d = Daemon::start();
    // A follower that never reads: its position stays where its history ended while the
    // live frames pile up in its socket (and then in the live channel).
    let sock = d.sock();
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    use std::io::Write;
    s.write_all(b"GET /?follow HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    poll_until(
        Duration::from_secs(10),
        "the follower to be counted",
        || (value(&metrics(&d), "xs_followers", &[]) == 1.0).then_some(()),
    );
    for i in 0..1500 {
        d.append("fill", format!("frame {i} {}", "x".repeat(2000)).as_bytes());
    }
    let lag = value(&metrics(&d), "xs_follower_lag_frames_max", &[]);
    assert!(lag > 0.0 && lag <= 1500.0, "lag {lag}");
    drop(s);
}

/// On the control store, `GET /metrics` also has every mounted store's samples, each labelled
/// with its directory (the parser checks one HELP and TYPE per family).
#[test]
fn the_control_store_shows_every_mounted_store_labelled() {
    let d = Daemon::start();
    let path = d.dir().join("mounted");
    let config = serde_json::json!({ "path": path }).to_string();
    d.append("xs.store.m.create", config.as_bytes());
    poll_until(Duration::from_secs(30), "store m active", || {
        let r = d.get("/stores");
        r.text().contains("\"state\":\"active\"").then_some(())
    });
    let text = d.get("/metrics").text();
    let samples = parse(&text);
    let of = |store: &str| {
        samples
            .iter()
            .filter(|s| s.name == "xs_build_info" && s.labels["store"] == store)
            .count()
    };
    assert_eq!(of(d.addr()), 1, "{text}");
    assert_eq!(of(path.to_str().unwrap()), 1, "{text}");
    assert!(
        samples.iter().all(|s| s.labels.contains_key("store")),
        "{text}"
    );
}
