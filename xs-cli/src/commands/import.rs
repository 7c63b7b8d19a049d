//! `xs import [ADDR]`: streams NDJSON frames from stdin to `POST /import` (ids kept, content
//! already in the CAS) and prints the imported frames.

use anyhow::Result;
use hyper::header::CONTENT_TYPE;
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
    let req = Request::post("/import")
        .header(CONTENT_TYPE, "application/x-ndjson")
        .body(client::stdin())?;
    let resp = Client::new(addr).send(req).await?;
    client::print(resp, false).await?;
    Ok(())
}
