//! `xs import [ADDR]`: streams NDJSON frames from stdin to `POST /import` (ids kept, content
//! already in the CAS) and prints the imported frames.

use anyhow::Result;
use hyper::header::CONTENT_TYPE;
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
    let req = Request::post("/import")
        .header(CONTENT_TYPE, "application/x-ndjson")
        .body(client::stdin())?;
    let resp = Client::new(addr).send(req).await?;
    client::print(resp, false).await?;
    Ok(())
}
