//! Kill -9 torture (run by `scripts/torture.sh [ROUNDS]`): each round runs 32 concurrent
//! writers against the real daemon, SIGKILLs it at a random moment, checks the store offline
//! (`Store::check`), restarts it, and verifies the log against what the writers know.
//!
//! Checked after every round: every acknowledged frame is present with its id and hash and
//! byte-exact content (unless a newer frame trimmed it under `last:n`), no frame appears that
//! was never sent or was lost in an earlier crash, ids strictly increase, every `GET /?topic=`
//! equals filtering `GET /`, and the store opens and checks clean.

#[allow(dead_code)]
#[path = "../helper/mod.rs"]
mod helper;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use helper::{random_bytes, request, sri, Daemon};
use serde_json::Value;

const WRITERS: usize = 32;
/// The n of the `last:n` topics.
const LAST_N: usize = 5;

/// What the writers know: every request sent, and the answer if one came.
#[derive(Default)]
struct Ledger {
    /// (writer, seq) → topic, for every request ever sent.
    sent: HashMap<(u64, u64), String>,
    /// (writer, seq) → acknowledged frame id.
    acked: HashMap<(u64, u64), String>,
}

/// What is known to be in the store: frames seen or acknowledged, and lost in-flight ones.
#[derive(Default)]
struct Known {
    /// (writer, seq) → id, of frames that were committed (acknowledged, or found after a crash).
    committed: HashMap<(u64, u64), String>,
    /// In-flight requests that were not committed before a crash: must never appear.
    lost: HashSet<(u64, u64)>,
    /// Frames whose content was checked byte for byte.
    content_checked: HashSet<(u64, u64)>,
}

/// Deterministic size of a writer's seq-th content: mostly small, one in four over 16 KiB.
fn content_for(w: u64, seq: u64) -> Vec<u8> {
    let h = (w * 1_000_003 + seq).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
    let len = match h % 8 {
        0 => 0,
        1 | 2 => 16 * 1024 + 1 + (h as usize / 8) % (96 * 1024),
        _ => (h as usize / 8) % 1500,
    };
    random_bytes(len, w << 32 | seq)
}

fn topic_for(w: u64, seq: u64) -> (String, bool) {
    if (w + seq).is_multiple_of(5) {
        (format!("t.last{}", w % 4), true)
    } else {
        (format!("t.keep{}", w % 8), false)
    }
}

fn writer(sock: std::path::PathBuf, w: u64, ledger: Arc<Mutex<Ledger>>, stop: Arc<AtomicBool>) {
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let (topic, last) = topic_for(w, seq);
        let body = content_for(w, seq);
        let meta = base64_json(&serde_json::json!({ "w": w, "seq": seq }));
        let path = if last {
            format!("/append/{topic}?ttl=last:{LAST_N}")
        } else {
            format!("/append/{topic}")
        };
        ledger.lock().unwrap().sent.insert((w, seq), topic);
        match request(&sock, "POST", &path, &[("xs-meta", &meta)], &body) {
            Ok(r) if r.status == 200 => {
                let f = r.json();
                let id = f["id"].as_str().expect("an id").to_string();
                let want_hash = (!body.is_empty()).then(|| sri(&body));
                assert_eq!(f["hash"].as_str(), want_hash.as_deref(), "acked hash");
                ledger.lock().unwrap().acked.insert((w, seq), id);
            }
            // The daemon is being killed: the request stays in flight (maybe committed).
            Ok(r) => panic!("writer {w}: append answered {}: {}", r.status, r.text()),
            Err(_) => return,
        }
    }
}

fn base64_json(v: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(v.to_string())
}

/// A small xorshift, seeded from the clock (printed, so a failing run can be replayed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
#[ignore = "long: run by scripts/torture.sh"]
fn kill9_torture() {
    let rounds: usize = std::env::var("TORTURE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let seed = std::env::var("TORTURE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(now_nanos);
    eprintln!("torture: {rounds} rounds, TORTURE_SEED={seed}");
    let mut rng = Rng(seed | 1);
    let mut d = Daemon::start();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut known = Known::default();
    let mut seqs_base = 0u64;
    let started = Instant::now();
    for round in 1..=rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..WRITERS as u64)
            .map(|i| {
                let (sock, ledger, stop) = (d.sock(), ledger.clone(), stop.clone());
                // Writer ids are unique across rounds, so (writer, seq) names one request.
                let w = seqs_base + i;
                std::thread::spawn(move || writer(sock, w, ledger, stop))
            })
            .collect();
        seqs_base += WRITERS as u64;
        let wait = Duration::from_millis(300 + rng.next() % 2_200);
        std::thread::sleep(wait);
        d.kill9();
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().expect("a writer panicked");
        }

        // Offline: the store opens and its log and indexes agree.
        {
            let store = xs::local::Local::open(&d.store, xs::LocalOptions::default())
                .unwrap_or_else(|e| panic!("round {round}: the store does not open: {e}"));
            let report = store.check().expect("checking the store");
            assert!(
                report.problems.is_empty(),
                "round {round}: inconsistent store: {:#?}",
                report.problems
            );
        }
        d.restart();
        let (frames, acked_now) = verify(&d, &ledger.lock().unwrap(), &mut known, round);
        eprintln!(
            "torture round {round}/{rounds}: killed after {wait:?}; {acked_now} frames acked so far, {frames} in the store"
        );
    }
    let l = ledger.lock().unwrap();
    eprintln!(
        "torture: {rounds} rounds, {} appends sent, {} acknowledged, {} lost in flight, {:.1}s",
        l.sent.len(),
        l.acked.len(),
        known.lost.len(),
        started.elapsed().as_secs_f64()
    );
    d.assert_no_panic();
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

