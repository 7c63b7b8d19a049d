//! Durable consumers: named read positions kept in the store. This module owns the names, the
//! read options that select a consumer (`consumer`, `start`, `ack`) and how a position starts
//! a read; the store keeps the positions (`store/consumers.rs`).

use std::fmt::Write;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::frame::{parse_id, Id};
use crate::read::{encode_component, parse_query, ReadOptions};

/// Most frames counted for a lag (a durable consumer's in `GET /consumers`, a follower's in
/// the metrics); a lag this large means "at least this".
pub const LAG_CAP: u64 = 1_000_000;

/// Checks a consumer name: the same rules as topic names.
pub fn validate_name(name: &str) -> Result<()> {
    crate::topic::validate_topic(name)
        .map_err(|e| Error::invalid(e.to_string().replacen("topic", "consumer name", 1)))
}

/// Where a consumer with no position yet starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Start {
    /// From the first frame (the default).
    #[default]
    First,
    /// Only frames appended from now on.
    New,
    /// After this id.
    After(Id),
}

impl std::str::FromStr for Start {
    type Err = Error;

    fn from_str(s: &str) -> Result<Start> {
        match s {
            "first" => Ok(Start::First),
            "new" => Ok(Start::New),
            id => parse_id(id).map(Start::After).map_err(|_| {
                Error::invalid(format!(
                    "invalid start {id:?}: expected first, new or a frame id"
                ))
            }),
        }
    }
}

impl std::fmt::Display for Start {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Start::First => f.write_str("first"),
            Start::New => f.write_str("new"),
            Start::After(id) => write!(f, "{id}"),
        }
    }
}

/// A read on behalf of a consumer: `?consumer=N[&start=first|new|ID][&ack=auto]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRead {
    /// The consumer's name.
    pub name: String,
    /// Where it starts when it has no position yet.
    pub start: Start,
    /// Acknowledge frames as they are handed to the client.
    pub ack_auto: bool,
}

impl ConsumerRead {
    /// Parses the consumer part of a read's query; `None` without `consumer`.
    pub fn from_query(query: Option<&str>) -> Result<Option<ConsumerRead>> {
        let mut name = None;
        let mut start = None;
        let mut ack_auto = false;
        for (k, v) in parse_query(query.unwrap_or(""))? {
            match k.as_str() {
                "consumer" => {
                    validate_name(&v)?;
                    name = Some(v);
                }
                "start" => start = Some(v.parse::<Start>()?),
                "ack" => {
                    ack_auto = match v.as_str() {
                        "auto" => true,
                        "manual" | "none" => false,
                        _ => {
                            return Err(Error::invalid(format!(
                                "invalid ack {v:?}: expected auto (or manual, the default)"
                            )))
                        }
                    }
                }
                _ => {}
            }
        }
        match name {
            Some(name) => Ok(Some(ConsumerRead {
                name,
                start: start.unwrap_or_default(),
                ack_auto,
            })),
            None if start.is_some() || ack_auto => Err(Error::invalid(
                "start and ack=auto need a consumer (add consumer=NAME)",
            )),
            None => Ok(None),
        }
    }

    /// The query string for this consumer (to append to a read's query).
    pub fn to_query(&self) -> String {
        let mut q = format!("consumer={}", encode_component(&self.name));
        if self.start != Start::First {
            let _ = write!(q, "&start={}", self.start);
        }
        if self.ack_auto {
            q.push_str("&ack=auto");
        }
        q
    }

    /// Makes `opts` start after the consumer's `position`, or, with none yet, at `start`.
    pub fn apply(&self, position: Option<Id>, opts: &mut ReadOptions) {
        let after = match (position, self.start) {
            (Some(p), _) => Some(p),
            (None, Start::First) => return,
            (None, Start::New) => {
                opts.new = true;
                return;
            }
            (None, Start::After(id)) => Some(id),
        };
        opts.after = after;
        opts.from = None;
        opts.new = false;
    }
}

/// A consumer as listed by `GET /consumers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsumerInfo {
    /// The consumer's name.
    pub name: String,
    /// The last acknowledged id.
    pub position: Id,
    /// Stored frames after the position (at most [`LAG_CAP`]).
    pub lag: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_round_trip_and_errors() {
        let c = ConsumerRead {
            name: "billing.worker-1".into(),
            start: Start::New,
            ack_auto: true,
        };
        assert_eq!(
            ConsumerRead::from_query(Some(&c.to_query())).unwrap(),
            Some(c)
        );
        assert_eq!(ConsumerRead::from_query(Some("follow")).unwrap(), None);
        assert!(ConsumerRead::from_query(Some("consumer=a%20b")).is_err());
        assert!(ConsumerRead::from_query(Some("consumer=a&start=soon")).is_err());
        assert!(ConsumerRead::from_query(Some("consumer=a&ack=yes")).is_err());
        assert!(ConsumerRead::from_query(Some("ack=auto")).is_err());
        let e = validate_name("9x").unwrap_err().to_string();
        assert!(e.contains("consumer name"), "{e}");
    }
}
