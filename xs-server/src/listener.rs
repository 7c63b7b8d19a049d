//! Listening: binds the owner-only Unix socket (replacing a stale one; the store lock already
//! proves no other daemon owns it) and the TCP listeners (`--expose`, `--console`, optionally
//! over TLS), and serves HTTP/1.1 on each with that listener's access rules.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::api::Access;
use crate::auth::Auth;
use crate::daemon::Daemon;
use crate::error::ServeError;

/// hyper's read buffer, which bounds a request head; heads over `api::MAX_HEAD_BYTES` but
/// under this get a JSON 431 from the API, bigger ones a bare 431 from hyper.
const MAX_BUF_BYTES: usize = 256 * 1024;
/// How long a TCP client gets to finish its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a TCP listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The API (`--expose`), reads only when `read_only`.
    Api { read_only: bool },
    /// The web console (`--console`): its page, and the API read-only under `/api/`.
    Console,
}

pub enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener, Role),
}

/// What every TCP connection needs: the token, and TLS when configured.
#[derive(Clone)]
pub struct Guard {
    pub auth: Arc<Auth>,
    pub tls: Option<TlsAcceptor>,
}

pub fn bind_unix(sock: &Path) -> Result<Listener, ServeError> {
    let io = |context: String| move |source| ServeError::Io { context, source };
    if sock.exists() {
        // We hold the store lock, so whatever socket is here has no daemon behind it.
        tracing::info!(socket = %sock.display(), "replacing stale socket");
        std::fs::remove_file(sock)
            .map_err(io(format!("removing stale socket {}", sock.display())))?;
    }
    let unix =
        UnixListener::bind(sock).map_err(io(format!("binding socket {}", sock.display())))?;
    std::fs::set_permissions(sock, std::fs::Permissions::from_mode(0o600))
        .map_err(io(format!("setting mode of {}", sock.display())))?;
    Ok(Listener::Unix(unix))
}

/// Whether an `--expose` address is a Unix socket path (it has a `/`: `./xs.sock`,
/// `/run/xs.sock`) rather than `host:port`.
pub fn is_socket_path(addr: &str) -> bool {
    addr.contains('/')
}

/// Binds the `--expose` socket at `path` (mode 0600, no token, like `sock`). Unlike `sock`,
/// nothing proves an existing file there is ours: only a socket nobody answers on is
/// replaced; anything else is refused.
pub fn bind_unix_exposed(path: &Path) -> Result<Listener, ServeError> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(m) = std::fs::symlink_metadata(path) {
        let stale =
            m.file_type().is_socket() && std::os::unix::net::UnixStream::connect(path).is_err();
        if !stale {
            return Err(ServeError::Config(format!(
                "--expose {}: something is already there (a live socket or another file)",
                path.display()
            )));
        }
    }
    bind_unix(path)
}

/// Binds a TCP address (`host:port`, or `:port` for 127.0.0.1); returns the listener and the
/// address it is bound to (port 0 picks a free one).
pub async fn bind_tcp(addr: &str, role: Role) -> Result<(Listener, SocketAddr), ServeError> {
    let io = |context: String| move |source| ServeError::Io { context, source };
    let addr = if addr.starts_with(':') {
        format!("127.0.0.1{addr}")
    } else {
        addr.to_string()
    };
    let tcp = TcpListener::bind(&addr)
        .await
        .map_err(io(format!("binding {addr}")))?;
    let local = tcp.local_addr().map_err(io(format!("binding {addr}")))?;
    Ok((Listener::Tcp(tcp, role), local))
}

/// Accepts connections on every listener until `shutdown` turns true. Returns the handle
/// that finishes the open connections (see `GracefulShutdown::shutdown`).
pub async fn serve(
    listeners: Vec<Listener>,
    daemon: Daemon,
    guard: Option<Guard>,
    shutdown: watch::Receiver<bool>,
) -> GracefulShutdown {
    let graceful = Arc::new(GracefulShutdown::new());
    let mut tasks = tokio::task::JoinSet::new();
    for l in listeners {
        let daemon = daemon.clone();
        let mut shutdown = shutdown.clone();
        let graceful = graceful.clone();
        let guard = guard.clone();
        tasks.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = crate::daemon::stopped(&mut shutdown) => return,
                    a = accept(&l) => a,
                };
                match (accepted, &guard) {
                    (Ok(Conn::Unix(s)), _) => {
                        spawn_conn(s, daemon.clone(), Service::Api(Access::Owner), &graceful)
                    }
                    (Ok(Conn::Tcp(s, role)), Some(guard)) => {
                        let service = match role {
                            Role::Api { read_only } => Service::Api(Access::Token {
                                auth: guard.auth.clone(),
                                read_only,
                                cookies: false,
                            }),
                            Role::Console => Service::Console {
                                auth: guard.auth.clone(),
                                secure: guard.tls.is_some(),
                            },
                        };
                        match &guard.tls {
                            None => spawn_conn(s, daemon.clone(), service, &graceful),
                            Some(tls) => {
                                spawn_tls(s, tls.clone(), daemon.clone(), service, &graceful)
                            }
                        }
                    }
                    (Ok(Conn::Tcp(..)), None) => {
                        tracing::error!("a TCP listener without a token: refusing the connection");
                    }
                    (Err(e), _) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Arc::into_inner(graceful).expect("accept loops are done")
}

enum Conn {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream, Role),
}

/// What a connection's requests go to.
#[derive(Clone)]
enum Service {
    Api(Access),
    Console { auth: Arc<Auth>, secure: bool },
}

async fn accept(l: &Listener) -> std::io::Result<Conn> {
    match l {
        Listener::Unix(l) => l.accept().await.map(|(s, _)| Conn::Unix(s)),
        Listener::Tcp(l, role) => l.accept().await.map(|(s, _)| {
            let _ = s.set_nodelay(true);
            Conn::Tcp(s, *role)
        }),
    }
}

/// Completes the TLS handshake off the accept loop, then serves the connection.
fn spawn_tls(
    stream: tokio::net::TcpStream,
    tls: TlsAcceptor,
    daemon: Daemon,
    service: Service,
    graceful: &Arc<GracefulShutdown>,
) {
    let graceful = graceful.clone();
    tokio::spawn(async move {
        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
            Ok(Ok(s)) => spawn_conn(s, daemon, service, &graceful),
            Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!("TLS handshake timed out"),
        }
    });
}

fn spawn_conn<S>(stream: S, daemon: Daemon, service: Service, graceful: &GracefulShutdown)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let handler = move |req| {
        let daemon = daemon.clone();
        let service = service.clone();
        async move {
            match service {
                Service::Api(access) => crate::api::handle(daemon, req, access).await,
                Service::Console { auth, secure } => {
                    crate::console::handle(daemon, req, auth, secure).await
                }
            }
        }
    };
    serve_http1(stream, handler, graceful, "connection");
}

/// Serves HTTP/1.1 on one accepted connection until it ends or the daemon stops (`graceful`);
/// `what` names the connection in the log.
pub(crate) fn serve_http1<S, F, R>(
    stream: S,
    handler: F,
    graceful: &GracefulShutdown,
    what: &'static str,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(hyper::Request<hyper::body::Incoming>) -> R + Send + 'static,
    R: std::future::Future<
            Output = Result<hyper::Response<crate::body::Body>, std::convert::Infallible>,
        > + Send
        + 'static,
{
    let conn = http1::Builder::new()
        .max_buf_size(MAX_BUF_BYTES)
        .serve_connection(TokioIo::new(stream), service_fn(handler));
    let conn = graceful.watch(conn);
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "{what} ended with an error");
        }
    });
}
