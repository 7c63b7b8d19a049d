//! Access control for the TCP listeners (`--expose`, `--console`): the token (created in the
//! store or read from `--token-file`), checking a request's credentials, and console sessions.
//! The Unix socket never comes here: its 0600 mode is its access control.

use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine;
use hyper::header::{HeaderMap, AUTHORIZATION, COOKIE};
use subtle::ConstantTimeEq;

use crate::error::ServeError;

/// Bytes of randomness in a token `xs serve` creates (written as 64 hex digits).
const TOKEN_BYTES: usize = 32;
/// Shortest token accepted from a `--token-file`.
const MIN_TOKEN_LEN: usize = 16;
/// Console sessions kept at once; the oldest is forgotten first.
const MAX_SESSIONS: usize = 256;
/// The console's session cookie.
pub const SESSION_COOKIE: &str = "xs_session";

/// The secret a TCP client must present, and the console's sessions (cookies handed out by a
/// successful login, valid until the daemon stops).
pub struct Auth {
    token: Vec<u8>,
    sessions: Mutex<VecDeque<[u8; TOKEN_BYTES]>>,
}

/// Why a request was refused before it was read or routed.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// No credentials, or wrong ones: 401.
    Unauthorized(&'static str),
}

impl Auth {
    pub fn new(token: impl Into<Vec<u8>>) -> Auth {
        Auth {
            token: token.into(),
            sessions: Mutex::new(VecDeque::new()),
        }
    }

    /// Loads the token: from `token_file` if given (it must exist), else from `<store>/token`,
    /// created (mode 0600, never overwritten) with a fresh random token when missing.
    pub fn load(store: &Path, token_file: Option<&Path>) -> Result<(Auth, PathBuf), ServeError> {
        let path = match token_file {
            Some(p) => p.to_path_buf(),
            None => {
                let p = store.join("token");
                create_token_file(&p)?;
                p
            }
        };
        let token = read_token_file(&path)?;
        Ok((Auth::new(token), path))
    }

    /// Whether `candidate` is the token, in time independent of where they differ.
    pub fn is_token(&self, candidate: &[u8]) -> bool {
        // Lengths are not secret (a created token is always 64 hex digits).
        candidate.len() == self.token.len() && bool::from(candidate.ct_eq(&self.token))
    }

    /// Checks `Authorization: Bearer <token>` or `Authorization: Basic` (any user, password =
    /// token); with `cookies`, also the console's session cookie.
    pub fn check(&self, headers: &HeaderMap, cookies: bool) -> Result<(), Refused> {
        if cookies && self.has_session(headers) {
            return Ok(());
        }
        let Some(value) = headers.get(AUTHORIZATION) else {
            return Err(Refused::Unauthorized(
                "a token is needed over TCP (unlike cross.stream): send `Authorization: Bearer \
                 <token>`, the token being the content of <store>/token (or of xs serve \
                 --token-file); with the xs CLI set XS_TOKEN=$(cat <store>/token); with curl \
                 add -H \"Authorization: Bearer $(cat <store>/token)\"; or serve a Unix \
                 socket with --expose ./path.sock, which needs none",
            ));
        };
        let value = value.as_bytes();
        let (scheme, rest) = match value.iter().position(|&b| b == b' ') {
            Some(i) => (&value[..i], trim(&value[i + 1..])),
            None => (value, &b""[..]),
        };
        let ok = if scheme.eq_ignore_ascii_case(b"bearer") {
            self.is_token(rest)
        } else if scheme.eq_ignore_ascii_case(b"basic") {
            base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()
                .and_then(|creds| {
                    let colon = creds.iter().position(|&b| b == b':')?;
                    Some(self.is_token(&creds[colon + 1..]))
                })
                .unwrap_or(false)
        } else {
            return Err(Refused::Unauthorized(
                "unsupported Authorization scheme: use Bearer <token> or Basic (password = token)",
            ));
        };
        if ok {
            Ok(())
        } else {
            Err(Refused::Unauthorized("the token is not valid"))
        }
    }

    /// A new console session (after a login with the token); returns the cookie value.
    pub fn new_session(&self) -> Result<String, ServeError> {
        let id = random_bytes()?;
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if sessions.len() >= MAX_SESSIONS {
            sessions.pop_front();
        }
        sessions.push_back(id);
        Ok(hex::encode(id))
    }

    /// Forgets the session in `headers`' cookie, if any.
    pub fn end_session(&self, headers: &HeaderMap) {
        if let Some(id) = session_id(headers) {
            let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            sessions.retain(|s| !bool::from(s.ct_eq(&id)));
        }
    }

    fn has_session(&self, headers: &HeaderMap) -> bool {
        let Some(id) = session_id(headers) else {
            return false;
        };
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions
            .iter()
            .fold(false, |found, s| found | bool::from(s.ct_eq(&id)))
    }
}

