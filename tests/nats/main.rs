//! Spike for the JetStream backend (issue 14): the async-nats 0.51 client API and the
//! nats-server 2.15 behaviours the backend rests on, checked against a real 3-node cluster on
//! loopback (`tests/helper/nats.rs`, `sync_interval: always`, replicas 3). What each test
//! establishes is written up in `docs/jetstream.md`. Skipped with a note when no nats-server
//! is installed (outside CI); `--nocapture` prints the measured latencies.

#[path = "../helper/nats.rs"]
mod cluster;

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, kv, object_store, stream};
use async_nats::{Client, HeaderMap};
use bytes::Bytes;
use cluster::NatsCluster;
use futures::StreamExt;
use serde_json::Value;
use tokio::io::AsyncReadExt;

/// The subject prefix frames live under (`<prefix>.<topic>`), and the stream's name.
const PREFIX: &str = "xs";
const STREAM: &str = "XS";

/// A cluster, a client connected to all its nodes, and the stream `XS` on `xs.>`: replicas 3,
/// per-message TTLs, atomic batches, roll-ups, direct gets.
struct Fixture {
    // Dropped last: the client and stream handles go first.
    client: Client,
    js: jetstream::Context,
    stream: stream::Stream,
    cluster: NatsCluster,
}

async fn fixture() -> Option<Fixture> {
    let cluster = NatsCluster::start()?;
    let client = async_nats::ConnectOptions::new()
        .request_timeout(Some(Duration::from_secs(2)))
        .connect(cluster.url_list())
        .await
        .expect("connecting to the cluster");
    let js = jetstream::new(client.clone());
    let stream = create_stream(&js).await;
    wait_writable(&client).await;
    Some(Fixture {
        client,
        js,
        stream,
        cluster,
    })
}

/// Creates the stream `XS`. A freshly healthy cluster on a busy machine can take longer than
/// one request timeout (2 s here) to place a replicas-3 stream, so a timed-out create is
/// asked again (the same config again is not an error) for up to 30 s.
async fn create_stream(js: &jetstream::Context) -> stream::Stream {
    let t0 = Instant::now();
    loop {
        let created = js
            .get_or_create_stream(stream::Config {
                name: STREAM.into(),
                subjects: vec![format!("{PREFIX}.>")],
                num_replicas: 3,
                storage: stream::StorageType::File,
                allow_message_ttl: true,
                allow_atomic_publish: true,
                allow_rollup: true,
                allow_direct: true,
                ..Default::default()
            })
            .await;
        match created {
            Ok(stream) => return stream,
            Err(e) => assert!(
                t0.elapsed() < Duration::from_secs(30),
                "creating the stream: {e:?}"
            ),
        }
    }
}

