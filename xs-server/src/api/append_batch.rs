//! `POST /append`: a batch append. The NDJSON body (one [`xs::BatchLine`] a line) is read as
//! it streams; its frames are committed in one write, all or nothing, and answered as NDJSON.

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::CONTENT_LENGTH;
use hyper::{Request, StatusCode};
use xs::store::Outcome;
use xs::{Batch, BatchLine, Content, NewFrame, Store, BATCH_MAX_BYTES, BATCH_MAX_FRAMES};

use super::{drain, frame_json, respond, with_timestamp, ApiResult, NDJSON};
use crate::body;
use crate::error::ApiError;

pub async fn handle(store: Store, req: Request<Incoming>) -> ApiResult {
    let checked = with_timestamp(&req).and_then(|wt| {
        let len = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        match len {
            Some(n) if n > BATCH_MAX_BYTES as u64 => Err(too_large(format!(
                "the batch is {n} bytes; a batch takes at most {BATCH_MAX_BYTES} (split it)"
            ))),
            _ => Ok(wt),
        }
    });
    let mut body = req.into_body();
    let read = match checked {
        Ok(wt) => read_batch(&store, &mut body).await.map(|b| (wt, b)),
        Err(e) => Err(e),
    };
    let (wt, Lines { frames, numbers }) = match read {
        Ok(r) => r,
        Err(e) => {
            store.count_append(Outcome::Rejected, 0);
            drain(body).await;
            return Err(e);
        }
    };
    let one = frames.len() == 1;
    let batch = Batch {
        frames,
        checkpoint: None,
        fence: None,
    };
    let frames = store.append_batch(batch).await.map_err(|e| {
        // A refused frame is named by its line; any other failure is the whole batch's.
        let index = match &e {
            xs::Error::ExpectFailed { index, .. } => index.or(one.then_some(0)),
            _ => one.then_some(0),
        };
        let mut err = ApiError::from(e);
        if let Some(n) = index.and_then(|i| numbers.get(i)) {
            err.message = format!("line {n}: {}", err.message);
        }
        err
    })?;
    let mut out = Vec::with_capacity(frames.len() * 160);
    for f in &frames {
        out.extend(frame_json(f, wt));
        out.push(b'\n');
    }
    Ok(respond(StatusCode::OK, NDJSON, body::full(out)))
}

/// The frames read from a batch, and the line each came from (1-based; blank lines are
/// skipped but counted).
#[derive(Default)]
struct Lines {
    frames: Vec<NewFrame>,
    numbers: Vec<usize>,
}

/// Reads the body line by line as it arrives, checking each line and storing large content
/// as it comes (as `POST /append/{topic}` does), so that only the frames stay in memory.
async fn read_batch(store: &Store, body: &mut Incoming) -> Result<Lines, ApiError> {
    let mut lines = Lines::default();
    let mut buf: Vec<u8> = Vec::new();
    let (mut seen, mut scanned, mut number) = (0usize, 0usize, 0usize);
    while let Some(chunk) = body.frame().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
        let Ok(data) = chunk.into_data() else {
            continue;
        };
        seen += data.len();
        if seen > BATCH_MAX_BYTES {
            return Err(too_large(format!(
                "the batch is over {BATCH_MAX_BYTES} bytes at line {} (split it)",
                number + 1
            )));
        }
        buf.extend_from_slice(&data);
        let mut start = 0;
        while let Some(p) = buf[scanned..].iter().position(|&b| b == b'\n') {
            let end = scanned + p;
            number += 1;
            take_line(store, &mut lines, number, &buf[start..end]).await?;
            start = end + 1;
            scanned = start;
        }
        buf.drain(..start);
        scanned = buf.len();
    }
    if !buf.is_empty() {
        take_line(store, &mut lines, number + 1, &buf).await?;
    }
    Ok(lines)
}

async fn take_line(
    store: &Store,
    lines: &mut Lines,
    number: usize,
    line: &[u8],
) -> Result<(), ApiError> {
    if line.trim_ascii().is_empty() {
        return Ok(());
    }
    if lines.frames.len() == BATCH_MAX_FRAMES {
        return Err(too_large(format!(
            "a batch takes at most {BATCH_MAX_FRAMES} frames; line {number} is one too many (split it)"
        )));
    }
    let at = |e: String| ApiError::bad_request(format!("line {number}: {e}"));
    let parsed: BatchLine = serde_json::from_slice(line).map_err(|e| at(json_error(&e)))?;
    let (mut frame, bytes) = parsed.into_frame().map_err(|e| at(e.to_string()))?;
    frame.content = if bytes.len() <= xs::INLINE_CONTENT_MAX {
        Content::inline(bytes)
    } else {
        // Large content is stored (durably) before its frame, as for one append.
        let mut w = store.content_writer();
        w.write(&bytes).await?;
        w.finish().await?
    };
    lines.frames.push(frame);
    lines.numbers.push(number);
    Ok(())
}

/// A line's JSON error, placed by its column (serde's own "at line 1" would confuse).
fn json_error(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    match msg.rfind(" at line ") {
        Some(i) => format!("{} (column {})", &msg[..i], e.column()),
        None => msg,
    }
}

fn too_large(message: String) -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, message)
}
