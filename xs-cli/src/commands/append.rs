//! `xs append [ADDR] TOPIC`: streams stdin as the content of a new frame (`POST /append/{topic}`)
//! and prints the frame; `--meta` is checked here and sent base64 in `xs-meta`. With `--expect`,
//! a conflict is an [`ExpectConflict`] (exit code 3); `--key` makes retries idempotent.

use std::fmt;
use std::io::IsTerminal;
use std::str::FromStr;

use anyhow::{Context, Result};
use base64::Engine;
use hyper::{Request, StatusCode};

use crate::addr::AddrArg;
use crate::client::{self, Client};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    addr: AddrArg,
    /// Topic of the new frame (a lone positional is the TOPIC)
    #[arg(value_name = "TOPIC")]
    topic: Option<String>,
    /// Metadata for the frame, as JSON
    #[arg(long, value_name = "JSON")]
    meta: Option<String>,
    /// Time to live: forever, ephemeral, time:<ms> or last:<n>
    #[arg(long, value_name = "TTL")]
    ttl: Option<String>,
    /// Add the frame's creation time as "timestamp"
    #[arg(long)]
    with_timestamp: bool,
    /// Append only if the newest frame on TOPIC has this id (`none`: only if TOPIC has no
    /// frame); otherwise exit with code 3
    #[arg(long, value_name = "ID|none")]
    expect: Option<String>,
    /// Idempotency key: a retry with the same key and topic prints the original frame
    #[arg(long, value_name = "K")]
    key: Option<String>,
}

/// The daemon refused the append because `--expect` did not hold (exit code 3).
#[derive(Debug)]
pub struct ExpectConflict(pub String);

impl fmt::Display for ExpectConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ExpectConflict {}

pub async fn run(args: Args) -> Result<()> {
    let (addr, topic) = args.addr.and(args.topic, "TOPIC")?;
    xs::validate_topic(&topic)?;
    let mut query = Vec::new();
    if let Some(ttl) = &args.ttl {
        let ttl = xs::Ttl::from_str(ttl)?;
        query.push(format!(
            "ttl={}",
            xs::read::encode_component(&ttl.to_string())
        ));
    }
    if args.with_timestamp {
        query.push("with-timestamp=true".to_string());
    }
    if let Some(expect) = &args.expect {
        let expect = xs::Expect::from_str(expect)?;
        query.push(format!("expect={expect}"));
    }
    let mut uri = format!("/append/{topic}");
    if !query.is_empty() {
        uri = format!("{uri}?{}", query.join("&"));
    }
    let mut req = Request::post(uri);
    if let Some(meta) = &args.meta {
        let meta: serde_json::Value =
            serde_json::from_str(meta).context("--meta is not valid JSON")?;
        let encoded = base64::engine::general_purpose::STANDARD.encode(meta.to_string());
        req = req.header("xs-meta", encoded);
    }
    if let Some(key) = &args.key {
        req = req.header("xs-idempotency-key", key.as_str());
    }
    let body = if std::io::stdin().is_terminal() {
        client::empty()
    } else {
        client::stdin()
    };
    let resp = match Client::new(addr).send(req.body(body)?).await {
        Err(e) if args.expect.is_some() && client::is_status(&e, StatusCode::CONFLICT) => {
            return Err(ExpectConflict(e.to_string()).into())
        }
        r => r?,
    };
    client::print(resp, true).await?;
    Ok(())
}
