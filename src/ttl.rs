//! Time-to-live of a frame: `forever`, `ephemeral` (never written, live readers only),
//! `time:<ms>` (expires by the id's timestamp) and `last:<n>` (newest n of its topic).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// How long a frame is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ttl {
    /// Kept until removed.
    #[default]
    Forever,
    /// Never written: only live readers see it.
    Ephemeral,
    /// Expires this many milliseconds after the frame's id timestamp.
    Time(u64),
    /// Only the newest n frames of the topic are kept.
    Last(u32),
}

impl Ttl {
    /// Expiry time in Unix ms for a frame created at `created_ms`, if the TTL is time-based.
    /// Never 0, which the store's encoding reserves for "never expires".
    pub fn expires_at(&self, created_ms: u64) -> Option<u64> {
        match self {
            Ttl::Time(ms) => Some(created_ms.saturating_add(*ms).max(1)),
            _ => None,
        }
    }
}

impl FromStr for Ttl {
    type Err = Error;

    fn from_str(s: &str) -> Result<Ttl> {
        let bad = |why: &str| {
            Error::invalid(format!(
                "invalid ttl {s:?}: {why} (expected forever, ephemeral, time:<ms> or last:<n>)"
            ))
        };
        match s {
            "forever" => return Ok(Ttl::Forever),
            "ephemeral" => return Ok(Ttl::Ephemeral),
            _ => {}
        }
        if let Some(ms) = s.strip_prefix("time:") {
            let ms: u64 = ms
                .parse()
                .map_err(|_| bad("time must be a whole number of ms"))?;
            return Ok(Ttl::Time(ms));
        }
        // `head:<n>` is the older cross.stream spelling of `last:<n>`.
        if let Some(n) = s.strip_prefix("last:").or_else(|| s.strip_prefix("head:")) {
            let n: u32 = n.parse().map_err(|_| bad("n must be a whole number"))?;
            if n == 0 {
                return Err(bad("n must be at least 1"));
            }
            return Ok(Ttl::Last(n));
        }
        Err(bad("unknown form"))
    }
}

impl fmt::Display for Ttl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ttl::Forever => f.write_str("forever"),
            Ttl::Ephemeral => f.write_str("ephemeral"),
            Ttl::Time(ms) => write!(f, "time:{ms}"),
            Ttl::Last(n) => write!(f, "last:{n}"),
        }
    }
}

impl Ttl {
    /// Writes the `Display` form to `out` (without going through `fmt`).
    pub(crate) fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Ttl::Forever => out.extend_from_slice(b"forever"),
            Ttl::Ephemeral => out.extend_from_slice(b"ephemeral"),
            Ttl::Time(ms) => {
                out.extend_from_slice(b"time:");
                out.extend_from_slice(ms.to_string().as_bytes());
            }
            Ttl::Last(n) => {
                out.extend_from_slice(b"last:");
                out.extend_from_slice(n.to_string().as_bytes());
            }
        }
    }
}

impl Serialize for Ttl {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ttl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Ttl, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for s in [
            "forever",
            "ephemeral",
            "time:0",
            "time:1500",
            "last:1",
            "last:42",
        ] {
            let t: Ttl = s.parse().unwrap();
            assert_eq!(t.to_string(), s);
        }
        assert_eq!("head:3".parse::<Ttl>().unwrap(), Ttl::Last(3));
    }

    #[test]
    fn rejects() {
        for s in [
            "",
            "never",
            "time:",
            "time:-1",
            "time:1.5",
            "last:0",
            "last:x",
            "last:-2",
            "time:99999999999999999999",
        ] {
            assert!(s.parse::<Ttl>().is_err(), "{s}");
        }
    }
}
