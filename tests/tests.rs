//! End-to-end tests: the real `xs serve` daemon on temp stores, driven by raw HTTP over its
//! socket (`api/`) and by the real `xs` binary (`cli/`). Every test has its own daemon.

mod api;
mod cli;
mod console;
mod helper;
#[cfg(feature = "nu")]
mod nu;
