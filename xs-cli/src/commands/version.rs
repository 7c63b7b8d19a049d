//! `xs version [ADDR]`: prints the daemon's version JSON (`GET /version`).
//! The client's own version is `xs --version`.

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
    let addr = args.addr.or_default()?;
    Client::new(addr)
        .print(Method::GET, "/version", true)
        .await?;
    Ok(())
}
