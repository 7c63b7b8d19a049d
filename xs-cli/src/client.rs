//! A small HTTP/1.1 client for the daemon over its Unix socket or TCP (HTTPS with rustls): one
//! connection per request, the token on TCP, request bodies streamed from stdin, responses
//! streamed to stdout chunk by chunk.

use std::fmt;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::{anyhow, Context, Result};
use bytes::{Bytes, BytesMut};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, AUTHORIZATION, HOST};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, Interest};
use tokio::net::unix::pipe;
use tokio::net::{TcpStream, UnixStream};

use crate::addr::Addr;

pub type Body = UnsyncBoxBody<Bytes, io::Error>;

const STDIN_CHUNK: usize = 64 * 1024;
const ERROR_BODY_MAX: usize = 64 * 1024;

/// A request with no body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A request body held whole in memory.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A request body that streams stdin until EOF, one chunk at a time.
pub fn stdin() -> Body {
    reader(tokio::io::stdin(), "stdin".into())
}

/// A request body that streams `r` (called `what` in errors) until EOF, one chunk at a time.
pub fn reader<R: AsyncRead + Unpin + Send + 'static>(r: R, what: String) -> Body {
    let chunks = futures::stream::unfold(Some((r, what)), |state| async move {
        let (mut r, what) = state?;
        let mut buf = BytesMut::with_capacity(STDIN_CHUNK);
        match r.read_buf(&mut buf).await {
            Ok(0) => None,
            Ok(_) => Some((Ok(Frame::data(buf.freeze())), Some((r, what)))),
            Err(e) => Some((
                Err(io::Error::new(e.kind(), format!("cannot read {what}: {e}"))),
                None,
            )),
        }
    });
    StreamBody::new(chunks).boxed_unsync()
}