/// Checks the restarted daemon against the ledger; returns (frames in store, acked so far).
fn verify(d: &Daemon, l: &Ledger, known: &mut Known, round: usize) -> (usize, usize) {
    let all = d.frames();
    // Ids strictly increase over the whole log.
    let ids: Vec<&str> = all.iter().map(|f| f["id"].as_str().unwrap()).collect();
    for w in ids.windows(2) {
        assert!(
            w[0] < w[1],
            "round {round}: ids out of order: {} then {}",
            w[0],
            w[1]
        );
    }
    // Every present frame was sent, is not a lost one, and matches its ack.
    let mut present: HashMap<(u64, u64), &Value> = HashMap::new();
    for f in all
        .iter()
        .filter(|f| !f["topic"].as_str().unwrap().starts_with("xs."))
    {
        let key = (
            f["meta"]["w"].as_u64().expect("meta.w"),
            f["meta"]["seq"].as_u64().expect("meta.seq"),
        );
        let topic = l
            .sent
            .get(&key)
            .unwrap_or_else(|| panic!("round {round}: frame never sent: {f}"));
        assert!(
            !known.lost.contains(&key),
            "round {round}: a lost frame came back: {f}"
        );
        assert_eq!(f["topic"].as_str(), Some(topic.as_str()), "{f}");
        let body = content_for(key.0, key.1);
        let want_hash = (!body.is_empty()).then(|| sri(&body));
        assert_eq!(
            f["hash"].as_str(),
            want_hash.as_deref(),
            "round {round}: hash of {f}"
        );
        if let Some(id) = l.acked.get(&key).or(known.committed.get(&key)) {
            assert_eq!(
                f["id"].as_str(),
                Some(id.as_str()),
                "round {round}: id of {f}"
            );
        }
        if !known.content_checked.contains(&key) {
            if let Some(h) = &want_hash {
                let r = d.get(&format!("/cas/{h}"));
                assert_eq!(r.status, 200, "round {round}: content of {f}");
                assert!(r.body == body, "round {round}: content of {f} differs");
            }
            known.content_checked.insert(key);
        }
        present.insert(key, f);
    }
    // Requests sent but neither acked nor present: lost with the crash, for good.
    for key in l.sent.keys() {
        if !l.acked.contains_key(key)
            && !present.contains_key(key)
            && !known.committed.contains_key(key)
        {
            known.lost.insert(*key);
        }
    }
    for (key, f) in &present {
        known
            .committed
            .insert(*key, f["id"].as_str().unwrap().to_string());
    }
    // Every committed frame is present, unless trimmed by newer frames of its `last:n` topic.
    let mut by_topic: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for f in &all {
        by_topic
            .entry(f["topic"].as_str().unwrap())
            .or_default()
            .push(f["id"].as_str().unwrap());
    }
    for (key, id) in &known.committed {
        if present.contains_key(key) {
            continue;
        }
        let topic = &l.sent[key];
        assert!(
            topic.starts_with("t.last"),
            "round {round}: acknowledged frame {id} ({topic}, writer {} seq {}) is missing",
            key.0,
            key.1
        );
        let newer = by_topic
            .get(topic.as_str())
            .map_or(0, |ids| ids.iter().filter(|i| **i > id.as_str()).count());
        assert!(
            newer >= LAST_N,
            "round {round}: frame {id} of {topic} is missing with only {newer} newer frames"
        );
    }
    for (topic, ids) in &by_topic {
        if topic.starts_with("t.last") {
            assert!(
                ids.len() <= LAST_N,
                "round {round}: {topic} has {} frames",
                ids.len()
            );
        }
    }
    // The topic index agrees with the log, for every topic and prefix.
    let mut filters: Vec<String> = by_topic.keys().map(|t| t.to_string()).collect();
    filters.extend(["t.*", "xs.*", "t.keep0,t.last1", "nothing"].map(String::from));
    for filter in filters {
        let via_index = d.read(&format!("topic={filter}"));
        let f = xs::TopicFilter::parse(&filter).expect("a valid filter");
        let via_log: Vec<&Value> = all
            .iter()
            .filter(|v| f.matches(v["topic"].as_str().unwrap()))
            .collect();
        assert_eq!(
            via_index.iter().collect::<Vec<_>>(),
            via_log,
            "round {round}: GET /?topic={filter} differs from filtering GET /"
        );
    }
    (all.len(), l.acked.len())
}
