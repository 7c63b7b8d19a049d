//! Listening: binds the owner-only Unix socket (replacing a stale one; the store lock already
//! proves no other daemon owns it) and an optional TCP address, and serves HTTP/1.1 on each.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use crate::Daemon;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;

use crate::error::ServeError;

/// hyper's read buffer, which bounds a request head; heads over `api::MAX_HEAD_BYTES` but
/// under this get a JSON 431 from the API, bigger ones a bare 431 from hyper.
const MAX_BUF_BYTES: usize = 256 * 1024;

pub enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

pub async fn bind(sock: &Path, expose: Option<&str>) -> Result<Vec<Listener>, ServeError> {
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
    let mut listeners = vec![Listener::Unix(unix)];
    if let Some(addr) = expose {
        let addr = if addr.starts_with(':') {
            format!("127.0.0.1{addr}")
        } else {
            addr.to_string()
        };
        let tcp = TcpListener::bind(&addr)
            .await
            .map_err(io(format!("binding {addr}")))?;
        let local = tcp.local_addr().map_err(io(format!("binding {addr}")))?;
        if !local.ip().is_loopback() {
            return Err(ServeError::Config(format!(
                "--expose {addr}: only loopback addresses can be exposed until token auth exists"
            )));
        }
        listeners.push(Listener::Tcp(tcp));
    }
    Ok(listeners)
}

/// Accepts connections on every listener until `shutdown` turns true. Returns the handle
/// that finishes the open connections (see `GracefulShutdown::shutdown`).
pub async fn serve(
    listeners: Vec<Listener>,
    daemon: Daemon,
    shutdown: watch::Receiver<bool>,
) -> GracefulShutdown {
    let graceful = Arc::new(GracefulShutdown::new());
    let mut tasks = tokio::task::JoinSet::new();
    for l in listeners {
        let daemon = daemon.clone();
        let mut shutdown = shutdown.clone();
        let graceful = graceful.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = crate::stopped(&mut shutdown) => return,
                    conn = accept(&l) => match conn {
                        Ok(Conn::Unix(s)) => spawn_conn(s, daemon.clone(), &graceful),
                        Ok(Conn::Tcp(s)) => spawn_conn(s, daemon.clone(), &graceful),
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                    },
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Arc::into_inner(graceful).expect("accept loops are done")
}

enum Conn {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

async fn accept(l: &Listener) -> std::io::Result<Conn> {
    match l {
        Listener::Unix(l) => l.accept().await.map(|(s, _)| Conn::Unix(s)),
        Listener::Tcp(l) => l.accept().await.map(|(s, _)| {
            let _ = s.set_nodelay(true);
            Conn::Tcp(s)
        }),
    }
}

fn spawn_conn<S>(stream: S, daemon: Daemon, graceful: &GracefulShutdown)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| crate::api::handle(daemon.clone(), req));
    let conn = http1::Builder::new()
        .max_buf_size(MAX_BUF_BYTES)
        .serve_connection(TokioIo::new(stream), service);
    let conn = graceful.watch(conn);
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    });
}
