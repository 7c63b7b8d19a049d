//! `POST /restore`: loads an archive from `GET /export`, parsing it as it arrives (bounded
//! memory; large content streams into the CAS). Every content hash and the `E` record are
//! verified; the first problem stops the restore (400) and nothing after it is imported.

use futures::future::try_join_all;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::Request;
use xs::archive::{ArchiveReader, Event, Integrity};
use xs::{Content, ContentWriter, Frame, Store};

use super::{drain, json_response, ApiResult};
use crate::error::ApiError;

/// Frames imported together (one group commit), and the most small content held for them.
const WINDOW_FRAMES: usize = 1024;
const WINDOW_BYTES: usize = 8 * 1024 * 1024;

pub async fn handle(store: Store, req: Request<Incoming>) -> ApiResult {
    let mut body = req.into_body();
    let mut r = Restorer {
        store,
        parser: ArchiveReader::new(),
        current: None,
        contents: Vec::new(),
        content_bytes: 0,
        frames: Vec::new(),
        frame_no: 0,
    };
    match r.run(&mut body).await {
        Ok(summary) => Ok(json_response(summary.to_string().into_bytes())),
        Err(e) => {
            drain(body).await;
            Err(e)
        }
    }
}

struct Restorer {
    store: Store,
    parser: ArchiveReader,
    /// The content being read: its hash and where it goes.
    current: Option<(Integrity, ContentWriter)>,
    /// Small content of this window, written before its frames.
    contents: Vec<Content>,
    content_bytes: usize,
    frames: Vec<Frame>,
    frame_no: u64,
}

impl Restorer {
    async fn run(&mut self, body: &mut Incoming) -> Result<serde_json::Value, ApiError> {
        while let Some(f) = body.frame().await {
            let f =
                f.map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
            let Ok(data) = f.into_data() else { continue };
            self.parser.feed(&data);
            while let Some(event) = self.parser.next()? {
                self.apply(event).await?;
            }
        }
        self.parser.finish()?;
        let (frames, contents, bytes) = self.parser.counts();
        Ok(serde_json::json!({ "frames": frames, "contents": contents, "bytes": bytes }))
    }

    async fn apply(&mut self, event: Event) -> Result<(), ApiError> {
        match event {
            Event::Frame(json) => {
                self.frame_no += 1;
                let frame = Frame::from_json(&json).map_err(|e| {
                    ApiError::bad_request(format!("archive frame {}: {e}", self.frame_no))
                })?;
                self.frames.push(frame);
                if self.frames.len() >= WINDOW_FRAMES {
                    self.flush().await?;
                }
            }
            Event::ContentStart { hash, .. } => {
                self.current = Some((hash, self.store.content_writer()));
            }
            Event::ContentData(data) => {
                if let Some((_, w)) = &mut self.current {
                    w.write(&data).await?;
                }
            }
            Event::ContentEnd => {
                let Some((hash, w)) = self.current.take() else {
                    return Ok(());
                };
                let len = w.len();
                let content = w.finish().await?;
                let ok = content
                    .hash()
                    .is_some_and(|got| hash.matches(got).is_some());
                if !ok {
                    let got = content
                        .hash()
                        .map_or_else(|| "nothing (empty content)".to_string(), |h| h.to_string());
                    return Err(ApiError::bad_request(format!(
                        "content {hash} in the archive does not match its hash (its {len} bytes \
                         hash to {got}): the archive is corrupt; nothing after it was restored"
                    )));
                }
                if let Content::Inline { bytes, .. } = &content {
                    self.content_bytes += bytes.len();
                    self.contents.push(content);
                    if self.content_bytes >= WINDOW_BYTES {
                        self.flush().await?;
                    }
                }
            }
            Event::End(_) => self.flush().await?,
        }
        Ok(())
    }

    /// Makes this window's small content durable (one group commit), then imports its frames
    /// (another), so every frame finds its content.
    async fn flush(&mut self) -> Result<(), ApiError> {
        let store = &self.store;
        try_join_all(self.contents.drain(..).map(|c| store.cas_put(c))).await?;
        self.content_bytes = 0;
        let imports: Vec<_> = self.frames.drain(..).map(|f| store.import(f)).collect();
        try_join_all(imports).await?;
        Ok(())
    }
}
