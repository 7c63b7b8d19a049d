//! How changes travel in the stream: one message per frame on `<prefix>.<topic>` (the
//! frame's JSON, a newline, then its content when inline), removals on `<prefix>.$rm`,
//! each checkpoint on its own subject `<prefix>.$ckpt.<name hex-encoded>`, rolled up (only its
//! newest message stays). The `Xs-Op` header says which change a message is.

use async_nats::HeaderMap;
use bytes::{BufMut, Bytes, BytesMut};

use crate::backend::{Content, NewFrame};
use crate::error::{Error, Result};
use crate::frame::{now_ms, Frame, Id};
use crate::ttl::Ttl;

const OP: &str = "Xs-Op";
const KEY: &str = "Xs-Key";
const PURGE: &str = "Xs-Purge";

/// A message to publish.
pub(crate) struct Outgoing {
    pub subject: String,
    pub headers: HeaderMap,
    pub payload: Bytes,
}

/// A change read back from the stream.
pub(crate) enum Change {
    Append(NewFrame, Id),
    Import(Frame),
    /// A removal; `true`: a purge (the content goes too when nothing references it).
    Remove(Id, bool),
    Checkpoint(String, Option<Vec<u8>>),
}

/// `Nats-TTL` for a frame: whole seconds, rounded up (the server drops sub-second parts, so
/// rounding down could remove a frame before its deadline), at least 1.
fn ttl_header(frame: &Frame, headers: &mut HeaderMap) {
    if let Some(Ttl::Time(_)) = frame.ttl {
        let at = frame
            .ttl
            .and_then(|t| t.expires_at(frame.created_ms()))
            .unwrap_or(0);
        let left = at.saturating_sub(now_ms());
        let secs = left.div_ceil(1000).max(1);
        headers.insert("Nats-TTL", secs.to_string().as_str());
    }
}

fn frame_payload(frame: &Frame, inline: Option<&Bytes>) -> Bytes {
    let json = frame.to_json();
    let mut b = BytesMut::with_capacity(json.len() + 1 + inline.map_or(0, |c| c.len()));
    b.put_slice(&json);
    b.put_u8(b'\n');
    if let Some(c) = inline {
        b.put_slice(c);
    }
    b.freeze()
}

pub(crate) fn append_msg(
    prefix: &str,
    frame: &Frame,
    content: &Content,
    key: Option<&str>,
) -> Outgoing {
    let mut headers = HeaderMap::new();
    headers.insert(OP, "append");
    if let Some(k) = key {
        headers.insert(KEY, k);
    }
    ttl_header(frame, &mut headers);
    let inline = match content {
        Content::Inline { bytes, .. } => Some(bytes),
        _ => None,
    };
    Outgoing {
        subject: format!("{prefix}.{}", frame.topic),
        headers,
        payload: frame_payload(frame, inline),
    }
}

pub(crate) fn import_msg(prefix: &str, frame: &Frame) -> Outgoing {
    let mut headers = HeaderMap::new();
    headers.insert(OP, "import");
    ttl_header(frame, &mut headers);
    Outgoing {
        subject: format!("{prefix}.{}", frame.topic),
        headers,
        payload: frame_payload(frame, None),
    }
}

pub(crate) fn remove_msg(prefix: &str, id: Id, purge: bool) -> Outgoing {
    let mut headers = HeaderMap::new();
    headers.insert(OP, "remove");
    if purge {
        headers.insert(PURGE, "1");
    }
    Outgoing {
        subject: format!("{prefix}.$rm"),
        headers,
        payload: Bytes::from(id.to_string()),
    }
}

/// A checkpoint set (`Some`) or removed: the name, a NUL, then the value, on the
/// checkpoint's own subject, replacing its earlier messages (`Nats-Rollup: sub`).
pub(crate) fn checkpoint_msg(prefix: &str, name: &str, value: Option<&[u8]>) -> Outgoing {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Rollup", "sub");
    headers.insert(
        OP,
        if value.is_some() {
            "checkpoint"
        } else {
            "uncheckpoint"
        },
    );
    let mut b = BytesMut::new();
    b.put_slice(name.as_bytes());
    b.put_u8(0);
    if let Some(v) = value {
        b.put_slice(v);
    }
    Outgoing {
        subject: format!("{prefix}.$ckpt.{}", hex::encode(name.as_bytes())),
        headers,
        payload: b.freeze(),
    }
}

/// The id of the frame a message on a topic's subject carries, if it carries one.
pub(crate) fn frame_id(payload: &Bytes) -> Option<Id> {
    split_frame(payload).ok().map(|(f, _)| f.id)
}

fn split_frame(payload: &Bytes) -> Result<(Frame, Bytes)> {
    let nl = payload
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| Error::Corrupt("a frame message without its newline".into()))?;
    let frame = Frame::from_json(&payload[..nl])?;
    Ok((frame, payload.slice(nl + 1..)))
}

pub(crate) fn decode(headers: Option<&HeaderMap>, payload: &Bytes) -> Result<Option<Change>> {
    let get = |k: &str| {
        headers
            .and_then(|h| h.get(k))
            .map(|v| v.as_str().to_string())
    };
    let op = get(OP);
    match op.as_deref() {
        Some("append") => {
            let (frame, rest) = split_frame(payload)?;
            let content = match &frame.hash {
                None => Content::None,
                Some(h) if !rest.is_empty() => Content::Inline {
                    hash: h.clone(),
                    bytes: rest,
                },
                Some(h) => Content::Stored {
                    hash: h.clone(),
                    len: 0,
                },
            };
            let id = frame.id;
            let nf = NewFrame {
                topic: frame.topic,
                meta: frame.meta,
                ttl: frame.ttl.unwrap_or(Ttl::Forever),
                content,
                expect: None,
                key: get(KEY),
            };
            Ok(Some(Change::Append(nf, id)))
        }
        Some("import") => Ok(Some(Change::Import(split_frame(payload)?.0))),
        Some("remove") => {
            let s = std::str::from_utf8(payload)
                .map_err(|_| Error::Corrupt("a removal that is not UTF-8".into()))?;
            let id: Id = s
                .parse()
                .map_err(|_| Error::Corrupt(format!("a removal of a bad id {s:?}")))?;
            Ok(Some(Change::Remove(id, get(PURGE).is_some())))
        }
        Some(op @ ("checkpoint" | "uncheckpoint")) => {
            let nul = payload
                .iter()
                .position(|b| *b == 0)
                .ok_or_else(|| Error::Corrupt("a checkpoint without its name".into()))?;
            let name = String::from_utf8_lossy(&payload[..nul]).into_owned();
            let value = (op == "checkpoint").then(|| payload[nul + 1..].to_vec());
            Ok(Some(Change::Checkpoint(name, value)))
        }
        // Not ours (a probe, a newer format): skipped.
        _ => Ok(None),
    }
}
