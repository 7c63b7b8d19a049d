//! The console page in headless Chromium: the login form, a frame appended from the CLI in
//! the live list within a second, frame detail with JSON, image and hex previews, the topic
//! filter, the topic tree, processors and the rate chart. Screenshots are saved (and their
//! paths printed) under `$CARGO_TARGET_TMPDIR/screenshots/`. Skipped, with a note, where
//! Chromium is not installed (never in CI: `.ci/run` installs it).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;

use super::webdriver::{find_browser, Browser};
use crate::helper::{skip_without, Daemon};

const WAIT: Duration = Duration::from_secs(10);

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).expect("creating the screenshot dir");
    dir
}

/// The rows' topics, top (newest) first.
const ROW_TOPICS: &str =
    "return [...document.querySelectorAll('#frames tbody tr')].map(r => r.dataset.topic)";

#[test]
fn console_in_a_browser() {
    let Some((chromium, driver)) = find_browser() else {
        skip_without(
            "chromium / chromedriver",
            "apt-get install chromium chromium-driver",
        );
        return;
    };
    let d = Daemon::start_with(&["--console", "127.0.0.1:0"]);
    let url = format!("http://{}/", d.console_addr());
    let token = d.token();
    d.append("chat.old", b"from before");
    let b = Browser::start(&chromium, &driver);
    let shots = screenshots();

    // The login form: a wrong token is refused, the right one opens the console.
    b.goto(&url);
    b.wait_js(
        WAIT,
        "the login form",
        "return !document.querySelector('#login').hidden",
    );
    b.type_into("#token", "not-the-token-at-all");
    b.click("#login button");
    let err = b.wait_js(
        WAIT,
        "a login error",
        "return document.querySelector('#login-error').textContent",
    );
    assert!(err.as_str().unwrap().contains("not valid"), "{err}");
    b.screenshot(&shots.join("console-login.png"));
    b.type_into("#token", &token);
    b.click("#login button");
    b.wait_js(
        WAIT,
        "the stream to go live",
        "return document.querySelector('#status').textContent === 'live'",
    );
    let rows = b.js(ROW_TOPICS, json!([]));
    assert_eq!(
        rows,
        json!(["chat.old", "xs.start"]),
        "history, newest first"
    );

    // A frame appended from the CLI shows within a second.
    let content = br#"{"hello":"world","n":[1,2,3]}"#;
    d.xs(
        "append",
        &["chat.msg", "--meta", r#"{"user":"bob"}"#],
        content,
    )
    .ok();
    let appended = Instant::now();
    b.wait_js(
        WAIT,
        "the new frame",
        "return document.querySelector('#frames tbody tr[data-topic=\"chat.msg\"]') !== null",
    );
    let took = appended.elapsed();
    eprintln!("appended frame listed after {took:?}");
    assert!(
        took < Duration::from_secs(1),
        "the frame took {took:?} to appear"
    );

    // Its detail: meta, and the content as pretty JSON.
    b.click("#frames tbody tr[data-topic=\"chat.msg\"]");
    let text = b.wait_js(
        WAIT,
        "the JSON preview",
        "const e = document.querySelector('#content-text'); return e && e.textContent",
    );
    assert_eq!(
        text.as_str().unwrap(),
        "{\n  \"hello\": \"world\",\n  \"n\": [\n    1,\n    2,\n    3\n  ]\n}"
    );
    let kind = b.js(
        "return document.querySelector('#content-kind').textContent",
        json!([]),
    );
    assert!(kind.as_str().unwrap().starts_with("JSON"), "{kind}");
    let detail = b.js(
        "return document.querySelector('#frame-json').textContent",
        json!([]),
    );
    assert!(
        detail.as_str().unwrap().contains("\"user\": \"bob\""),
        "{detail}"
    );
    b.screenshot(&shots.join("console-json.png"));

    // An image shows inline; binary content as hex.
    d.xs("append", &["chat.image"], &png(48, 32)).ok();
    b.wait_js(
        WAIT,
        "the image frame",
        "return document.querySelector('#frames tbody tr[data-topic=\"chat.image\"]') !== null",
    );
    b.click("#frames tbody tr[data-topic=\"chat.image\"]");
    let w = b.wait_js(WAIT, "the image preview", "const i = document.querySelector('#preview img'); return i && i.complete && i.naturalWidth");
    assert_eq!(w, json!(48));
    b.screenshot(&shots.join("console-image.png"));
    let binary: Vec<u8> = (0..=255u8).collect();
    d.xs("append", &["chat.bin"], &binary).ok();
    b.wait_js(
        WAIT,
        "the binary frame",
        "return document.querySelector('#frames tbody tr[data-topic=\"chat.bin\"]') !== null",
    );
    b.click("#frames tbody tr[data-topic=\"chat.bin\"]");
    let hex = b.wait_js(
        WAIT,
        "the hex preview",
        "const e = document.querySelector('#content-hex'); return e && e.textContent",
    );
    assert!(
        hex.as_str().unwrap().starts_with("00000000  00 01 02 03"),
        "{hex}"
    );

    // The topic tree counts by level.
    let count = b.wait_js(
        WAIT,
        "the topic tree",
        "const s = document.querySelector('#topics span[data-topic=\"chat\"]'); \
         return s && s.nextElementSibling.textContent === '4' && s.nextElementSibling.textContent",
    );
    assert_eq!(count, json!("4"));

    // The filter: only matching frames, old and new.
    b.type_into("#filter", "other");
    d.xs("append", &["other"], b"for the filter").ok();
    d.xs("append", &["chat.msg"], b"filtered out").ok();
    b.wait_js(
        WAIT,
        "the filtered frame",
        &format!("{ROW_TOPICS}.join() === 'other'"),
    );
    let marker = d.append("other", b"after");
    b.wait_js(
        WAIT,
        "the next filtered frame",
        &format!("{ROW_TOPICS}.length === 2"),
    );
    let rows = b.js(ROW_TOPICS, json!([]));
    assert_eq!(rows, json!(["other", "other"]));
    assert!(marker["id"].is_string());
    b.type_into("#filter", "chat.*");
    b.wait_js(
        WAIT,
        "the prefix filter",
        &format!("{ROW_TOPICS}.join() === 'chat.msg,chat.bin,chat.image,chat.msg,chat.old'"),
    );
    b.type_into("#filter", "bad..topic");
    let e = b.wait_js(
        WAIT,
        "the filter's error",
        "return document.querySelector('#filter-error').textContent",
    );
    assert!(!e.as_str().unwrap().is_empty());

    // The rate chart counted the live appends.
    let total = b.wait_js(
        WAIT,
        "the rate chart",
        "const t = Number(document.querySelector('#rate').dataset.total); return t >= 6 && t",
    );
    assert!(total.as_f64().unwrap() >= 6.0);

    #[cfg(feature = "nu")]
    {
        let action = d.dir().join("greet.nu");
        std::fs::write(&action, "{ run: {|frame| $\"hello ($in)\" } }").unwrap();
        crate::helper::xs(
            &[
                "action",
                "define",
                d.addr(),
                "greet",
                action.to_str().unwrap(),
            ],
            b"",
        )
        .ok();
        b.wait_js(
            WAIT,
            "the processor",
            "return [...document.querySelectorAll('#ps tbody tr')].some(r => r.textContent.includes('greet'))",
        );
    }
    b.type_into("#filter", "");
    b.wait_js(
        WAIT,
        "all frames again",
        &format!("{ROW_TOPICS}.length > 8"),
    );
    b.click("#frames tbody tr[data-topic=\"chat.image\"]");
    b.screenshot(&shots.join("console-all.png"));
    d.assert_no_panic();
}

/// A `w`×`h` RGB PNG (a gradient), stored without compression.
fn png(w: u32, h: u32) -> Vec<u8> {
    let mut raw = Vec::new();
    for y in 0..h {
        raw.push(0); // filter: none
        for x in 0..w {
            raw.extend_from_slice(&[(x * 255 / w) as u8, (y * 255 / h) as u8, 160]);
        }
    }
    // zlib: one stored block per 65,535 bytes, then the Adler-32.
    let mut z = vec![0x78, 0x01];
    let chunks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, c) in chunks.iter().enumerate() {
        z.push(u8::from(i + 1 == chunks.len()));
        let len = c.len() as u16;
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(c);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &x in &raw {
        a = (a + u32::from(x)) % 65_521;
        b = (b + a) % 65_521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(&b"IHDR"[..], &ihdr[..]), (b"IDAT", &z), (b"IEND", &[])] {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
