//! `POST /eval`: runs the body (a Nushell script) against the live store, on its own thread,
//! and streams the result: a byte stream as raw bytes, a list stream as NDJSON, a record or
//! list as JSON, a scalar as text, nothing as 204. A script that does not parse or fails
//! before any output is a 400 with Nushell's report; one that fails mid-stream is cut off.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use nu_protocol::{ByteStream, PipelineData, Value};
use tokio::sync::{mpsc, oneshot};

use super::{respond, ApiResult, JSON, NDJSON};
use crate::body;
use crate::daemon::Daemon;
use crate::error::ApiError;
use crate::nu::convert::to_json;
use crate::nu::{script, Ctx, Engine, Job, Modules};

/// Largest script accepted.
const MAX_SCRIPT_BYTES: usize = 16 * 1024 * 1024;

type Head = Result<(StatusCode, &'static str), ApiError>;

pub async fn handle(d: Daemon, req: Request<Incoming>) -> ApiResult {
    let script = read_script(req.into_body()).await?;
    let (head_tx, head_rx) = oneshot::channel::<Head>();
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(8);
    let rt = tokio::runtime::Handle::current();
    let engine = d.engine.clone();
    let store = d.store.clone();
    let cancel = Cancel::default();
    let slot = cancel.0.clone();
    std::thread::Builder::new()
        .name("xs-eval".into())
        .spawn(move || run(engine, Ctx::new(store, rt), script, slot, head_tx, tx))
        .map_err(|e| ApiError::from(xs::Error::io("starting an eval thread", e)))?;
    // If the client goes away, this future is dropped, and `cancel` with it.
    match head_rx.await {
        Ok(Ok((status, ct))) => Ok(respond(status, ct, body::results(rx, cancel))),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ApiError::from(xs::Error::Internal(
            "the eval thread ended without an answer".into(),
        ))),
    }
}

/// Interrupts the script (and kills the processes it started) when dropped: the client went
/// away, or the answer is complete.
#[derive(Default)]
struct Cancel(Arc<Mutex<(bool, Option<Job>)>>);

impl Drop for Cancel {
    fn drop(&mut self) {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        s.0 = true;
        if let Some(job) = s.1.take() {
            job.kill();
        }
    }
}

async fn read_script(mut body: Incoming) -> Result<String, ApiError> {
    let mut buf = Vec::new();
    while let Some(f) = body.frame().await {
        let f = f.map_err(|e| ApiError::bad_request(format!("reading the script: {e}")))?;
        if let Some(d) = f.data_ref() {
            if buf.len() + d.len() > MAX_SCRIPT_BYTES {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the script is over {MAX_SCRIPT_BYTES} bytes"),
                ));
            }
            buf.extend_from_slice(d);
        }
    }
    String::from_utf8(buf).map_err(|_| ApiError::bad_request("the script is not UTF-8 text"))
}

/// Evaluates on this (dedicated) thread; answers the head, then streams the body.
fn run(
    engine: Engine,
    ctx: Ctx,
    script: String,
    cancel: Arc<Mutex<(bool, Option<Job>)>>,
    head: oneshot::Sender<Head>,
    tx: mpsc::Sender<std::io::Result<Bytes>>,
) {
    let store = ctx.store.clone();
    let prepared = ctx
        .rt
        .block_on(Modules::load(&store, None))
        .map_err(ApiError::from)
        .and_then(|m| {
            engine
                .instance(ctx, &m)
                .map_err(|e| ApiError::from(xs::Error::Internal(e.0)))
        });
    let mut es = match prepared {
        Ok(es) => es,
        Err(e) => {
            let _ = head.send(Err(e));
            return;
        }
    };
    let job = Job::install(&mut es);
    {
        let mut c = cancel.lock().unwrap_or_else(|e| e.into_inner());
        if c.0 {
            return;
        }
        c.1 = Some(job);
    }
    let result = script::parse(&mut es, "eval", script.as_bytes()).and_then(|block| {
        script::eval(&es, &block, PipelineData::empty())
            .map_err(|e| script::ScriptError::shell(&es, &e))
    });
    let data = match result {
        Ok(d) => d,
        Err(e) => {
            let _ = head.send(Err(ApiError::bad_request(e.0)));
            return;
        }
    };
    let out = Out { tx };
    match data {
        PipelineData::Empty => {
            let _ = head.send(Ok((StatusCode::NO_CONTENT, JSON)));
        }
        PipelineData::Value(v, _) => value(&es, v, head, out),
        PipelineData::ListStream(s, _) => {
            let mut items = s.into_iter();
            // The first item decides between a 400 and a streamed answer.
            let first = items.next();
            if let Some(Value::Error { error, .. }) = &first {
                let e = script::ScriptError::shell(&es, error);
                let _ = head.send(Err(ApiError::bad_request(e.0)));
                return;
            }
            let _ = head.send(Ok((StatusCode::OK, NDJSON)));
            for v in first.into_iter().chain(items) {
                let line = match &v {
                    Value::Error { error, .. } => Err(script::ScriptError::shell(&es, error).0),
                    v => to_json(v).map_err(|e| script::ScriptError::shell(&es, &e).0),
                };
                match line {
                    Ok(j) => {
                        let mut b = serde_json::to_vec(&j).unwrap_or_default();
                        b.push(b'\n');
                        if !out.send(b) {
                            return;
                        }
                    }
                    Err(msg) => return out.fail(msg),
                }
            }
        }
        PipelineData::ByteStream(s, _) => bytes(&es, s, head, out),
    }
}

