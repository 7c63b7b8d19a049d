//! `xs topics [ADDR] [PREFIX] [--children]`: each topic with its frame count, first and last
//! id (`GET /topics`), as NDJSON sorted by topic.

use anyhow::{bail, Result};
use hyper::Method;

use crate::addr::{self, AddrArg};
use crate::client::Client;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    addr: AddrArg,
    /// Only this topic and its descendants (`a.b` lists `a.b` and `a.b.*`); a lone
    /// positional is the PREFIX unless it looks like a path or an address
    #[arg(value_name = "PREFIX")]
    prefix: Option<String>,
    /// One line per direct child level below PREFIX (or per top-level name), summing its
    /// subtree
    #[arg(long)]
    children: bool,
}

pub async fn run(args: Args) -> Result<()> {
    let pos: Vec<String> = [args.addr.addr, args.prefix]
        .into_iter()
        .flatten()
        .collect();
    let (addr, prefix, n) = addr::last_positionals(pos)?;
    if let Some(n) = n {
        bail!("invalid prefix {n:?}: a topic starts with a-z, A-Z or _");
    }
    let mut query = Vec::new();
    if let Some(p) = &prefix {
        xs::validate_topic(p.trim_end_matches('.'))?;
        query.push(format!("prefix={}", xs::read::encode_component(p)));
    }
    if args.children {
        query.push("children=true".to_string());
    }
    let uri = if query.is_empty() {
        "/topics".to_string()
    } else {
        format!("/topics?{}", query.join("&"))
    };
    Client::new(addr).print(Method::GET, &uri, false).await?;
    Ok(())
}
