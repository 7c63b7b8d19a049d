//! Raw HTTP tests: requests over the Unix socket that bypass the CLI's client.

mod disk;
mod errors;
mod guarantees;
mod read;
mod routes;
mod ttl;
