//! `xs cas [ADDR] HASH`: copies content from the store to stdout (`GET /cas/{hash}`),
//! streamed, so a blob of any size takes constant memory.

use anyhow::Result;
use hyper::Request;

use crate::addr::AddrArg;
use crate::client::{self, Client};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    addr: AddrArg,
    /// Content hash, as in a frame's "hash" (sha256-...); a lone positional is the HASH
    #[arg(value_name = "HASH")]
    hash: Option<String>,
}

pub async fn run(args: Args) -> Result<()> {
    let (addr, hash) = args.addr.and(args.hash, "HASH")?;
    let hash = xs::frame::parse_hash(hash.trim())?;
    let req = Request::get(format!("/cas/{hash}")).body(client::empty())?;
    let resp = Client::new(addr).send(req).await?;
    client::print(resp, false).await?;
    Ok(())
}
