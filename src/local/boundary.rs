//! The local store behind the [`Backend`] boundary: writes go to the writer thread, blocking
//! fjall reads run on tokio's blocking pool, content files are streamed in chunks.

use std::sync::Arc;

use bytes::Bytes;
use ssri::Integrity;
use tokio::io::AsyncReadExt;
use tokio::sync::{broadcast, mpsc};

use super::{CasContent, ContentWriter, Local};
use crate::backend::{
    Backend, Batch, BoxFuture, Content, ContentReader, ContentSink, GcReport, LiveFrame, Metric,
    Record, ScanEnd, TopicInfo,
};
use crate::consumer::ConsumerInfo;
use crate::error::{Error, Result};
use crate::frame::{Frame, Id};
use crate::read::ReadOptions;

/// History is sent in pages of about this many bytes of JSON.
const PAGE_BYTES: usize = 64 * 1024;
/// Content files are read in chunks of this size.
const CHUNK_BYTES: usize = 64 * 1024;

/// Runs blocking fjall work off the async reactor.
async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("{what} task failed: {e}")))?
}

impl Backend for Local {
    fn append(&self, batch: Batch) -> BoxFuture<'static, Result<Vec<Frame>>> {
        let Batch {
            mut frames,
            checkpoint,
            fence,
        } = batch;
        if frames.len() == 1 && checkpoint.is_none() {
            let one = self.append(frames.remove(0));
            return Box::pin(async move { one.await.map(|f| vec![f]) });
        }
        Box::pin(self.append_atomic(frames, checkpoint, fence))
    }

    fn import(&self, frame: Frame) -> BoxFuture<'static, Result<Frame>> {
        Box::pin(self.import(frame))
    }

    fn remove(&self, id: Id, purge: bool) -> BoxFuture<'static, Result<GcReport>> {
        let store = self.clone();
        Box::pin(async move {
            if purge {
                store.remove_purge(id).await
            } else {
                store.remove(id).await.map(|()| GcReport::default())
            }
        })
    }

    fn get(&self, id: Id) -> BoxFuture<'static, Result<Option<Frame>>> {
        let store = self.clone();
        Box::pin(blocking("read", move || store.get(&id)))
    }

    fn last_id(&self) -> BoxFuture<'static, Result<Option<Id>>> {
        let store = self.clone();
        Box::pin(blocking("read", move || store.last_id()))
    }

    fn topics(
        &self,
        prefix: Option<String>,
        children: bool,
    ) -> BoxFuture<'static, Result<Vec<TopicInfo>>> {
        let store = self.clone();
        Box::pin(blocking("topics", move || {
            store.topics(prefix.as_deref(), children)
        }))
    }

    fn history(
        &self,
        opts: ReadOptions,
        tx: mpsc::Sender<Vec<Record>>,
    ) -> BoxFuture<'static, Result<ScanEnd>> {
        let store = self.clone();
        Box::pin(blocking("history scan", move || {
            let mut page = Page::default();
            let mut gone = false;
            let mut end = store.scan(&opts, |raw| {
                page.push(raw.id, raw.json);
                if page.buf.len() >= PAGE_BYTES && tx.blocking_send(page.take()).is_err() {
                    gone = true;
                    return false;
                }
                true
            })?;
            if !gone && !page.ids.is_empty() && tx.blocking_send(page.take()).is_err() {
                gone = true;
            }
            end.stopped |= gone;
            Ok(end)
        }))
    }

    fn subscribe(&self, runtime: bool) -> broadcast::Receiver<Arc<LiveFrame>> {
        self.subscribe(runtime)
    }

    fn content_writer(&self) -> Box<dyn ContentSink> {
        Box::new(ContentWriter::new(self.clone()))
    }

    fn content_put(&self, content: Content) -> BoxFuture<'static, Result<Option<Integrity>>> {
        let store = self.clone();
        Box::pin(async move { store.cas_put(content).await })
    }

    fn content(&self, hash: Integrity) -> BoxFuture<'static, Result<Option<ContentReader>>> {
        let store = self.clone();
        Box::pin(async move {
            let found = blocking("content", move || store.cas_get(&hash)).await?;
            Ok(found.map(|c| match c {
                CasContent::Inline(b) => ContentReader::from_bytes(b),
                CasContent::File { file, len } => {
                    let (tx, chunks) = mpsc::channel(4);
                    tokio::spawn(stream_file(tokio::fs::File::from_std(file), tx));
                    ContentReader { len, chunks }
                }
            }))
        })
    }

    fn gc(&self) -> BoxFuture<'static, Result<GcReport>> {
        let store = self.clone();
        Box::pin(async move { store.gc().await })
    }

    fn ack(&self, name: String, id: Id) -> BoxFuture<'static, Result<Id>> {
        Box::pin(self.ack(name, id))
    }

    fn remove_consumer(&self, name: String) -> BoxFuture<'static, Result<()>> {
        let store = self.clone();
        Box::pin(async move { store.remove_consumer(name).await })
    }

    fn consumers(&self, name: Option<String>) -> BoxFuture<'static, Result<Vec<ConsumerInfo>>> {
        let store = self.clone();
        Box::pin(blocking("consumers", move || {
            store.consumers(name.as_deref())
        }))
    }

    fn checkpoint(&self, name: String) -> BoxFuture<'static, Result<Option<Vec<u8>>>> {
        let store = self.clone();
        Box::pin(blocking("checkpoint", move || store.checkpoint(&name)))
    }

    fn remove_checkpoint(&self, name: String) -> BoxFuture<'static, Result<()>> {
        let store = self.clone();
        Box::pin(async move { store.remove_checkpoint(name).await })
    }

    fn count_after(&self, id: Option<Id>, cap: u64) -> BoxFuture<'static, Result<u64>> {
        let store = self.clone();
        Box::pin(blocking("count", move || {
            store.count_after(id.as_ref(), cap)
        }))
    }

    fn metrics(&self) -> BoxFuture<'static, Result<Vec<Metric>>> {
        let store = self.clone();
        Box::pin(blocking("metrics", move || store.metrics()))
    }

    fn failed(&self) -> BoxFuture<'static, String> {
        let store = self.clone();
        Box::pin(async move { store.failed().await })
    }

    fn close(&self) -> BoxFuture<'static, ()> {
        let store = self.clone();
        Box::pin(async move {
            let _ = blocking("close", move || {
                store.close();
                Ok(())
            })
            .await;
        })
    }
}

