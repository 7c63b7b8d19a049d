//! HTTP over the daemon's socket, bypassing the CLI: a tiny blocking HTTP/1.1 client for exact
//! requests and raw bytes, and a hyper client (keep-alive, streamed bodies) for async tests.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// A whole HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }

    #[track_caller]
    pub fn ndjson(&self) -> Vec<Value> {
        super::parse_ndjson(&self.body)
    }

    /// Asserts an error answer: `status`, `application/json`, body `{"error": "<message>"}`
    /// with a non-empty one-line message. Returns the message.
    #[track_caller]
    pub fn assert_error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "unexpected answer: {}", self.text());
        assert_eq!(self.header("content-type"), Some("application/json"));
        let v = self.json();
        let obj = v.as_object().expect("error body is an object");
        assert_eq!(obj.len(), 1, "error body has only \"error\": {v}");
        let msg = v["error"].as_str().expect("\"error\" is a string");
        assert!(
            !msg.is_empty() && !msg.contains('\n'),
            "bad error message {msg:?}"
        );
        msg.to_string()
    }

    /// Like [`Resp::assert_error`], for a Nushell report: the message may span lines.
    #[track_caller]
    #[cfg_attr(not(feature = "nu"), allow(dead_code))]
    pub fn assert_report(&self, status: u16) -> String {
        assert_eq!(self.status, status, "unexpected answer: {}", self.text());
        assert_eq!(self.header("content-type"), Some("application/json"));
        let v = self.json();
        let msg = v["error"].as_str().expect("\"error\" is a string");
        assert!(!msg.trim().is_empty(), "empty error message");
        msg.to_string()
    }
}

/// Sends one request on a new connection with `Connection: close` and reads the whole answer.
pub fn request(
    sock: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Resp> {
    let bytes = request_bytes("localhost", method, path, headers, body);
    let raw = raw_exchange(sock, &bytes, false)?;
    parse_response(&raw)
}

fn request_bytes(
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT") {
        req.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// [`request`] over TCP to `addr` (`host:port`).
pub fn tcp_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Resp> {
    let bytes = request_bytes(addr, method, path, headers, body);
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let _ = s.write_all(&bytes);
    let mut out = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                // Some servers (chromedriver) keep the connection open: stop at the body's end.
                if is_complete(&out) {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !out.is_empty() => break,
            Err(e) => return Err(e),
        }
    }
    parse_response(&out)
}

/// Whether `raw` holds a whole response with a Content-Length or chunked body.
fn is_complete(raw: &[u8]) -> bool {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let body = &raw[end + 4..];
    if let Some(len) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        return body.len() >= len;
    }
    head.contains("transfer-encoding: chunked") && body.ends_with(b"0\r\n\r\n")
}

/// Writes `bytes` on a new connection (ignoring write errors: the server may close early),
/// optionally half-closes, then reads until the server closes (30 s at most).
pub fn raw_exchange(sock: &Path, bytes: &[u8], half_close: bool) -> std::io::Result<Vec<u8>> {
    let s = UnixStream::connect(sock)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    exchange(s, bytes, half_close, |s| {
        let _ = s.shutdown(std::net::Shutdown::Write);
    })
}

/// [`raw_exchange`] over TCP.
pub fn tcp_exchange(addr: &str, bytes: &[u8], half_close: bool) -> std::io::Result<Vec<u8>> {
    let s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    exchange(s, bytes, half_close, |s| {
        let _ = s.shutdown(std::net::Shutdown::Write);
    })
}

