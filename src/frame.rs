//! The frame: one event in the stream, `{topic, id, hash, meta, ttl}`, and its JSON forms
//! (wire JSON, with an optional RFC 3339 `timestamp` derived from the id).

use serde::{Deserialize, Serialize};
use ssri::Integrity;

use crate::error::{Error, Result};
use crate::ttl::Ttl;

/// A frame id: a SCRU128 id (25 chars of base 36), sorting by creation time.
pub type Id = scru128::Id;

/// One event: where it is filed, when, its content (by hash), its metadata and how long it
/// is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    /// The topic, `.`-separated (`user.alice.msg`).
    pub topic: String,
    /// Unique and time-sorted; also the frame's creation time.
    pub id: Id,
    /// The ssri hash of the content, if the frame has any.
    #[serde(default)]
    pub hash: Option<Integrity>,
    /// Free-form JSON metadata.
    #[serde(default)]
    pub meta: Option<serde_json::Value>,
    /// How long the frame is kept (none: forever).
    #[serde(default)]
    pub ttl: Option<Ttl>,
}

impl Frame {
    /// The frame as one line of JSON, without the trailing newline. Written by hand in the
    /// wire order (the same bytes serde writes, see the tests): it runs for every append.
    #[expect(
        clippy::expect_used,
        reason = "a string or a JSON value written into a Vec cannot fail"
    )]
    pub fn to_json(&self) -> Vec<u8> {
        let meta_len = self.meta.as_ref().map_or(0, |_| 64);
        let mut out = Vec::with_capacity(128 + self.topic.len() + meta_len);
        out.extend_from_slice(b"{\"topic\":");
        serde_json::to_writer(&mut out, &self.topic).expect("a string always serializes");
        out.extend_from_slice(b",\"id\":\"");
        out.extend_from_slice(self.id.encode().as_bytes());
        out.extend_from_slice(b"\",\"hash\":");
        match &self.hash {
            Some(h) => {
                out.push(b'"');
                write_integrity(&mut out, h);
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"meta\":");
        match &self.meta {
            Some(m) => serde_json::to_writer(&mut out, m).expect("a JSON value always serializes"),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"ttl\":");
        match &self.ttl {
            Some(t) => {
                out.push(b'"');
                t.write_to(&mut out);
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
        out
    }

    /// Milliseconds since the Unix epoch at which the frame was created (from its id).
    pub fn created_ms(&self) -> u64 {
        self.id.timestamp()
    }

    /// Whether this frame has expired at `now_ms` under its TTL (`time:` only).
    pub fn is_expired(&self, now_ms: u64) -> bool {
        match self.ttl.and_then(|t| t.expires_at(self.created_ms())) {
            Some(at) => now_ms >= at,
            None => false,
        }
    }

    /// Parses a frame from JSON (as `xs import` and `POST /import` receive it) and checks it.
    pub fn from_json(bytes: &[u8]) -> Result<Frame> {
        let frame: Frame = serde_json::from_slice(bytes)
            .map_err(|e| Error::invalid(format!("invalid frame JSON: {e}")))?;
        crate::topic::validate_topic(&frame.topic)?;
        if let Some(hash) = &frame.hash {
            check_integrity(hash)?;
        }
        Ok(frame)
    }
}

/// What an append expects the newest frame of its topic to be (`?expect=<id>|none`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The topic has no frame.
    None,
    /// The newest frame on the topic has this id.
    Id(Id),
}

impl Expect {
    /// Whether `last` (the newest frame on the topic, if any) meets the expectation.
    pub fn holds(&self, last: Option<Id>) -> bool {
        match self {
            Expect::None => last.is_none(),
            Expect::Id(id) => last == Some(*id),
        }
    }
}

impl std::str::FromStr for Expect {
    type Err = Error;

    fn from_str(s: &str) -> Result<Expect> {
        match s.trim() {
            "none" => Ok(Expect::None),
            s => parse_id(s)
                .map(Expect::Id)
                .map_err(|e| Error::invalid(format!("invalid expect (an id or `none`): {e}"))),
        }
    }
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::None => f.write_str("none"),
            Expect::Id(id) => write!(f, "{id}"),
        }
    }
}

/// Parses a frame id, with an error that names what was wrong.
pub fn parse_id(s: &str) -> Result<Id> {
    s.parse::<Id>()
        .map_err(|e| Error::invalid(format!("invalid frame id {:?}: {e}", truncate(s, 40))))
}

/// Parses a content hash (`sha256-<base64>`), rejecting anything ssri would silently ignore.
pub fn parse_hash(s: &str) -> Result<Integrity> {
    let sri: Integrity = s
        .parse()
        .map_err(|e| Error::invalid(format!("invalid content hash {:?}: {e}", truncate(s, 80))))?;
    check_integrity(&sri)
        .map_err(|_| Error::invalid(format!("invalid content hash {:?}", truncate(s, 80))))?;
    Ok(sri)
}

fn check_integrity(sri: &Integrity) -> Result<()> {
    use base64::Engine;
    if sri.hashes.is_empty() {
        return Err(Error::invalid("content hash has no digest"));
    }
    for h in &sri.hashes {
        let digest = base64::engine::general_purpose::STANDARD
            .decode(&h.digest)
            .map_err(|_| Error::invalid("content hash digest is not valid base64"))?;
        let want = match h.algorithm {
            ssri::Algorithm::Sha512 => 64,
            ssri::Algorithm::Sha384 => 48,
            ssri::Algorithm::Sha256 => 32,
            ssri::Algorithm::Sha1 => 20,
            ssri::Algorithm::Xxh3 => 16,
            other => {
                return Err(Error::invalid(format!(
                    "content hash algorithm {other} is not supported"
                )))
            }
        };
        if digest.len() != want {
            return Err(Error::invalid(format!(
                "content hash digest is {} bytes, {} needs {want}",
                digest.len(),
                h.algorithm
            )));
        }
    }
    Ok(())
}

