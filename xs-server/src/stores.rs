//! Stores added through the control stream (the default store's): `xs.store.<name>.create`
//! with JSON `{"path"}` mounts the store at `path` as a full store of its own (its socket
//! `<path>/sock`, processors, expiry, metrics); `.term` unmounts it, its data staying on disk.
//! A processor [`Kind`], so the dispatcher gives it the same lifecycle and restart replay.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use serde::Deserialize;
use xs::{Frame, LocalOptions, Store};

use crate::daemon::{self, MountedStore as Entry, Shared, StoreRegistry as Registry};
use crate::mount::{Mount, MountOptions};
use crate::placement::Placement;
use crate::processor::{self, Instance, Kind, Outcome};
use crate::{orphans, NatsOptions, ServeOptions};

/// A store's checked configuration.
pub struct Config {
    pub path: PathBuf,
    /// Its stream lives in a JetStream cluster (the path holds the local copy).
    pub nats: Option<NatsOptions>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    path: PathBuf,
    #[serde(default)]
    nats: Option<RawNats>,
}

/// `{"urls": "nats://h1:4222,nats://h2:4222", "stream"?, "processors"?}` (`processors: false`:
/// none here; otherwise they are shared with the stream's other daemons, by lease).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNats {
    urls: String,
    #[serde(default)]
    stream: Option<String>,
    #[serde(default)]
    processors: Option<bool>,
}

/// The `store` kind: what every mount needs from the daemon.
pub struct Stores {
    shared: Shared,
    tag: orphans::Tag,
    local: LocalOptions,
    default_store: PathBuf,
    registry: Registry,
    /// This daemon's name (`--name`).
    name: String,
}

impl Stores {
    pub fn new(
        opts: &ServeOptions,
        shared: &Shared,
        tag: &orphans::Tag,
        registry: Registry,
    ) -> Stores {
        Stores {
            shared: shared.clone(),
            tag: tag.clone(),
            local: LocalOptions {
                min_free_bytes: opts
                    .min_free_space
                    .unwrap_or(xs::local::DEFAULT_MIN_FREE_BYTES),
                ..LocalOptions::default()
            },
            default_store: opts.store.clone(),
            registry,
            name: opts.name.clone().unwrap_or_default(),
        }
    }
}

impl Kind for Stores {
    const SIGNALS_READY: bool = true;
    type Config = Config;

    fn parse(
        &self,
        store: &Store,
        frame: &Frame,
        _vocab: &'static xs::lifecycle::Vocab,
    ) -> Result<Config, String> {
        let json = processor::create_source(store, frame)?;
        let raw: Raw = serde_json::from_slice(&json)
            .map_err(|e| {
                format!("store config must be JSON {{\"path\": ..., \"nats\"?: {{\"urls\", \"stream\"?, \"processors\"?}}}}: {e}")
            })?;
        let name = processor::parse_topic("xs.store.", &frame.topic).map_or("", |(n, _)| n);
        self.check(name, &raw.path)?;
        let nats = raw.nats.map(|n| NatsOptions {
            urls: vec![n.urls],
            stream: n.stream,
            no_processors: n.processors == Some(false),
            ..NatsOptions::default()
        });
        Ok(Config {
            path: raw.path,
            nats,
        })
    }

    fn run(&self, inst: Instance<Config>) -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
        let shared = self.shared.clone();
        let tag = self.tag.sibling(&inst.config.path);
        let local = self.local.clone();
        let registry = self.registry.clone();
        let default_store = self.default_store.clone();
        let self_name = self.name.clone();
        Box::pin(async move {
            let Instance {
                name,
                config,
                mut stop,
                ready,
                ..
            } = inst;
            let path = config.path.clone();
            let local = LocalOptions {
                holder: format!(
                    "mounted as {name} by the xs serve of control store {}",
                    default_store.display()
                ),
                ..local
            };
            let (store, placement) = match &config.nats {
                Some(n) => match crate::open_nats(&path, local, n, &self_name).await {
                    Ok(s) => s,
                    Err(e) => return Outcome::Failed(e.to_string()),
                },
                None => {
                    let p = path.clone();
                    let opened =
                        tokio::task::spawn_blocking(move || Store::open_local(&p, local)).await;
                    match opened {
                        Ok(Ok(s)) => (s, Some(Placement::here(&self_name))),
                        Ok(Err(xs::Error::Locked { path: p, .. })) => {
                            return Outcome::Failed(locked_by_another(&p))
                        }
                        Ok(Err(e @ xs::Error::Io { .. })) => {
                            return Outcome::Failed(format!("path unusable: {e}"))
                        }
                        Ok(Err(e)) => return Outcome::Failed(e.to_string()),
                        Err(e) => return Outcome::Failed(format!("opening the store: {e}")),
                    }
                }
            };
            let opts = MountOptions {
                state: path.clone(),
                tcp: Vec::new(),
                guard: None,
                start_meta: serde_json::json!({
                    "version": xs::VERSION,
                    "mounted_as": name,
                    "control": default_store,
                }),
                tag,
                placement,
                // Creates of stores appended here are answered: not through this store. On a
                // shared stream they are left alone: another daemon may serve it as its
                // control store.
                control: config.nats.is_none().then(|| default_store.clone()),
            };
            let mount = match Mount::start(store.clone(), &shared, opts).await {
                Ok(m) => m,
                Err(e) => {
                    store.close().await;
                    return Outcome::Failed(e.to_string());
                }
            };
            tracing::info!(store = %name, path = %path.display(), socket = %mount.sock.display(), "store mounted");
            let entry = Entry {
                path: path.clone(),
                daemon: mount.daemon.clone(),
            };
            lock(&registry).insert(name.clone(), entry);
            ready.send();
            let outcome = tokio::select! {
                _ = daemon::stopped(&mut stop) => None,
                reason = mount.failed() => Some(reason),
            };
            lock(&registry).remove(&name);
            match outcome {
                None => {
                    if let Err(e) = mount.stop().await {
                        tracing::warn!(store = %name, error = %e, "unmounting");
                    }
                    tracing::info!(store = %name, "store unmounted");
                    Outcome::Stopped
                }
                Some(reason) => {
                    tracing::error!(store = %name, %reason, "storage failed; the store is unmounted");
                    mount.abandon().await;
                    Outcome::Failed(format!("storage failed: {reason}"))
                }
            }
        })
    }

    fn detail(config: &Config) -> Option<String> {
        Some(config.path.display().to_string())
    }
}

