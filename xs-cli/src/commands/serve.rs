//! `xs serve [STORE]`: runs the daemon on a store, logging to stderr (`RUST_LOG`, default
//! `info`; plain lines without timestamps under systemd); everything else is
//! `xs_server::serve`.

use std::io::IsTerminal;

use anyhow::{anyhow, Result};
use tracing_subscriber::EnvFilter;

use crate::addr;

#[derive(clap::Args)]
pub struct Args {
    /// Store directory, created if missing (default: $XS_ADDR if it is a store directory,
    /// else ~/.local/share/xs/store)
    #[arg(value_name = "STORE")]
    store: Option<String>,
    /// Also serve the API on TCP at this address (:PORT or host:port); clients need the
    /// token (see --token-file)
    #[arg(long, value_name = "ADDR")]
    expose: Option<String>,
    /// Allow only reads on the --expose address (403 for everything else)
    #[arg(long)]
    expose_read_only: bool,
    /// Serve the web console (read-only, token login) at this address (:PORT or host:port)
    #[arg(long, value_name = "ADDR")]
    console: Option<String>,
    /// Serve --expose and --console over HTTPS with this PEM certificate chain
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Free space to keep on the store's filesystem: below it, appends fail with 507
    /// instead of filling the disk (default: 64 MiB)
    #[arg(long, value_name = "BYTES", env = "XS_MIN_FREE_SPACE")]
    min_free_space: Option<u64>,
    /// When appends reach the disk: always (each batch is fsynced before it is answered),
    /// interval:<ms> (written at once, fsynced every <ms>), never (left to the OS)
    #[arg(long, value_name = "MODE", default_value = "always")]
    fsync: xs::Fsync,
    /// How often expired (time:) frames are removed: 500ms, 30s, 2m, or milliseconds
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_sweep)]
    ttl_sweep: std::time::Duration,
    /// Serve HTTP on this address (:PORT or host:port): each request becomes an
    /// `http.request` frame, answered by the `http.response` frame that names it. No token:
    /// anyone who reaches the address can send requests
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
    /// How long a --http request waits for its response before a 504: 500ms, 30s, 2m, or
    /// milliseconds
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = xs_server::gateway::parse_timeout)]
    http_timeout: std::time::Duration,
    /// TTL of the `http.request` frames (forever, time:<ms>, last:<n>; not ephemeral)
    #[arg(long, value_name = "TTL", default_value = "forever", value_parser = parse_http_ttl)]
    http_ttl: xs::Ttl,
    /// Keep the stream in a NATS JetStream cluster (comma-separated server URLs, nats:// or
    /// tls://); STORE then holds this daemon's local copy. Needs nats-server >= 2.12.3 with
    /// `sync_interval: always` (see the README)
    #[arg(long, value_name = "URLS", env = "XS_NATS")]
    nats: Option<String>,
    /// The JetStream stream's name
    #[arg(long, value_name = "NAME", default_value = "XS", requires = "nats")]
    nats_stream: String,
    /// NATS credentials file (JWT + NKey seed)
    #[arg(
        long,
        value_name = "FILE",
        requires = "nats",
        conflicts_with = "nats_token_file"
    )]
    nats_creds: Option<std::path::PathBuf>,
    /// File holding the NATS server token
    #[arg(long, value_name = "FILE", requires = "nats")]
    nats_token_file: Option<std::path::PathBuf>,
    /// CA certificate (PEM) to check the NATS servers' TLS certificates with
    #[arg(long, value_name = "FILE", requires = "nats")]
    nats_tls_ca: Option<std::path::PathBuf>,
    /// With --nats: run no processors in this daemon (serve reads and appends only). By
    /// default each processor runs on one live daemon of the stream, by lease
    #[arg(long, requires = "nats", conflicts_with = "processors")]
    no_processors: bool,
    /// With --nats: the default (processors are shared by lease); kept for old scripts
    #[arg(long, requires = "nats", hide = true)]
    processors: bool,
    /// This daemon's name, in `xs.start` and `xs ps`; on a shared stream it holds the
    /// leases of the processors it runs, so give each daemon its own (default: the host name
    /// and a random suffix; letters, digits, '-' and '_')
    #[arg(long, value_name = "NAME", env = "XS_NAME")]
    name: Option<String>,
}

fn parse_sweep(s: &str) -> Result<std::time::Duration, String> {
    xs_server::gateway::parse_timeout(s)
}

fn parse_http_ttl(s: &str) -> Result<xs::Ttl, String> {
    let ttl: xs::Ttl = s.parse().map_err(|e: xs::Error| e.to_string())?;
    xs_server::gateway::check_ttl(ttl)
}

pub async fn run(args: Args, token_file: Option<std::path::PathBuf>) -> Result<()> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,fjall=warn,lsm_tree=warn"));
    let fmt = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter);
    // Under systemd (stderr connected to the journal, which stamps each line itself): no
    // timestamps and no colours, one `LEVEL target: message key=value` line per event.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        fmt.without_time().with_ansi(false).init();
    } else {
        fmt.init();
    }
    let store = addr::serve_store(args.store.as_deref())?;
    xs_server::serve(xs_server::ServeOptions {
        store,
        expose: args.expose,
        expose_read_only: args.expose_read_only,
        console: args.console,
        token_file,
        tls: args
            .tls_cert
            .zip(args.tls_key)
            .map(|(cert, key)| xs_server::TlsFiles { cert, key }),
        min_free_space: args.min_free_space,
        fsync: args.fsync,
        ttl_sweep: Some(args.ttl_sweep),
        http: args.http.map(|addr| xs_server::gateway::GatewayOptions {
            addr,
            timeout: args.http_timeout,
            ttl: args.http_ttl,
        }),
        guard_exe: std::env::current_exe().ok(),
        nats: args.nats.map(|urls| xs_server::NatsOptions {
            urls: vec![urls],
            stream: Some(args.nats_stream),
            creds_file: args.nats_creds,
            token_file: args.nats_token_file,
            tls_ca: args.nats_tls_ca,
            no_processors: args.no_processors,
        }),
        name: args.name,
    })
    .await
    .map_err(|e| anyhow!("{e}"))
}
