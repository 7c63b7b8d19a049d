//! `xs ps [ADDR]`: lists the processors (handlers, generators, actions, webhooks) as NDJSON
//! `{"kind","name","state","since","position","last_error",...}` (`GET /ps`).

use anyhow::Result;
use hyper::Method;

use crate::addr;
use crate::client::Client;

#[derive(clap::Args)]
pub struct Args {
    /// Store dir, socket, :PORT or host:port (default: $XS_ADDR, else ~/.local/share/xs/store)
    #[arg(value_name = "ADDR")]
    addr: Option<String>,
}

pub async fn run(args: Args) -> Result<()> {
    let client = Client::new(addr::addr_or_default(args.addr)?);
    client.print(Method::GET, "/ps", false).await?;
    Ok(())
}
