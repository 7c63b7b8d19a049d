//! `xs consumers [ADDR] [--remove NAME]`: lists durable consumers (`GET /consumers`) as NDJSON
//! `{"name","position","lag"}`, or forgets one (`DELETE /consumers/{name}`).

use anyhow::Result;
use hyper::Request;

use crate::addr::AddrArg;
use crate::client::{self, Client};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    addr: AddrArg,
    /// Forget this consumer's position instead of listing
    #[arg(long, value_name = "NAME")]
    remove: Option<String>,
}

pub async fn run(args: Args) -> Result<()> {
    let addr = args.addr.or_default()?;
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
