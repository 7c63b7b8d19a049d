//! CLI tests: the real `xs` binary against a daemon, asserting stdout, stderr and exit codes.

mod commands;
mod errors;
mod large;
mod serve;