/// One page of history being filled: the frames' JSON back to back, then cut into records
/// that share the page's buffer.
#[derive(Default)]
struct Page {
    buf: Vec<u8>,
    ids: Vec<(Id, usize, usize)>,
}

impl Page {
    fn push(&mut self, id: Id, json: &[u8]) {
        if self.buf.capacity() == 0 {
            self.buf.reserve(PAGE_BYTES + 1024);
        }
        let start = self.buf.len();
        self.buf.extend_from_slice(json);
        self.ids.push((id, start, self.buf.len()));
    }

    fn take(&mut self) -> Vec<Record> {
        let buf = Bytes::from(std::mem::take(&mut self.buf));
        std::mem::take(&mut self.ids)
            .into_iter()
            .map(|(id, a, b)| Record {
                id,
                json: buf.slice(a..b),
            })
            .collect()
    }
}

/// Small content (nearly every append) takes the synchronous path: boxing the large path's
/// future for it allocated and freed a medium-sized block per append, and with the allocator
/// returning freed pages at once, that was a page mapped and unmapped per append (−25% at 32
/// connections).
impl ContentSink for ContentWriter {
    fn write<'a>(&'a mut self, chunk: &'a [u8]) -> BoxFuture<'a, Result<()>> {
        if self.buffer(chunk) {
            return Box::pin(std::future::ready(Ok(())));
        }
        Box::pin(ContentWriter::write(self, chunk))
    }

    fn len(&self) -> u64 {
        ContentWriter::len(self)
    }

    fn finish(self: Box<Self>) -> BoxFuture<'static, Result<Content>> {
        match self.into_inline() {
            Ok(content) => Box::pin(std::future::ready(Ok(content))),
            Err(large) => Box::pin(ContentWriter::finish(*large)),
        }
    }
}

/// Sends a content file's bytes in chunks until its end or until the reader goes away.
async fn stream_file(mut file: tokio::fs::File, tx: mpsc::Sender<Result<Bytes>>) {
    loop {
        let mut buf = vec![0u8; CHUNK_BYTES];
        match file.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => {
                buf.truncate(n);
                if tx.send(Ok(buf.into())).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.send(Err(Error::io("reading content", e))).await;
                return;
            }
        }
    }
}
