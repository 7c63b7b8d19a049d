//! `xs eval [ADDR] [FILE|-] [-c SCRIPT]`: runs a Nushell script in the daemon, against the live
//! store (`POST /eval`), and prints its result as it streams: bytes as they are, a list as
//! NDJSON, a record as JSON, a scalar as text. A script error is Nushell's report (exit 1).

use std::io::Read;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;

use crate::addr::{self, Addr, AddrArg};
use crate::client::{self, Client};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    addr: AddrArg,
    /// The script file (`-` or none: stdin); a lone positional (without -c) is the FILE
    /// unless it names a store or address
    #[arg(value_name = "FILE")]
    file: Option<String>,
    /// The script, given here instead of a file
    #[arg(short = 'c', long = "commands", value_name = "SCRIPT")]
    commands: Option<String>,
}

pub async fn run(args: Args) -> Result<()> {
    let (addr, script) = target(args)?;
    let body = Full::new(Bytes::from(script))
        .map_err(|never| match never {})
        .boxed_unsync();
    let req = Request::post("/eval").body(body)?;
    let resp = match Client::new(addr).send(req).await {
        Ok(r) => r,
        // Nushell's report spans lines: print it as it is.
        Err(e) => match e.downcast::<client::ServerError>() {
            Ok(se) if se.status == hyper::StatusCode::BAD_REQUEST => {
                return Err(client::Report(se.message).into())
            }
            Ok(se) => return Err(se.into()),
            Err(e) => return Err(e),
        },
    };
    let text = resp
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/plain") || ct.starts_with("application/json"));
    client::print(resp, text)
        .await
        .map_err(|e| match e.downcast::<client::StdoutClosed>() {
            Ok(closed) => closed.into(),
            Err(e) => anyhow!(
                "the script failed while its output streamed ({e}); the daemon's log has its error"
            ),
        })?;
    Ok(())
}

/// The address and the script, from the positionals and `-c`.
fn target(args: Args) -> Result<(Addr, String)> {
    let (addr, file) = match (args.addr.addr, args.file) {
        (Some(a), Some(f)) => (Addr::parse(&a)?, Some(f)),
        (Some(a), None) if args.commands.is_some() || names_store(&a) => (Addr::parse(&a)?, None),
        (Some(f), None) => (addr::default_addr()?, Some(f)),
        (None, _) => (addr::default_addr()?, None),
    };
    let script = match (args.commands, file.as_deref()) {
        (Some(_), Some(f)) => bail!("give either a FILE ({f}) or -c SCRIPT, not both"),
        (Some(c), None) => c,
        (None, Some(f)) if f != "-" => {
            std::fs::read_to_string(f).with_context(|| format!("cannot read script file {f}"))?
        }
        (None, _) => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("cannot read the script from stdin")?;
            s
        }
    };
    Ok((addr, script))
}

/// Whether a lone positional is an address (a store dir, a socket, :port, http://...)
/// rather than a script file.
fn names_store(s: &str) -> bool {
    let p = Path::new(s);
    p.is_dir()
        || s.starts_with(':')
        || s.starts_with("http://")
        || std::fs::metadata(p).is_ok_and(|m| {
            use std::os::unix::fs::FileTypeExt;
            m.file_type().is_socket()
        })
}
