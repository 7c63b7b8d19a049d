//! `xs restore [ADDR] < dump`: streams an archive from `xs export` to `POST /restore` and
//! prints the daemon's summary `{"frames","contents","bytes"}`.

use std::sync::{Arc, Mutex};

use anyhow::Result;
use bytes::BytesMut;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::header::CONTENT_TYPE;
use hyper::Request;
use tokio::io::AsyncReadExt;
use xs::archive::ArchiveReader;

use crate::addr::AddrArg;
use crate::client::{self, Client};
use crate::progress::Progress;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    addr: AddrArg,
}

/// What was sent so far: the archive as parsed (for its frame count) and its size.
struct Sent {
    parser: Option<ArchiveReader>,
    bytes: u64,
    progress: Progress,
}

impl Sent {
    fn add(&mut self, data: &[u8]) {
        self.bytes += data.len() as u64;
        if let Some(p) = &mut self.parser {
            p.feed(data);
            // Only counting here: the daemon verifies, and reports what is wrong.
            loop {
                match p.next() {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => {
                        self.parser = None;
                        break;
                    }
                }
            }
        }
        let frames = self.frames();
        self.progress.update(frames, self.bytes);
    }

    fn frames(&self) -> u64 {
        self.parser.as_ref().map_or(0, |p| p.counts().0)
    }
}

pub async fn run(args: Args) -> Result<()> {
    let addr = args.addr.or_default()?;
    let sent = Arc::new(Mutex::new(Sent {
        parser: Some(ArchiveReader::new()),
        bytes: 0,
        progress: Progress::new("restore"),
    }));
    let state = (tokio::io::stdin(), sent.clone());
    let chunks = futures::stream::unfold(Some(state), |state| async move {
        let (mut stdin, sent) = state?;
        let mut buf = BytesMut::with_capacity(256 * 1024);
        match stdin.read_buf(&mut buf).await {
            Ok(0) => None,
            Ok(_) => {
                sent.lock().unwrap_or_else(|e| e.into_inner()).add(&buf);
                Some((Ok(Frame::data(buf.freeze())), Some((stdin, sent))))
            }
            Err(e) => Some((
                Err(std::io::Error::new(
                    e.kind(),
                    format!("cannot read stdin: {e}"),
                )),
                None,
            )),
        }
    });
    let req = Request::post("/restore")
        .header(CONTENT_TYPE, "application/x-xs-export")
        .body(StreamBody::new(chunks).boxed_unsync())?;
    let result = Client::new(addr).send(req).await;
    {
        let mut s = sent.lock().unwrap_or_else(|e| e.into_inner());
        let (frames, bytes) = (s.frames(), s.bytes);
        s.progress.finish(frames, bytes);
    }
    client::print(result?, true).await?;
    Ok(())
}
