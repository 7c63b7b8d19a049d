//! The CLI against `--expose`: the token from `$XS_TOKEN`, `--token-file` or `$XS_TOKEN_FILE`,
//! one-line errors without or with a wrong token, `https://` with `--cacert`, and `xs serve`'s
//! refusal of flags that mean nothing alone or of a weak token file.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helper::{have_tool, topics, xs, xs_env, Daemon};

#[test]
fn cli_sends_the_token_to_tcp_addresses() {
    let d = Daemon::start_with(&["--expose", "127.0.0.1:0"]);
    let addr = d.expose_addr();
    let token = d.token();
    let token_file = d.store.join("token");
    let token_file = token_file.to_str().unwrap();

    let out = xs_env(
        &["append", &addr, "chat"],
        b"via env",
        &[("XS_TOKEN", &token)],
    )
    .ok();
    assert_eq!(out.json()["topic"], "chat");
    xs(
        &["append", &addr, "chat", "--token-file", token_file],
        b"via flag",
    )
    .ok();
    xs_env(
        &["append", &addr, "chat"],
        b"via file env",
        &[("XS_TOKEN_FILE", token_file)],
    )
    .ok();
    // --token-file wins over a wrong $XS_TOKEN.
    xs_env(
        &["append", &addr, "chat", "--token-file", token_file],
        b"flag wins",
        &[("XS_TOKEN", "wrong-wrong-wrong-wrong")],
    )
    .ok();
    let out = xs_env(&["cat", &addr, "-T", "chat"], b"", &[("XS_TOKEN", &token)]).ok();
    assert_eq!(out.ndjson().len(), 4);

    let missing = xs(&["append", &addr, "chat"], b"no token").error();
    assert!(
        missing.contains("needs a token") && missing.contains("XS_TOKEN"),
        "{missing}"
    );
    let wrong = xs_env(
        &["cat", &addr],
        b"",
        &[("XS_TOKEN", "wrong-wrong-wrong-wrong")],
    )
    .error();
    assert!(
        wrong.contains("refused the token") && wrong.contains("--token-file"),
        "{wrong}"
    );
    let nofile = xs(&["cat", &addr, "--token-file", "/nonexistent/token"], b"").error();
    assert!(
        nofile.contains("cannot read the token file /nonexistent/token"),
        "{nofile}"
    );
    assert_eq!(
        topics(&d.read("topic=chat")).len(),
        4,
        "the refused append stored nothing"
    );
}

#[test]
fn cli_reports_read_only_refusals() {
    let d = Daemon::start_with(&["--expose", "127.0.0.1:0", "--expose-read-only"]);
    let addr = d.expose_addr();
    let token = d.token();
    let env = [("XS_TOKEN", token.as_str())];
    let e = xs_env(&["append", &addr, "chat"], b"x", &env).error();
    assert!(e.contains("read-only"), "{e}");
    let out = xs_env(&["cat", &addr], b"", &env).ok();
    assert_eq!(topics(&out.ndjson()), ["xs.start"]);
}

#[test]
fn serve_refuses_meaningless_or_weak_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let store = store.to_str().unwrap();
    let weak = tmp.path().join("weak");
    std::fs::write(&weak, "short\n").unwrap();
    for (args, expected) in [
        (
            vec!["--expose-read-only"],
            "--expose-read-only needs --expose",
        ),
        (
            vec!["--token-file", "/x"],
            "--token-file needs a TCP --expose or --console",
        ),
        (
            vec![
                "--expose",
                "127.0.0.1:0",
                "--token-file",
                weak.to_str().unwrap(),
            ],
            "at least 16",
        ),
        (
            vec!["--expose", "127.0.0.1:0", "--token-file", "/nonexistent/t"],
            "reading token file /nonexistent/t",
        ),
        (
            vec![
                "--expose",
                "127.0.0.1:0",
                "--tls-cert",
                "/nonexistent/c",
                "--tls-key",
                "/nonexistent/k",
            ],
            "/nonexistent/c",
        ),
    ] {
        let mut all = vec!["serve", store];
        all.extend(args.iter().copied());
        let out = xs(&all, b"");
        assert_eq!(out.code, Some(1), "{args:?}: {}", out.stderr);
        let e = out.stderr.lines().last().unwrap_or_default();
        assert!(
            e.starts_with("xs: ") && e.contains(expected),
            "{args:?}: {e}"
        );
    }
}

