//! The processor status table behind `GET /ps`: one row per processor (for now, webhooks),
//! updated by the dispatchers, kept per store so that several daemons in one process don't mix.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;
use xs::Id;

/// One processor, as `GET /ps` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub kind: &'static str,
    pub name: String,
    /// `active`, `retrying`, `terminated` or `invalid`.
    pub state: &'static str,
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

static TABLES: OnceLock<Mutex<HashMap<PathBuf, Table>>> = OnceLock::new();

/// The table of the store at `path` (created empty on first use).
pub fn table(path: &Path) -> Table {
    let mut all = TABLES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    all.entry(path.to_path_buf()).or_default().clone()
}

/// Every row of the store at `path`, by kind then name.
pub fn list(path: &Path) -> Vec<Status> {
    let t = table(path);
    let rows = t.lock().unwrap_or_else(|e| e.into_inner());
    rows.values().cloned().collect()
}

/// Now, as RFC 3339 (an id's top 48 bits are its milliseconds).
pub fn now() -> String {
    xs::frame::id_timestamp(&Id::from_u128(u128::from(xs::frame::now_ms()) << 80))
}
