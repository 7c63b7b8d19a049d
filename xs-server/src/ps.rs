//! The processor status table behind `GET /ps`: one row per processor, updated by the
//! dispatchers; each daemon holds its own (on a shared stream, rows of processors another
//! daemon runs name that daemon).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use xs::Id;

/// One processor, as `GET /ps` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub kind: &'static str,
    pub name: String,
    /// `active`, `retrying`, `terminated` or `invalid`; on a shared stream also `waiting`
    /// (no live daemon holds it yet).
    pub state: &'static str,
    /// The daemon that runs it (`--name`), when known.
    pub daemon: Option<String>,
    /// When the state began (RFC 3339).
    pub since: String,
    /// The create frame this row describes.
    pub create_id: Id,
    /// The last frame handled (delivered), if any.
    pub position: Option<Id>,
    pub last_error: Option<String>,
    /// Failed attempts since the last success.
    pub failures: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// The rows of one store, by `(kind, name)`.
pub type Table = Arc<Mutex<BTreeMap<(&'static str, String), Status>>>;

/// Every row of `table`, by kind then name.
pub fn list(table: &Table) -> Vec<Status> {
    let rows = table.lock().unwrap_or_else(|e| e.into_inner());
    rows.values().cloned().collect()
}

/// Now, as RFC 3339 (an id's top 48 bits are its milliseconds).
pub fn now() -> String {
    xs::frame::id_timestamp(&Id::from_u128(u128::from(xs::frame::now_ms()) << 80))
}
