//! [`Daemon`]: what the requests and background tasks of one running daemon share, and
//! [`stopped`], the one way a task waits for the daemon's shutdown.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::watch;
use xs::Store;

#[cfg(feature = "nu")]
use crate::nu;
use crate::{gateway, orphans, ps, ServeError};

/// What the requests and background tasks of one daemon share; cheap to clone.
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
}

impl Daemon {
    /// The daemon's shared state for `store`, with its files in `state` (builds the Nushell
    /// engine).
    pub fn new(store: Store, state: &Path) -> Result<Daemon, ServeError> {
        Ok(Daemon {
            #[cfg(feature = "nu")]
            engine: nu::Engine::new(
                &std::env::current_dir().unwrap_or_else(|_| state.to_path_buf()),
            )
            .map_err(|e| ServeError::Internal(format!("starting the Nushell engine: {e}")))?,
            generator_tag: orphans::Tag::new(state),
            store,
            state: state.into(),
            gateway: Arc::default(),
            ps: ps::Table::default(),
        })
    }
}

/// Resolves once `shutdown` turns true (or its sender is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}