fn truncate(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// RFC 3339 time (UTC, ms precision) of an id's timestamp.
pub fn id_timestamp(id: &Id) -> String {
    let ms = id.timestamp() as i64;
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The name ssri gives `algo` in an integrity string (`sha256`, ...).
pub(crate) fn algorithm_name(algo: ssri::Algorithm) -> std::borrow::Cow<'static, str> {
    use ssri::Algorithm::*;
    match algo {
        Sha512 => "sha512".into(),
        Sha384 => "sha384".into(),
        Sha256 => "sha256".into(),
        Sha1 => "sha1".into(),
        Xxh3 => "xxh3".into(),
        other => other.to_string().into(),
    }
}

/// Writes `sri` as its `Display` form does (`algo-digest`, space separated): the digests are
/// base64, so nothing needs escaping inside a JSON string.
fn write_integrity(out: &mut Vec<u8>, sri: &Integrity) {
    for (i, h) in sri.hashes.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(algorithm_name(h.algorithm).as_bytes());
        out.push(b'-');
        out.extend_from_slice(h.digest.as_bytes());
    }
}

/// Appends `json` (a frame's JSON object) to `out`, with `"timestamp"` spliced in when asked.
pub fn write_json(out: &mut Vec<u8>, json: &[u8], id: &Id, with_timestamp: bool) {
    if with_timestamp && json.last() == Some(&b'}') {
        out.extend_from_slice(&json[..json.len() - 1]);
        out.extend_from_slice(b",\"timestamp\":\"");
        out.extend_from_slice(id_timestamp(id).as_bytes());
        out.extend_from_slice(b"\"}");
    } else {
        out.extend_from_slice(json);
    }
}

/// Current time in ms since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_matches_cross_stream() {
        let f = Frame {
            topic: "chat".into(),
            id: "03d4q1qhbiv09ovtuhokw5yxv".parse().unwrap(),
            hash: None,
            meta: None,
            ttl: Some(Ttl::Forever),
        };
        let s = String::from_utf8(f.to_json()).unwrap();
        assert_eq!(
            s,
            r#"{"topic":"chat","id":"03d4q1qhbiv09ovtuhokw5yxv","hash":null,"meta":null,"ttl":"forever"}"#
        );
        let mut out = Vec::new();
        write_json(&mut out, s.as_bytes(), &f.id, true);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
        assert_eq!(Frame::from_json(s.as_bytes()).unwrap(), f);
    }

    /// Found by fuzzing: a huge integer in meta must survive a round trip unchanged (serde_json
    /// parses floats exactly only with `float_roundtrip`).
    #[test]
    fn big_numbers_in_meta_round_trip() {
        let json = br#"{"topic":"chat","id":"03d4q1qhbiv09ovtuhokw6yxv","meta":{"a":[1,999003875820019684212727]},"ttl":"last:3"}"#;
        let f = Frame::from_json(json).unwrap();
        assert_eq!(Frame::from_json(&f.to_json()).unwrap(), f);
    }

    #[test]
    fn rejects_bad_frames_and_hashes() {
        assert!(Frame::from_json(b"{}").is_err());
        assert!(Frame::from_json(br#"{"topic":"a b","id":"03d4q1qhbiv09ovtuhokw5yxv"}"#).is_err());
        assert!(Frame::from_json(br#"{"topic":"a","id":"nope"}"#).is_err());
        assert!(parse_hash("sha256-!!!").is_err());
        assert!(parse_hash("garbage").is_err());
        assert!(parse_hash("sha256-").is_err());
        assert!(parse_hash("sha256-AA==").is_err());
        assert!(parse_hash("sha512-").is_err());
        let good = Integrity::from(b"hi").to_string();
        assert!(parse_hash(&good).is_ok());
        assert!(parse_id("03d4q1qhbiv09ovtuhokw5yx").is_err());
    }

    /// The hand-written JSON is byte for byte what serde writes, for every field shape.
    #[test]
    fn hand_written_json_equals_serde() {
        let multi: Integrity = ssri::IntegrityOpts::new()
            .algorithm(ssri::Algorithm::Sha512)
            .algorithm(ssri::Algorithm::Sha1)
            .chain(b"x")
            .result();
        let metas = [
            None,
            Some(serde_json::json!({"u": "bob", "n": [1, 2.5, null], "q": "a\"b\\\n\u{1}é"})),
            Some(serde_json::json!("just a string")),
        ];
        let hashes = [None, Some(Integrity::from(b"hi")), Some(multi)];
        let ttls = [
            None,
            Some(Ttl::Forever),
            Some(Ttl::Ephemeral),
            Some(Ttl::Time(1500)),
            Some(Ttl::Last(u32::MAX)),
        ];
        for meta in &metas {
            for hash in &hashes {
                for ttl in ttls {
                    let f = Frame {
                        topic: "user.alice-1_x.msg".into(),
                        id: scru128::new(),
                        hash: hash.clone(),
                        meta: meta.clone(),
                        ttl,
                    };
                    assert_eq!(
                        String::from_utf8(f.to_json()).unwrap(),
                        serde_json::to_string(&f).unwrap()
                    );
                }
            }
        }
    }
}