/// The session id in the `xs_session` cookie, if there is a well-formed one.
fn session_id(headers: &HeaderMap) -> Option<[u8; TOKEN_BYTES]> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .and_then(|(_, v)| unhex(v))
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| *c != b' ').unwrap_or(b.len());
    let end = b.iter().rposition(|c| *c != b' ').map_or(start, |e| e + 1);
    &b[start..end]
}

/// Creates `path` with a new random token, mode 0600, unless it exists (never overwritten).
fn create_token_file(path: &Path) -> Result<(), ServeError> {
    let io = |what: &str| {
        let context = format!("{what} token file {}", path.display());
        move |source| ServeError::Io { context, source }
    };
    let token = format!("{}\n", hex::encode(random_bytes()?));
    // Written under a temporary name, then linked into place: a reader never sees a partial
    // token, and an existing file is never replaced (hard_link fails if it exists).
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io("creating"))?;
    f.write_all(token.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io("writing"))?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            tracing::info!(path = %path.display(), "created a token");
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io("creating")(e)),
    }
}

/// Reads a token file: its content without surrounding whitespace, at least 16 visible ASCII
/// characters.
fn read_token_file(path: &Path) -> Result<Vec<u8>, ServeError> {
    let bytes = std::fs::read(path).map_err(|source| ServeError::Io {
        context: format!("reading token file {}", path.display()),
        source,
    })?;
    let token = bytes.trim_ascii();
    if token.len() < MIN_TOKEN_LEN || !token.iter().all(|b| b.is_ascii_graphic()) {
        return Err(ServeError::Config(format!(
            "token file {}: a token is at least {MIN_TOKEN_LEN} visible ASCII characters \
             without spaces (e.g. openssl rand -hex 32 > FILE)",
            path.display()
        )));
    }
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "the token file is readable by other users: chmod 600 it");
        }
    }
    Ok(token.to_vec())
}

fn random_bytes() -> Result<[u8; TOKEN_BYTES], ServeError> {
    let mut buf = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut buf).map_err(|e| ServeError::Io {
        context: "reading the system's random source".into(),
        source: std::io::Error::other(e),
    })?;
    Ok(buf)
}

fn unhex(s: &str) -> Option<[u8; TOKEN_BYTES]> {
    let mut out = [0u8; TOKEN_BYTES];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(k: hyper::header::HeaderName, v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(k, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn bearer_and_basic() {
        let auth = Auth::new("0123456789abcdef0123");
        assert_eq!(
            auth.check(
                &headers(AUTHORIZATION, "Bearer 0123456789abcdef0123"),
                false
            ),
            Ok(())
        );
        assert_eq!(
            auth.check(
                &headers(AUTHORIZATION, "bearer  0123456789abcdef0123 "),
                false
            ),
            Ok(())
        );
        let basic = base64::engine::general_purpose::STANDARD.encode("me:0123456789abcdef0123");
        assert_eq!(
            auth.check(&headers(AUTHORIZATION, &format!("Basic {basic}")), false),
            Ok(())
        );
        for bad in [
            "Bearer 0123456789abcdef012",
            "Bearer 0123456789abcdef01234",
            "Bearer",
            "Basic !!!",
            "Basic bWU=",
            "Token 0123456789abcdef0123",
        ] {
            assert!(
                auth.check(&headers(AUTHORIZATION, bad), false).is_err(),
                "{bad}"
            );
        }
        assert!(auth.check(&HeaderMap::new(), false).is_err());
    }

    #[test]
    fn sessions_only_where_cookies_count() {
        let auth = Auth::new("0123456789abcdef0123");
        let id = auth.new_session().unwrap();
        let h = headers(COOKIE, &format!("a=b; {SESSION_COOKIE}={id}"));
        assert_eq!(auth.check(&h, true), Ok(()));
        assert!(auth.check(&h, false).is_err());
        auth.end_session(&h);
        assert!(auth.check(&h, true).is_err());
        let forged = headers(COOKIE, &format!("{SESSION_COOKIE}={}", "0".repeat(64)));
        assert!(auth.check(&forged, true).is_err());
    }

    #[test]
    fn token_file_is_created_once_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let (a, path) = Auth::load(dir.path(), None).unwrap();
        assert_eq!(path, dir.path().join("token"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim().len(), 64);
        assert!(a.is_token(text.trim().as_bytes()));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        Auth::load(dir.path(), None).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            text,
            "never rewritten"
        );
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temp file left");
    }

    #[test]
    fn weak_or_missing_token_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short");
        std::fs::write(&short, "abc\n").unwrap();
        let e = Auth::load(dir.path(), Some(&short)).err().unwrap();
        assert!(e.to_string().contains("at least 16"), "{e}");
        let e = Auth::load(dir.path(), Some(&dir.path().join("nope")))
            .err()
            .unwrap();
        assert!(e.to_string().contains("reading token file"), "{e}");
    }
}
