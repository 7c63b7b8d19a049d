//! `DELETE /{id}`: removes a frame and its index entries (its content stays in the CAS).

use hyper::StatusCode;
use xs::Store;

use super::{respond, ApiResult, JSON};
use crate::body;

pub async fn handle(store: Store, id: &str) -> ApiResult {
    let id = xs::frame::parse_id(id)?;
    store.remove(id).await?;
    Ok(respond(StatusCode::NO_CONTENT, JSON, body::empty()))
}
