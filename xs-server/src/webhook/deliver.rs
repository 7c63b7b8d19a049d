//! One webhook's delivery loop: frames after its durable position, in id order, POSTed one
//! at a time; a 2xx acknowledges the frame, anything else is retried with back-off, never skipped.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use xs::consumer::Start;
use xs::reader::Event;
use xs::{Follow, Frame, Id, ReadOptions, Store};

use super::config::Config;
use crate::processor::Status;
use crate::ps;

/// Content under this size is sent inline (base64); larger content only by its hash.
pub const INLINE_MAX: u64 = 64 * 1024;
/// A delivery attempt (connect, request, answer) gives up after this long.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Most bytes of a receiver's answer read.
const ANSWER_MAX: usize = 1024 * 1024;

/// The durable consumer that holds webhook `name`'s position.
pub fn consumer_name(name: &str) -> String {
    format!("xs.webhook.{name}")
}

/// One running webhook.
pub struct Delivery {
    pub store: Store,
    pub name: String,
    pub create_id: Id,
    pub config: Arc<Config>,
    pub status: Status,
}

impl Delivery {
    /// Delivers until `stop` turns true or the store closes.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let consumer = consumer_name(&self.name);
        let mut pos = match self.store.consumer_position(&consumer).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(webhook = %self.name, error = %e, "reading the webhook position");
                return;
            }
        };
        if let Some(p) = pos {
            self.status.position(p);
        }
        let after = match (pos, self.config.start) {
            (Some(p), _) => Some(p),
            (None, Start::First) => None,
            (None, Start::New) => Some(self.create_id),
            (None, Start::After(id)) => Some(id),
        };
        let mut reader = self.store.read_quiet(ReadOptions {
            follow: Follow::On,
            after,
            topic: self.config.topics.clone(),
            ..ReadOptions::default()
        });
        let mut conn: Option<Conn> = None;
        loop {
            let events = tokio::select! {
                _ = crate::daemon::stopped(&mut stop) => return,
                e = reader.next_batch() => match e {
                    Some(Ok(events)) => events,
                    Some(Err(e)) => {
                        tracing::error!(webhook = %self.name, error = %e, "reading for the webhook");
                        return;
                    }
                    None => return,
                },
            };
            let mut last_seen = None;
            for event in events {
                let Event::Frame(record) = event else {
                    continue;
                };
                last_seen = Some(record.id);
                let frame = match record.frame() {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::error!(webhook = %self.name, error = %e, "reading a frame");
                        return;
                    }
                };
                if !self.config.wants(&frame.topic) || frame.ttl == Some(xs::Ttl::Ephemeral) {
                    continue;
                }
                let body = match self.body(&frame).await {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::error!(webhook = %self.name, error = %e, "reading frame content");
                        return;
                    }
                };
                let mut failures = 0u32;
                loop {
                    let attempt = tokio::time::timeout(
                        ATTEMPT_TIMEOUT,
                        post(&self.config, &mut conn, &self.name, &frame, body.clone()),
                    );
                    let outcome = tokio::select! {
                        _ = crate::daemon::stopped(&mut stop) => return,
                        r = attempt => r.unwrap_or_else(|_| {
                            Err(format!("no answer within {ATTEMPT_TIMEOUT:?}"))
                        }),
                    };
                    match outcome {
                        Ok(()) => break,
                        Err(e) => {
                            conn = None;
                            failures += 1;
                            tracing::warn!(webhook = %self.name, id = %frame.id, error = %e, "webhook delivery failed; retrying");
                            self.update(|s| {
                                if s.state != "retrying" {
                                    s.since = ps::now();
                                }
                                s.state = "retrying";
                                s.last_error = Some(e.clone());
                                s.failures += 1;
                            });
                            tokio::select! {
                                _ = crate::daemon::stopped(&mut stop) => return,
                                _ = tokio::time::sleep(backoff(failures)) => {}
                            }
                        }
                    }
                }
                if let Err(e) = self.store.ack(&consumer, frame.id).await {
                    tracing::error!(webhook = %self.name, error = %e, "saving the webhook position");
                    return;
                }
                let id = frame.id;
                pos = Some(id);
                self.update(|s| {
                    if s.state != "active" {
                        s.since = ps::now();
                    }
                    s.state = "active";
                    s.position = Some(id);
                    s.failures = 0;
                });
            }
            // Frames the webhook skips (runtime topics) move its position too.
            if pos < last_seen {
                if let Err(e) = self
                    .store
                    .ack(&consumer, last_seen.unwrap_or_default())
                    .await
                {
                    tracing::error!(webhook = %self.name, error = %e, "saving the webhook position");
                    return;
                }
                pos = last_seen;
            }
        }
    }

    fn update(&self, f: impl FnOnce(&mut ps::Status)) {
        self.status.update(f);
    }

    /// The request body: the frame's JSON plus `content` (base64) when its content is under
    /// [`INLINE_MAX`], else `content_hash`.
    async fn body(&self, frame: &Frame) -> xs::Result<Bytes> {
        let mut v = serde_json::to_value(frame).expect("a frame always serializes");
        if let Some(hash) = frame.hash.clone() {
            let content = match self.store.cas_get(&hash).await? {
                Some(c) if c.len < INLINE_MAX => Some(c.read_all().await?),
                _ => None,
            };
            match content {
                Some(bytes) => {
                    v["content"] = base64::engine::general_purpose::STANDARD
                        .encode(bytes)
                        .into();
                }
                None => v["content_hash"] = serde_json::to_value(&frame.hash).unwrap_or_default(),
            }
        }
        Ok(serde_json::to_vec(&v)
            .expect("JSON always serializes")
            .into())
    }
}

