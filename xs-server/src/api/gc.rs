//! `POST /gc`: removes every content blob no frame references and answers what was freed,
//! `{"blobs": n, "bytes": n}`.

use xs::Store;

use super::{json_response, ApiResult};

pub async fn handle(store: Store) -> ApiResult {
    let report = store.gc().await?;
    Ok(json_response(
        serde_json::to_vec(&report).expect("a report serializes"),
    ))
}
