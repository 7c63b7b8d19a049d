//! Where a request goes: its path parsed once into a [`Route`], which the router matches
//! with the method, and what a read-only listener refuses.

use hyper::Method;

/// A request's route, from its path alone; the router checks the method (a known route with
/// the wrong one is a 405). Path segments (topic, hash, consumer, id) are kept as sent: the
/// router percent-decodes them after the method check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/`: a read (history, then live frames with `follow`).
    Read,
    Version,
    /// `/last`, `/last/{topic}`.
    Last(Option<String>),
    /// `/cas` (store content), `/cas/{hash}` (read it).
    Cas(Option<String>),
    Import,
    /// `/consumers`: the list.
    Consumers,
    /// `/consumers/{name}`, or with `ack`, `/consumers/{name}/ack`.
    Consumer {
        name: String,
        ack: bool,
    },
    Export,
    Restore,
    Topics,
    Gc,
    Ps,
    /// `/stores`: the stores mounted through the control stream.
    Stores,
    Metrics,
    Eval,
    /// `/append`: a batch append (NDJSON, one frame a line).
    AppendBatch,
    /// `/append/{topic}`.
    Append(String),
    /// `/{id}`: one frame (any other single segment).
    Frame(String),
    /// Anything else: a 404.
    NotFound,
}

impl Route {
    pub fn parse(path: &str) -> Route {
        let rest = path.strip_prefix('/').unwrap_or(path);
        let named = match rest {
            "" => Some(Route::Read),
            "version" => Some(Route::Version),
            "last" => Some(Route::Last(None)),
            "cas" => Some(Route::Cas(None)),
            "import" => Some(Route::Import),
            "consumers" => Some(Route::Consumers),
            "export" => Some(Route::Export),
            "restore" => Some(Route::Restore),
            "topics" => Some(Route::Topics),
            "gc" => Some(Route::Gc),
            "ps" => Some(Route::Ps),
            "stores" => Some(Route::Stores),
            "metrics" => Some(Route::Metrics),
            "eval" => Some(Route::Eval),
            "append" => Some(Route::AppendBatch),
            _ => None,
        };
        if let Some(route) = named {
            return route;
        }
        if let Some(topic) = rest.strip_prefix("last/") {
            Route::Last(Some(topic.to_string()))
        } else if let Some(hash) = rest.strip_prefix("cas/") {
            Route::Cas(Some(hash.to_string()))
        } else if let Some(c) = rest.strip_prefix("consumers/") {
            match c.strip_suffix("/ack") {
                Some(name) => Route::Consumer {
                    name: name.to_string(),
                    ack: true,
                },
                None => Route::Consumer {
                    name: c.to_string(),
                    ack: false,
                },
            }
        } else if let Some(topic) = rest.strip_prefix("append/") {
            Route::Append(topic.to_string())
        } else if !rest.contains('/') {
            Route::Frame(rest.to_string())
        } else {
            Route::NotFound
        }
    }

    /// What a read-only listener refuses, or `None`: every method but `GET` (the routes that
    /// write take `POST` or `DELETE`, and an unknown route is refused before its 404), and
    /// `ack` on any route (a read with `ack=auto` moves a consumer's position).
    pub fn read_only_refusal(method: &Method, path: &str, query: Option<&str>) -> Option<String> {
        if method != Method::GET {
            return Some(format!("{method} {path}"));
        }
        let pairs = xs::read::parse_query(query.unwrap_or("")).unwrap_or_default();
        pairs
            .iter()
            .any(|(k, _)| k == "ack")
            .then(|| "ack (it moves a consumer's position)".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(Route::parse("/"), Route::Read);
        assert_eq!(Route::parse("/gc"), Route::Gc);
        assert_eq!(Route::parse("/last"), Route::Last(None));
        assert_eq!(Route::parse("/last/a.*"), Route::Last(Some("a.*".into())));
        assert_eq!(
            Route::parse("/cas/sha256-x"),
            Route::Cas(Some("sha256-x".into()))
        );
        assert_eq!(
            Route::parse("/consumers/c/ack"),
            Route::Consumer {
                name: "c".into(),
                ack: true
            }
        );
        assert_eq!(
            Route::parse("/consumers/c"),
            Route::Consumer {
                name: "c".into(),
                ack: false
            }
        );
        assert_eq!(Route::parse("/append/chat"), Route::Append("chat".into()));
        assert_eq!(Route::parse("/append"), Route::AppendBatch);
        assert_eq!(
            Route::parse("/03hadbm3pd0va6i6c63lxxwa8"),
            Route::Frame("03hadbm3pd0va6i6c63lxxwa8".into())
        );
        assert_eq!(Route::parse("/a/b"), Route::NotFound);
    }

    #[test]
    fn read_only_refuses_writes_and_acks() {
        let refused = |m: Method, q: Option<&str>| Route::read_only_refusal(&m, "/x", q);
        assert_eq!(refused(Method::GET, Some("consumer=c")), None);
        assert_eq!(refused(Method::POST, None).as_deref(), Some("POST /x"));
        assert_eq!(refused(Method::DELETE, None).as_deref(), Some("DELETE /x"));
        assert!(refused(Method::GET, Some("consumer=c&ack=auto")).is_some());
    }
}