/// Waits until the stream takes publishes. Right after `create_stream` (replicas 3) a
/// publish can be answered "no responders" for a moment: the stream's leader is elected but
/// not yet subscribed. The probe expects an impossible last sequence, so the stream answers
/// 10071 and stores nothing.
async fn wait_writable(client: &Client) {
    let t0 = Instant::now();
    loop {
        let probe = headers(&[("Nats-Expected-Last-Sequence", "18446744073709551615")]);
        match publish(client, &format!("{PREFIX}.probe"), probe, b"").await {
            Err(e) if e.err_code == 10071 => return,
            other => assert!(
                t0.elapsed() < Duration::from_secs(30),
                "the stream never took publishes: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A JetStream API error as the server sends it in a pub ack (`{"error": {...}}`), or a
/// transport failure (`err_code` 0).
#[derive(Debug, Clone)]
struct ApiErr {
    code: u64,
    err_code: u64,
    description: String,
}

/// A pub ack: `{"stream","seq","duplicate","batch","count"}`.
#[derive(Debug, Clone)]
struct Ack {
    seq: u64,
    duplicate: bool,
    batch: Option<String>,
    count: Option<u64>,
}

fn transport(e: impl std::fmt::Display) -> ApiErr {
    ApiErr {
        code: 0,
        err_code: 0,
        description: e.to_string(),
    }
}

fn parse_ack(payload: &[u8]) -> Result<Ack, ApiErr> {
    let v: Value = serde_json::from_slice(payload).map_err(|e| {
        transport(format!(
            "not a pub ack ({e}): {}",
            String::from_utf8_lossy(payload)
        ))
    })?;
    if let Some(e) = v.get("error") {
        return Err(ApiErr {
            code: e["code"].as_u64().unwrap_or(0),
            err_code: e["err_code"].as_u64().unwrap_or(0),
            description: e["description"].as_str().unwrap_or("").to_string(),
        });
    }
    Ok(Ack {
        seq: v["seq"].as_u64().expect("seq in a pub ack"),
        duplicate: v["duplicate"].as_bool().unwrap_or(false),
        batch: v["batch"].as_str().map(str::to_string),
        count: v["count"].as_u64(),
    })
}

/// One JetStream publish as a core request, its pub ack parsed (error codes kept).
async fn publish(
    client: &Client,
    subject: &str,
    headers: HeaderMap,
    payload: &'static [u8],
) -> Result<Ack, ApiErr> {
    let reply = client
        .request_with_headers(subject.to_string(), headers, Bytes::from_static(payload))
        .await
        .map_err(transport)?;
    parse_ack(&reply.payload)
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, *v);
    }
    h
}

/// A message of an atomic batch.
struct Msg {
    subject: String,
    headers: HeaderMap,
    payload: Bytes,
}

fn msg(subject: &str, pairs: &[(&str, &str)], payload: &'static [u8]) -> Msg {
    Msg {
        subject: subject.to_string(),
        headers: headers(pairs),
        payload: Bytes::from_static(payload),
    }
}

/// An ADR-50 atomic batch by hand: every message carries `Nats-Batch-Id` and
/// `Nats-Batch-Sequence` (1, 2, ...); the first is a request (the server answers an empty
/// message, or an error), the middle ones plain publishes, the last carries
/// `Nats-Batch-Commit: 1` and is a request answered by the batch's pub ack. `expect_last`
/// goes on the first message as `Nats-Expected-Last-Sequence`. `pipelined`: the first
/// message's reply goes to an inbox read after the commit instead of being awaited (one round
/// trip fewer).
async fn atomic_batch(
    client: &Client,
    msgs: Vec<Msg>,
    expect_last: Option<u64>,
    pipelined: bool,
) -> Result<Ack, ApiErr> {
    let id = scru128::new_string();
    let n = msgs.len();
    let mut first_reply: Option<async_nats::Subscriber> = None;
    for (i, mut m) in msgs.into_iter().enumerate() {
        m.headers.insert("Nats-Batch-Id", id.as_str());
        m.headers
            .insert("Nats-Batch-Sequence", (i + 1).to_string().as_str());
        if i == 0 {
            if let Some(seq) = expect_last {
                m.headers
                    .insert("Nats-Expected-Last-Sequence", seq.to_string().as_str());
            }
        }
        if i + 1 == n {
            m.headers.insert("Nats-Batch-Commit", "1");
            let reply = client
                .request_with_headers(m.subject, m.headers, m.payload)
                .await
                .map_err(transport)?;
            let ack = parse_ack(&reply.payload);
            if let Some(mut sub) = first_reply {
                // The first message's answer: empty when it was accepted into the batch.
                let r: async_nats::Message =
                    tokio::time::timeout(Duration::from_secs(5), sub.next())
                        .await
                        .map_err(transport)?
                        .ok_or_else(|| transport("inbox closed"))?;
                if !r.payload.is_empty() && ack.is_ok() {
                    return Err(parse_ack(&r.payload).expect_err("an error or nothing"));
                }
            }
            return ack;
        } else if i == 0 && pipelined {
            let inbox = client.new_inbox();
            let sub = client.subscribe(inbox.clone()).await.map_err(transport)?;
            client
                .publish_with_reply_and_headers(m.subject, inbox, m.headers, m.payload)
                .await
                .map_err(transport)?;
            first_reply = Some(sub);
        } else if i == 0 {
            let reply = client
                .request_with_headers(m.subject, m.headers, m.payload)
                .await
                .map_err(transport)?;
            if !reply.payload.is_empty() {
                return Err(parse_ack(&reply.payload).expect_err("an error or nothing"));
            }
        } else {
            client
                .publish_with_headers(m.subject, m.headers, m.payload)
                .await
                .map_err(transport)?;
        }
    }
    unreachable!("an empty batch")
}

async fn last_seq(js: &jetstream::Context) -> u64 {
    let mut s = js.get_stream(STREAM).await.expect("the stream");
    s.info().await.expect("stream info").state.last_sequence
}

async fn count(js: &jetstream::Context) -> u64 {
    let mut s = js.get_stream(STREAM).await.expect("the stream");
    s.info().await.expect("stream info").state.messages
}

fn p(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * q).round() as usize]
}

