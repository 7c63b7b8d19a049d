//! The xs daemon: mounts a store, serves the HTTP/1.1 API on `<state>/sock` (and optionally
//! TCP, token-protected: the API with `--expose`, the web console with `--console`), appends
//! the runtime frames `xs.start` / `xs.stopping`, runs the processors, and serves the `--http`
//! gateway. Its own files (socket, token) live in the state directory; the store's data is the
//! backend's business.

pub mod api;
mod auth;
mod body;
mod console;
mod daemon;
mod error;
pub mod gateway;
mod listener;
mod mount;
pub mod orphans;
// Nushell's own error type (`ShellError`, ~200 bytes) is what its commands return.
#[cfg(feature = "nu")]
#[allow(clippy::result_large_err)]
pub mod nu;
pub mod placement;
mod processor;
mod ps;
mod stores;
mod tls;
mod webhook;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use daemon::{Daemon, Shared};
pub use error::ServeError;
use mount::{Mount, MountOptions};
use placement::Placement;
use tokio::sync::watch;
use xs::{LocalOptions, Store};

/// What `xs serve` was asked for.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// The store directory (created if missing).
    pub store: PathBuf,
    /// Also serve the API over TCP on this address (`host:port` or `:port`; port 0 picks
    /// one, announced in `xs.start`; a token is needed there), or on a Unix socket at this
    /// path (one with a `/`: mode 0600, no token, like `sock`).
    pub expose: Option<String>,
    /// Only reads on the `expose` listener (403 for everything else).
    pub expose_read_only: bool,
    /// Serve the web console (read-only, token-protected) on this address.
    pub console: Option<String>,
    /// The token of the TCP listeners; default `<store>/token`, created if missing.
    pub token_file: Option<PathBuf>,
    /// Serve the TCP listeners over HTTPS with this certificate chain and key (PEM files).
    pub tls: Option<TlsFiles>,
    /// Free space to keep on the store's filesystem (default `xs::DEFAULT_MIN_FREE_BYTES`):
    /// below it, appends answer 507.
    pub min_free_space: Option<u64>,
    /// When appends reach the disk (`--fsync`; default: each batch is fsynced).
    pub fsync: xs::Fsync,
    /// How often expired frames are removed (`--ttl-sweep`; default 1 s).
    pub ttl_sweep: Option<Duration>,
    /// Serve the `--http` gateway (see `gateway`).
    pub http: Option<gateway::GatewayOptions>,
    /// An executable that runs [`orphans::guard_main`] as `<exe> __guard TAG` (`xs` does):
    /// started as the guard that kills the generators' processes if the daemon dies without
    /// stopping them. None: no guard (the next start-up still ends them).
    pub guard_exe: Option<PathBuf>,
    /// Keep the stream in a NATS JetStream cluster (`--nats`), the store directory holding
    /// the local copy.
    pub nats: Option<NatsOptions>,
    /// This daemon's name (`--name`; default: the host name and a random suffix), announced
    /// in `xs.start` and shown by `xs ps`; on a shared stream it holds processors' leases.
    pub name: Option<String>,
}

/// `--nats URLS` and its companions.
#[derive(Debug, Clone, Default)]
pub struct NatsOptions {
    /// Server URLs (each may be a comma-separated list).
    pub urls: Vec<String>,
    /// `--nats-stream` (default `XS`).
    pub stream: Option<String>,
    /// A NATS credentials file (JWT and NKey seed).
    pub creds_file: Option<PathBuf>,
    /// A file holding the server token.
    pub token_file: Option<PathBuf>,
    /// CA certificate(s) (PEM) the servers' TLS certificates are checked against.
    pub tls_ca: Option<PathBuf>,
    /// Run no processors here (`--no-processors`): serve reads and appends only. Otherwise
    /// each processor runs on one daemon of the stream, by lease (`placement`).
    pub no_processors: bool,
}

/// The PEM files of `--tls-cert` and `--tls-key`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl ServeOptions {
    /// Refuses flags that need another flag to mean anything.
    /// The `--expose` Unix socket path, if it is one.
    fn expose_socket(&self) -> Option<PathBuf> {
        self.expose
            .as_deref()
            .filter(|a| listener::is_socket_path(a))
            .map(PathBuf::from)
    }

    /// Whether a TCP listener is asked for (they need the token).
    fn tcp(&self) -> bool {
        (self.expose.is_some() && self.expose_socket().is_none()) || self.console.is_some()
    }

    fn check(&self) -> Result<(), ServeError> {
        if let Some(n) = &self.name {
            placement::check_name(n).map_err(ServeError::Config)?;
        }
        let tcp = self.tcp();
        let orphan = if self.expose_read_only && self.expose.is_none() {
            Some("--expose-read-only needs --expose")
        } else if self.expose_read_only && self.expose_socket().is_some() {
            Some(
                "--expose-read-only is for a TCP --expose (a socket is owner-only and full access)",
            )
        } else if self.token_file.is_some() && !tcp {
            Some("--token-file needs a TCP --expose or --console (sockets need no token)")
        } else if self.tls.is_some() && !tcp {
            Some("--tls-cert/--tls-key need a TCP --expose or --console")
        } else {
            None
        };
        match orphan {
            Some(m) => Err(ServeError::Config(m.into())),
            None => Ok(()),
        }
    }
}

