//! [`Daemon`]: what the requests and background tasks of one mounted store share,
//! [`Shared`]: what every store of one daemon process shares, and [`stopped`], the one way a
//! task waits for a shutdown.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;

use tokio::sync::watch;
use xs::Store;

#[cfg(feature = "nu")]
use crate::nu;
use crate::{gateway, orphans, ps, ServeError};

/// What every store mounted by one daemon process shares: built once, cheap to clone.
#[derive(Clone)]
pub struct Shared {
    /// The Nushell engine (store-independent: each use binds the store commands).
    #[cfg(feature = "nu")]
    pub engine: nu::Engine,
}

impl Shared {
    /// Builds the Nushell engine (in the process's working directory, or `fallback`).
    pub fn new(fallback: &Path) -> Result<Shared, ServeError> {
        #[cfg(not(feature = "nu"))]
        let _ = fallback;
        Ok(Shared {
            #[cfg(feature = "nu")]
            engine: nu::Engine::new(
                &std::env::current_dir().unwrap_or_else(|_| fallback.to_path_buf()),
            )
            .map_err(|e| ServeError::Internal(format!("starting the Nushell engine: {e}")))?,
        })
    }
}

/// What the requests and background tasks of one mounted store share; cheap to clone.
#[derive(Clone)]
pub struct Daemon {
    pub store: Store,
    /// The daemon's own files: `sock`, `token`; also names its processor table.
    pub state: Arc<Path>,
    /// The Nushell engine that `POST /eval` and the processors run on.
    #[cfg(feature = "nu")]
    pub engine: nu::Engine,
    /// The `--http` gateway's request counts.
    pub gateway: Arc<gateway::Stats>,
    /// The processors' rows for `GET /ps`.
    pub ps: ps::Table,
    /// This run's tag, in the environment of every process a generator starts.
    pub generator_tag: orphans::Tag,
    /// The stores this daemon mounted besides its default one (empty on those stores).
    pub stores: StoreRegistry,
}

impl Daemon {
    /// The shared state of `store`, with its files in `state`, its generators tagged `tag`.
    pub fn new(store: Store, state: &Path, shared: &Shared, tag: orphans::Tag) -> Daemon {
        #[cfg(not(feature = "nu"))]
        let _ = shared;
        Daemon {
            #[cfg(feature = "nu")]
            engine: shared.engine.clone(),
            generator_tag: tag,
            store,
            state: state.into(),
            gateway: Arc::default(),
            ps: ps::Table::default(),
            stores: StoreRegistry::default(),
        }
    }
}

/// Resolves once `shutdown` turns true (or its sender is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// The stores a daemon mounted besides its default one, by name.
pub type StoreRegistry = Arc<Mutex<BTreeMap<String, MountedStore>>>;

/// A mounted store, as `GET /stores`, `GET /metrics` and `/stores/NAME/...` see it.
#[derive(Clone)]
pub struct MountedStore {
    /// Its directory.
    pub path: PathBuf,
    /// Its daemon handle: what its socket (and `/stores/NAME/...` on the default store's TCP
    /// listeners) serves.
    pub daemon: Daemon,
}
