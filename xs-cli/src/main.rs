//! The `xs` command: parses flags, runs one subcommand, and turns its outcome into an exit code.
//! Errors print as one `xs: <message>` line (exit 1; 3 for an `append --expect` conflict); a
//! closed stdout pipe is success.

mod addr;
mod allocator;
mod client;
mod commands;
mod progress;

use std::future::Future;
use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::commands::{ack, consumers, eval, export, metrics, nu, processors, ps, restore, stores};
use crate::commands::{
    append, cas, cas_post, cat, gc, get, import, last, remove, scru128, serve, topics, version,
};

#[derive(Parser)]
#[command(name = "xs", version, about = "A local-first event stream store")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// The token file: the one `xs serve` checks TCP clients against (default <STORE>/token,
    /// created if missing), or the one a client sends to a host:port address (default:
    /// $XS_TOKEN, else the file named by $XS_TOKEN_FILE)
    #[arg(long, global = true, value_name = "FILE")]
    token_file: Option<std::path::PathBuf>,
    /// PEM CA certificates to trust for https:// addresses, besides the system's roots
    #[arg(long, global = true, value_name = "FILE", env = "XS_CACERT")]
    cacert: Option<std::path::PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon on a store
    Serve(serve::Args),
    /// Append a frame, with stdin as its content
    #[command(override_usage = "xs append [ADDR] TOPIC [OPTIONS]")]
    Append(append::Args),
    /// Read the stream as NDJSON
    Cat(cat::Args),
    /// Print the newest frames
    Last(last::Args),
    /// Print one frame
    #[command(override_usage = "xs get [ADDR] ID [OPTIONS]")]
    Get(get::Args),
    /// Remove one frame (with --purge, its content too)
    #[command(override_usage = "xs remove [ADDR] ID [--purge]")]
    Remove(remove::Args),
    /// Print content from the store
    #[command(override_usage = "xs cas [ADDR] HASH")]
    Cas(cas::Args),
    /// Store stdin as content and print its hash
    CasPost(cas_post::Args),
    /// Import NDJSON frames from stdin, keeping their ids
    Import(import::Args),
    /// List topics with frame count, first and last id
    #[command(override_usage = "xs topics [ADDR] [PREFIX] [--children]")]
    Topics(topics::Args),
    /// Remove every content blob no frame references
    Gc(gc::Args),
    /// Acknowledge frame ID for a durable consumer
    #[command(override_usage = "xs ack [ADDR] NAME ID")]
    Ack(ack::Args),
    /// List durable consumers with their position and lag
    Consumers(consumers::Args),
    /// List processors (handlers, generators, actions, webhooks, actors, services) with their state
    Ps(ps::Args),
    /// Mount (add) or unmount (remove) a store in the daemon, through its control stream
    #[command(subcommand)]
    Store(stores::Store),
    /// List the stores mounted in the daemon with state, path, socket, frames and processors
    Stores(stores::Args),
    /// Print the daemon's metrics (Prometheus text format)
    Metrics(metrics::Args),
    /// Run a Nushell script in the daemon, against the live store
    #[command(override_usage = "xs eval [ADDR] [FILE|-] [-c SCRIPT]")]
    Eval(eval::Args),
    /// Register or unregister a handler (reacts to frames, in order, exactly once)
    #[command(subcommand)]
    Handler(processors::Handler),
    /// Spawn or terminate a generator (a pipeline whose output becomes frames)
    #[command(subcommand)]
    Generator(processors::Generator),
    /// Define, undefine or call an action
    #[command(subcommand)]
    Action(processors::Action),
    /// Register or unregister a cross.stream actor (`xs.actor.*`: a handler, its words)
    #[command(subcommand)]
    Actor(processors::Actor),
    /// Spawn or terminate a cross.stream service (`xs.service.*`: a generator, its words)
    #[command(subcommand)]
    Service(processors::Service),
    /// Print (or --install) the xs.nu module for interactive Nushell sessions
    Nu(nu::Args),
    /// Write the store (or some topics) as one archive to stdout
    Export(export::Args),
    /// Load an archive from `xs export` (stdin) into the store
    Restore(restore::Args),
    /// Print the daemon's version
    Version(version::Args),
    /// Make, unpack and pack SCRU128 ids
    Scru128(scru128::Args),
}

fn main() -> ExitCode {
    // The daemon's guard (see `xs_server::orphans`): not a user command.
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() == Some(xs_server::orphans::GUARD_ARG.as_ref()) {
        let tag = args.next().unwrap_or_default();
        return xs_server::orphans::guard_main(&tag.to_string_lossy());
    }
    let cli = Cli::parse();
    client::configure(client::Settings {
        token_file: cli.token_file.clone(),
        cacert: cli.cacert,
    });
    match run(cli.command, cli.token_file) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<client::StdoutClosed>() => ExitCode::SUCCESS,
        Err(e) => {
            let message = format!("{e:#}");
            let message = if e.is::<client::Report>() {
                message.trim_end().to_string()
            } else {
                message.split_whitespace().collect::<Vec<_>>().join(" ")
            };
            let _ = writeln!(std::io::stderr(), "xs: {message}");
            if e.is::<append::ExpectConflict>() {
                ExitCode::from(3)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn run(command: Command, token_file: Option<std::path::PathBuf>) -> Result<()> {
    match command {
        Command::Serve(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let result = runtime.block_on(serve::run(args, token_file));
            // A storage call stuck on a failed disk must not keep the process alive.
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
            result
        }
        Command::Append(args) => client(append::run(args)),
        Command::Cat(args) => client(cat::run(args)),
        Command::Last(args) => client(last::run(args)),
        Command::Get(args) => client(get::run(args)),
        Command::Remove(args) => client(remove::run(args)),
        Command::Cas(args) => client(cas::run(args)),
        Command::CasPost(args) => client(cas_post::run(args)),
        Command::Import(args) => client(import::run(args)),
        Command::Topics(args) => client(topics::run(args)),
        Command::Gc(args) => client(gc::run(args)),
        Command::Ack(args) => client(ack::run(args)),
        Command::Consumers(args) => client(consumers::run(args)),
        Command::Ps(args) => client(ps::run(args)),
        Command::Metrics(args) => client(metrics::run(args)),
        Command::Store(cmd) => client(stores::store(cmd)),
        Command::Stores(args) => client(stores::list(args)),
        Command::Eval(args) => client(eval::run(args)),
        Command::Handler(cmd) => client(processors::handler(cmd)),
        Command::Generator(cmd) => client(processors::generator(cmd)),
        Command::Action(cmd) => client(processors::action(cmd)),
        Command::Actor(cmd) => client(processors::actor(cmd)),
        Command::Service(cmd) => client(processors::service(cmd)),
        Command::Nu(args) => nu::run(args),
        Command::Export(args) => client(export::run(args)),
        Command::Restore(args) => client(restore::run(args)),
        Command::Version(args) => client(version::run(args)),
        Command::Scru128(args) => client(scru128::run(args)),
    }
}

/// Runs a client command on a single-threaded runtime.
fn client(command: impl Future<Output = Result<()>>) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(command);
    // A read of stdin may still be blocked on a thread; don't wait for it.
    runtime.shutdown_background();
    result
}
