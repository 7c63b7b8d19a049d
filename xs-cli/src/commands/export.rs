//! `xs export [ADDR] [--topic P] [--after ID] > dump`: streams the store's archive
//! (`GET /export`) to stdout, checking it as it passes (its `E` record must verify).

use anyhow::{anyhow, Context, Result};
use http_body_util::BodyExt;
use hyper::Request;
use xs::archive::ArchiveReader;
use xs::{ReadOptions, TopicFilter};

use crate::addr::AddrArg;
use crate::client::{self, Client};
use crate::commands::parse_id;
use crate::progress::Progress;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    addr: AddrArg,
    /// Only frames of these topics: exact, prefix.*, * or a comma list
    #[arg(short = 'T', long, value_name = "PATTERNS")]
    topic: Option<String>,
    /// Only frames after this id
    #[arg(short, long, value_name = "ID")]
    after: Option<String>,
}

pub async fn run(args: Args) -> Result<()> {
    let addr = args.addr.or_default()?;
    let opts = ReadOptions {
        after: args.after.as_deref().map(parse_id).transpose()?,
        topic: match &args.topic {
            Some(t) => TopicFilter::parse(t)?,
            None => TopicFilter::All,
        },
        ..ReadOptions::default()
    };
    let query = opts.to_query();
    let uri = if query.is_empty() {
        "/export".to_string()
    } else {
        format!("/export?{query}")
    };
    let resp = Client::new(addr)
        .send(Request::get(uri).body(client::empty())?)
        .await?;
    let mut body = resp.into_body();
    let mut check = ArchiveReader::new();
    let mut progress = Progress::new("export");
    let mut sent = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| anyhow!("lost the connection to the xs daemon: {e}"))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        client::write_stdout(&data)?;
        sent += data.len() as u64;
        check.feed(&data);
        while check.next().context("the export is corrupt")?.is_some() {}
        progress.update(check.counts().0, sent);
    }
    progress.finish(check.counts().0, sent);
    check
        .finish()
        .context("the export is incomplete (see the daemon's log)")?;
    Ok(())
}
