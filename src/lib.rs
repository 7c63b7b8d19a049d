//! Core of xs: the frame model, topics, TTLs, read options, the storage boundary
//! ([`backend`]) with the local backend ([`local`]), and the [`Store`] handle with the one read
//! path ([`reader`]). No HTTP and no Nushell here; the daemon and the CLI share these types.

#![warn(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod archive;
pub mod backend;
pub mod batch;
pub mod consumer;
pub mod error;
pub mod frame;
#[cfg(feature = "nats")]
pub mod jetstream;
pub mod lifecycle;
pub mod local;
pub mod read;
pub mod reader;
pub mod store;
pub mod topic;
pub mod ttl;

pub use backend::{Backend, Batch, Content, Fence, NewFrame};
pub use batch::{BatchLine, BATCH_MAX_BYTES, BATCH_MAX_FRAMES};
pub use error::{Error, Result};
pub use frame::{Expect, Frame, Id};
pub use local::{Fsync, LocalOptions};
pub use read::{Follow, ReadOptions};
pub use store::{ContentWriter, Store};
pub use topic::{validate_topic, TopicFilter};
pub use ttl::Ttl;

/// Version of xs, reported by `GET /version` and in `xs.start`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Content at most this large is stored inline with its frame, in the same commit.
pub const INLINE_CONTENT_MAX: usize = 16 * 1024;