impl Stores {
    /// Why `path` cannot be mounted as `name` now, if it cannot: not absolute, not a
    /// directory, not a store, this daemon's own, or locked by another daemon.
    fn check(&self, name: &str, path: &Path) -> Result<(), String> {
        if !path.is_absolute() {
            return Err(format!("path unusable: {} is not absolute", path.display()));
        }
        let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        let key = canon(path);
        if key == canon(&self.default_store) {
            return Err(format!(
                "path unusable: {} is this daemon's default store",
                path.display()
            ));
        }
        for (other, e) in lock(&self.registry).iter() {
            if canon(&e.path) == key {
                return if other == name {
                    Ok(()) // replaced by itself: the old mount lets go first
                } else {
                    Err(format!(
                        "path unusable: {} is already mounted as {other}",
                        path.display()
                    ))
                };
            }
        }
        match std::fs::metadata(path) {
            Ok(m) if !m.is_dir() => Err(format!(
                "path unusable: {} is not a directory",
                path.display()
            )),
            Ok(_) => {
                let lock_file = path.join("lock");
                if lock_file.exists() {
                    let f = std::fs::File::open(&lock_file).map_err(|e| {
                        format!("path unusable: opening {}: {e}", lock_file.display())
                    })?;
                    return match f.try_lock() {
                        Ok(()) => Ok(()),
                        Err(std::fs::TryLockError::WouldBlock) => Err(locked_by_another(path)),
                        Err(std::fs::TryLockError::Error(e)) => Err(format!(
                            "path unusable: locking {}: {e}",
                            lock_file.display()
                        )),
                    };
                }
                let empty = std::fs::read_dir(path)
                    .map_err(|e| format!("path unusable: reading {}: {e}", path.display()))?
                    .next()
                    .is_none();
                // A local store has `fjall/`; a JetStream one its local copy in `copy/`.
                if empty || path.join("fjall").is_dir() || path.join("copy").is_dir() {
                    Ok(())
                } else {
                    Err(format!(
                        "not a store: {} is a non-empty directory without xs data",
                        path.display()
                    ))
                }
            }
            Err(_) => {
                // Created on mount: its nearest existing ancestor must be a directory.
                let mut up = path.parent();
                while let Some(p) = up {
                    match std::fs::metadata(p) {
                        Ok(m) if m.is_dir() => return Ok(()),
                        Ok(_) => {
                            return Err(format!(
                                "path unusable: {} is not a directory",
                                p.display()
                            ))
                        }
                        Err(_) => up = p.parent(),
                    }
                }
                Err(format!("path unusable: {}", path.display()))
            }
        }
    }
}

/// Why the store in `dir` cannot be mounted: another process holds its lock (which says who).
fn locked_by_another(dir: &Path) -> String {
    let holder = xs::local::lock_holder(dir);
    let holder = if holder.is_empty() {
        String::new()
    } else {
        format!(" ({holder})")
    };
    format!(
        "locked by another daemon: {} is being served by another xs process{holder}",
        dir.display()
    )
}

fn lock(r: &Registry) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
    r.lock().unwrap_or_else(|e| e.into_inner())
}

/// The registry's entries, by name.
pub fn mounted(r: &Registry) -> Vec<(String, Entry)> {
    lock(r)
        .iter()
        .map(|(n, e)| (n.clone(), e.clone()))
        .collect()
}
