//! `xs cat [ADDR]`: reads the stream (`GET /`) with the shared read options and copies the
//! NDJSON (or SSE) to stdout as it arrives, so `xs cat -f` is live.

use anyhow::{bail, Result};
use hyper::header::ACCEPT;
use hyper::Request;
use xs::{Follow, ReadOptions, TopicFilter};

use crate::addr::AddrArg;
use crate::client::{self, Client};
use crate::commands::parse_id;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    addr: AddrArg,
    /// After the history, keep streaming new frames
    #[arg(short, long)]
    follow: bool,
    /// While following, send an xs.pulse frame every MS milliseconds (implies --follow)
    #[arg(short, long, value_name = "MS")]
    pulse: Option<u64>,
    /// Skip the history: only frames appended from now on
    #[arg(short, long)]
    new: bool,
    /// Start after this frame id (exclusive)
    #[arg(short, long, value_name = "ID")]
    after: Option<String>,
    /// Start at this frame id (inclusive)
    #[arg(long, value_name = "ID")]
    from: Option<String>,
    /// Stop after N frames
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Only the newest N frames of the history
    #[arg(long, value_name = "N")]
    last: Option<usize>,
    /// Only these topics: exact, prefix.*, * or a comma list
    #[arg(short = 'T', long, value_name = "PATTERNS")]
    topic: Option<String>,
    /// Add each frame's creation time as "timestamp"
    #[arg(long)]
    with_timestamp: bool,
    /// Print server-sent events instead of NDJSON
    #[arg(long)]
    sse: bool,
    /// Read as durable consumer NAME: start after the last frame acknowledged for it
    #[arg(long, value_name = "NAME")]
    consumer: Option<String>,
    /// Where a consumer with no position yet starts: first (default), new, or after ID
    #[arg(long, value_name = "first|new|ID", requires = "consumer")]
    start: Option<String>,
    /// Acknowledge frames for the consumer as they are delivered
    #[arg(long, requires = "consumer")]
    ack_auto: bool,
}

pub async fn run(args: Args) -> Result<()> {
    let addr = args.addr.or_default()?;
    let follow = match (args.pulse, args.follow) {
        (Some(0), _) => bail!("--pulse must be at least 1 ms"),
        (Some(ms), _) => Follow::Pulse(ms),
        (None, true) => Follow::On,
        (None, false) => Follow::Off,
    };
    let options = ReadOptions {
        follow,
        new: args.new,
        after: args.after.as_deref().map(parse_id).transpose()?,
        from: args.from.as_deref().map(parse_id).transpose()?,
        limit: args.limit,
        last: args.last,
        topic: match &args.topic {
            Some(t) => TopicFilter::parse(t)?,
            None => TopicFilter::All,
        },
        with_timestamp: args.with_timestamp,
    };
    let mut query = options.to_query();
    if let Some(name) = args.consumer {
        xs::consumer::validate_name(&name)?;
        let c = xs::consumer::ConsumerRead {
            name,
            start: args.start.as_deref().unwrap_or("first").parse()?,
            ack_auto: args.ack_auto,
        };
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str(&c.to_query());
    }
    let uri = if query.is_empty() {
        "/".to_string()
    } else {
        format!("/?{query}")
    };
    let mut req = Request::get(uri);
    if args.sse {
        req = req.header(ACCEPT, "text/event-stream");
    }
    let resp = Client::new(addr).send(req.body(client::empty())?).await?;
    client::print(resp, false).await?;
    Ok(())
}