/// A non-2xx answer from the daemon, with the message from its `{"error": ...}` body.
#[derive(Debug)]
pub struct ServerError {
    pub status: StatusCode,
    pub message: String,
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ServerError {}

/// Whether `err` is the daemon answering with `status`.
pub fn is_status(err: &anyhow::Error, status: StatusCode) -> bool {
    err.downcast_ref::<ServerError>()
        .is_some_and(|e| e.status == status)
}

/// A Nushell report (a script's error with its position and source lines): printed as it
/// is after `xs: `, not folded into one line.
#[derive(Debug)]
pub struct Report(pub String);

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Report {}

/// Writing to stdout failed because its reader went away (`xs cat | head`): not an error.
#[derive(Debug)]
pub struct StdoutClosed;

impl fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stdout is closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// How the client authenticates to and trusts TCP daemons (the global flags).
#[derive(Debug, Default, Clone)]
pub struct Settings {
    /// `--token-file`: wins over `$XS_TOKEN` and `$XS_TOKEN_FILE`.
    pub token_file: Option<PathBuf>,
    /// `--cacert` / `$XS_CACERT`: PEM certificates trusted besides the system's roots.
    pub cacert: Option<PathBuf>,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// Sets the [`Settings`] for every request of this process (once, from `main`).
pub fn configure(settings: Settings) {
    let _ = SETTINGS.set(settings);
}

fn settings() -> &'static Settings {
    SETTINGS.get_or_init(Settings::default)
}

/// The token for TCP addresses: `--token-file`, else `$XS_TOKEN`, else `$XS_TOKEN_FILE`.
fn token() -> Result<Option<String>> {
    let from_file = |path: &Path, what: &str| -> Result<Option<String>> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the token file {} ({what})", path.display()))?;
        match text.trim() {
            "" => Err(anyhow!(
                "the token file {} ({what}) is empty",
                path.display()
            )),
            t => Ok(Some(t.to_string())),
        }
    };
    if let Some(path) = &settings().token_file {
        return from_file(path, "--token-file");
    }
    if let Some(t) = std::env::var("XS_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
    {
        return Ok(Some(t.trim().to_string()));
    }
    match std::env::var_os("XS_TOKEN_FILE").filter(|p| !p.is_empty()) {
        Some(p) => from_file(Path::new(&p), "$XS_TOKEN_FILE"),
        None => Ok(None),
    }
}

/// The TLS client configuration: the system's roots, plus `--cacert` / `$XS_CACERT`.
fn tls_config() -> Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(native.certs);
    if let Some(path) = &settings().cacert {
        let what = || {
            format!(
                "cannot read the CA certificates in {} (--cacert)",
                path.display()
            )
        };
        let certs = CertificateDer::pem_file_iter(path)
            .with_context(what)?
            .collect::<Result<Vec<_>, _>>()
            .with_context(what)?;
        if certs.is_empty() {
            anyhow::bail!("{} (--cacert) has no PEM certificate", path.display());
        }
        for c in certs {
            roots.add(c).with_context(what)?;
        }
    } else if added == 0 {
        tracing::debug!("no system CA certificates found");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS setup")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Connects over TLS to `host_port`, checking the certificate names its host.
async fn tls_connect(
    host_port: &str,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let host = host_port
        .rsplit_once(':')
        .map_or(host_port, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| anyhow!("invalid TLS server name {host:?}: {e}"))?;
    tokio_rustls::TlsConnector::from(tls_config()?)
        .connect(name, tcp)
        .await
        .map_err(|e| {
            let hint = if e.to_string().contains("certificate") {
                " (for a self-signed certificate, pass its CA with --cacert or $XS_CACERT)"
            } else {
                ""
            };
            anyhow!("TLS handshake with the xs daemon at https://{host_port} failed: {e}{hint}")
        })
}

pub struct Client {
    addr: Addr,
}

impl Client {
    pub fn new(addr: Addr) -> Client {
        Client { addr }
    }

    /// Sends a request without a body and streams the answer to stdout (see [`print`]).
    pub async fn print(&self, method: hyper::Method, uri: &str, line: bool) -> Result<u64> {
        let req = Request::builder().method(method).uri(uri).body(empty())?;
        print(self.send(req).await?, line).await
    }

    /// Sends `req` on a new connection; a non-2xx answer is a [`ServerError`].
    pub async fn send(&self, mut req: Request<Body>) -> Result<Response<Incoming>> {
        let host = match &self.addr {
            Addr::Unix { .. } => "localhost",
            Addr::Tcp { host_port, .. } => host_port,
        };
        req.headers_mut().insert(HOST, HeaderValue::from_str(host)?);
        let mut sent_token = false;
        if let Addr::Tcp { .. } = self.addr {
            if let Some(token) = token()? {
                let value = HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| anyhow!("the token is not a valid header value"))?;
                req.headers_mut().insert(AUTHORIZATION, value);
                sent_token = true;
            }
        }
        let mut sender = match &self.addr {
            Addr::Unix { socket, .. } => {
                let stream = UnixStream::connect(socket).await;
                handshake(stream.map_err(|e| self.connect_error(e))?).await?
            }
            Addr::Tcp { host_port, tls } => {
                let stream = TcpStream::connect(host_port.as_str()).await;
                let stream = stream.map_err(|e| self.connect_error(e))?;
                if *tls {
                    handshake(tls_connect(host_port, stream).await?).await?
                } else {
                    handshake(stream).await?
                }
            }
        };
        let resp = sender.send_request(req).await.map_err(|e| {
            anyhow!(
                "request to the xs daemon at {} failed: {}",
                self.addr,
                describe(&e)
            )
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let mut err = server_error(resp).await;
        if err.status == StatusCode::UNAUTHORIZED {
            err.message = if sent_token {
                format!(
                    "the xs daemon at {} refused the token ({}): set XS_TOKEN, or \
                     --token-file / XS_TOKEN_FILE, to the daemon's token file (<store>/token)",
                    self.addr, err.message
                )
            } else {
                format!(
                    "the xs daemon at {} needs a token: set XS_TOKEN, or --token-file / \
                     XS_TOKEN_FILE, to the daemon's token file (<store>/token)",
                    self.addr
                )
            };
        }
        Err(err.into())
    }

    fn connect_error(&self, e: io::Error) -> anyhow::Error {
        match (&self.addr, e.kind()) {
            (
                Addr::Unix { store, .. },
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused,
            ) => anyhow!(
                "no xs daemon at {} (start one with: xs serve {})",
                self.addr,
                store.display()
            ),
            (Addr::Tcp { host_port, tls }, io::ErrorKind::ConnectionRefused) => anyhow!(
                "no xs daemon at {} (start one with: xs serve <store> --expose {host_port}{})",
                self.addr,
                if *tls {
                    " --tls-cert CERT --tls-key KEY"
                } else {
                    ""
                }
            ),
            _ => anyhow!("cannot connect to the xs daemon at {}: {e}", self.addr),
        }
    }
}

async fn handshake<T>(io: T) -> Result<hyper::client::conn::http1::SendRequest<Body>>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| anyhow!("HTTP handshake with the xs daemon failed: {}", describe(&e)))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn server_error(resp: Response<Incoming>) -> ServerError {
    let status = resp.status();
    let body = Limited::new(resp.into_body(), ERROR_BODY_MAX)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let from_json = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("error")?.as_str().map(str::to_string));
    let message = match from_json {
        Some(m) => m,
        None => {
            let text = String::from_utf8_lossy(&body);
            match text.trim() {
                "" => format!("the xs daemon answered {status}"),
                t => format!("the xs daemon answered {status}: {t}"),
            }
        }
    };
    ServerError { status, message }
}

/// A hyper error and its causes on one line.
fn describe(e: &hyper::Error) -> String {
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

/// Streams a response body to stdout, flushing after each chunk. With `line`, a body that does
/// not end in a newline gets one. Returns the number of bytes of the body.
pub async fn print(resp: Response<Incoming>, line: bool) -> Result<u64> {
    let mut body = resp.into_body();
    let mut written = 0u64;
    let mut last = b'\n';
    let closed = stdout_closed();
    tokio::pin!(closed);
    loop {
        let frame = tokio::select! {
            biased;
            frame = body.frame() => frame,
            () = &mut closed => return Err(StdoutClosed.into()),
        };
        let Some(frame) = frame else { break };
        let frame =
            frame.map_err(|e| anyhow!("lost the connection to the xs daemon: {}", describe(&e)))?;
        if let Ok(data) = frame.into_data() {
            if let Some(&b) = data.last() {
                write_stdout(&data)?;
                written += data.len() as u64;
                last = b;
            }
        }
    }
    if line && last != b'\n' {
        write_stdout(b"\n")?;
    }
    Ok(written)
}

/// Resolves when stdout is a pipe whose reader has gone away, so that `xs cat -f | head -1`
/// ends without waiting for another frame to write. Never resolves otherwise.
async fn stdout_closed() {
    if let Some(pipe) = stdout_pipe() {
        while let Ok(ready) = pipe.ready(Interest::ERROR).await {
            if ready.is_error() {
                return;
            }
        }
    }
    std::future::pending().await
}

/// Stdout, watched by the reactor for errors, if it is a pipe (left in blocking mode).
fn stdout_pipe() -> Option<pipe::Sender> {
    let fd = io::stdout().as_fd().try_clone_to_owned().ok()?;
    let file = std::fs::File::from(fd);
    if !file.metadata().ok()?.file_type().is_fifo() {
        return None;
    }
    pipe::Sender::from_file_unchecked(file).ok()
}

/// Writes to stdout and flushes; a closed pipe becomes [`StdoutClosed`].
pub fn write_stdout(buf: &[u8]) -> Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(buf).and_then(|()| out.flush()).map_err(|e| {
        if e.kind() == io::ErrorKind::BrokenPipe {
            anyhow::Error::new(StdoutClosed)
        } else {
            anyhow!("cannot write to stdout: {e}")
        }
    })
}
