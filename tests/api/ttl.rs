//! TTLs over raw HTTP: `ephemeral` reaches live followers only, `time:<ms>` frames vanish from
//! reads and `GET /{id}` once expired, `last:<n>` keeps the newest n of a topic.

use std::time::Duration;

use crate::helper::http::Stream;
use crate::helper::{ids, poll_until, topics, Daemon};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ephemeral_frame_is_not_stored_but_a_live_follower_sees_it() {
    let d = Daemon::start();
    let mut s = Stream::open(&d.sock(), "/?follow&topic=e", &[]).await;
    assert_eq!(s.next().await["topic"], "xs.threshold");

    let r = d.http("POST", "/append/e?ttl=ephemeral", &[], b"fleeting");
    assert_eq!(r.status, 200, "{}", r.text());
    let f = r.json();
    assert_eq!(f["ttl"], "ephemeral");
    assert_eq!(s.next().await, f);

    d.get(&format!("/{}", f["id"].as_str().unwrap()))
        .assert_error(404);
    assert!(d.read("topic=e").is_empty());
    d.get("/last/e").assert_error(404);
}

#[test]
fn time_ttl_frame_disappears_after_it_expires() {
    let d = Daemon::start();
    let f = d
        .http("POST", "/append/t?ttl=time:1500", &[], b"soon gone")
        .json();
    let keep = d.append("t", b"stays");
    assert_eq!(f["ttl"], "time:1500");
    let path = format!("/{}", f["id"].as_str().unwrap());
    assert_eq!(d.get(&path).json(), f, "readable until it expires");
    assert_eq!(d.read("topic=t")[0], f);

    poll_until(
        Duration::from_secs(5),
        "the time:1500 frame to expire",
        || (d.get(&path).status == 404).then_some(()),
    );
    d.get(&path).assert_error(404);
    assert_eq!(ids(&d.read("topic=t")), ids(std::slice::from_ref(&keep)));
    assert_eq!(d.get("/last/t").json(), keep);
    // Nor does it show in an unfiltered read.
    assert!(!ids(&d.frames()).contains(&f["id"].as_str().unwrap().to_string()));
}

#[test]
fn last_n_ttl_keeps_only_the_newest_n_of_the_topic() {
    let d = Daemon::start();
    let other = d.append("other", b"");
    let mut kept = Vec::new();
    for i in 0..5 {
        let r = d.http(
            "POST",
            "/append/t?ttl=last:2",
            &[],
            format!("{i}").as_bytes(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        kept.push(r.json());
    }
    let newest = &kept[3..];
    assert_eq!(ids(&d.read("topic=t")), ids(newest));
    for old in &kept[..3] {
        d.get(&format!("/{}", old["id"].as_str().unwrap()))
            .assert_error(404);
    }
    assert_eq!(topics(&d.frames()), ["xs.start", "other", "t", "t"]);
    assert_eq!(d.read("topic=other"), [other]);
}
