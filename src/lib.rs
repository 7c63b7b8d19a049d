//! Core of xs: the frame model, topics, TTLs, read options and the durable store.
//! No HTTP and no Nushell here; the daemon and the CLI share these wire types.

#![warn(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod archive;
pub mod consumer;
pub mod error;
pub mod frame;
// Being rewritten (issue 13): the docs of their public items are left to that change.
#[allow(missing_docs)]
pub mod read;
#[allow(missing_docs)]
pub mod reader;
#[allow(missing_docs)]
pub mod store;
pub mod topic;
pub mod ttl;

pub use error::{Error, Result};
pub use frame::{Expect, Frame, Id};
pub use read::{Follow, ReadOptions};
pub use store::{Content, ContentWriter, NewFrame, Store, StoreOptions};
pub use topic::{validate_topic, TopicFilter};
pub use ttl::Ttl;

/// Version of xs, reported by `GET /version` and in `xs.start`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Content at most this large is stored inline with its frame, in the same fjall batch.
pub const INLINE_CONTENT_MAX: usize = 16 * 1024;

/// Most frames counted for a lag (a durable consumer's in `GET /consumers`, a follower's in
/// the metrics): each count is a key scan run on request, so it is bounded; a lag this large
/// means "at least this".
pub const LAG_CAP: u64 = 100_000;
