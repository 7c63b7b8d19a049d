//! `xs metrics [ADDR]`: prints the daemon's figures in the Prometheus text format
//! (`GET /metrics`).

use anyhow::Result;
use hyper::Method;

use crate::addr::AddrArg;
use crate::client::Client;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    addr: AddrArg,
}

pub async fn run(args: Args) -> Result<()> {
    let client = Client::new(args.addr.or_default()?);
    client.print(Method::GET, "/metrics", false).await?;
    Ok(())
}
