//! On-disk encoding of keys and values: frame values carry a small header (format version,
//! expiry) in front of the wire JSON, so replay can stream the JSON without re-encoding it.

use crate::error::{Error, Result};
use crate::frame::{Frame, Id};

const FRAME_FORMAT_V1: u8 = 1;
const HEADER_LEN: usize = 9;

/// Encodes a frame value: `[version][expires_at_ms u64 BE, 0 = never][frame JSON]`.
pub fn encode_frame(frame: &Frame, json: &[u8]) -> Vec<u8> {
    let expires = frame
        .ttl
        .and_then(|t| t.expires_at(frame.created_ms()))
        .unwrap_or(0);
    let mut v = Vec::with_capacity(HEADER_LEN + json.len());
    v.push(FRAME_FORMAT_V1);
    v.extend_from_slice(&expires.to_be_bytes());
    v.extend_from_slice(json);
    v
}

/// A stored frame value, decoded just enough to serve it.
pub struct FrameValue<'a> {
    pub expires_at: u64,
    pub json: &'a [u8],
}

impl FrameValue<'_> {
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at != 0 && now_ms >= self.expires_at
    }
}

pub fn decode_frame_value<'a>(id: &Id, value: &'a [u8]) -> Result<FrameValue<'a>> {
    if value.len() < HEADER_LEN + 2 || value[0] != FRAME_FORMAT_V1 {
        return Err(Error::Corrupt(format!(
            "frame {id}: unknown value format ({} bytes)",
            value.len()
        )));
    }
    let mut exp = [0u8; 8];
    exp.copy_from_slice(&value[1..HEADER_LEN]);
    Ok(FrameValue {
        expires_at: u64::from_be_bytes(exp),
        json: &value[HEADER_LEN..],
    })
}

pub fn decode_frame(id: &Id, value: &[u8]) -> Result<Frame> {
    let v = decode_frame_value(id, value)?;
    serde_json::from_slice(v.json)
        .map_err(|e| Error::Corrupt(format!("frame {id}: value is not a frame: {e}")))
}

pub fn id_key(id: &Id) -> [u8; 16] {
    id.to_bytes()
}

pub fn id_from_key(key: &[u8]) -> Result<Id> {
    let bytes: [u8; 16] = key
        .try_into()
        .map_err(|_| Error::Corrupt(format!("frame key of {} bytes, expected 16", key.len())))?;
    Ok(Id::from_bytes(bytes))
}

/// Topic index key: `<topic or prefix.> \0 <id>`.
pub fn topic_key(prefix: &str, id: &Id) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 17);
    k.extend_from_slice(prefix.as_bytes());
    k.push(0);
    k.extend_from_slice(&id.to_bytes());
    k
}

/// The id at the end of a topic index key.
pub fn id_from_topic_key(key: &[u8]) -> Result<Id> {
    if key.len() < 17 {
        return Err(Error::Corrupt("topic index key too short".into()));
    }
    id_from_key(&key[key.len() - 16..])
}

/// Expiry index key: `<expires_at_ms u64 BE><id>`.
pub fn expiry_key(expires_at: u64, id: &Id) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&expires_at.to_be_bytes());
    k[8..].copy_from_slice(&id.to_bytes());
    k
}
