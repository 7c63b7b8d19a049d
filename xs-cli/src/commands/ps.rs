//! `xs ps [ADDR]`: lists the processors (handlers, generators, actions, webhooks) as NDJSON
//! `{"kind","name","state","since","position","last_error",...}` (`GET /ps`).

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
    client.print(Method::GET, "/ps", false).await?;
    Ok(())
}
