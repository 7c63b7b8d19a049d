//! One module per `xs` subcommand, named after the daemon route it calls
//! (`commands/append.rs` ↔ `xs-server/src/api/append.rs`); each has `Args` and `run`.

pub mod ack;
pub mod append;
pub mod cas;
pub mod cas_post;
pub mod cat;
pub mod consumers;
pub mod eval;
pub mod export;
pub mod gc;
pub mod get;
pub mod import;
pub mod last;
pub mod metrics;
pub mod nu;
pub mod processors;
pub mod ps;
pub mod remove;
pub mod restore;
pub mod scru128;
pub mod serve;
pub mod stores;
pub mod topics;
pub mod version;

use anyhow::Result;

/// Parses a frame id given on the command line.
pub fn parse_id(s: &str) -> Result<xs::Id> {
    Ok(xs::frame::parse_id(s.trim())?)
}
