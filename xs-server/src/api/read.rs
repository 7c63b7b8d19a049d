//! `GET /`: reads the stream (history, `xs.threshold`, live) as NDJSON, or SSE when the
//! client accepts `text/event-stream`; with `?consumer=N`, from that consumer's position.

use hyper::body::Incoming;
use hyper::header::ACCEPT;
use hyper::Request;
use xs::consumer::ConsumerRead;
use xs::{ReadOptions, Store};

use super::stream::{self, Format};
use super::ApiResult;

pub async fn handle(store: Store, req: Request<Incoming>) -> ApiResult {
    let mut opts = ReadOptions::from_query(req.uri().query())?;
    let sse = req
        .headers()
        .get_all(ACCEPT)
        .iter()
        .any(|v| v.to_str().is_ok_and(|s| s.contains("text/event-stream")));
    let format = if sse { Format::Sse } else { Format::Ndjson };
    let mut ack = None;
    if let Some(c) = ConsumerRead::from_query(req.uri().query())? {
        let position = store.consumer_position(&c.name).await?;
        c.apply(position, &mut opts);
        ack = c.ack_auto.then_some(c.name);
    }
    Ok(stream::response(store, opts, format, ack))
}
