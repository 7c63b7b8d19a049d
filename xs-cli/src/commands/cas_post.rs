//! `xs cas-post [ADDR]`: streams stdin into the content store (`POST /cas`)
//! and prints its hash.

use anyhow::Result;
use hyper::Request;

use crate::addr;
use crate::client::{self, Client};

#[derive(clap::Args)]
pub struct Args {
    /// Store dir, socket, :PORT or host:port (default: $XS_ADDR, else ~/.local/share/xs/store)
    #[arg(value_name = "ADDR")]
    addr: Option<String>,
}

pub async fn run(args: Args) -> Result<()> {
    let addr = addr::addr_or_default(args.addr)?;
    let req = Request::post("/cas").body(client::stdin())?;
    let resp = Client::new(addr).send(req).await?;
    client::print(resp, true).await?;
    Ok(())
}