/// `openssl`, or None (with a note) when it is absent outside CI.
fn openssl() -> Option<&'static str> {
    have_tool("openssl", "version", "apt-get install openssl").then_some("openssl")
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("running openssl");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, and a server certificate it signed for localhost and 127.0.0.1: (ca, cert, key).
pub fn make_certs(openssl: &str, dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let p = |n: &str| dir.join(n);
    run(Command::new(openssl)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=xs test CA",
        ])
        .arg("-keyout")
        .arg(p("ca.key"))
        .arg("-out")
        .arg(p("ca.pem")));
    run(Command::new(openssl)
        .args([
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(p("key.pem"))
        .arg("-out")
        .arg(p("req.csr")));
    std::fs::write(p("ext.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n").unwrap();
    run(Command::new(openssl)
        .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
        .arg("-in")
        .arg(p("req.csr"))
        .arg("-CA")
        .arg(p("ca.pem"))
        .arg("-CAkey")
        .arg(p("ca.key"))
        .arg("-extfile")
        .arg(p("ext.cnf"))
        .arg("-out")
        .arg(p("cert.pem")));
    (p("ca.pem"), p("cert.pem"), p("key.pem"))
}

#[test]
fn https_with_a_private_ca() {
    let Some(openssl) = openssl() else { return };
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certs(openssl, certs.path());
    let d = Daemon::start_with(&[
        "--expose",
        "127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    assert_eq!(d.start_meta()["tls"], true);
    let port = d.expose_addr().rsplit_once(':').unwrap().1.to_string();
    let token = d.token();
    let env = [("XS_TOKEN", token.as_str())];
    let ca = ca.to_str().unwrap();
    for host in ["127.0.0.1", "localhost"] {
        let url = format!("https://{host}:{port}");
        let out = xs_env(
            &["append", &url, "secure", "--cacert", ca],
            b"over tls",
            &env,
        )
        .ok();
        assert_eq!(out.json()["topic"], "secure");
        let hash = out.json()["hash"].as_str().unwrap().to_string();
        let env_ca = [("XS_TOKEN", token.as_str()), ("XS_CACERT", ca)];
        let out = xs_env(&["cas", &url, &hash], b"", &env_ca).ok();
        assert_eq!(out.stdout, b"over tls");
    }
    let url = format!("https://127.0.0.1:{port}");
    let untrusted = xs_env(&["version", &url], b"", &env).error();
    assert!(
        untrusted.contains("certificate") && untrusted.contains("--cacert"),
        "{untrusted}"
    );
    let plain = xs_env(&["version", &format!("127.0.0.1:{port}")], b"", &env).error();
    assert!(!plain.is_empty());
    let no_token = xs(&["version", &url, "--cacert", ca], b"").error();
    assert!(no_token.contains("needs a token"), "{no_token}");
    assert_eq!(topics(&d.read("topic=secure")).len(), 2);
}

#[test]
fn expose_takes_a_unix_socket_path_owner_only_without_a_token() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("public.sock");
    let p = path.to_str().unwrap();
    let mut d = Daemon::start_with(&["--expose", p]);
    assert_eq!(d.start_meta()["expose"], p);
    let m = std::fs::metadata(&path).unwrap();
    assert!(m.file_type().is_socket());
    assert_eq!(m.permissions().mode() & 0o777, 0o600);
    // No token needed, full access (like `sock`); no token file was made.
    let out = xs(&["append", p, "chat"], b"over the exposed socket").ok();
    assert_eq!(out.json()["topic"], "chat");
    assert!(!d.store.join("token").exists());
    assert_eq!(topics(&d.read("topic=chat")), ["chat"]);
    // Removed on exit.
    assert!(d.stop().success());
    assert!(!path.exists());

    // A regular file at the path is never replaced.
    std::fs::write(&path, b"precious").unwrap();
    let out = xs(
        &[
            "serve",
            tmp.path().join("s2").to_str().unwrap(),
            "--expose",
            p,
        ],
        b"",
    );
    assert_ne!(out.code, Some(0));
    assert!(out.stderr.contains("already there"), "{}", out.stderr);
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    // --expose-read-only is for TCP.
    let out = xs(
        &[
            "serve",
            tmp.path().join("s3").to_str().unwrap(),
            "--expose",
            "./x.sock",
            "--expose-read-only",
        ],
        b"",
    );
    assert_ne!(out.code, Some(0));
    assert!(out.stderr.contains("--expose-read-only"), "{}", out.stderr);
}
