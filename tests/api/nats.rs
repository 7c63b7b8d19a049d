//! Two daemons on one JetStream stream (`xs serve --nats`): a frame appended on one is
//! followed on the other, and `expect` holds across daemons (one winner, one 409). Skipped
//! with a SKIPPED line when no nats-server is installed (failing under `CI=1`).

#[path = "../helper/nats.rs"]
pub(super) mod cluster;

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

fn ack(d: &Daemon, name: &str, id: &str) -> u16 {
    d.http("POST", &format!("/consumers/{name}/ack?id={id}"), &[], b"")
        .status
}

fn position(d: &Daemon, name: &str) -> Option<String> {
    let r = d.get(&format!("/consumers/{name}"));
    match r.status {
        404 => None,
        200 => Some(r.json()["position"].as_str().unwrap().to_string()),
        s => panic!("GET /consumers/{name}: {s} {}", r.text()),
    }
}

#[test]
fn consumer_positions_are_shared_by_the_daemons() {
    let Some((a, b, _c)) = two_daemons() else {
        return;
    };
    let f: Vec<String> = (0..6).map(|i| id(&a.append("t", &[b'0' + i]))).collect();
    poll_until(Duration::from_secs(10), "b has a's frames", || {
        (b.read("topic=t").len() == 6).then_some(())
    });
    // An ack on A is B's position; B resumes after it.
    assert_eq!(ack(&a, "c", &f[2]), 204);
    assert_eq!(position(&b, "c").as_deref(), Some(f[2].as_str()));
    let rest: Vec<String> = b.read("consumer=c&topic=t").iter().map(id).collect();
    assert_eq!(rest, f[3..]);
    // Never backwards, whichever daemon acks.
    assert_eq!(ack(&b, "c", &f[4]), 204);
    assert_eq!(ack(&a, "c", &f[1]), 204);
    assert_eq!(position(&a, "c").as_deref(), Some(f[4].as_str()));
    // Listed on both, with each copy's lag.
    for d in [&a, &b] {
        let list = d.get("/consumers").ndjson();
        let c: Vec<&Value> = list.iter().filter(|c| c["name"] == "c").collect();
        assert_eq!(c.len(), 1, "{list:?}");
        assert_eq!(c[0]["position"], Value::String(f[4].clone()));
        assert!(c[0]["lag"].as_u64().unwrap() >= 1);
    }
    // An id appended on A and not yet applied by B is still acked on B (it waits for it).
    let g = id(&a.append("t", b"new"));
    assert_eq!(ack(&b, "c", &g), 204);
    assert_eq!(position(&a, "c").as_deref(), Some(g.as_str()));
    // Beyond the newest: refused on both.
    let beyond = "zzzzzzzzzzzzzzzzzzzzzzzzz";
    assert_eq!(ack(&a, "c", beyond), 400);
    // Removed on B: gone on A; removing again is a 404 on A.
    let r = b.http("DELETE", "/consumers/c", &[], b"");
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(position(&a, "c"), None);
    assert_eq!(a.http("DELETE", "/consumers/c", &[], b"").status, 404);
    // And acked again after removal.
    assert_eq!(ack(&a, "c", &f[0]), 204);
    assert_eq!(position(&b, "c").as_deref(), Some(f[0].as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_acks_on_two_daemons_keep_the_largest() {
    let Some((a, b, _c)) = two_daemons() else {
        return;
    };
    let f: Vec<String> = (0..40)
        .map(|i| id(&a.append("r", format!("{i}").as_bytes())))
        .collect();
    poll_until(Duration::from_secs(10), "b has a's frames", || {
        (b.read("topic=r").len() == 40).then_some(())
    });
    // Each daemon acks every id in a shuffled order at the same time.
    let mut tasks = Vec::new();
    for (n, sock) in [a.sock(), b.sock()].into_iter().enumerate() {
        let mut order = f.clone();
        if n == 1 {
            order.reverse();
        }
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::connect(&sock).await;
            for i in order {
                let r = conn
                    .request("POST", &format!("/consumers/race/ack?id={i}"), &[], "")
                    .await;
                assert_eq!(r.status, 204, "{}", r.text());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let newest = f.last().unwrap().as_str();
    assert_eq!(position(&a, "race").as_deref(), Some(newest));
    assert_eq!(position(&b, "race").as_deref(), Some(newest));
}

#[test]
fn purge_and_gc_reach_every_daemon_and_the_cluster() {
    let Some((a, b, c)) = two_daemons() else {
        return;
    };
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 249) as u8).collect();
    let shared: Vec<u8> = (0..50_000u32).map(|i| (i % 247) as u8).collect();
    let f1 = a.append("p", &big);
    let f2 = a.append("p", b"small and secret");
    let f3 = a.append("p", &shared);
    let f4 = a.append("q", &shared);
    poll_until(Duration::from_secs(10), "b has a's frames", || {
        (b.read("topic=p").len() == 3).then_some(())
    });
    let cas = |d: &Daemon, f: &Value| d.get(&format!("/cas/{}", f["hash"].as_str().unwrap()));
    assert_eq!(cas(&b, &f1).status, 200);
    assert_eq!(cas(&b, &f2).status, 200);

    // A purge on B: the frame and its content are gone on both daemons and in the cluster
    // (the message is deleted from the stream: its tombstone replaces it in the count).
    let before = c.stream_messages("E2E").expect("stream E2E");
    let r = b.http("DELETE", &format!("/{}?purge=true", id(&f1)), &[], b"");
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(c.stream_messages("E2E"), Some(before));
    poll_until(Duration::from_secs(10), "a applied the purge", || {
        (a.get(&format!("/{}", id(&f1))).status == 404).then_some(())
    });
    assert_eq!(
        cas(&a, &f1).status,
        404,
        "gone from a's copy and the object store"
    );
    assert_eq!(cas(&b, &f1).status, 404);
    // The same content appended again after its purge is stored again, for every daemon (the
    // purged object's entry, marked deleted, once passed for the object).
    let f5 = a.append("p2", &big);
    poll_until(Duration::from_secs(10), "b has the new frame", || {
        (b.get(&format!("/{}", id(&f5))).status == 200).then_some(())
    });
    let r = cas(&b, &f5);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.body == big, "b reads the content appended again");
    // Inline content the same way.
    assert_eq!(
        b.http("DELETE", &format!("/{}?purge=true", id(&f2)), &[], b"")
            .status,
        204
    );
    poll_until(
        Duration::from_secs(10),
        "a applied the second purge",
        || (cas(&a, &f2).status == 404).then_some(()),
    );
    // Content another frame still names survives a purge.
    assert_eq!(
        a.http("DELETE", &format!("/{}?purge=true", id(&f3)), &[], b"")
            .status,
        204
    );
    let r = cas(&b, &f4);
    assert_eq!(r.status, 200);
    assert!(r.body == shared);
    // A plain remove deletes the message too.
    let before = c.stream_messages("E2E").unwrap();
    assert_eq!(
        a.http("DELETE", &format!("/{}", id(&f4)), &[], b"").status,
        204
    );
    assert_eq!(c.stream_messages("E2E"), Some(before));

    // gc: content no frame names, posted on A, is collected from A's copy and the cluster,
    // so B cannot fetch it.
    let posted = a.http("POST", "/cas", &[], b"collect me");
    assert_eq!(posted.status, 200, "{}", posted.text());
    let hash = posted.text().trim().trim_matches('"').to_string();
    let gc = a.http("POST", "/gc", &[], b"");
    assert_eq!(gc.status, 200, "{}", gc.text());
    assert!(gc.json()["blobs"].as_u64().unwrap() >= 1, "{}", gc.text());
    assert_eq!(a.get(&format!("/cas/{hash}")).status, 404);
    assert_eq!(b.get(&format!("/cas/{hash}")).status, 404);
    // The purged frames stay gone for a copy rebuilt from the stream.
    let ids: Vec<String> = b.read("topic=p").iter().map(id).collect();
    assert!(ids.is_empty(), "{ids:?}");
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

#[test]
fn an_export_from_one_daemon_restores_into_a_local_store() {
    let Some((a, b, _c)) = two_daemons() else {
        return;
    };
    let big = crate::helper::random_bytes(200_000, 3);
    let appended = vec![
        a.append("doc", b"small"),
        a.append("doc.x", &big),
        a.append("doc", b""),
        a.append("other", b"two"),
    ];
    let want = crate::helper::ids(&appended);
    let last = want.last().unwrap().clone();
    // B exports once its copy has A's frames.
    poll_until(Duration::from_secs(10), "b's copy has a's frames", || {
        b.read("").iter().any(|f| id(f) == last).then_some(())
    });
    let r = b.get("/export?topic=doc,doc.*,other");
    assert_eq!(r.status, 200, "{}", r.text());
    let dst = Daemon::start();
    let start = crate::helper::ids(&dst.frames());
    let r = dst.http("POST", "/restore", &[], &r.body);
    assert_eq!(r.status, 200, "{}", r.text());
    let got: Vec<Value> = dst
        .frames()
        .into_iter()
        .filter(|f| !start.contains(&id(f)))
        .collect();
    assert_eq!(
        got, appended,
        "the same frames: ids, topics, hashes, meta, ttl"
    );
    for (f, body) in appended.iter().zip([&b"small"[..], &big, b"", b"two"]) {
        let Some(h) = f["hash"].as_str() else {
            assert!(body.is_empty());
            continue;
        };
        let c = dst.get(&format!("/cas/{h}"));
        assert_eq!(c.status, 200, "{}", c.text());
        assert!(c.body == body, "content {h} differs");
    }
}

#[test]
fn last_n_is_trimmed_in_the_cluster_too() {
    let Some((a, b, c)) = two_daemons() else {
        return;
    };
    let before = c.stream_messages("E2E").expect("stream E2E");
    let mut ids = Vec::new();
    for i in 0..5 {
        let r = a.http(
            "POST",
            "/append/keep?ttl=last:2",
            &[],
            format!("v{i}").as_bytes(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        ids.push(id(&r.json()));
    }
    poll_until(Duration::from_secs(10), "b reads the newest 2", || {
        let got: Vec<String> = b.read("topic=keep").iter().map(id).collect();
        (got == ids[3..]).then_some(())
    });
    poll_until(
        Duration::from_secs(10),
        "the cluster keeps 2 messages",
        || (c.stream_messages("E2E") == Some(before + 2)).then_some(()),
    );
}

#[test]
fn a_large_import_in_one_request_is_stored_whole() {
    let Some((a, b, _c)) = two_daemons() else {
        return;
    };
    // More lines than the writer's queue holds (1,024), in one body: queued as they commit,
    // never refused with "too many writes queued".
    let n = 5_000;
    let ids: Vec<String> = (0..n).map(|_| scru128::new().to_string()).collect();
    let body: String = ids
        .iter()
        .enumerate()
        .map(|(i, id)| format!("{{\"topic\":\"imp\",\"id\":\"{id}\",\"meta\":{{\"i\":{i}}}}}\n"))
        .collect();
    let r = a.http("POST", "/import", &[], body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let lines = r.ndjson();
    assert!(
        lines.iter().all(|l| l.get("error").is_none()),
        "an error line"
    );
    let got: Vec<&str> = lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(got, ids);
    let on_b = poll_until(Duration::from_secs(30), "B to hold the import", || {
        let f = b.read("topic=imp");
        (f.len() == n).then_some(f)
    });
    assert_eq!(on_b.last().unwrap()["id"], ids[n - 1].as_str());
}
