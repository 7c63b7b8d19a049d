//! `xs import [ADDR]`: streams NDJSON frames from stdin to `POST /import` (ids kept, content
//! already in the CAS) and prints the imported frames.
//!
//! `xs import [ADDR] --dir DIR` loads an export directory as cross.stream's `.export` writes it:
//! `DIR/cas/<base64 of the hash>` for each content (posted to `/cas` first, each hash checked
//! against its file name) and `DIR/frames.jsonl` (its `xs cat` output, imported with ids kept).
//! It prints `{"frames","contents","bytes"}`.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use http_body_util::BodyExt;
use hyper::header::CONTENT_TYPE;
use hyper::Request;

use crate::addr::{Addr, AddrArg};
use crate::client::{self, Client};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    addr: AddrArg,
    /// An export directory (frames.jsonl and cas/, as cross.stream's `.export` writes) instead
    /// of frames on stdin
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub async fn run(args: Args) -> Result<()> {
    let addr = args.addr.or_default()?;
    if let Some(dir) = args.dir {
        return import_dir(addr, &dir).await;
    }
    let req = Request::post("/import")
        .header(CONTENT_TYPE, "application/x-ndjson")
        .body(client::stdin())?;
    let resp = Client::new(addr).send(req).await?;
    client::print(resp, false).await?;
    Ok(())
}

async fn import_dir(addr: Addr, dir: &Path) -> Result<()> {
    let frames = dir.join("frames.jsonl");
    if !frames.is_file() {
        bail!("{} is not an export: it has no frames.jsonl", dir.display());
    }
    let client = Client::new(addr);
    let mut files = Vec::new();
    let cas = dir.join("cas");
    if cas.is_dir() {
        walk(&cas, &mut files)?;
    }
    files.sort();
    let (mut contents, mut bytes) = (0u64, 0u64);
    for file in &files {
        let f = tokio::fs::File::open(file)
            .await
            .with_context(|| format!("cannot open {}", file.display()))?;
        bytes += f.metadata().await.map(|m| m.len()).unwrap_or(0);
        let req = Request::post("/cas").body(client::reader(f, file.display().to_string()))?;
        let resp = client.send(req).await?;
        let got = resp.into_body().collect().await?.to_bytes();
        let got = String::from_utf8_lossy(&got).trim().to_string();
        // The name is the hash in base64 (a `/` in it makes a subdirectory); a name that does
        // not decode to a hash is only content, stored under the hash it has.
        let rel = file.strip_prefix(&cas).unwrap_or(file);
        let name: String = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        if let Some(want) = decode_name(&name) {
            if want != got {
                bail!(
                    "hash mismatch for {}: got {got}, want {want}",
                    file.display()
                );
            }
        }
        contents += 1;
    }
    let f = tokio::fs::File::open(&frames)
        .await
        .with_context(|| format!("cannot open {}", frames.display()))?;
    let req = Request::post("/import")
        .header(CONTENT_TYPE, "application/x-ndjson")
        .body(client::reader(f, frames.display().to_string()))?;
    let mut body = client.send(req).await?.into_body();
    let (mut count, mut last) = (0u64, Vec::new());
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| anyhow!("lost the connection to the xs daemon: {e}"))?;
        if let Ok(data) = frame.into_data() {
            for &b in data.iter() {
                if b == b'\n' {
                    if last.starts_with(b"{\"error\"") {
                        let v: serde_json::Value = serde_json::from_slice(&last)?;
                        bail!(
                            "{} imported, then: {}",
                            count,
                            v["error"].as_str().unwrap_or_default()
                        );
                    }
                    count += 1;
                    last.clear();
                } else {
                    last.push(b);
                }
            }
        }
    }
    let summary = serde_json::json!({"frames": count, "contents": contents, "bytes": bytes});
    client::write_stdout(format!("{summary}\n").as_bytes())
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// The hash a content file's name encodes (base64, standard or URL-safe, padded or not).
fn decode_name(name: &str) -> Option<String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(name).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|h| h.starts_with("sha") && h.contains('-'))
}
