//! The error type of the core library: bad input (caller's fault), not found, conflicts,
//! corrupt data found on disk, and I/O failures, each with the context needed to act on it.

use std::path::PathBuf;

/// A result whose error is the core's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every error of the core library; the daemon maps each variant to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller sent something invalid (topic, TTL, id, meta, frame JSON, ...).
    #[error("{0}")]
    Invalid(String),
    /// What was asked for (a frame, content, a consumer) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request clashes with what is stored (an id taken by another frame, ...).
    #[error("{0}")]
    Conflict(String),
    /// An append's `expect` did not hold: the newest frame on `topic` is `last`.
    #[error("{}", expect_failed_message(topic, expected, last))]
    ExpectFailed {
        /// The topic the append was for.
        topic: String,
        /// What the append expected to be the topic's newest frame.
        expected: crate::frame::Expect,
        /// The topic's newest frame, if any.
        last: Option<crate::frame::Id>,
        /// Which frame of an atomic batch was refused (0-based), when it was in one.
        index: Option<usize>,
    },
    /// A batch's checkpoint fence did not hold: another owner of the processor wrote
    /// checkpoint `name` since (a deposed owner's late commit). Nothing of the batch was stored.
    #[error("checkpoint {name} was taken over by another owner; nothing was written")]
    Fenced {
        /// The checkpoint's name.
        name: String,
    },
    /// Another daemon holds the store.
    #[error("store {path} is locked by another xs process ({})", locked_hint(.holder))]
    Locked {
        /// The store's directory.
        path: PathBuf,
        /// Who holds it, as its `lock` file says (`pid N: ...`); empty if it says nothing.
        holder: String,
    },
    /// A value read back from disk does not decode: reported, never a panic.
    #[error("corrupt data in store: {0}")]
    Corrupt(String),
    /// An I/O failure, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What was being done (and on which path).
        context: String,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The storage engine refused an operation; nothing of it was stored.
    #[error("storage engine: {0}")]
    Storage(String),
    /// The storage engine cannot go on (the daemon must stop): nothing more is stored.
    #[error("storage failed for good: {0}")]
    Failed(String),
    /// The content store failed.
    #[error("content store: {0}")]
    Cas(String),
    /// A write batch failed; nothing in it was stored.
    #[error("write failed: {0}")]
    Write(String),
    /// The store's filesystem is full (below the reserve) or read-only: nothing was stored.
    #[error("{0}")]
    NoSpace(String),
    /// A bug or a failed background task.
    #[error("internal error: {0}")]
    Internal(String),
    /// The store is shutting down and takes no more writes.
    #[error("the store is closed")]
    Closed,
    /// The shared log (a JetStream cluster) cannot be reached: nothing was written; reads of
    /// the local copy go on.
    #[error("the stream is unavailable: {0}")]
    Unavailable(String),
}

impl Error {
    /// The caller's input is invalid, for this reason.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }

    /// An I/O failure while doing `context`.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

fn expect_failed_message(
    topic: &str,
    expected: &crate::frame::Expect,
    last: &Option<crate::frame::Id>,
) -> String {
    let now = match last {
        Some(id) => format!("its last frame is {id}"),
        None => "it has no frame".to_string(),
    };
    format!(
        "conflict on topic {topic}: expected last frame {expected}, but {now} (read it and retry)"
    )
}

/// What a `Locked` error says in parentheses: who holds the store, or a hint.
fn locked_hint(holder: &str) -> &str {
    if holder.is_empty() {
        "is `xs serve` already running on it?"
    } else {
        holder
    }
}

/// Adds context to an `std::io::Result`.
pub trait IoContext<T> {
    /// The error, if any, as an [`Error::Io`] saying what was being done (`f()`).
    fn context(self, f: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn context(self, f: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(f(), e))
    }
}
