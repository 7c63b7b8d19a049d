//! `GET /{id}`: one frame by id.

use hyper::body::Incoming;
use hyper::Request;
use xs::Store;

use super::{frame_json, json_response, with_timestamp, ApiResult};
use crate::error::ApiError;

pub async fn handle(store: Store, req: Request<Incoming>, id: &str) -> ApiResult {
    let id = xs::frame::parse_id(id)?;
    let wt = with_timestamp(&req)?;
    let frame = store.get(id).await?;
    match frame {
        Some(f) => Ok(json_response(frame_json(&f, wt))),
        None => Err(ApiError::not_found(format!("no frame with id {id}"))),
    }
}
