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
pub mod orphans;
// Nushell's own error type (`ShellError`, ~200 bytes) is what its commands return.
#[cfg(feature = "nu")]
#[allow(clippy::result_large_err)]
pub mod nu;
mod processor;
mod ps;
mod tls;
mod webhook;

use std::path::PathBuf;
use std::time::Duration;

pub use daemon::Daemon;
pub use error::ServeError;
use tokio::sync::watch;
use xs::{LocalOptions, NewFrame, Store};

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
    let store = tokio::task::spawn_blocking(move || Store::open_local(&store_path, store_opts))
        .await
        .map_err(|e| ServeError::Internal(format!("opening store: {e}")))??;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = shutdown_tx.send(true);
    });
    run(store, opts, shutdown_rx).await
}

/// Serves `store` until `shutdown` turns true. Tests and embedders call this directly.
pub async fn run(
    store: Store,
    opts: ServeOptions,
    shutdown: watch::Receiver<bool>,
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
    let daemon = Daemon::new(store.clone(), &opts.store)?;
    let sock = opts.store.join("sock");
    let mut listeners = vec![listener::bind_unix(&sock)?];
    let expose_sock = opts.expose_socket();
    if let Some(path) = &expose_sock {
        listeners.push(listener::bind_unix_exposed(path)?);
    }
    let mut bind = async |addr: &Option<String>, role| -> Result<Option<String>, ServeError> {
        let Some(addr) = addr else { return Ok(None) };
        if listener::is_socket_path(addr) {
            return Ok(Some(addr.clone()));
        }
        let (l, local) = listener::bind_tcp(addr, role).await?;
        listeners.push(l);
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

    let start = NewFrame {
        meta: Some(serde_json::json!({
            "version": xs::VERSION,
            "expose": expose,
            "expose_read_only": opts.expose_read_only,
            "console": console,
            "tls": tls,
            "http": http_addr,
        })),
        ..NewFrame::new("xs.start")
    };
    store.append(start).await?;
    tracing::info!(store = %opts.store.display(), socket = %sock.display(), expose = ?expose, console = ?console, tls, http = ?http_addr, "xs serving");
    if let Some(c) = &console {
        let scheme = if tls { "https" } else { "http" };
        tracing::info!("web console: {scheme}://{c}/ (log in with the token)");
    }

    // Processes an earlier run's generators left behind (the daemon and its guard were
    // killed) end before the generators start again: never two copies.
    let p = opts.store.clone();
    let leftovers = tokio::task::spawn_blocking(move || orphans::sweep_store(&p))
        .await
        .unwrap_or(0);
    if leftovers > 0 {
        tracing::warn!(
            processes = leftovers,
            "killed generator processes left behind by an earlier run"
        );
    }
    let _guard = match &opts.guard_exe {
        Some(exe) => match orphans::Guard::spawn(exe, &daemon.generator_tag) {
            Ok(g) => Some(g),
            Err(e) => {
                tracing::warn!(error = %e, exe = %exe.display(), "could not start the generator guard");
                None
            }
        },
        None => None,
    };
    let processors = start_processors(&daemon);
    let gateway = http.map(|(l, g)| {
        let (store, stats) = (daemon.store.clone(), daemon.gateway.clone());
        tokio::spawn(gateway::serve(l, store, stats, g, shutdown.clone()))
    });
    let accept = listener::serve(listeners, daemon.clone(), guard, shutdown.clone());
    let graceful = tokio::select! {
        g = accept => g,
        reason = store.failed() => {
            tracing::error!(%reason, "storage failed; xs stops");
            remove_sockets(&sock, &expose_sock);
            return Err(ServeError::Internal(format!("storage failed: {reason}")));
        }
    };
    let gateway = match gateway {
        Some(task) => task.await.ok(),
        None => None,
    };
    for p in processors {
        p.stop().await;
    }

    tracing::info!("xs stopping");
    if let Err(e) = store.append(NewFrame::new("xs.stopping")).await {
        tracing::warn!(error = %e, "could not append xs.stopping");
    }
    // Closing the store ends every follow stream after its last frames; then the open
    // connections finish their answers (bounded, so a stuck client cannot hold us).
    if tokio::time::timeout(CLOSE_GRACE, store.close())
        .await
        .is_err()
    {
        remove_sockets(&sock, &expose_sock);
        tracing::error!("the store did not close within {CLOSE_GRACE:?}; xs stops anyway");
        return Err(ServeError::Internal(format!(
            "the store did not close within {CLOSE_GRACE:?} (is its directory still there?)"
        )));
    }
    let finish = async {
        if let Some(g) = gateway {
            g.shutdown().await;
        }
        graceful.shutdown().await;
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, finish).await.is_err() {
        tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; closing them");
    }
    remove_sockets(&sock, &expose_sock);
    tracing::info!("xs stopped");
    Ok(())
}

/// Removes the daemon's sockets (its own and an `--expose` one) on the way out.
fn remove_sockets(sock: &std::path::Path, exposed: &Option<PathBuf>) {
    let _ = std::fs::remove_file(sock);
    if let Some(p) = exposed {
        let _ = std::fs::remove_file(p);
    }
}

/// How long the store gets to commit what is queued and close when the daemon stops.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// How long open connections get to finish when the daemon stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Starts the dispatcher of every kind of processor (ours and cross.stream's words), and the
/// one answering creates of unknown kinds.
fn start_processors(d: &Daemon) -> Vec<processor::Dispatcher> {
    use xs::lifecycle as words;
    let (store, ps) = (&d.store, &d.ps);
    #[allow(unused_mut)]
    let mut all = vec![
        processor::unknown::start(store.clone()),
        processor::start(webhook::Webhook, &words::WEBHOOK, store.clone(), ps.clone()),
    ];
    #[cfg(feature = "nu")]
    {
        use processor::{action, generator, handler, Env};
        let env = Env::new(d.engine.clone(), d.generator_tag.clone());
        for vocab in [&words::HANDLER, &words::ACTOR] {
            let kind = handler::Handler(env.clone());
            all.push(processor::start(kind, vocab, store.clone(), ps.clone()));
        }
        for vocab in [&words::GENERATOR, &words::SERVICE] {
            let kind = generator::Generator(env.clone());
            all.push(processor::start(kind, vocab, store.clone(), ps.clone()));
        }
        let kind = action::Action(env);
        all.push(processor::start(
            kind,
            &words::ACTION,
            store.clone(),
            ps.clone(),
        ));
    }
    all
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
