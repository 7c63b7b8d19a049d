//! Raw HTTP tests: requests over the Unix socket that bypass the CLI's client.

mod consumers;
mod disk;
mod errors;
mod export;
mod guarantees;
mod read;
mod routes;
mod ttl;
