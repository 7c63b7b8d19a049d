//! `xs store add [ADDR] NAME PATH` / `xs store remove [ADDR] NAME`: sugar over the
//! `xs.store.<name>.create` / `.term` frames of the control stream; `xs stores [ADDR]` lists
//! the mounted stores (`GET /stores`).

use anyhow::{Context, Result};
use bytes::Bytes;
use hyper::Method;

use super::processors::{self, Named};
use crate::addr::AddrArg;
use crate::client::{self, Client};

#[derive(clap::Subcommand)]
pub enum Store {
    /// Mount the store at PATH (created if missing) in the daemon as NAME; waits for the
    /// answer (`active`, or `invalid` with the reason)
    #[command(
        override_usage = "xs store add [ADDR] NAME PATH [--nats URLS [--nats-stream S] [--no-processors]]"
    )]
    Add(Add),
    /// Unmount store NAME (its data stays on disk)
    #[command(override_usage = "xs store remove [ADDR] NAME")]
    Remove(Named),
}

#[derive(clap::Args)]
pub struct Add {
    /// [ADDR] NAME PATH
    #[arg(value_name = "ARGS", num_args = 2..=3, required = true)]
    args: Vec<String>,
    /// Keep this store's stream in a NATS JetStream cluster (PATH holds the local copy), as
    /// `xs serve --nats` does
    #[arg(long, value_name = "URLS")]
    nats: Option<String>,
    /// The JetStream stream's name (default XS)
    #[arg(long, value_name = "NAME", requires = "nats")]
    nats_stream: Option<String>,
    /// With --nats: run none of this store's processors in this daemon (by default each
    /// runs on one live daemon of the stream, by lease)
    #[arg(long, requires = "nats", conflicts_with = "processors")]
    no_processors: bool,
    /// With --nats: the default; kept for old scripts
    #[arg(long, requires = "nats", hide = true)]
    processors: bool,
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    addr: AddrArg,
}

pub async fn store(cmd: Store) -> Result<()> {
    match cmd {
        Store::Add(a) => add(a).await,
        Store::Remove(n) => remove(n).await,
    }
}

async fn add(a: Add) -> Result<()> {
    let (addr, args) = processors::split(a.args, 2)?;
    let (name, path) = (&args[0], std::path::Path::new(&args[1]));
    // The daemon has its own working directory: send an absolute path.
    let path = std::path::absolute(path)
        .with_context(|| format!("cannot make {} absolute", path.display()))?;
    let mut config = serde_json::json!({ "path": path });
    if let Some(urls) = a.nats {
        config["nats"] = serde_json::json!({
            "urls": urls,
            "stream": a.nats_stream,
            "processors": !a.no_processors,
        });
    }
    processors::created(
        &xs::lifecycle::STORE,
        addr,
        name,
        Bytes::from(config.to_string()),
    )
    .await
}

/// Appends `.term`; when the store is mounted, waits for `fin.term` (its socket is gone).
async fn remove(n: Named) -> Result<()> {
    let (addr, args) = processors::split(n.args, 1)?;
    let name = &args[0];
    let client = Client::new(addr);
    let rows = processors::listed(&client, "/stores").await?;
    let Some(row) = rows.iter().find(|r| r["name"].as_str() == Some(name)) else {
        return Err(client::Report(format!(
            "no store named {name} in this control store (`xs stores` lists them)"
        ))
        .into());
    };
    let mounted =
        !["invalid", "terminated", "failed"].contains(&row["state"].as_str().unwrap_or(""));
    let topic = format!("xs.store.{name}.term");
    let term = processors::append(&client, &topic, Bytes::new(), None).await?;
    if mounted {
        let id = processors::frame_id(&term)?;
        let answer = format!("xs.store.{name}.fin.term");
        processors::wait_for(&client, &answer, &id, |f| {
            processors::meta_str(f, "term_id") == Some(&id)
        })
        .await?;
    }
    client::write_stdout(format!("{term}\n").as_bytes())
}

/// `xs stores [ADDR]`.
pub async fn list(args: Args) -> Result<()> {
    let client = Client::new(args.addr.or_default()?);
    client.print(Method::GET, "/stores", false).await?;
    Ok(())
}
