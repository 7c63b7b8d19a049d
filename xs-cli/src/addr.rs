//! Where the daemon is: parsing an address (store dir, socket path, `:PORT`, `host:port`,
//! `http://host:port`, `https://host:port`), the default store, the `[ADDR]` argument the
//! commands share, and which positionals of a command are addresses.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    /// A Unix socket and the store it belongs to.
    Unix { socket: PathBuf, store: PathBuf },
    /// A TCP `host:port`, over TLS when `tls`.
    Tcp { host_port: String, tls: bool },
}

impl Addr {
    pub fn parse(s: &str) -> Result<Addr> {
        if s.is_empty() {
            bail!("the address is empty");
        }
        for (scheme, tls, default_port) in [("http://", false, 80), ("https://", true, 443)] {
            if !starts_with_ci(s, scheme) {
                continue;
            }
            let authority = s[scheme.len()..].split('/').next().unwrap_or("");
            if authority.is_empty() {
                bail!("invalid address {s:?}: no host");
            }
            let host_port = match authority.rsplit_once(':') {
                Some((host, port)) if !host.ends_with(':') && !port.ends_with(']') => {
                    format!("{host}:{}", parse_port(port, s)?)
                }
                _ => format!("{authority}:{default_port}"),
            };
            return Ok(Addr::Tcp { host_port, tls });
        }
        if let Some(port) = s.strip_prefix(':') {
            return Ok(Addr::tcp(format!("127.0.0.1:{}", parse_port(port, s)?)));
        }
        let path = expand_tilde(s);
        let path_syntax = s.contains('/') || s.starts_with('.') || s.starts_with('~');
        if !path_syntax && !path.exists() {
            if let Some((host, port)) = s.rsplit_once(':') {
                if host.is_empty() {
                    bail!("invalid address {s:?}: no host");
                }
                return Ok(Addr::tcp(format!("{host}:{}", parse_port(port, s)?)));
            }
        }
        if path.exists() && !path.is_dir() {
            let store = path.parent().map(Path::to_path_buf).unwrap_or_default();
            return Ok(Addr::Unix {
                socket: path,
                store,
            });
        }
        Ok(Addr::store(path))
    }

    /// A plain-HTTP TCP address.
    pub fn tcp(host_port: String) -> Addr {
        Addr::Tcp {
            host_port,
            tls: false,
        }
    }

    /// The address of the daemon serving the store at `dir`.
    pub fn store(dir: PathBuf) -> Addr {
        Addr::Unix {
            socket: dir.join("sock"),
            store: dir,
        }
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Unix { socket, .. } => write!(f, "{}", socket.display()),
            Addr::Tcp {
                host_port,
                tls: false,
            } => f.write_str(host_port),
            Addr::Tcp {
                host_port,
                tls: true,
            } => write!(f, "https://{host_port}"),
        }
    }
}

/// `$XS_ADDR`, else the default store.
pub fn default_addr() -> Result<Addr> {
    match std::env::var("XS_ADDR") {
        Ok(v) if !v.is_empty() => Addr::parse(&v).context("in $XS_ADDR"),
        _ => Ok(Addr::store(default_store()?)),
    }
}

/// `~/.local/share/xs/store`.
pub fn default_store() -> Result<PathBuf> {
    match std::env::var_os("HOME") {
        Some(home) if !home.is_empty() => Ok(PathBuf::from(home).join(".local/share/xs/store")),
        _ => bail!("$HOME is not set, so there is no default store: give a store path"),
    }
}

/// The store `xs serve` runs on: the argument, else `$XS_ADDR` if it names a store directory,
/// else the default store.
pub fn serve_store(arg: Option<&str>) -> Result<PathBuf> {
    if let Some(s) = arg {
        return Ok(expand_tilde(s));
    }
    if let Ok(v) = std::env::var("XS_ADDR") {
        if let Ok(Addr::Unix { socket, store }) = Addr::parse(&v) {
            if socket == store.join("sock") {
                return Ok(store);
            }
        }
    }
    default_store()
}

/// The optional `[ADDR]` positional every client command starts with, flattened into each
/// command's `Args` (`#[command(flatten)]`), so it is declared and documented once.
#[derive(clap::Args, Debug)]
pub struct AddrArg {
    /// Store dir, socket, :PORT or host:port (default: $XS_ADDR, else ~/.local/share/xs/store)
    #[arg(value_name = "ADDR")]
    pub addr: Option<String>,
}

impl AddrArg {
    /// `[ADDR]`: the address given, else the default.
    pub fn or_default(self) -> Result<Addr> {
        match self.addr {
            Some(a) => Addr::parse(&a),
            None => default_addr(),
        }
    }

