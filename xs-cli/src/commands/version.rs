//! `xs version [ADDR]`: prints the daemon's version JSON (`GET /version`).
//! The client's own version is `xs --version`.

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
    let addr = addr::addr_or_default(args.addr)?;
    Client::new(addr)
        .print(Method::GET, "/version", true)
        .await?;
    Ok(())
}
