//! `GET /version`: the daemon's version.

use super::{json_response, ApiResult};

pub async fn handle() -> ApiResult {
    let v = serde_json::json!({ "version": xs::VERSION });
    Ok(json_response(v.to_string().into_bytes()))
}