fn exchange<S: Read + Write>(
    mut s: S,
    bytes: &[u8],
    half_close: bool,
    shutdown: impl Fn(&S),
) -> std::io::Result<Vec<u8>> {
    let _ = s.write_all(bytes);
    if half_close {
        shutdown(&s);
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            // A reset after the answer was read is the server closing on unread input.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !out.is_empty() => break,
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Parses a complete HTTP/1.1 response (Content-Length, chunked, or read-to-close body).
pub fn parse_response(raw: &[u8]) -> std::io::Result<Resp> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no complete response head"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad("head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(rest).ok_or_else(|| bad("bad chunked body"))?
    } else if let Some((_, len)) = headers.iter().find(|(k, _)| k == "content-length") {
        let len: usize = len.parse().map_err(|_| bad("bad content-length"))?;
        if rest.len() < len {
            return Err(bad("body shorter than content-length"));
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Resp {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let nl = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_str = std::str::from_utf8(&rest[..nl]).ok()?;
        let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[nl + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

/// A keep-alive hyper connection to the daemon.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    pub async fn connect(sock: &Path) -> Conn {
        let stream = tokio::net::UnixStream::connect(sock)
            .await
            .expect("connecting to the daemon");
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP handshake");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Conn { sender }
    }

    /// Sends a request and returns the response with its body unread.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> hyper::Response<Incoming> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body.into())).expect("a valid request");
        self.sender.ready().await.expect("connection ready");
        self.sender
            .send_request(req)
            .await
            .unwrap_or_else(|e| panic!("{method} {path} failed: {e}"))
    }

    /// Sends a request and reads the whole answer.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Resp {
        let res = self.send(method, path, headers, body).await;
        let status = res.status().as_u16();
        let headers = res
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
            .collect();
        let body = res
            .into_body()
            .collect()
            .await
            .expect("reading the body")
            .to_bytes()
            .to_vec();
        Resp {
            status,
            headers,
            body,
        }
    }

    /// `POST /append/{topic}`; asserts 200 and returns the frame.
    pub async fn append(&mut self, topic: &str, body: impl Into<Bytes>) -> Value {
        let r = self
            .request("POST", &format!("/append/{topic}"), &[], body)
            .await;
        assert_eq!(r.status, 200, "append: {}", r.text());
        r.json()
    }
}

/// A streamed response body read line by line (NDJSON) or event by event (SSE).
pub struct Stream {
    pub status: u16,
    pub content_type: Option<String>,
    body: Incoming,
    buf: Vec<u8>,
}

impl Stream {
    /// Opens `GET path` on its own connection and returns once the response head arrived.
    pub async fn open(sock: &Path, path: &str, headers: &[(&str, &str)]) -> Stream {
        let mut conn = Conn::connect(sock).await;
        let res = conn.send("GET", path, headers, Bytes::new()).await;
        Stream {
            status: res.status().as_u16(),
            content_type: res
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            body: res.into_body(),
            buf: Vec::new(),
        }
    }

    /// Reads until `sep` is buffered; returns the bytes before it, or `None` at the end.
    async fn until(&mut self, sep: &[u8]) -> Option<Vec<u8>> {
        loop {
            if let Some(pos) = self.buf.windows(sep.len()).position(|w| w == sep) {
                let item = self.buf[..pos].to_vec();
                self.buf.drain(..pos + sep.len());
                return Some(item);
            }
            match self.body.frame().await {
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        self.buf.extend_from_slice(&d);
                    }
                }
                Some(Err(e)) => panic!("stream failed: {e}"),
                None => {
                    assert!(self.buf.is_empty(), "stream ended mid-line: {:?}", self.buf);
                    return None;
                }
            }
        }
    }

    /// The next NDJSON frame, or `None` when the stream ended. Panics after `timeout`.
    pub async fn next_within(&mut self, timeout: Duration) -> Option<Value> {
        let line = tokio::time::timeout(timeout, self.until(b"\n"))
            .await
            .unwrap_or_else(|_| panic!("no frame within {timeout:?}"))?;
        Some(serde_json::from_slice(&line).unwrap_or_else(|e| {
            panic!(
                "bad NDJSON line ({e}): {:?}",
                String::from_utf8_lossy(&line)
            )
        }))
    }

    /// The next NDJSON frame; panics if the stream ends or nothing comes within 10 s.
    pub async fn next(&mut self) -> Value {
        self.next_within(Duration::from_secs(10))
            .await
            .expect("the stream ended early")
    }

    /// The next SSE event as its raw text (without the blank line that ends it).
    pub async fn next_event(&mut self) -> Option<String> {
        let ev = tokio::time::timeout(Duration::from_secs(10), self.until(b"\n\n"))
            .await
            .expect("no event within 10 s")?;
        Some(String::from_utf8(ev).expect("SSE is UTF-8"))
    }

    /// Whether the stream ends (within 10 s) with no further data.
    pub async fn ends(&mut self) -> bool {
        tokio::time::timeout(Duration::from_secs(10), self.until(b"\n"))
            .await
            .expect("the stream neither ended nor sent data within 10 s")
            .is_none()
    }
}
