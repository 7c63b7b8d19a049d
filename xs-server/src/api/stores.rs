//! `GET /stores`: the stores mounted through the control stream as NDJSON
//! `{"name","state","since","path","socket","frames","processors","last_error"}`.

use super::{respond, ApiResult, NDJSON};
use crate::body;
use crate::daemon::Daemon;

pub async fn handle(daemon: Daemon) -> ApiResult {
    let mounted: std::collections::BTreeMap<_, _> =
        crate::stores::mounted(&daemon.stores).into_iter().collect();
    let mut out = Vec::new();
    for row in crate::ps::list(&daemon.ps) {
        if row.kind != "store" {
            continue;
        }
        let path = row.url.clone();
        let socket = match (&path, mounted.contains_key(&row.name)) {
            (Some(p), true) => Some(std::path::Path::new(p).join("sock")),
            _ => None,
        };
        let (frames, processors) = match mounted.get(&row.name) {
            Some(e) => {
                let frames: u64 = e
                    .daemon
                    .store
                    .topics(None, false)
                    .await?
                    .iter()
                    .map(|t| t.count)
                    .sum();
                let ps: Vec<_> = crate::ps::list(&e.daemon.ps)
                    .into_iter()
                    .map(|p| serde_json::json!({"kind": p.kind, "name": p.name, "state": p.state}))
                    .collect();
                (Some(frames), ps)
            }
            None => (None, Vec::new()),
        };
        let line = serde_json::json!({
            "name": row.name,
            "state": row.state,
            "since": row.since,
            "path": path,
            "socket": socket,
            "frames": frames,
            "processors": processors,
            "create_id": row.create_id,
            "last_error": row.last_error,
        });
        serde_json::to_writer(&mut out, &line).expect("a row always serializes");
        out.push(b'\n');
    }
    Ok(respond(hyper::StatusCode::OK, NDJSON, body::full(out)))
}
