//! A webhook's configuration: the JSON of its `xs.webhook.<name>.create` frame
//! (`{url, topics?, start?, headers?}`; `topics` a string or a list, as a handler's), parsed
//! and checked once.

use hyper::header::{HeaderName, HeaderValue};
use hyper::Uri;
use serde::Deserialize;
use xs::consumer::Start;
use xs::TopicFilter;

/// A checked webhook configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub url: Uri,
    /// `host:port` to connect to.
    pub authority: String,
    pub topics: TopicFilter,
    /// Where the first run starts when the webhook has no position yet (default: `new`,
    /// i.e. after the create frame).
    pub start: Start,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    url: String,
    #[serde(default)]
    topics: Option<serde_json::Value>,
    #[serde(default)]
    start: Option<String>,
    #[serde(default)]
    headers: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Config {
    /// Parses the create frame's JSON; the error says what is wrong.
    pub fn parse(json: &[u8]) -> Result<Config, String> {
        let raw: Raw = serde_json::from_slice(json).map_err(|e| {
            format!("webhook config must be JSON {{url, topics?, start?, headers?}}: {e}")
        })?;
        let url: Uri = raw
            .url
            .parse()
            .map_err(|e| format!("invalid url {:?}: {e}", raw.url))?;
        match url.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(format!(
                    "url {:?}: https is not supported yet (it arrives with TLS); use http://",
                    raw.url
                ))
            }
            _ => return Err(format!("url {:?} must start with http://", raw.url)),
        }
        let host = url
            .host()
            .ok_or_else(|| format!("url {:?} has no host", raw.url))?;
        let authority = format!("{host}:{}", url.port_u16().unwrap_or(80));
        let topics = match &raw.topics {
            None => TopicFilter::All,
            Some(t) => TopicFilter::from_json(t).map_err(|e| format!("topics: {e}"))?,
        };
        let start = match raw.start.as_deref() {
            None => Start::New,
            Some(s) => s.parse().map_err(|e| format!("start: {e}"))?,
        };
        let mut headers = Vec::new();
        for (k, v) in raw.headers.unwrap_or_default() {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("headers: invalid header name {k:?}"))?;
            let v = v
                .as_str()
                .ok_or_else(|| format!("headers: the value of {k:?} must be a string"))?;
            let value = HeaderValue::from_str(v)
                .map_err(|_| format!("headers: invalid value for {k:?}"))?;
            headers.push((name, value));
        }
        Ok(Config {
            url,
            authority,
            topics,
            start,
            headers,
        })
    }

    /// Whether frames on `topic` are delivered. Runtime topics (`xs.*`) only when a pattern
    /// other than `*` names them; the webhook's own lifecycle only then too.
    pub fn wants(&self, topic: &str) -> bool {
        if topic.starts_with("xs.") {
            return !self.topics.is_all() && self.topics.matches(topic);
        }
        self.topics.matches(topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_config() {
        let c = Config::parse(
            br#"{"url":"http://127.0.0.1:9/hook","topics":"a.*,b","start":"first","headers":{"x-k":"v"}}"#,
        )
        .unwrap();
        assert_eq!(c.authority, "127.0.0.1:9");
        assert!(c.wants("a.x") && c.wants("b") && !c.wants("c") && !c.wants("xs.start"));
        assert_eq!(c.start, Start::First);
        assert_eq!(c.headers.len(), 1);
        let list = Config::parse(br#"{"url":"http://h/","topics":["a.*","b"]}"#).unwrap();
        assert_eq!(list.topics, c.topics);
    }

    #[test]
    fn runtime_topics_only_when_named() {
        let all = Config::parse(br#"{"url":"http://h/"}"#).unwrap();
        assert_eq!(all.authority, "h:80");
        assert!(all.wants("a") && !all.wants("xs.webhook.w.active"));
        let named = Config::parse(br#"{"url":"http://h/","topics":"xs.*"}"#).unwrap();
        assert!(named.wants("xs.start"));
    }

    #[test]
    fn refuses_bad_configs() {
        for bad in [
            &b"nope"[..],
            br#"{"url":"https://h/"}"#,
            br#"{"url":"ftp://h/"}"#,
            br#"{"url":"http://h/","topics":"a..b"}"#,
            br#"{"url":"http://h/","topics":["a",1]}"#,
            br#"{"url":"http://h/","start":"later"}"#,
            br#"{"url":"http://h/","headers":{"x":1}}"#,
            br#"{"url":"http://h/","extra":1}"#,
        ] {
            assert!(
                Config::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