#[tokio::test]
async fn stream_config_and_server_settings() {
    let Some(f) = fixture().await else { return };
    let info =
        f.js.get_stream(STREAM)
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .clone();
    assert_eq!(info.config.num_replicas, 3);
    assert!(info.config.allow_message_ttl, "allow_msg_ttl echoed back");
    assert!(info.config.allow_atomic_publish, "allow_atomic echoed back");
    let replicas = info.cluster.as_ref().expect("cluster info").replicas.len();
    assert_eq!(replicas, 2, "a leader and two replicas: {:?}", info.cluster);

    // Every node runs with sync_interval: always (an fsync per write).
    for i in 0..f.cluster.len() {
        let (status, body) = f.cluster.monitor(i, "/varz").unwrap();
        assert_eq!(status, 200);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["version"], cluster::PINNED_VERSION);
        assert_eq!(
            v["jetstream"]["config"]["sync_always"], true,
            "{}",
            v["jetstream"]
        );
    }
    drop(f.stream);
}

#[tokio::test]
async fn publish_headers_expectations_ttl_and_reads() {
    let Some(f) = fixture().await else { return };
    let c = &f.client;

    // Nats-Msg-Id: a retry within the duplicate window answers the original sequence.
    let a1 = publish(c, "xs.a.b", headers(&[("Nats-Msg-Id", "k1")]), b"one")
        .await
        .unwrap();
    let a2 = publish(c, "xs.a.b", headers(&[("Nats-Msg-Id", "k1")]), b"one")
        .await
        .unwrap();
    assert_eq!((a1.seq, a1.duplicate), (1, false));
    assert_eq!(
        (a2.seq, a2.duplicate),
        (1, true),
        "the retry answers the original"
    );

    // Nats-Expected-Last-Subject-Sequence: the seq of the subject's last message (0: none).
    let e = publish(
        c,
        "xs.a.b",
        headers(&[("Nats-Expected-Last-Subject-Sequence", "0")]),
        b"x",
    )
    .await
    .unwrap_err();
    assert_eq!((e.code, e.err_code), (400, 10071), "{e:?}");
    assert_eq!(e.description, "wrong last sequence: 1");
    let a3 = publish(
        c,
        "xs.a.b",
        headers(&[("Nats-Expected-Last-Subject-Sequence", "1")]),
        b"two",
    )
    .await
    .unwrap();
    assert_eq!(a3.seq, 2);
    let a4 = publish(
        c,
        "xs.c",
        headers(&[("Nats-Expected-Last-Subject-Sequence", "0")]),
        b"c",
    )
    .await
    .unwrap();
    assert_eq!(a4.seq, 3);

    // Nats-Expected-Last-Sequence: the stream's last sequence.
    let e = publish(
        c,
        "xs.c",
        headers(&[("Nats-Expected-Last-Sequence", "2")]),
        b"x",
    )
    .await
    .unwrap_err();
    assert_eq!((e.code, e.err_code), (400, 10071), "{e:?}");
    assert_eq!(e.description, "wrong last sequence: 3");
    assert_eq!(count(&f.js).await, 3, "rejected publishes store nothing");

    // The crate's own publish maps 10071 to WrongLastSequence.
    let err =
        f.js.publish_with_headers(
            "xs.c",
            headers(&[("Nats-Expected-Last-Sequence", "1")]),
            "x".into(),
        )
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        jetstream::context::PublishErrorKind::WrongLastSequence
    );

    // Nats-TTL: a Go duration or whole seconds, at least 1 s (below: 10165). Removal runs
    // from the stored timestamp; how close to the deadline it happens is measured here.
    let e = publish(c, "xs.t", headers(&[("Nats-TTL", "500ms")]), b"x")
        .await
        .unwrap_err();
    assert_eq!(e.err_code, 10165, "{e:?}");
    for ttl in ["1s", "1500ms"] {
        let t0 = Instant::now();
        let t = publish(c, "xs.t", headers(&[("Nats-TTL", ttl)]), b"short")
            .await
            .unwrap();
        let got = f.stream.get_raw_message(t.seq).await.unwrap();
        assert_eq!(got.headers.get("Nats-TTL").unwrap().as_str(), ttl);
        loop {
            match f.stream.get_raw_message(t.seq).await {
                Ok(_) => assert!(t0.elapsed() < Duration::from_secs(10), "never removed"),
                Err(e) => {
                    assert_eq!(e.kind(), stream::RawMessageErrorKind::NoMessageFound, "{e}");
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let removed_after = t0.elapsed();
        eprintln!("Nats-TTL: {ttl} removed the message after {removed_after:?}");
        assert!(removed_after >= Duration::from_secs(1));
        if ttl == "1500ms" {
            // Sub-second parts are dropped (removed at ~1.0 s, not 1.5 s): the backend
            // rounds `time:` TTLs up to whole seconds and hides expired frames itself.
            assert!(
                removed_after < Duration::from_millis(1400),
                "{removed_after:?}"
            );
        }
    }

    // Last by subject: the raw (leader) get and the direct get (any replica) agree.
    let last = f
        .stream
        .get_last_raw_message_by_subject("xs.a.b")
        .await
        .unwrap();
    assert_eq!((last.sequence, &last.payload[..]), (2, &b"two"[..]));
    let direct = f
        .stream
        .direct_get_last_for_subject("xs.a.b")
        .await
        .unwrap();
    assert_eq!(direct.sequence, 2);
    let e = f
        .stream
        .get_last_raw_message_by_subject("xs.none")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), stream::LastRawMessageErrorKind::NoMessageFound);

    // Per-subject counts for `xs topics`.
    let s = f.js.get_stream(STREAM).await.unwrap();
    let mut subjects = s.info_with_subjects("xs.a.>").await.unwrap();
    let mut seen = Vec::new();
    while let Some(item) = subjects.next().await {
        seen.push(item.unwrap());
    }
    assert_eq!(seen, vec![("xs.a.b".to_string(), 2)]);

    // Purge with filter + keep (`last:n`), and roll-up of one subject.
    for i in 0..5 {
        let body: &'static [u8] = [b"0", b"1", b"2", b"3", b"4"][i];
        publish(c, "xs.l", HeaderMap::new(), body).await.unwrap();
    }
    let purged = f.stream.purge().filter("xs.l").keep(2).await.unwrap();
    assert_eq!(purged.purged, 3);
    let r = publish(c, "xs.l", headers(&[("Nats-Rollup", "sub")]), b"only")
        .await
        .unwrap();
    let mut subjects = s.info_with_subjects("xs.l").await.unwrap();
    assert_eq!(
        subjects.next().await.unwrap().unwrap(),
        ("xs.l".to_string(), 1)
    );
    assert_eq!(
        f.stream
            .get_last_raw_message_by_subject("xs.l")
            .await
            .unwrap()
            .sequence,
        r.seq
    );

    // Removing one message (by sequence).
    assert!(f.stream.delete_message(a4.seq).await.unwrap());
    let e = f.stream.get_raw_message(a4.seq).await.unwrap_err();
    assert_eq!(e.kind(), stream::RawMessageErrorKind::NoMessageFound);
}

