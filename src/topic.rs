//! Topic names and topic filters: `.` is hierarchy, a filter is an exact topic, `prefix.*`
//! (every descendant, not the prefix itself), `*`, or a comma list of those (in a config's
//! JSON, also a list of strings).

use crate::error::{Error, Result};

/// The longest topic, in bytes.
pub const TOPIC_MAX_LEN: usize = 255;

/// Checks a topic name: `a-z A-Z 0-9 _ - .`, starts with a letter or `_`, no `..`,
/// no trailing `.`, at most 255 bytes.
pub fn validate_topic(topic: &str) -> Result<()> {
    if topic.is_empty() {
        return Err(Error::invalid("topic cannot be empty"));
    }
    if topic.len() > TOPIC_MAX_LEN {
        return Err(Error::invalid(format!(
            "topic exceeds max length of {TOPIC_MAX_LEN} bytes"
        )));
    }
    let first = topic.as_bytes()[0];
    if !(first.is_ascii_alphabetic() || first == b'_') {
        return Err(Error::invalid(format!(
            "invalid topic {:?}: must start with a-z, A-Z or _",
            shorten(topic)
        )));
    }
    if let Some(c) = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(Error::invalid(format!(
            "invalid topic {:?}: character {c:?} is not allowed (allowed: a-z A-Z 0-9 _ - .)",
            shorten(topic)
        )));
    }
    if topic.ends_with('.') {
        return Err(Error::invalid(format!(
            "invalid topic {:?}: cannot end with '.'",
            shorten(topic)
        )));
    }
    if topic.contains("..") {
        return Err(Error::invalid(format!(
            "invalid topic {:?}: cannot contain '..'",
            shorten(topic)
        )));
    }
    Ok(())
}

fn shorten(s: &str) -> String {
    if s.len() <= 64 {
        s.to_string()
    } else {
        let mut end = 64;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    }
}

/// One element of a topic filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicPattern {
    /// Exactly this topic.
    Exact(String),
    /// Every topic below `prefix` (stored with its trailing `.`, e.g. `user.`).
    Descendants(String),
}

impl TopicPattern {
    /// Whether `topic` is this topic or, for `prefix.*`, below it.
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            TopicPattern::Exact(t) => t == topic,
            TopicPattern::Descendants(p) => topic.starts_with(p.as_str()),
        }
    }

    /// The key prefix this pattern has in the topic index (the topic or `prefix.`).
    pub fn index_key(&self) -> &str {
        match self {
            TopicPattern::Exact(t) => t,
            TopicPattern::Descendants(p) => p,
        }
    }
}

/// A parsed `topic` filter. `All` matches every frame.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TopicFilter {
    /// Every frame (`*`).
    #[default]
    All,
    /// Matches if any pattern matches; patterns are deduplicated and never overlap-free
    /// (a frame matching two of them is still read once).
    Any(Vec<TopicPattern>),
}

impl TopicFilter {
    /// Parses `a.b`, `a.*`, `*` or a comma list of those.
    pub fn parse(s: &str) -> Result<TopicFilter> {
        let mut patterns = Vec::new();
        let mut saw_any = false;
        for part in s.split(',').map(str::trim) {
            if part.is_empty() {
                continue;
            }
            saw_any = true;
            if part == "*" {
                return Ok(TopicFilter::All);
            }
            let pattern = if let Some(prefix) = part.strip_suffix(".*") {
                if prefix.is_empty() {
                    return Err(Error::invalid(
                        "topic filter '.*' needs a prefix, as in 'user.*'",
                    ));
                }
                validate_topic(prefix)
                    .map_err(|e| Error::invalid(format!("in topic filter {part:?}: {e}")))?;
                TopicPattern::Descendants(format!("{prefix}."))
            } else {
                validate_topic(part)
                    .map_err(|e| Error::invalid(format!("in topic filter: {e}")))?;
                TopicPattern::Exact(part.to_string())
            };
            if !patterns.contains(&pattern) {
                patterns.push(pattern);
            }
        }
        if !saw_any {
            return Err(Error::invalid("topic filter cannot be empty"));
        }
        Ok(TopicFilter::Any(patterns))
    }

