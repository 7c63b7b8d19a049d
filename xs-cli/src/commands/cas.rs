//! `xs cas [ADDR] HASH`: copies content from the store to stdout (`GET /cas/{hash}`),
//! streamed, so a blob of any size takes constant memory.

use anyhow::Result;
use hyper::Request;

use crate::addr;
use crate::client::{self, Client};

#[derive(clap::Args)]
pub struct Args {
    /// Store dir, socket, :PORT or host:port (default: $XS_ADDR, else ~/.local/share/xs/store);
    /// given alone, this is the HASH
    #[arg(value_name = "ADDR")]
    addr: Option<String>,
    /// Content hash, as in a frame's "hash" (sha256-...)
    #[arg(value_name = "HASH")]
    hash: Option<String>,
}

pub async fn run(args: Args) -> Result<()> {
    let (addr, hash) = addr::addr_and(args.addr, args.hash, "HASH")?;
    let hash = xs::frame::parse_hash(hash.trim())?;
    let req = Request::get(format!("/cas/{hash}")).body(client::empty())?;
    let resp = Client::new(addr).send(req).await?;
    client::print(resp, false).await?;
    Ok(())
}
