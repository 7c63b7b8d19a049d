//! `DELETE /{id}[?purge=true]`: removes a frame and its index entries; with `purge`, also its
//! content once no other frame references it.

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use xs::Store;

use super::{respond, ApiResult, JSON};
use crate::body;
use crate::error::ApiError;

pub async fn handle(store: Store, req: Request<Incoming>, id: &str) -> ApiResult {
    let id = xs::frame::parse_id(id)?;
    let pairs = xs::read::parse_query(req.uri().query().unwrap_or(""))?;
    let mut purge = false;
    for (k, v) in pairs {
        match k.as_str() {
            "purge" => purge = !matches!(v.as_str(), "false" | "no" | "0"),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {k:?} for DELETE /{{id}} (known: purge)"
                )))
            }
        }
    }
    if purge {
        store.remove_purge(id).await?;
    } else {
        store.remove(id).await?;
    }
    Ok(respond(StatusCode::NO_CONTENT, JSON, body::empty()))
}
