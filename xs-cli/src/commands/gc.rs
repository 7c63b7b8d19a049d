//! `xs gc [ADDR]`: removes every content blob no frame references (`POST /gc`) and prints
//! `{"blobs": n, "bytes": n}`.

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
    Client::new(addr).print(Method::POST, "/gc", true).await?;
    Ok(())
}