    /// Parses the `topics` of a processor's or a webhook's config: a string (the forms of
    /// [`TopicFilter::parse`]) or a list of them (`["a.*", "b"]` is `a.*,b`).
    pub fn from_json(v: &serde_json::Value) -> Result<TopicFilter> {
        use serde_json::Value;
        let parts: Option<Vec<&str>> = match v {
            Value::String(s) => return TopicFilter::parse(s),
            Value::Array(vs) => vs.iter().map(Value::as_str).collect(),
            _ => None,
        };
        match parts {
            Some(parts) => TopicFilter::parse(&parts.join(",")),
            None => Err(Error::invalid(
                "topics must be a string or a list of strings",
            )),
        }
    }

    /// Whether a frame on `topic` passes the filter.
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            TopicFilter::All => true,
            TopicFilter::Any(ps) => ps.iter().any(|p| p.matches(topic)),
        }
    }

    /// Whether the filter is `*`.
    pub fn is_all(&self) -> bool {
        matches!(self, TopicFilter::All)
    }
}

impl std::fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TopicFilter::All => f.write_str("*"),
            TopicFilter::Any(ps) => {
                for (i, p) in ps.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    match p {
                        TopicPattern::Exact(t) => f.write_str(t)?,
                        TopicPattern::Descendants(p) => write!(f, "{p}*")?,
                    }
                }
                Ok(())
            }
        }
    }
}

/// The index keys a topic is stored under: the topic itself and each ancestor level
/// with its trailing dot (`a.b.c` → `a.b.c`, `a.`, `a.b.`).
pub fn index_prefixes(topic: &str) -> impl Iterator<Item = &str> {
    std::iter::once(topic).chain(topic.match_indices('.').map(move |(i, _)| &topic[..=i]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_topics() {
        for t in ["a", "_x", "user.alice.msg", "A-b_c.9", &"a".repeat(255)] {
            assert!(validate_topic(t).is_ok(), "{t}");
        }
    }

    #[test]
    fn invalid_topics() {
        for t in [
            "",
            "9a",
            ".a",
            "a.",
            "a..b",
            "a b",
            "a/b",
            "é",
            "-a",
            &"a".repeat(256),
        ] {
            assert!(validate_topic(t).is_err(), "{t}");
        }
    }

    #[test]
    fn filter_parse_and_match() {
        let f = TopicFilter::parse("user.*, chat").unwrap();
        assert!(f.matches("user.alice"));
        assert!(f.matches("user.alice.msg"));
        assert!(!f.matches("user"));
        assert!(f.matches("chat"));
        assert!(!f.matches("chat.x"));
        assert!(!f.matches("users.x"));
        assert_eq!(f.to_string(), "user.*,chat");
        assert_eq!(TopicFilter::parse("a,*").unwrap(), TopicFilter::All);
        assert!(TopicFilter::parse(".*").is_err());
        assert!(TopicFilter::parse("").is_err());
        assert!(TopicFilter::parse("a b").is_err());
        assert!(TopicFilter::parse("a.*.*").is_err());
    }

    #[test]
    fn filter_from_a_string_or_a_list() {
        use serde_json::json;
        let parsed = |v| TopicFilter::from_json(&v);
        let expected = TopicFilter::parse("a.*,b").unwrap();
        assert_eq!(parsed(json!("a.*,b")).unwrap(), expected);
        assert_eq!(parsed(json!(["a.*", "b"])).unwrap(), expected);
        assert_eq!(parsed(json!(["*"])).unwrap(), TopicFilter::All);
        for bad in [
            json!([]),
            json!(["a..b"]),
            json!([1]),
            json!(1),
            json!(null),
        ] {
            assert!(parsed(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn prefixes() {
        let v: Vec<_> = index_prefixes("a.b.c").collect();
        assert_eq!(v, ["a.b.c", "a.", "a.b."]);
        let v: Vec<_> = index_prefixes("a").collect();
        assert_eq!(v, ["a"]);
    }
}
