//! `xs remove [ADDR] ID`: deletes one frame (`DELETE /{id}`).
//! Prints nothing on success.

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
}

pub async fn run(args: Args) -> Result<()> {
    let (addr, id) = addr::addr_and(args.addr, args.id, "ID")?;
    let id = parse_id(&id)?;
    let req = Request::delete(format!("/{id}")).body(client::empty())?;
    Client::new(addr).send(req).await?;
    Ok(())
}