    /// `[ADDR] X`: with two positionals the first is the address; with one it is X.
    pub fn and(self, second: Option<String>, what: &str) -> Result<(Addr, String)> {
        match (self.addr, second) {
            (Some(addr), Some(x)) => Ok((Addr::parse(&addr)?, x)),
            (Some(x), None) => Ok((default_addr()?, x)),
            _ => bail!("missing {what} (the arguments are [ADDR] {what})"),
        }
    }
}

/// `[ADDR] [TOPIC] [N]`: a trailing all-digit positional is N; of the rest, two are ADDR and
/// TOPIC, and one is ADDR if it looks like a path or address, else TOPIC.
pub fn last_positionals(mut pos: Vec<String>) -> Result<(Addr, Option<String>, Option<usize>)> {
    let mut n = None;
    if let Some(last) = pos.last() {
        if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
            n = Some(
                last.parse()
                    .with_context(|| format!("invalid count {last:?}: too large"))?,
            );
            pos.pop();
        }
    }
    let mut rest = pos.into_iter();
    let (addr, topic) = match (rest.next(), rest.next(), rest.next()) {
        (None, _, _) => (default_addr()?, None),
        (Some(a), None, _) if is_path_like(&a) || Path::new(&a).exists() => {
            (Addr::parse(&a)?, None)
        }
        (Some(t), None, _) => (default_addr()?, Some(t)),
        (Some(a), Some(t), None) => (Addr::parse(&a)?, Some(t)),
        (Some(_), Some(_), Some(x)) => {
            bail!("unexpected argument {x:?}: expected [ADDR] [TOPIC] [N]")
        }
    };
    Ok((addr, topic, n))
}

fn is_path_like(s: &str) -> bool {
    s.contains('/') || s.contains(':') || s.starts_with('.') || s.starts_with('~')
}

fn parse_port(port: &str, addr: &str) -> Result<u16> {
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => bail!("invalid address {addr:?}: the port must be a number from 1 to 65535"),
    }
}

fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

fn expand_tilde(s: &str) -> PathBuf {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty());
    match (s.strip_prefix('~'), home) {
        (Some(""), Some(home)) => PathBuf::from(home),
        (Some(rest), Some(home)) if rest.starts_with('/') => {
            PathBuf::from(home).join(rest.trim_start_matches('/'))
        }
        _ => PathBuf::from(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_forms() {
        let tcp = |s: &str| Addr::tcp(s.into());
        let tls = |s: &str| Addr::Tcp {
            host_port: s.into(),
            tls: true,
        };
        assert_eq!(Addr::parse(":3021").unwrap(), tcp("127.0.0.1:3021"));
        assert_eq!(
            Addr::parse("example.com:80").unwrap(),
            tcp("example.com:80")
        );
        assert_eq!(Addr::parse("http://h:8/x").unwrap(), tcp("h:8"));
        assert_eq!(Addr::parse("http://h").unwrap(), tcp("h:80"));
        assert_eq!(Addr::parse("http://[::1]:9").unwrap(), tcp("[::1]:9"));
        assert_eq!(Addr::parse("http://[::1]").unwrap(), tcp("[::1]:80"));
        assert_eq!(Addr::parse("https://h:1").unwrap(), tls("h:1"));
        assert_eq!(Addr::parse("HTTPS://h").unwrap(), tls("h:443"));
        assert_eq!(
            Addr::parse("https://h:1").unwrap().to_string(),
            "https://h:1"
        );
        assert!(Addr::parse("https://").is_err());
        assert!(Addr::parse("https://h:x").is_err());
        assert!(Addr::parse(":x").is_err());
        assert!(Addr::parse("h:0").is_err());
    }

    #[test]
    fn path_forms() {
        let dir = std::env::temp_dir();
        assert_eq!(
            Addr::parse(dir.to_str().unwrap()).unwrap(),
            Addr::Unix {
                socket: dir.join("sock"),
                store: dir.clone()
            }
        );
        assert_eq!(
            Addr::parse("./nope").unwrap(),
            Addr::Unix {
                socket: "./nope/sock".into(),
                store: "./nope".into()
            }
        );
        assert_eq!(Addr::parse("store").unwrap(), Addr::store("store".into()));
    }

    #[test]
    fn last_rules() {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (a, t, n) = last_positionals(v(&["./s", "chat", "3"])).unwrap();
        assert_eq!(
            (a, t, n),
            (Addr::store("./s".into()), Some("chat".into()), Some(3))
        );
        let (a, t, n) = last_positionals(v(&["./s"])).unwrap();
        assert_eq!((a, t, n), (Addr::store("./s".into()), None, None));
        let (_, t, n) = last_positionals(v(&["chat", "2"])).unwrap();
        assert_eq!((t, n), (Some("chat".into()), Some(2)));
        let (a, t, _) = last_positionals(v(&[":3000"])).unwrap();
        assert_eq!((a, t), (Addr::tcp("127.0.0.1:3000".into()), None));
        assert!(last_positionals(v(&["a", "b", "c"])).is_err());
    }
}
