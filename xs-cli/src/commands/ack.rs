//! `xs ack [ADDR] NAME ID`: acknowledges frame ID for consumer NAME
//! (`POST /consumers/{name}/ack?id=ID`); its position never moves backwards.

use anyhow::{bail, Result};
use hyper::Request;

use crate::addr::{self, Addr};
use crate::client::{self, Client};
use crate::commands::parse_id;

#[derive(clap::Args)]
pub struct Args {
    /// [ADDR] NAME ID: store dir, socket, :PORT or host:port (default: $XS_ADDR, else
    /// ~/.local/share/xs/store), the consumer's name, and the id to acknowledge
    #[arg(value_name = "ARGS", num_args = 2..=3, required = true)]
    args: Vec<String>,
}

pub async fn run(args: Args) -> Result<()> {
    let mut a = args.args;
    let (addr, name, id) = match a.len() {
        2 => {
            let id = a.pop().expect("two");
            (addr::default_addr()?, a.pop().expect("one"), id)
        }
        3 => {
            let id = a.pop().expect("three");
            let name = a.pop().expect("two");
            (Addr::parse(&a[0])?, name, id)
        }
        _ => bail!("expected [ADDR] NAME ID"),
    };
    xs::consumer::validate_name(&name)?;
    let id = parse_id(&id)?;
    let req = Request::post(format!("/consumers/{name}/ack?id={id}")).body(client::empty())?;
    Client::new(addr).send(req).await?;
    Ok(())
}
