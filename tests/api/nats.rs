//! Two daemons on one JetStream stream (`xs serve --nats`): a frame appended on one is
//! followed on the other, and `expect` holds across daemons (one winner, one 409). Skipped
//! with a SKIPPED line when no nats-server is installed (failing under `CI=1`).

#[path = "../helper/nats.rs"]
mod cluster;

use std::time::Duration;

use serde_json::Value;

use crate::helper::http::{Conn, Stream};
use crate::helper::{poll_until, Daemon};
use cluster::NatsCluster;

/// Two daemons on stream `E2E` of a fresh cluster. Dropped in order: daemons, then cluster.
fn two_daemons() -> Option<(Daemon, Daemon, NatsCluster)> {
    let c = NatsCluster::start()?;
    let urls = c.urls();
    let args = ["--nats", urls.as_str(), "--nats-stream", "E2E"];
    let a = Daemon::start_with(&args);
    let b = Daemon::start_with(&args);
    Some((a, b, c))
}

fn id(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_on_one_daemon_is_followed_on_the_other() {
    let Some((a, b, _c)) = two_daemons() else {
        return;
    };
    let mut s = Stream::open(&b.sock(), "/?follow&topic=chat", &[]).await;
    assert_eq!(s.status, 200);
    let th = s.next().await;
    assert_eq!(th["topic"], "xs.threshold");

    let f = a.append("chat", b"hello from a");
    let got = s
        .next_within(Duration::from_secs(10))
        .await
        .expect("daemon b sees the frame appended on a");
    assert_eq!(id(&got), id(&f));
    assert_eq!(got["hash"], f["hash"]);
    // Content travels too, and a read of b's copy has it.
    let hash = f["hash"].as_str().unwrap();
    let r = b.get(&format!("/cas/{hash}"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, b"hello from a");

    // And the other way round, with large content (object store).
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let g = b.append("chat", &big);
    let got = s.next_within(Duration::from_secs(10)).await.expect("live");
    assert_eq!(id(&got), id(&g));
    let r = a.get(&format!("/cas/{}", g["hash"].as_str().unwrap()));
    assert_eq!(r.status, 200);
    assert!(r.body == big, "large content read back on the other daemon");

    // Both copies hold the same frames in the same order (a's once its feed has b's frame).
    let want = [id(&f), id(&g)];
    let ids_b: Vec<String> = b.read("topic=chat").iter().map(id).collect();
    assert_eq!(ids_b, want);
    poll_until(Duration::from_secs(10), "a's copy has b's frame", || {
        let ids_a: Vec<String> = a.read("topic=chat").iter().map(id).collect();
        (ids_a == want).then_some(())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_races_across_daemons_have_one_winner() {
    let Some((a, b, _c)) = two_daemons() else {
        return;
    };
    let mut expect = "none".to_string();
    for round in 0..10 {
        let path = format!("/append/acct?expect={expect}");
        let (mut ca, mut cb) = (
            Conn::connect(&a.sock()).await,
            Conn::connect(&b.sock()).await,
        );
        let (ra, rb) = tokio::join!(
            ca.request("POST", &path, &[], format!("a {round}")),
            cb.request("POST", &path, &[], format!("b {round}")),
        );
        let mut statuses = [ra.status, rb.status];
        statuses.sort();
        assert_eq!(
            statuses,
            [200, 409],
            "round {round}: a {} {}, b {} {}",
            ra.status,
            ra.text(),
            rb.status,
            rb.text()
        );
        let (won, lost) = if ra.status == 200 { (ra, rb) } else { (rb, ra) };
        let winner = id(&won.json());
        // The loser planned again on its copy caught up with the winner's frame.
        assert_eq!(
            lost.json()["last"],
            Value::String(winner.clone()),
            "round {round}"
        );
        expect = winner;
    }
    let ids_a: Vec<String> = a.read("topic=acct").iter().map(id).collect();
    assert_eq!(ids_a.len(), 10, "one frame per round");
    poll_until(Duration::from_secs(10), "both copies agree", || {
        let ids_b: Vec<String> = b.read("topic=acct").iter().map(id).collect();
        (ids_b == ids_a).then_some(())
    });
}

#[test]
fn without_the_cluster_appends_answer_503_and_reads_go_on() {
    let Some((a, _b, mut c)) = two_daemons() else {
        return;
    };
    let f = a.append("t", b"before");
    for i in 0..c.len() {
        c.kill9(i);
    }
    let t0 = std::time::Instant::now();
    let r = a.http("POST", "/append/t", &[], b"during");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(t0.elapsed() < Duration::from_secs(30));
    let ids: Vec<String> = a.read("topic=t").iter().map(id).collect();
    assert_eq!(ids, [id(&f)], "the copy still answers reads");
}

/// A store added to a daemon with `--nats` keeps its stream in the cluster: a frame appended
/// through its socket is read by a standalone daemon on the same stream, and the mounted
/// store comes back on the stream after the daemon restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_added_with_nats_keeps_its_stream_in_the_cluster() {
    let Some(c) = NatsCluster::start() else {
        return;
    };
    let urls = c.urls();
    let mut ctl = Daemon::start();
    let path = ctl.dir().join("shared");
    let add = crate::helper::xs(
        &[
            "store",
            "add",
            ctl.addr(),
            "shared",
            path.to_str().unwrap(),
            "--nats",
            urls.as_str(),
            "--nats-stream",
            "MOUNTED",
        ],
        b"",
    )
    .ok()
    .json();
    assert_eq!(add["topic"], "xs.store.shared.active", "{add}");
    let sock = path.join("sock");
    let r = crate::helper::request(&sock, "POST", "/append/note", &[], b"via the mount")
        .expect("append");
    assert_eq!(r.status, 200, "{}", r.text());
    let f = r.json();
    let other = Daemon::start_with(&["--nats", urls.as_str(), "--nats-stream", "MOUNTED"]);
    poll_until(Duration::from_secs(10), "the other daemon reads it", || {
        other
            .read("topic=note")
            .iter()
            .any(|g| g["id"] == f["id"])
            .then_some(())
    });
    ctl.stop();
    ctl.restart();
    poll_until(Duration::from_secs(20), "the store mounted again", || {
        sock.exists().then_some(())
    });
    let g = other.append("note", b"while it was down");
    poll_until(
        Duration::from_secs(10),
        "the remounted store catches up",
        || {
            let r = crate::helper::request(&sock, "GET", "/?topic=note", &[], b"").ok()?;
            r.ndjson().iter().any(|h| h["id"] == g["id"]).then_some(())
        },
    );
}
