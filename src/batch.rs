//! The wire form of a batch append (`POST /append`, `xs append --lines`): one [`BatchLine`]
//! of JSON per frame, and the caps on one batch. Used by the daemon and the CLI alike.

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::backend::NewFrame;
use crate::error::{Error, Result};
use crate::ttl::Ttl;

/// Most frames in one batch append; a client splits a longer input into several batches.
pub const BATCH_MAX_FRAMES: usize = 10_000;

/// Most bytes in one batch append's request body (its NDJSON, content in base64 included).
pub const BATCH_MAX_BYTES: usize = 64 * 1024 * 1024;

/// Longest idempotency key accepted, in bytes.
pub const IDEMPOTENCY_KEY_MAX: usize = 256;

/// Whether `key` is a valid idempotency key: 1 to [`IDEMPOTENCY_KEY_MAX`] visible ASCII
/// characters.
pub fn valid_idempotency_key(key: &[u8]) -> bool {
    !key.is_empty() && key.len() <= IDEMPOTENCY_KEY_MAX && key.iter().all(u8::is_ascii_graphic)
}

/// One frame of a batch append: `{topic, meta?, ttl?, content? | text?, expect?, key?}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchLine {
    /// The frame's topic.
    pub topic: String,
    /// Its meta, any JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<serde_json::Value>,
    /// How long it is kept (default `forever`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Ttl>,
    /// Its content, standard base64 (padding optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Its content as text (instead of `content`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Append only if the topic's newest frame is this id (`none`: if it has no frame).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
    /// Idempotency key: a repeat with the same key and topic answers the original frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl BatchLine {
    /// Checks the line: the frame to append (without content) and its content's bytes.
    pub fn into_frame(self) -> Result<(NewFrame, Vec<u8>)> {
        use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
        crate::topic::validate_topic(&self.topic)?;
        let bytes = match (self.content, self.text) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid("give content (base64) or text, not both"))
            }
            (Some(b64), None) => STANDARD
                .decode(&b64)
                .or_else(|_| STANDARD_NO_PAD.decode(&b64))
                .map_err(|e| Error::invalid(format!("content isn't valid base64: {e}")))?,
            (None, Some(text)) => text.into_bytes(),
            (None, None) => Vec::new(),
        };
        let expect = self.expect.map(|e| e.parse()).transpose()?;
        if let Some(k) = &self.key {
            if !valid_idempotency_key(k.as_bytes()) {
                return Err(Error::invalid(format!(
                    "key must be 1 to {IDEMPOTENCY_KEY_MAX} visible ASCII characters"
                )));
            }
        }
        let frame = NewFrame {
            topic: self.topic,
            meta: self.meta,
            ttl: self.ttl.unwrap_or_default(),
            content: crate::Content::None,
            expect,
            key: self.key,
        };
        Ok((frame, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(json: &str) -> Result<(NewFrame, Vec<u8>)> {
        serde_json::from_str::<BatchLine>(json)
            .map_err(|e| Error::invalid(e.to_string()))?
            .into_frame()
    }

    #[test]
    fn lines_become_frames() {
        let (f, b) = line(r#"{"topic":"a.b","text":"hi","ttl":"last:3","key":"k1"}"#).unwrap();
        assert_eq!((f.topic.as_str(), b.as_slice()), ("a.b", &b"hi"[..]));
        assert_eq!(f.ttl, Ttl::Last(3));
        assert_eq!(f.key.as_deref(), Some("k1"));
        let (_, b) = line(r#"{"topic":"a","content":"AAE"}"#).unwrap();
        assert_eq!(b, vec![0, 1]);
        let (f, b) = line(r#"{"topic":"a","expect":"none","meta":{"x":1}}"#).unwrap();
        assert_eq!(f.expect, Some(crate::Expect::None));
        assert!(b.is_empty() && f.meta.is_some());
    }

    #[test]
    fn bad_lines_are_refused() {
        for bad in [
            r#"{"topic":"a","text":"x","content":"eA=="}"#,
            r#"{"topic":"a","content":"!!"}"#,
            r#"{"topic":"a","expect":"nope"}"#,
            r#"{"topic":"a","key":""}"#,
            r#"{"topic":"a b"}"#,
            r#"{"topic":"a","tll":"forever"}"#,
            r#"{"text":"no topic"}"#,
        ] {
            assert!(line(bad).is_err(), "{bad} is refused");
        }
    }
}
