//! `xs append [ADDR] TOPIC`: streams stdin as the content of a new frame (`POST /append/{topic}`)
//! and prints the frame; `--meta` is checked here and sent base64 in `xs-meta`. With `--expect`,
//! a conflict is an [`ExpectConflict`] (exit code 3); `--key` makes retries idempotent. With
//! `--lines`, each stdin line is a frame, sent in atomic batches (`POST /append`).

use std::fmt;
use std::io::IsTerminal;
use std::str::FromStr;

use anyhow::{Context, Result};
use base64::Engine;
use hyper::{Request, StatusCode};

use crate::addr::AddrArg;
use crate::client::{self, Client};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    addr: AddrArg,
    /// Topic of the new frame (a lone positional is the TOPIC)
    #[arg(value_name = "TOPIC")]
    topic: Option<String>,
    /// Metadata for the frame, as JSON
    #[arg(long, value_name = "JSON")]
    meta: Option<String>,
    /// Time to live: forever, ephemeral, time:<ms> or last:<n>
    #[arg(long, value_name = "TTL")]
    ttl: Option<String>,
    /// Add the frame's creation time as "timestamp"
    #[arg(long)]
    with_timestamp: bool,
    /// Append only if the newest frame on TOPIC has this id (`none`: only if TOPIC has no
    /// frame); otherwise exit with code 3
    #[arg(long, value_name = "ID|none")]
    expect: Option<String>,
    /// Idempotency key: a retry with the same key and topic prints the original frame
    /// (with --lines, line N gets the key K:N)
    #[arg(long, value_name = "K")]
    key: Option<String>,
    /// Each stdin line (without its newline) becomes a frame's content, --meta and --ttl
    /// applying to every one, --expect to the first. Sent in batches of at most 10000 frames
    /// (and 64 MiB); each batch is stored all or nothing, in order. Prints the frames as NDJSON
    #[arg(long)]
    lines: bool,
}

/// The daemon refused the append because `--expect` did not hold (exit code 3).
#[derive(Debug)]
pub struct ExpectConflict(pub String);

impl fmt::Display for ExpectConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ExpectConflict {}

pub async fn run(mut args: Args) -> Result<()> {
    let addr = AddrArg {
        addr: args.addr.addr.take(),
    };
    let (addr, topic) = addr.and(args.topic.take(), "TOPIC")?;
    xs::validate_topic(&topic)?;
    if args.lines {
        return run_lines(Client::new(addr), topic, &args).await;
    }
    let mut query = Vec::new();
    if let Some(ttl) = &args.ttl {
        let ttl = xs::Ttl::from_str(ttl)?;
        query.push(format!(
            "ttl={}",
            xs::read::encode_component(&ttl.to_string())
        ));
    }
    if args.with_timestamp {
        query.push("with-timestamp=true".to_string());
    }
    if let Some(expect) = &args.expect {
        let expect = xs::Expect::from_str(expect)?;
        query.push(format!("expect={expect}"));
    }
    let mut uri = format!("/append/{topic}");
    if !query.is_empty() {
        uri = format!("{uri}?{}", query.join("&"));
    }
    let mut req = Request::post(uri);
    if let Some(meta) = &args.meta {
        let meta: serde_json::Value =
            serde_json::from_str(meta).context("--meta is not valid JSON")?;
        let encoded = base64::engine::general_purpose::STANDARD.encode(meta.to_string());
        req = req.header("xs-meta", encoded);
    }
    if let Some(key) = &args.key {
        req = req.header("xs-idempotency-key", key.as_str());
    }
    let body = if std::io::stdin().is_terminal() {
        client::empty()
    } else {
        client::stdin()
    };
    let resp = match Client::new(addr).send(req.body(body)?).await {
        Err(e) if args.expect.is_some() && client::is_status(&e, StatusCode::CONFLICT) => {
            return Err(ExpectConflict(e.to_string()).into())
        }
        r => r?,
    };
    client::print(resp, true).await?;
    Ok(())
}

/// `--lines`: reads stdin line by line, sending a batch each time one is full and at the end.
async fn run_lines(client: Client, topic: String, args: &Args) -> Result<()> {
    use tokio::io::AsyncBufReadExt;
    let meta: Option<serde_json::Value> = match &args.meta {
        Some(m) => Some(serde_json::from_str(m).context("--meta is not valid JSON")?),
        None => None,
    };
    let ttl = args.ttl.as_deref().map(xs::Ttl::from_str).transpose()?;
    let mut expect = args
        .expect
        .as_deref()
        .map(xs::Expect::from_str)
        .transpose()?
        .map(|e| e.to_string());
    let uri = if args.with_timestamp {
        "/append?with-timestamp=true"
    } else {
        "/append"
    };
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let (mut body, mut frames, mut number) = (Vec::new(), 0usize, 0usize);
    let mut raw = Vec::new();
    loop {
        raw.clear();
        let n = stdin
            .read_until(b'\n', &mut raw)
            .await
            .context("cannot read stdin")?;
        if n > 0 {
            number += 1;
            let content = raw.strip_suffix(b"\n").unwrap_or(&raw);
            let mut line = xs::BatchLine {
                topic: topic.clone(),
                meta: meta.clone(),
                ttl,
                expect: expect.take(),
                key: args.key.as_ref().map(|k| format!("{k}:{number}")),
                ..Default::default()
            };
            match std::str::from_utf8(content) {
                Ok(text) => line.text = Some(text.to_string()),
                Err(_) => {
                    let b64 = base64::engine::general_purpose::STANDARD.encode(content);
                    line.content = Some(b64);
                }
            }
            let mut json = serde_json::to_vec(&line)?;
            json.push(b'\n');
            if json.len() > xs::BATCH_MAX_BYTES {
                anyhow::bail!(
                    "line {number} is too long for a batch (at most {} bytes of JSON)",
                    xs::BATCH_MAX_BYTES
                );
            }
            if frames == xs::BATCH_MAX_FRAMES || body.len() + json.len() > xs::BATCH_MAX_BYTES {
                send_batch(&client, uri, std::mem::take(&mut body), args).await?;
                frames = 0;
            }
            body.extend_from_slice(&json);
            frames += 1;
        }
        if n == 0 {
            if frames > 0 {
                send_batch(&client, uri, body, args).await?;
            }
            return Ok(());
        }
    }
}

async fn send_batch(client: &Client, uri: &str, body: Vec<u8>, args: &Args) -> Result<()> {
    let req = Request::post(uri)
        .header(hyper::header::CONTENT_TYPE, "application/x-ndjson")
        .body(client::full(body))?;
    let resp = match client.send(req).await {
        Err(e) if args.expect.is_some() && client::is_status(&e, StatusCode::CONFLICT) => {
            return Err(ExpectConflict(e.to_string()).into())
        }
        r => r?,
    };
    client::print(resp, false).await?;
    Ok(())
}
