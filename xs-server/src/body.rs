//! Response bodies: whole (`full`), empty, or streamed from a channel of chunks. A body
//! that fails mid-way (`results`) aborts the response, so the client sees it incomplete.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};
use hyper::body::Frame;
use tokio::sync::mpsc;

pub type Body = BoxBody<Bytes, std::io::Error>;

pub fn full(b: impl Into<Bytes>) -> Body {
    infallible(Full::new(b.into()))
}

pub fn empty() -> Body {
    infallible(Empty::new())
}

/// A body whose chunks arrive on `rx`; it ends when every sender is dropped.
pub fn channel(rx: mpsc::Receiver<Bytes>) -> Body {
    infallible(ChannelBody(rx))
}

/// A body that cannot fail, as a [`Body`].
pub fn infallible<B>(b: B) -> Body
where
    B: hyper::body::Body<Data = Bytes, Error = Infallible> + Send + Sync + 'static,
{
    b.map_err(|never| match never {}).boxed()
}

#[cfg(feature = "nu")]
/// A body whose chunks (or its error, which aborts it) arrive on `rx`; `guard` is dropped
/// with the body (when it is done, or the client went away).
pub fn results(
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    guard: impl Send + Sync + 'static,
) -> Body {
    ResultBody(rx, Box::new(guard)).boxed()
}

#[cfg(feature = "nu")]
struct ResultBody(
    mpsc::Receiver<std::io::Result<Bytes>>,
    #[allow(dead_code)] Box<dyn Send + Sync>,
);

#[cfg(feature = "nu")]
impl hyper::body::Body for ResultBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.0.poll_recv(cx).map(|c| c.map(|r| r.map(Frame::data)))
    }
}

struct ChannelBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
    }
}
