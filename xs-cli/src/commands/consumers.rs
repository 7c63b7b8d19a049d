//! `xs consumers [ADDR] [--remove NAME]`: lists durable consumers (`GET /consumers`) as NDJSON
//! `{"name","position","lag"}`, or forgets one (`DELETE /consumers/{name}`).

use anyhow::Result;
use hyper::Request;

use crate::addr;
use crate::client::{self, Client};

#[derive(clap::Args)]
pub struct Args {
    /// Store dir, socket, :PORT or host:port (default: $XS_ADDR, else ~/.local/share/xs/store)
    #[arg(value_name = "ADDR")]
    addr: Option<String>,
    /// Forget this consumer's position instead of listing
    #[arg(long, value_name = "NAME")]
    remove: Option<String>,
}

pub async fn run(args: Args) -> Result<()> {
    let addr = addr::addr_or_default(args.addr)?;
    let client = Client::new(addr);
    if let Some(name) = args.remove {
        xs::consumer::validate_name(&name)?;
        let req = Request::delete(format!("/consumers/{name}")).body(client::empty())?;
        client.send(req).await?;
        return Ok(());
    }
    let resp = client
        .send(Request::get("/consumers").body(client::empty())?)
        .await?;
    client::print(resp, false).await?;
    Ok(())
}
