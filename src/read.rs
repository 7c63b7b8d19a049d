//! Read options, one set for every surface (HTTP query, CLI flags, Nushell flags):
//! `from`, `after`, `new`, `limit`, `last`, `topic`, `follow` (+ pulse), `with-timestamp`.

use std::borrow::Cow;
use std::fmt::Write;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::error::{Error, Result};
use crate::frame::{parse_id, Id};
use crate::topic::TopicFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
/// Whether a read follows live frames after its history.
pub enum Follow {
    #[default]
    /// History only.
    Off,
    /// Follow.
    On,
    /// Follow, and send an `xs.pulse` frame every this many ms.
    Pulse(u64),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
/// What a read returns, on every surface.
pub struct ReadOptions {
    /// Whether (and how) to follow live frames.
    pub follow: Follow,
    /// Skip history: only frames appended after the read starts.
    pub new: bool,
    /// Start after this id (exclusive).
    pub after: Option<Id>,
    /// Start at this id (inclusive); wins over `after`.
    pub from: Option<Id>,
    /// At most this many frames (history and live together).
    pub limit: Option<usize>,
    /// Only the newest n frames of history (in id order); wins over `from`/`after`.
    pub last: Option<usize>,
    /// Only frames whose topic matches.
    pub topic: TopicFilter,
    /// Add `timestamp` (RFC 3339, from the id) to each frame.
    pub with_timestamp: bool,
}

impl ReadOptions {
    /// Parses a URL query string (`follow=true&topic=user.*&limit=10`). Unknown keys are
    /// ignored, as cross.stream does; bad values are errors.
    pub fn from_query(query: Option<&str>) -> Result<ReadOptions> {
        let mut o = ReadOptions::default();
        for (k, v) in parse_query(query.unwrap_or(""))? {
            match k.as_str() {
                "follow" => o.follow = parse_follow(&v)?,
                "new" => o.new = !matches!(v.as_str(), "false" | "no" | "0"),
                "after" => o.after = Some(parse_id(&v)?),
                "from" => o.from = Some(parse_id(&v)?),
                "limit" => o.limit = Some(parse_count("limit", &v)?),
                "last" => o.last = Some(parse_count("last", &v)?),
                "topic" => o.topic = TopicFilter::parse(&v)?,
                "with-timestamp" => o.with_timestamp = !matches!(v.as_str(), "false" | "no" | "0"),
                _ => {}
            }
        }
        Ok(o)
    }

    /// The query string for these options (empty when all are defaults).
    pub fn to_query(&self) -> String {
        let mut q = String::new();
        let mut add = |k: &str, v: &str| {
            if !q.is_empty() {
                q.push('&');
            }
            let _ = write!(q, "{k}={}", encode_component(v));
        };
        match self.follow {
            Follow::Off => {}
            Follow::On => add("follow", "true"),
            Follow::Pulse(ms) => add("follow", &ms.to_string()),
        }
        if self.new {
            add("new", "true");
        }
        if let Some(id) = &self.after {
            add("after", &id.to_string());
        }
        if let Some(id) = &self.from {
            add("from", &id.to_string());
        }
        if let Some(n) = self.limit {
            add("limit", &n.to_string());
        }
        if let Some(n) = self.last {
            add("last", &n.to_string());
        }
        if !self.topic.is_all() {
            add("topic", &self.topic.to_string());
        }
        if self.with_timestamp {
            add("with-timestamp", "true");
        }
        q
    }

    /// Whether the read follows live frames.
    pub fn is_follow(&self) -> bool {
        self.follow != Follow::Off
    }
}

fn parse_follow(v: &str) -> Result<Follow> {
    match v {
        "" | "true" | "yes" => Ok(Follow::On),
        "false" | "no" => Ok(Follow::Off),
        _ => match v.parse::<u64>() {
            Ok(0) => Err(Error::invalid("follow pulse must be at least 1 ms")),
            Ok(ms) => Ok(Follow::Pulse(ms)),
            Err(_) => Err(Error::invalid(format!(
                "invalid follow value {v:?}: expected true, false or a pulse interval in ms"
            ))),
        },
    }
}

fn parse_count(name: &str, v: &str) -> Result<usize> {
    v.parse::<usize>()
        .map_err(|_| Error::invalid(format!("invalid {name} {v:?}: expected a whole number")))
}

/// Splits and percent-decodes a query string into key/value pairs.
pub fn parse_query(q: &str) -> Result<Vec<(String, String)>> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode_component(k)?, decode_component(v)?))
        })
        .collect()
}

/// Percent-decodes one query component (`+` is a space); a `%` must start a `%XX` escape.
pub fn decode_component(s: &str) -> Result<String> {
    let b = s.as_bytes();
    let escapes_ok = (0..b.len()).filter(|&i| b[i] == b'%').all(|i| {
        b.get(i + 1..i + 3)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if !escapes_ok {
        return Err(Error::invalid(format!("bad percent-encoding in {s:?}")));
    }
    percent_decode_str(&s.replace('+', " "))
        .decode_utf8()
        .map(Cow::into_owned)
        .map_err(|_| Error::invalid(format!("query value {s:?} is not UTF-8")))
}

/// What [`encode_component`] escapes: all but ASCII letters, digits and `-_.*,:~`, the
/// characters topics, ids and TTLs use.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'*')
    .remove(b',')
    .remove(b':')
    .remove(b'~');

/// Percent-encodes a query component, leaving the characters topics, ids and TTLs use.
pub fn encode_component(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_round_trip() {
        let o = ReadOptions {
            follow: Follow::Pulse(250),
            new: true,
            after: Some("03d4q1qhbiv09ovtuhokw5yxv".parse().unwrap()),
            from: None,
            limit: Some(5),
            last: Some(2),
            topic: TopicFilter::parse("user.*,chat").unwrap(),
            with_timestamp: true,
        };
        let q = o.to_query();
        assert_eq!(ReadOptions::from_query(Some(&q)).unwrap(), o);
        assert_eq!(
            ReadOptions::from_query(None).unwrap(),
            ReadOptions::default()
        );
    }

    #[test]
    fn cross_stream_forms() {
        let o = ReadOptions::from_query(Some("follow&new&topic=a%2Cb")).unwrap();
        assert_eq!(o.follow, Follow::On);
        assert!(o.new);
        assert_eq!(o.topic, TopicFilter::parse("a,b").unwrap());
        assert_eq!(
            ReadOptions::from_query(Some("follow=1000")).unwrap().follow,
            Follow::Pulse(1000)
        );
    }

    #[test]
    fn component_forms() {
        assert_eq!(encode_component("a b/ü,*:~-_."), "a%20b%2F%C3%BC,*:~-_.");
        assert_eq!(decode_component("a+b%2B%2c%C3%BC").unwrap(), "a b+,ü");
        for bad in ["%", "%4", "%zz", "%%41", "a%+1", "%FF"] {
            assert!(decode_component(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_values() {
        for q in [
            "follow=maybe",
            "limit=-1",
            "last=x",
            "after=zzz",
            "topic=a%20b",
            "topic=%ZZ",
            "follow=0",
        ] {
            assert!(ReadOptions::from_query(Some(q)).is_err(), "{q}");
        }
    }
}
