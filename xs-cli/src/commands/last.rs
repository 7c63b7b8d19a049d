//! `xs last [ADDR] [TOPIC] [N]`: the newest frames, of all topics or of a topic pattern
//! (`GET /last[/{topic}]`), as NDJSON; with `-f`, then keeps streaming new ones.

use anyhow::{bail, Result};
use hyper::{Request, StatusCode};
use xs::TopicFilter;

use crate::addr::{self, AddrArg};
use crate::client::{self, Client};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    addr: AddrArg,
    /// Only frames of this topic pattern (exact, prefix.*, * or a comma list); a lone
    /// positional is the TOPIC unless it looks like a path or an address
    #[arg(value_name = "TOPIC")]
    topic: Option<String>,
    /// How many frames (default 1); a trailing number is always N
    #[arg(value_name = "N")]
    n: Option<String>,
    /// How many frames (default 1)
    #[arg(short = 'n', long = "last", value_name = "N")]
    last: Option<usize>,
    /// After the newest frames, keep streaming new ones
    #[arg(short, long)]
    follow: bool,
    /// Add each frame's creation time as "timestamp"
    #[arg(long)]
    with_timestamp: bool,
}

pub async fn run(args: Args) -> Result<()> {
    let (addr, topic, n) = addr::last_positionals(
        [args.addr.addr, args.topic, args.n]
            .into_iter()
            .flatten()
            .collect(),
    )?;
    let n = match (n, args.last) {
        (Some(a), Some(b)) if a != b => bail!("N given twice: {a} and --last {b}"),
        (a, b) => a.or(b),
    };
    if n == Some(0) {
        bail!("N must be at least 1");
    }
    let mut uri = "/last".to_string();
    if let Some(topic) = &topic {
        uri = format!("{uri}/{}", TopicFilter::parse(topic)?);
    }
    let mut query = Vec::new();
    if let Some(n) = n {
        query.push(format!("last={n}"));
    }
    if args.follow {
        query.push("follow=true".to_string());
    }
    if args.with_timestamp {
        query.push("with-timestamp=true".to_string());
    }
    if !query.is_empty() {
        uri = format!("{uri}?{}", query.join("&"));
    }
    let no_frames = || match &topic {
        Some(t) => anyhow::anyhow!("no frames on topic {t}"),
        None => anyhow::anyhow!("no frames"),
    };
    let resp = match Client::new(addr)
        .send(Request::get(uri).body(client::empty())?)
        .await
    {
        Err(e) if client::is_status(&e, StatusCode::NOT_FOUND) => return Err(no_frames()),
        r => r?,
    };
    if client::print(resp, true).await? == 0 && !args.follow {
        return Err(no_frames());
    }
    Ok(())
}
