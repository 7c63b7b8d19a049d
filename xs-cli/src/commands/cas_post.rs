//! `xs cas-post [ADDR]`: streams stdin into the content store (`POST /cas`)
//! and prints its hash.

use anyhow::Result;
use hyper::Request;

use crate::addr::AddrArg;
use crate::client::{self, Client};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    addr: AddrArg,
}

pub async fn run(args: Args) -> Result<()> {
    let addr = args.addr.or_default()?;
    let req = Request::post("/cas").body(client::stdin())?;
    let resp = Client::new(addr).send(req).await?;
    client::print(resp, true).await?;
    Ok(())
}
