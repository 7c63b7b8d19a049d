//! Raw HTTP tests: requests over the Unix socket that bypass the CLI's client.

mod batch;
mod consumers;
mod disk;
mod errors;
mod expect;
mod export;
mod expose;
pub mod gateway;
mod guarantees;
mod metrics;
#[cfg(feature = "nats")]
mod nats;
#[cfg(feature = "nats")]
mod nats_faults;
#[cfg(all(feature = "nats", feature = "nu"))]
mod nats_procs;
mod purge;
mod read;
mod routes;
mod topics;
mod ttl;
pub mod webhooks;
