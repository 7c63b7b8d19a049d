//! `xs remove [ADDR] ID [--purge]`: deletes one frame (`DELETE /{id}`); with `--purge`, also its
//! content once no other frame references it. Prints nothing on success.

use anyhow::Result;
use hyper::Request;

use crate::addr;
use crate::client::{self, Client};
use crate::commands::parse_id;

#[derive(clap::Args)]
pub struct Args {
    /// Store dir, socket, :PORT or host:port (default: $XS_ADDR, else ~/.local/share/xs/store);
    /// given alone, this is the ID
    #[arg(value_name = "ADDR")]
    addr: Option<String>,
    /// Id of the frame to remove
    #[arg(value_name = "ID")]
    id: Option<String>,
    /// Also delete the frame's content if no other frame references it
    #[arg(long)]
    purge: bool,
}

pub async fn run(args: Args) -> Result<()> {
    let (addr, id) = addr::addr_and(args.addr, args.id, "ID")?;
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
