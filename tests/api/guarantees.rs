//! The store's promises under stress, over raw HTTP: acknowledged appends survive kill -9, a
//! follower that does not read still gets every frame in order, and ids strictly increase
//! under concurrent writers.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::helper::http::{Conn, Stream};
use crate::helper::{ids, random_bytes, sri, Daemon};

/// Appends `per_task` frames to `topic` from each of `tasks` keep-alive connections at once.
/// Returns each task's frames in the order it appended them.
async fn append_concurrently(
    sock: &Path,
    topic: &str,
    tasks: usize,
    per_task: usize,
    content: fn(usize) -> Vec<u8>,
) -> Vec<Vec<Value>> {
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let sock: PathBuf = sock.to_path_buf();
        let topic = topic.to_string();
        set.spawn(async move {
            let mut conn = Conn::connect(&sock).await;
            let mut out = Vec::with_capacity(per_task);
            for i in 0..per_task {
                out.push(conn.append(&topic, content(t * per_task + i)).await);
            }
            (t, out)
        });
    }
    let mut all = vec![Vec::new(); tasks];
    while let Some(r) = set.join_next().await {
        let (t, frames) = r.expect("an append task panicked");
        all[t] = frames;
    }
    all
}

fn durability_content(n: usize) -> Vec<u8> {
    match n % 10 {
        0 => random_bytes(100 * 1024, n as u64),
        1 => Vec::new(),
        _ => random_bytes(1 + n % 300, n as u64),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_appends_survive_kill_9() {
    let mut d = Daemon::start();
    let acked: Vec<Value> = append_concurrently(&d.sock(), "durable", 4, 50, durability_content)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(acked.len(), 200);
    d.kill9();
    d.restart();

    let mut conn = Conn::connect(&d.sock()).await;
    let mut checked = 0;
    for t in 0..4 {
        for i in 0..50 {
            let f = &acked[t * 50 + i];
            let content = durability_content(t * 50 + i);
            let id = f["id"].as_str().unwrap();
            let got = conn.request("GET", &format!("/{id}"), &[], "").await;
            assert_eq!(got.status, 200, "frame {id} lost after kill -9");
            assert_eq!(&got.json(), f);
            if content.is_empty() {
                assert_eq!(f["hash"], Value::Null);
                continue;
            }
            assert_eq!(f["hash"], sri(&content));
            let c = conn
                .request(
                    "GET",
                    &format!("/cas/{}", f["hash"].as_str().unwrap()),
                    &[],
                    "",
                )
                .await;
            assert_eq!(c.status, 200, "content of {id} lost after kill -9");
            assert!(c.body == content, "content of {id} differs after kill -9");
            checked += 1;
        }
    }
    assert_eq!(checked, 180);
    let stored = d.read("topic=durable");
    assert_eq!(stored.len(), 200);
    let acked_ids: HashSet<String> = ids(&acked).into_iter().collect();
    assert_eq!(ids(&stored).into_iter().collect::<HashSet<_>>(), acked_ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_follower_gets_every_frame_in_order() {
    let d = Daemon::start();
    let mut s = Stream::open(&d.sock(), "/?follow&topic=load", &[]).await;
    assert_eq!(s.status, 200);
    // Don't read yet: the follower falls far behind the live channel.
    let appended =
        append_concurrently(&d.sock(), "load", 16, 625, |n| format!("{n}").into_bytes()).await;
    let mut expected: Vec<String> = appended.iter().flat_map(|f| ids(f)).collect();
    expected.sort();
    assert_eq!(expected.len(), 10_000);

    assert_eq!(s.next().await["topic"], "xs.threshold");
    let mut got = Vec::with_capacity(10_000);
    while got.len() < 10_000 {
        let f = s
            .next_within(Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("the follow stream ended after {} frames", got.len()));
        assert_eq!(f["topic"], "load", "frame {}", got.len());
        got.push(f["id"].as_str().unwrap().to_string());
    }
    for w in got.windows(2) {
        assert!(
            w[0] < w[1],
            "out of order or duplicated: {} then {}",
            w[0],
            w[1]
        );
    }
    assert_eq!(got, expected, "the follower missed frames");

    // And it is still live afterwards.
    let live = d.append("load", b"after");
    assert_eq!(s.next().await["id"], live["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ids_strictly_increase_under_concurrent_writers() {
    let d = Daemon::start();
    let per_writer = append_concurrently(&d.sock(), "w", 8, 500, |_| Vec::new()).await;
    for (t, frames) in per_writer.iter().enumerate() {
        let ids = ids(frames);
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "writer {t}'s sequential appends got non-increasing ids"
        );
    }
    let all: Vec<String> = per_writer.iter().flat_map(|f| ids(f)).collect();
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), 4000, "duplicate ids");

    let stored = ids(&d.read("topic=w"));
    assert_eq!(stored.len(), 4000);
    assert!(
        stored.windows(2).all(|w| w[0] < w[1]),
        "GET / is not in strictly increasing id order"
    );
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(stored, sorted);
}

/// Appends go on being answered once fjall starts a new journal (after 64 MB), and every
/// acknowledged one survives kill -9.
#[test]
fn appends_go_on_across_a_journal_rotation_and_survive_kill_9() {
    let mut d = Daemon::start();
    let fjall = d.dir().join("store").join("fjall");
    let rotated = || fjall.join("1.jnl").exists();
    let text = "j".repeat(1000);
    let mut acked = 0;
    // ~1.2 KB of journal a frame: a rotation within ~55 batches of 1,000; one batch after it.
    let mut after = 0;
    while after < 2 {
        assert!(acked < 200_000, "no second journal after {acked} frames");
        let mut body = Vec::new();
        for i in 0..1000 {
            let line = serde_json::json!({"topic": "rot", "text": format!("{acked} {i} {text}")});
            body.extend(serde_json::to_vec(&line).unwrap());
            body.push(b'\n');
        }
        let r = d.http("POST", "/append", &[], &body);
        assert_eq!(r.status, 200, "{}", r.text());
        acked += 1000;
        if rotated() {
            after += 1;
        }
    }
    d.kill9();
    d.restart();
    let topics = d.get("/topics").ndjson();
    let rot = topics
        .iter()
        .find(|t| t["topic"] == "rot")
        .expect("topic rot");
    assert_eq!(
        rot["count"], acked,
        "acknowledged frames lost across the rotation"
    );
}
