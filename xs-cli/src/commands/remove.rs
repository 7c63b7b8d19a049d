//! `xs remove [ADDR] ID [--purge]`: deletes one frame (`DELETE /{id}`); with `--purge`, also its
//! content once no other frame references it. Prints nothing on success.

use anyhow::Result;
use hyper::Request;

use crate::addr::AddrArg;
use crate::client::{self, Client};
use crate::commands::parse_id;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    addr: AddrArg,
    /// Id of the frame to remove (a lone positional is the ID)
    #[arg(value_name = "ID")]
    id: Option<String>,
    /// Also delete the frame's content if no other frame references it
    #[arg(long)]
    purge: bool,
}

pub async fn run(args: Args) -> Result<()> {
    let (addr, id) = args.addr.and(args.id, "ID")?;
    let id = parse_id(&id)?;
    let uri = if args.purge {
        format!("/{id}?purge=true")
    } else {
        format!("/{id}")
    };
    let req = Request::delete(uri).body(client::empty())?;
    Client::new(addr).send(req).await?;
    Ok(())
}