/// Opens the store, serves until SIGINT/SIGTERM, then stops cleanly.
pub async fn serve(opts: ServeOptions) -> Result<(), ServeError> {
    let store_path = opts.store.clone();
    let store_opts = LocalOptions {
        min_free_bytes: opts
            .min_free_space
            .unwrap_or(xs::local::DEFAULT_MIN_FREE_BYTES),
        fsync: opts.fsync,
        ttl_sweep: opts.ttl_sweep.unwrap_or(LocalOptions::default().ttl_sweep),
        ..LocalOptions::default()
    };
    let mut opts = opts;
    opts.check()?;
    let name = opts
        .name
        .get_or_insert_with(placement::default_name)
        .clone();
    let shown = std::path::absolute(&store_path).unwrap_or(store_path.clone());
    let store_opts = LocalOptions {
        holder: format!("xs serve {}", shown.display()),
        ..store_opts
    };
    let (store, placement) = match &opts.nats {
        Some(n) => open_nats(&store_path, store_opts, n, &name).await?,
        None => {
            let store =
                tokio::task::spawn_blocking(move || Store::open_local(&store_path, store_opts))
                    .await
                    .map_err(|e| ServeError::Internal(format!("opening store: {e}")))??;
            (store, Some(Placement::here(&name)))
        }
    };
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = shutdown_tx.send(true);
    });
    run_placed(store, placement, opts, shutdown_rx).await
}

/// Connects to the JetStream cluster and opens the local copy in `state`; unless
/// `--no-processors`, joins the daemons of the stream as `name` to share its processors.
#[cfg(feature = "nats")]
pub(crate) async fn open_nats(
    state: &Path,
    local: LocalOptions,
    n: &NatsOptions,
    name: &str,
) -> Result<(Store, Option<Placement>), ServeError> {
    use xs::jetstream::{JetStreamBackend, JetStreamOptions};
    let urls: Vec<String> = n
        .urls
        .iter()
        .flat_map(|u| u.split(','))
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty())
        .collect();
    if urls.is_empty() {
        return Err(ServeError::Config(
            "--nats needs at least one server URL".into(),
        ));
    }
    let mut o = JetStreamOptions::new(urls);
    if let Some(s) = &n.stream {
        o.stream = s.clone();
    }
    o.creds_file = n.creds_file.clone();
    o.tls_ca = n.tls_ca.clone();
    if let Some(f) = &n.token_file {
        let t = std::fs::read_to_string(f).map_err(|source| ServeError::Io {
            context: format!("reading {}", f.display()),
            source,
        })?;
        o.token = Some(t.trim().to_string());
    }
    let backend = JetStreamBackend::open(state, local, o).await?;
    let placement = if n.no_processors {
        None
    } else {
        let cluster = match backend.cluster().await {
            Ok(c) => c,
            Err(e) => {
                xs::Backend::close(&backend).await;
                return Err(e.into());
            }
        };
        // Announced before it serves: a processor registered once this daemon answers is
        // placed knowing it (not placed elsewhere and moved a second later).
        if let Err(e) = cluster.beat(name).await {
            tracing::warn!(error = %e, "announcing this daemon failed; retrying every second");
        }
        let members = placement::cluster::Members::start(name.to_string(), cluster);
        Some(Placement::cluster(members))
    };
    Ok((Store::new(std::sync::Arc::new(backend)), placement))
}

#[cfg(not(feature = "nats"))]
pub(crate) async fn open_nats(
    _: &Path,
    _: LocalOptions,
    _: &NatsOptions,
    _: &str,
) -> Result<(Store, Option<Placement>), ServeError> {
    Err(ServeError::Config(
        "--nats: this xs was built without the `nats` feature".into(),
    ))
}

