//! `GET /ps`: the processors (for now, webhooks) as NDJSON
//! `{"kind","name","state","since","position","last_error",...}`.

use super::{respond, ApiResult, NDJSON};
use crate::body;
use crate::daemon::Daemon;

pub async fn handle(daemon: Daemon) -> ApiResult {
    let mut out = Vec::new();
    for row in crate::ps::list(&daemon.ps) {
        serde_json::to_writer(&mut out, &row).expect("a status always serializes");
        out.push(b'\n');
    }
    Ok(respond(hyper::StatusCode::OK, NDJSON, body::full(out)))
}
