//! CLI tests: the real `xs` binary against a daemon, asserting stdout, stderr and exit codes.

mod batch;
mod commands;
mod consumers;
mod errors;
mod export;
mod expose;
mod keys;
mod large;
mod serve;
mod stores;