type Conn = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// One POST; `Ok` only for a 2xx answer whose body was read. Reuses `conn` while it lives.
async fn post(
    config: &Config,
    conn: &mut Option<Conn>,
    name: &str,
    frame: &Frame,
    body: Bytes,
) -> Result<(), String> {
    if conn.as_ref().is_none_or(|c| c.is_closed()) {
        let stream = tokio::net::TcpStream::connect(&config.authority)
            .await
            .map_err(|e| format!("connecting to {}: {e}", config.authority))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake with {}: {e}", config.authority))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        *conn = Some(sender);
    }
    let sender = conn.as_mut().expect("connected above");
    let path = config
        .url
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let mut req = Request::post(path)
        .body(Full::new(body))
        .map_err(|e| format!("building the request: {e}"))?;
    let h = req.headers_mut();
    for (k, v) in &config.headers {
        h.insert(k.clone(), v.clone());
    }
    if let Some(a) = config.url.authority() {
        if let Ok(v) = HeaderValue::from_str(a.as_str()) {
            h.insert(HOST, v);
        }
    }
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(name) {
        h.insert("xs-webhook", v);
    }
    if let Ok(v) = HeaderValue::from_str(&frame.id.to_string()) {
        h.insert("xs-frame-id", v);
    }
    sender
        .ready()
        .await
        .map_err(|e| format!("connection to {}: {e}", config.authority))?;
    let res = sender
        .send_request(req)
        .await
        .map_err(|e| format!("POST {}: {e}", config.url))?;
    let status = res.status();
    let answer = match http_body_util::Limited::new(res.into_body(), ANSWER_MAX)
        .collect()
        .await
    {
        Ok(a) => a.to_bytes(),
        // A 2xx counts even if its body is cut off; the connection is not reused.
        Err(_) if status.is_success() => {
            *conn = None;
            return Ok(());
        }
        Err(e) => return Err(format!("reading the answer of {}: {e}", config.url)),
    };
    if status.is_success() {
        return Ok(());
    }
    let snippet: String = String::from_utf8_lossy(&answer).chars().take(200).collect();
    let snippet = snippet.split_whitespace().collect::<Vec<_>>().join(" ");
    Err(format!("{} answered {status}: {snippet}", config.url))
}

/// The wait before retry `n` (1-based): 100 ms doubling up to 30 s, each with up to ±25 %
/// jitter so that many webhooks failing together don't retry in step.
fn backoff(n: u32) -> Duration {
    let base = BACKOFF_FIRST
        .saturating_mul(1u32 << n.saturating_sub(1).min(20))
        .min(BACKOFF_MAX);
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let permille = 750 + r % 501; // 0.75 ..= 1.25
    base * permille as u32 / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_bound_with_jitter() {
        for (n, base) in [
            (1, 100),
            (2, 200),
            (5, 1600),
            (9, 25_600),
            (10, 30_000),
            (60, 30_000),
        ] {
            let d = backoff(n).as_millis() as u64;
            assert!(d >= base * 3 / 4 && d <= base * 5 / 4, "retry {n}: {d} ms");
        }
    }
}
