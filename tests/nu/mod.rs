//! The embedded Nushell engine: `POST /eval` / `xs eval`, the store commands inside scripts,
//! modules from the stream, and the processors (handlers, generators, actions, and cross.stream's
//! actors and services) with their lifecycle — each against a real daemon.

mod batch;
mod crossstream;
mod eval;
mod examples;
mod gateway;
mod generators;
mod handlers;
mod lifecycle;
mod xs_nu_crossstream;
