//! `xs get [ADDR] ID`: prints one frame (`GET /{id}`).
//! Unknown ids are the daemon's 404, reported as an error.

use anyhow::Result;
use hyper::Method;

use crate::addr::AddrArg;
use crate::client::Client;
use crate::commands::parse_id;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    addr: AddrArg,
    /// Id of the frame (a lone positional is the ID)
    #[arg(value_name = "ID")]
    id: Option<String>,
    /// Add the frame's creation time as "timestamp"
    #[arg(long)]
    with_timestamp: bool,
}

pub async fn run(args: Args) -> Result<()> {
    let (addr, id) = args.addr.and(args.id, "ID")?;
    let id = parse_id(&id)?;
    let uri = if args.with_timestamp {
        format!("/{id}?with-timestamp=true")
    } else {
        format!("/{id}")
    };
    Client::new(addr).print(Method::GET, &uri, true).await?;
    Ok(())
}