/// Serves `store` until `shutdown` turns true: mounts it (its stream is the control stream),
/// mounts again the stores added through it, and serves the `--http` gateway. Tests and
/// embedders call this directly; every processor runs in this daemon.
pub async fn run(
    store: Store,
    opts: ServeOptions,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ServeError> {
    let mut opts = opts;
    let name = opts
        .name
        .get_or_insert_with(placement::default_name)
        .clone();
    run_placed(store, Some(Placement::here(&name)), opts, shutdown).await
}

/// [`run`], with the processors where `placement` says (`None`: none here).
async fn run_placed(
    store: Store,
    placement: Option<Placement>,
    opts: ServeOptions,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ServeError> {
    opts.check()?;
    let guard = if opts.tcp() {
        let tls = match &opts.tls {
            Some(t) => Some(tls::acceptor(&t.cert, &t.key)?),
            None => None,
        };
        let (auth, token_path) = auth::Auth::load(&opts.store, opts.token_file.as_deref())?;
        tracing::info!(token_file = %token_path.display(), "TCP listeners need the token");
        Some(listener::Guard {
            auth: std::sync::Arc::new(auth),
            tls,
        })
    } else {
        None
    };
    let shared = Shared::new(&opts.store)?;
    // Listeners besides the store's own socket: an `--expose` socket, TCP ones.
    let mut tcp = Vec::new();
    let expose_sock = opts.expose_socket();
    if let Some(path) = &expose_sock {
        tcp.push(listener::bind_unix_exposed(path)?);
    }
    let mut bind = async |addr: &Option<String>, role| -> Result<Option<String>, ServeError> {
        let Some(addr) = addr else { return Ok(None) };
        if listener::is_socket_path(addr) {
            return Ok(Some(addr.clone()));
        }
        let (l, local) = listener::bind_tcp(addr, role).await?;
        tcp.push(l);
        Ok(Some(local.to_string()))
    };
    let read_only = opts.expose_read_only;
    let expose = bind(&opts.expose, listener::Role::Api { read_only }).await?;
    let console = bind(&opts.console, listener::Role::Console).await?;
    let tls = opts.tls.is_some();
    let http = match &opts.http {
        Some(g) => Some((gateway::bind(&g.addr).await?, g.clone())),
        None => None,
    };
    let http_addr = match &http {
        Some((l, _)) => Some(
            l.local_addr()
                .map_err(|source| ServeError::Io {
                    context: "reading the --http address".into(),
                    source,
                })?
                .to_string(),
        ),
        None => None,
    };

    let tag = orphans::Tag::new(&opts.store);
    let _guard = match &opts.guard_exe {
        Some(exe) => match orphans::Guard::spawn(exe, &tag) {
            Ok(g) => Some(g),
            Err(e) => {
                tracing::warn!(error = %e, exe = %exe.display(), "could not start the generator guard");
                None
            }
        },
        None => None,
    };
    let mount = Mount::start(
        store.clone(),
        &shared,
        MountOptions {
            state: opts.store.clone(),
            tcp,
            guard,
            start_meta: serde_json::json!({
                "version": xs::VERSION,
                "expose": expose,
                "expose_read_only": opts.expose_read_only,
                "console": console,
                "tls": tls,
                "http": http_addr,
                "daemon": opts.name,
            }),
            tag: tag.clone(),
            placement: placement.clone(),
            control: None,
        },
    )
    .await?;
    tracing::info!(store = %opts.store.display(), socket = %mount.sock.display(), expose = ?expose, console = ?console, tls, http = ?http_addr, "xs serving");
    if let Some(c) = &console {
        let scheme = if tls { "https" } else { "http" };
        tracing::info!("web console: {scheme}://{c}/ (log in with the token)");
    }
    let stores = processor::start(
        stores::Stores::new(&opts, &shared, &tag, mount.daemon.stores.clone()),
        &xs::lifecycle::STORE,
        store.clone(),
        mount.daemon.ps.clone(),
        Placement::here(opts.name.as_deref().unwrap_or_default()),
    );
    let gateway = http.map(|(l, g)| {
        let (store, stats) = (mount.daemon.store.clone(), mount.daemon.gateway.clone());
        tokio::spawn(gateway::serve(l, store, stats, g, shutdown.clone()))
    });
    tokio::select! {
        _ = daemon::stopped(&mut shutdown) => {}
        reason = mount.failed() => {
            tracing::error!(%reason, "storage failed; xs stops");
            stores.stop().await;
            mount.abandon().await;
            remove_exposed(&expose_sock);
            return Err(ServeError::Internal(format!("storage failed: {reason}")));
        }
    };
    tracing::info!("xs stopping");
    stores.stop().await;
    let gateway = match gateway {
        Some(task) => task.await.ok(),
        None => None,
    };
    let stopped = mount.stop().await;
    // The gateway's requests waiting for a response end with the store's reads.
    if let Some(g) = gateway {
        if tokio::time::timeout(mount::SHUTDOWN_GRACE, g.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("gateway connections still open; closing them");
        }
    }
    remove_exposed(&expose_sock);
    stopped.inspect_err(|e| tracing::error!(error = %e, "xs stops anyway"))?;
    tracing::info!("xs stopped");
    Ok(())
}

/// Removes an `--expose` socket on the way out (the store's own is the mount's).
fn remove_exposed(exposed: &Option<PathBuf>) {
    if let Some(p) = exposed {
        let _ = std::fs::remove_file(p);
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