/// The body's sender; `send` is false once the client is gone.
struct Out {
    tx: mpsc::Sender<std::io::Result<Bytes>>,
}

impl Out {
    fn send(&self, b: Vec<u8>) -> bool {
        self.tx.blocking_send(Ok(Bytes::from(b))).is_ok()
    }

    /// Ends the body with an error: the client sees it cut off.
    fn fail(&self, msg: String) {
        tracing::warn!(error = %msg, "eval failed mid-stream");
        let _ = self.tx.blocking_send(Err(std::io::Error::other(msg)));
    }
}

fn value(es: &nu_protocol::engine::EngineState, v: Value, head: oneshot::Sender<Head>, out: Out) {
    let (ct, bytes) = match &v {
        Value::Nothing { .. } => {
            let _ = head.send(Ok((StatusCode::NO_CONTENT, JSON)));
            return;
        }
        Value::Error { error, .. } => {
            let e = script::ScriptError::shell(es, error);
            let _ = head.send(Err(ApiError::bad_request(e.0)));
            return;
        }
        Value::String { val, .. } => ("text/plain; charset=utf-8", val.clone().into_bytes()),
        Value::Binary { val, .. } => ("application/octet-stream", val.to_vec()),
        Value::Record { .. } | Value::List { .. } => match to_json(&v) {
            Ok(j) => (JSON, serde_json::to_vec(&j).unwrap_or_default()),
            Err(e) => {
                let e = script::ScriptError::shell(es, &e);
                let _ = head.send(Err(ApiError::bad_request(e.0)));
                return;
            }
        },
        Value::Closure { .. } | Value::Custom { .. } => (
            "text/plain; charset=utf-8",
            format!("<{}>", v.get_type()).into_bytes(),
        ),
        scalar => (
            "text/plain; charset=utf-8",
            scalar
                .to_expanded_string(", ", es.get_config())
                .into_bytes(),
        ),
    };
    let _ = head.send(Ok((StatusCode::OK, ct)));
    out.send(bytes);
}

/// Streams a byte stream; an external command that exits non-zero cuts the body off.
fn bytes(
    es: &nu_protocol::engine::EngineState,
    s: ByteStream,
    head: oneshot::Sender<Head>,
    out: Out,
) {
    let ct = match s.type_() {
        nu_protocol::ByteStreamType::String => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    };
    match s.into_child() {
        Ok(mut child) => {
            let _ = head.send(Ok((StatusCode::OK, ct)));
            if let Some(stdout) = child.stdout.take() {
                if !copy(stdout, &out) {
                    return;
                }
            }
            if let Err(e) = child.wait() {
                out.fail(script::ScriptError::shell(es, &e).0);
            }
        }
        Err(s) => {
            let _ = head.send(Ok((StatusCode::OK, ct)));
            if let Some(r) = s.reader() {
                copy(r, &out);
            }
        }
    }
}

/// Copies a reader into the body; false if reading failed or the client left.
fn copy(mut r: impl std::io::Read, out: &Out) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => {
                if !out.send(buf[..n].to_vec()) {
                    return false;
                }
            }
            Err(e) => {
                out.fail(e.to_string());
                return false;
            }
        }
    }
}