#[tokio::test]
async fn atomic_batches_commit_whole_or_not_at_all() {
    let Some(f) = fixture().await else { return };
    let c = &f.client;

    // A committed batch: contiguous sequences, the ack names the batch and its size.
    let ack = atomic_batch(
        c,
        vec![
            msg("xs.a", &[], b"1"),
            msg("xs.b", &[("Nats-TTL", "60s")], b"2"),
            msg("xs.a", &[("Nats-Msg-Id", "m3")], b"3"),
        ],
        Some(0),
        false,
    )
    .await
    .unwrap();
    assert_eq!((ack.seq, ack.count, ack.duplicate), (3, Some(3), false));
    assert!(ack.batch.is_some());
    assert_eq!(
        f.stream
            .get_raw_message(2)
            .await
            .unwrap()
            .headers
            .get("Nats-TTL")
            .unwrap()
            .as_str(),
        "60s"
    );

    // A wrong Nats-Expected-Last-Sequence on the first message rejects the whole batch, at
    // the commit (the first message itself is accepted with an empty reply).
    let e = atomic_batch(
        c,
        vec![
            msg("xs.a", &[], b"x"),
            msg("xs.b", &[], b"y"),
            msg("xs.c", &[], b"z"),
        ],
        Some(2),
        false,
    )
    .await
    .unwrap_err();
    assert_eq!((e.code, e.err_code), (400, 10071), "{e:?}");
    assert_eq!(e.description, "wrong last sequence: 3");
    assert_eq!(
        (last_seq(&f.js).await, count(&f.js).await),
        (3, 3),
        "nothing of it stored"
    );

    // A wrong Nats-Expected-Last-Subject-Sequence on a later message: the same.
    let e = atomic_batch(
        c,
        vec![
            msg("xs.a", &[], b"x"),
            msg(
                "xs.b",
                &[("Nats-Expected-Last-Subject-Sequence", "1")],
                b"y",
            ),
            msg("xs.c", &[], b"z"),
        ],
        Some(3),
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(e.err_code, 10071, "{e:?}");
    assert_eq!(count(&f.js).await, 3);

    // Nats-Expected-Last-Sequence on any message but the first is refused.
    let e = atomic_batch(
        c,
        vec![
            msg("xs.a", &[], b"x"),
            msg("xs.b", &[("Nats-Expected-Last-Sequence", "3")], b"y"),
        ],
        None,
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(e.err_code, 10071, "{e:?}");
    assert_eq!(
        e.description, "wrong last sequence: 4",
        "checked as if message 1 were stored"
    );
    assert_eq!(count(&f.js).await, 3);
    let e = atomic_batch(
        c,
        vec![
            msg("xs.a", &[], b"x"),
            msg("xs.b", &[("Nats-Expected-Last-Sequence", "4")], b"y"),
        ],
        None,
        false,
    )
    .await;
    eprintln!("Expected-Last-Sequence 4 on message 2 (the batch's own message 1): {e:?}");
    assert!(e.is_err(), "only the first message may carry it");
    assert_eq!(count(&f.js).await, 3);

    // A subject-sequence expectation on a subject an earlier message of the batch writes.
    let e = atomic_batch(
        c,
        vec![
            msg("xs.a", &[], b"x"),
            msg(
                "xs.a",
                &[("Nats-Expected-Last-Subject-Sequence", "3")],
                b"y",
            ),
        ],
        Some(3),
        false,
    )
    .await
    .unwrap_err();
    eprintln!("Expected-Last-Subject-Sequence after a write to that subject: {e:?}");
    assert_eq!(count(&f.js).await, 3);

    // A Nats-Msg-Id already stored: the whole batch is refused (not deduplicated).
    let e = atomic_batch(
        c,
        vec![
            msg("xs.a", &[], b"x"),
            msg("xs.a", &[("Nats-Msg-Id", "m3")], b"again"),
        ],
        Some(3),
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(e.err_code, 10201, "{e:?}");
    assert_eq!(count(&f.js).await, 3);

    // Nats-Expected-Last-Msg-Id is unsupported in batches.
    let e = atomic_batch(
        c,
        vec![
            msg("xs.a", &[("Nats-Expected-Last-Msg-Id", "m3")], b"x"),
            msg("xs.a", &[], b"y"),
        ],
        None,
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(e.err_code, 10177, "{e:?}");

    // The limit: 1000 messages per batch; the 1001st abandons it.
    let big: Vec<Msg> = (0..1001).map(|_| msg("xs.big", &[], b"b")).collect();
    let e = atomic_batch(c, big, Some(3), false).await.unwrap_err();
    eprintln!("1001 messages: {e:?}");
    assert_eq!(count(&f.js).await, 3);
    let full: Vec<Msg> = (0..1000).map(|_| msg("xs.big", &[], b"b")).collect();
    let ack = atomic_batch(c, full, Some(3), true).await.unwrap();
    assert_eq!((ack.seq, ack.count), (1003, Some(1000)));

    // One message alone is a batch too (first and commit at once).
    let ack = atomic_batch(c, vec![msg("xs.one", &[], b"1")], Some(1003), false)
        .await
        .unwrap();
    assert_eq!((ack.seq, ack.count), (1004, Some(1)));

    // A processor's output and its checkpoint in one batch: the checkpoint on a control
    // subject (`$` cannot start an xs topic) with `Nats-Rollup: sub`, so only the newest
    // checkpoint of each processor stays.
    for (round, out) in [(1u64, &b"out1"[..]), (2, b"out2")] {
        let out: &'static [u8] = out;
        let ack = atomic_batch(
            c,
            vec![
                msg("xs.counter.out", &[], out),
                msg("xs.$ckpt.counter", &[("Nats-Rollup", "sub")], out),
            ],
            Some(1004 + 2 * (round - 1)),
            false,
        )
        .await
        .unwrap();
        assert_eq!(ack.seq, 1004 + 2 * round);
    }
    let mut subjects = f.stream.info_with_subjects("xs.$ckpt.>").await.unwrap();
    let checkpoints = subjects.next().await.unwrap().unwrap();
    assert_eq!(checkpoints, ("xs.$ckpt.counter".to_string(), 1));
    assert!(subjects.next().await.is_none());
    let last = f
        .stream
        .get_last_raw_message_by_subject("xs.$ckpt.counter")
        .await
        .unwrap();
    assert_eq!((last.sequence, &last.payload[..]), (1008, &b"out2"[..]));
}

#[tokio::test]
async fn ordered_consumer_with_filters_replays_then_follows() {
    let Some(f) = fixture().await else { return };
    let c = &f.client;
    for (subject, body) in [
        ("xs.a", &b"a"[..]),
        ("xs.a.b", b"ab"),
        ("xs.b", b"b"),
        ("xs.c", b"c"),
        ("xs.a.b.c", b"abc"),
    ] {
        let body: &'static [u8] = body;
        publish(c, subject, HeaderMap::new(), body).await.unwrap();
    }
    // `a.*,b` → xs.a.> and xs.b, from sequence 2.
    let consumer = f
        .stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subjects: vec!["xs.a.>".into(), "xs.b".into()],
            deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: 2 },
            ..Default::default()
        })
        .await
        .unwrap();
    let mut msgs = consumer.messages().await.unwrap();
    let mut got = Vec::new();
    loop {
        let m = msgs.next().await.unwrap().unwrap();
        let info = m.info().unwrap();
        got.push((m.subject.to_string(), info.stream_sequence));
        // pending = 0: caught up with history (where `xs.threshold` goes).
        if info.pending == 0 {
            break;
        }
    }
    assert_eq!(
        got,
        vec![
            ("xs.a.b".into(), 2),
            ("xs.b".into(), 3),
            ("xs.a.b.c".into(), 5)
        ]
    );
    // Then live.
    publish(c, "xs.c", HeaderMap::new(), b"c2").await.unwrap();
    publish(c, "xs.a.z", HeaderMap::new(), b"az").await.unwrap();
    let m = tokio::time::timeout(Duration::from_secs(5), msgs.next())
        .await
        .expect("a live message")
        .unwrap()
        .unwrap();
    assert_eq!(
        (m.subject.as_str(), m.info().unwrap().stream_sequence),
        ("xs.a.z", 7)
    );
}

#[tokio::test]
async fn kv_revisions_leases_and_object_store() {
    let Some(f) = fixture().await else { return };

    // Consumer positions: a KV bucket, compare-and-set by revision.
    let positions =
        f.js.create_key_value(kv::Config {
            bucket: "xs_consumers".into(),
            history: 1,
            num_replicas: 3,
            limit_markers: Some(Duration::from_secs(1)),
            ..Default::default()
        })
        .await
        .unwrap();
    let r1 = positions
        .create("billing", "03hadbm3pd0va6i6c63lxxwa8".into())
        .await
        .unwrap();
    assert!(
        positions.create("billing", "x".into()).await.is_err(),
        "create only once"
    );
    let r2 = positions
        .update("billing", "03hadbm3pd0va6i6c63lxxwa9".into(), r1)
        .await
        .unwrap();
    assert!(r2 > r1);
    let stale = positions
        .update("billing", "x".into(), r1)
        .await
        .unwrap_err();
    assert_eq!(stale.kind(), kv::UpdateErrorKind::WrongLastRevision);
    let e = positions.entry("billing").await.unwrap().unwrap();
    assert_eq!(
        (e.revision, &e.value[..]),
        (r2, &b"03hadbm3pd0va6i6c63lxxwa9"[..])
    );

    // Leases (which daemon runs a processor): a key created with a TTL, renewed by a raw
    // publish that expects its revision and sets the TTL again; it lapses when not renewed.
    let lease = positions
        .create_with_ttl(
            "lease.handler.counter",
            "daemon-a".into(),
            Duration::from_secs(2),
        )
        .await
        .unwrap();
    let renewed = publish(
        &f.client,
        "$KV.xs_consumers.lease.handler.counter",
        headers(&[
            (
                "Nats-Expected-Last-Subject-Sequence",
                lease.to_string().as_str(),
            ),
            ("Nats-TTL", "2s"),
        ]),
        b"daemon-a",
    )
    .await
    .unwrap();
    assert!(renewed.seq > lease);
    let e = publish(
        &f.client,
        "$KV.xs_consumers.lease.handler.counter",
        headers(&[(
            "Nats-Expected-Last-Subject-Sequence",
            lease.to_string().as_str(),
        )]),
        b"daemon-b",
    )
    .await
    .unwrap_err();
    assert_eq!(
        e.err_code, 10071,
        "another daemon cannot take a held lease: {e:?}"
    );
    let t0 = Instant::now();
    loop {
        if positions
            .get("lease.handler.counter")
            .await
            .unwrap()
            .is_none()
        {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the lease never lapsed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("a 2 s lease lapsed {:?} after its renewal", t0.elapsed());
    positions
        .create("lease.handler.counter", "daemon-b".into())
        .await
        .expect("a lapsed lease can be taken");

    // Content: an object store bucket keyed by the ssri hash (its '/', '+', '=' are fine).
    let objects =
        f.js.create_object_store(object_store::Config {
            bucket: "xs_content".into(),
            num_replicas: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    let data: Vec<u8> = (0..10 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let hash = ssri::Integrity::from(&data).to_string();
    assert!(hash.contains('/') || hash.contains('+') || hash.ends_with('='));
    let t0 = Instant::now();
    let info = objects.put(hash.as_str(), &mut &data[..]).await.unwrap();
    let put = t0.elapsed();
    assert_eq!(info.size, data.len());
    let t0 = Instant::now();
    let mut obj = objects.get(hash.as_str()).await.unwrap();
    let mut back = Vec::new();
    obj.read_to_end(&mut back).await.unwrap();
    let get = t0.elapsed();
    assert!(back == data, "the 10 MiB object reads back intact");
    eprintln!(
        "object store, 10 MiB: put {put:?}, get {get:?} ({} chunks)",
        info.chunks
    );
}

#[tokio::test]
async fn latency_of_durable_publishes_and_batches() {
    let Some(f) = fixture().await else { return };
    let c = &f.client;
    const N: usize = 200;
    const B: usize = 50;
    // Warm up (stream leader, connections).
    for _ in 0..20 {
        publish(c, "xs.warm", HeaderMap::new(), b"w").await.unwrap();
    }

    let mut single = Vec::with_capacity(N);
    for _ in 0..N {
        let t0 = Instant::now();
        f.js.publish("xs.lat", Bytes::from_static(&[b'x'; 100]))
            .await
            .unwrap()
            .await
            .unwrap();
        single.push(t0.elapsed());
    }

    let mut batch = Vec::with_capacity(B);
    let mut pipelined = Vec::with_capacity(B);
    for round in 0..2 * B {
        let mut last = last_seq(&f.js).await;
        let msgs = (0..100)
            .map(|_| msg("xs.batch", &[], &[b'y'; 100]))
            .collect();
        let t0 = Instant::now();
        let ack = atomic_batch(c, msgs, Some(last), round % 2 == 1)
            .await
            .unwrap();
        let took = t0.elapsed();
        last += 100;
        assert_eq!(ack.seq, last);
        let samples = if round % 2 == 1 {
            &mut pipelined
        } else {
            &mut batch
        };
        samples.push(took);
    }

    eprintln!(
        "durable publish ack (100 B, R3, sync always): p50 {:?} p99 {:?} over {N}",
        p(&mut single, 0.5),
        p(&mut single, 0.99)
    );
    eprintln!(
        "atomic batch of 100 x 100 B: p50 {:?} p99 {:?}; first message pipelined: p50 {:?} p99 {:?} ({B} each)",
        p(&mut batch, 0.5),
        p(&mut batch, 0.99),
        p(&mut pipelined, 0.5),
        p(&mut pipelined, 0.99)
    );
    // Loose bounds: a broken setup (no quorum, retries) shows as seconds.
    assert!(p(&mut single, 0.5) < Duration::from_millis(500));
    assert!(p(&mut batch, 0.5) < Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_and_restarted_loses_no_acknowledged_message() {
    let Some(mut f) = fixture().await else { return };
    let c = f.client.clone();
    for _ in 0..50 {
        publish(&c, "xs.k", HeaderMap::new(), b"before")
            .await
            .unwrap();
    }
    // Kill -9 the stream's leader: publishes stall until a new leader is elected, then go on.
    let info =
        f.js.get_stream(STREAM)
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .clone();
    let leader = info.cluster.unwrap().leader.unwrap();
    let i = (0..f.cluster.len())
        .find(|&i| f.cluster.name(i) == leader)
        .unwrap();
    f.cluster.kill9(i);
    let t0 = Instant::now();
    let mut acked = 50;
    let mut stall = Duration::ZERO;
    let mut errors = std::collections::BTreeMap::<String, usize>::new();
    while acked < 100 {
        let s = Instant::now();
        match publish(&c, "xs.k", HeaderMap::new(), b"after").await {
            Ok(_) => acked += 1,
            Err(e) => {
                *errors
                    .entry(format!("{} {} {}", e.code, e.err_code, e.description))
                    .or_default() += 1;
                assert!(
                    t0.elapsed() < Duration::from_secs(30),
                    "no new leader: {e:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        stall = stall.max(s.elapsed());
    }
    eprintln!(
        "leader {leader} killed: 50 publishes done in {:?}, the longest single attempt {stall:?}, failed attempts {errors:?}",
        t0.elapsed()
    );
    // Back: the restarted node catches up (the helper waits until its replicas are current).
    let t0 = Instant::now();
    tokio::task::block_in_place(|| f.cluster.restart(i));
    eprintln!("node restarted and current after {:?}", t0.elapsed());
    assert_eq!(count(&f.js).await, 100);
    let info =
        f.js.get_stream(STREAM)
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .clone();
    let replicas = info.cluster.unwrap().replicas;
    assert!(replicas.iter().all(|r| r.current), "{replicas:?}");
}
