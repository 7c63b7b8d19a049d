//! The `examples/` run as the README shows, and `xs nu`'s module in a real interactive Nushell
//! (the `nu` binary; `.ci/run` installs it from the npm registry). Without `nu` or `bc` the test
//! that needs it prints `SKIPPED` and passes, except under `CI`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::helper::{have_tool, poll_until, xs, Daemon};
use crate::nu::handlers::{content, on, wait_for};

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

#[test]
fn counter_handler() {
    let d = Daemon::start();
    let f = example("counter.nu");
    xs(
        &[
            "handler",
            "register",
            d.addr(),
            "counter",
            f.to_str().unwrap(),
        ],
        b"",
    )
    .ok();
    for _ in 0..2 {
        xs(&["append", d.addr(), "tick"], b"").ok();
    }
    let out = wait_for(&d, "counter.out", 2);
    assert_eq!(out[1]["meta"]["count"], 2);
    let last = xs(&["last", d.addr(), "counter.out"], b"").ok().json();
    assert_eq!(last["meta"]["count"], 2);
}

#[test]
fn tail_generator() {
    let d = Daemon::start();
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("app.log");
    std::fs::write(&log, "").unwrap();
    // The example reads $env.XS_TAIL_FILE (the daemon's environment); point it at our file.
    let script = std::fs::read_to_string(example("tail.nu"))
        .unwrap()
        .replace("\"app.log\"", &format!("{:?}", log.to_str().unwrap()));
    xs(
        &["generator", "spawn", d.addr(), "applog", "-"],
        script.as_bytes(),
    )
    .ok();
    // tail -n 0 starts at the end: write once it runs.
    poll_until(Duration::from_secs(20), "lines to arrive", || {
        std::fs::write(&log, "first line\n").unwrap();
        std::thread::sleep(Duration::from_millis(200));
        (!on(&d, "applog.recv").is_empty()).then_some(())
    });
    let got = on(&d, "applog.recv");
    assert_eq!(content(&d, &got[0]), "first line");
    xs(&["generator", "terminate", d.addr(), "applog"], b"").ok();
}

#[test]
fn duplex_generator() {
    if !have_tool("bc", "--version", "apt-get install bc") {
        return;
    }
    let d = Daemon::start();
    let f = example("duplex.nu");
    xs(
        &["generator", "spawn", d.addr(), "calc", f.to_str().unwrap()],
        b"",
    )
    .ok();
    xs(&["append", d.addr(), "calc.send"], b"6 * 7\n").ok();
    xs(&["append", d.addr(), "calc.send"], b"5 * 2").ok();
    let got = wait_for(&d, "calc.recv", 2);
    assert_eq!(content(&d, &got[0]), "42");
    assert_eq!(content(&d, &got[1]), "10");
}

#[test]
fn greet_action() {
    let d = Daemon::start();
    let f = example("greet.nu");
    xs(
        &["action", "define", d.addr(), "greet", f.to_str().unwrap()],
        b"",
    )
    .ok();
    let out = xs(
        &[
            "action",
            "call",
            d.addr(),
            "greet",
            "--args",
            r#"{"times": 2}"#,
        ],
        b"bob",
    )
    .ok();
    assert_eq!(out.stdout_str(), "hello bob x2");
}

/// `xs nu`'s module used from the `nu` binary; skipped (with a note) when `nu` is missing.
#[test]
fn xs_nu_module_in_nushell() {
    if !have_tool("nu", "--version", "npm install -g nushell@0.115.1") {
        return;
    }
    let d = Daemon::start();
    let tmp = tempfile::tempdir().unwrap();
    let module = tmp.path().join("xs.nu");
    let out = xs(&["nu"], b"").ok();
    std::fs::write(&module, &out.stdout).unwrap();
    let bin = PathBuf::from(crate::helper::XS);
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = format!(
        r#"use {} *
        let f = ("hi" | .append chat --meta {{u: bob}})
        {{a: 1}} | .append obj
        [
          (.last chat | get meta.u)
          (.cas $f.hash)
          (.cat -T chat,obj | length)
          (.get $f.id | get topic)
          (.eval "1 + 2")
          ("x" | .cas-post | .cas $in)
        ] | to json -r"#,
        module.display()
    );
    let run = Command::new("nu")
        .args(["--no-config-file", "-c", &script])
        .env("XS_ADDR", d.addr())
        .env("PATH", path)
        .output()
        .expect("running nu");
    assert!(
        run.status.success(),
        "nu failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&run.stdout).trim(),
        r#"["bob","hi",2,"chat","3","x"]"#
    );

    // --install writes the module into Nushell's autoload directory.
    let out = crate::helper::xs_env(
        &["nu", "--install"],
        b"",
        &[("XDG_CONFIG_HOME", tmp.path().to_str().unwrap())],
    )
    .ok();
    assert!(out.stdout_str().contains("autoload/xs.nu"));
    assert!(tmp.path().join("nushell/autoload/xs.nu").is_file());
}

/// `xs nu --install --lib-path P --autoload-path S` (cross.stream's layout: the module in a lib
/// directory, a stub in an autoload directory that `use`s it), and `xs nu --clean`, which
/// removes modules and stubs of both layouts and nothing else. With `nu` present, the stub is
/// loaded by a real Nushell and its commands reach a daemon.
#[test]
fn xs_nu_install_paths_and_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (config, data, lib) = (t.join("c"), t.join("d"), t.join("lib"));
    let nu_lib_dirs = format!("{}:{}", lib.display(), t.join("lib2").display());
    let env = [
        ("XDG_CONFIG_HOME", config.to_str().unwrap()),
        ("XDG_DATA_HOME", data.to_str().unwrap()),
        ("NU_LIB_DIRS", nu_lib_dirs.as_str()),
    ];
    let xs_nu = |args: &[&str]| {
        let mut all = vec!["nu"];
        all.extend_from_slice(args);
        crate::helper::xs_env(&all, b"", &env)
    };
    let module = lib.join("xs.nu");
    let stub = data.join("nushell/vendor/autoload/xs-use.nu");
    let out = xs_nu(&[
        "--install",
        "--lib-path",
        module.to_str().unwrap(),
        "--autoload-path",
        stub.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(
        out.stdout_str(),
        format!(
            "installed {}\ninstalled {}\n",
            module.display(),
            stub.display()
        )
    );
    assert_eq!(
        std::fs::read_to_string(&module).unwrap(),
        xs(&["nu"], b"").ok().stdout_str()
    );
    let stub_text = std::fs::read_to_string(&stub).unwrap();
    assert!(
        stub_text.contains(&format!("use \"{}\" *", module.display())),
        "{stub_text}"
    );

    // One path without the other, or a path without --install, is a usage error.
    for args in [
        &["--install", "--lib-path", "x.nu"][..],
        &["--install", "--autoload-path", "x.nu"],
        &["--lib-path", "x.nu", "--autoload-path", "y.nu"],
        &["--install", "--clean"],
    ] {
        let out = xs_nu(args);
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
    }

    if have_tool("nu", "--version", "npm install -g nushell@0.115.1") {
        // Nushell sources autoload files at start-up; `source` does the same here.
        let d = Daemon::start();
        let bin = PathBuf::from(crate::helper::XS);
        let path = format!(
            "{}:{}",
            bin.parent().unwrap().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let run = Command::new("nu")
            .args([
                "--no-config-file",
                "-c",
                &format!(
                    "source '{}'; 'hi' | .append chat | ignore; .last chat | .cas $in.hash",
                    stub.display()
                ),
            ])
            .env("XS_ADDR", d.addr())
            .env("PATH", path)
            .output()
            .expect("running nu");
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&run.stdout).trim(), "hi");
    }

    // Our own layout, and cross.stream's defaults, installed beside it.
    let ours = config.join("nushell/autoload/xs.nu");
    let out = xs_nu(&["--install"]).ok();
    assert_eq!(out.stdout_str(), format!("installed {}\n", ours.display()));
    let cs_module = config.join("nushell/scripts/xs.nu");
    let cs_stub = config.join("nushell/vendor/autoload/xs-use.nu");
    for (p, text) in [
        (&cs_module, std::fs::read_to_string(&ours).unwrap()),
        (
            &cs_stub,
            "# Load xs's commands every session\nuse xs.nu *\n".to_string(),
        ),
    ] {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    // A stranger's xs.nu in a lib directory is not ours to remove.
    let stranger = t.join("lib2/xs.nu");
    std::fs::create_dir_all(stranger.parent().unwrap()).unwrap();
    std::fs::write(&stranger, "export def hello [] { 'hi' }\n").unwrap();

    let out = xs_nu(&["--clean"]).ok().stdout_str().to_string();
    for p in [&module, &stub, &ours, &cs_module, &cs_stub] {
        assert!(!p.exists(), "{} is left", p.display());
        assert!(
            out.contains(&format!("removed {}", p.display())),
            "{}: {out}",
            p.display()
        );
    }
    assert!(stranger.is_file());
    assert!(
        out.contains(&format!("kept {}", stranger.display())),
        "{out}"
    );
    std::fs::remove_file(&stranger).unwrap();
    assert_eq!(
        xs_nu(&["--clean"]).ok().stdout_str(),
        "no installed files found\n"
    );
}

/// `examples/todo.nu` as its header shows: registered with the real CLI, then used over
/// HTTP through `--http` (HTML page, form post, JSON API, errors as the handler answers them).
#[test]
fn todo_web_app() {
    let (d, addr) = crate::api::gateway::gateway(&[]);
    let f = example("todo.nu");
    xs(
        &["handler", "register", d.addr(), "todo", f.to_str().unwrap()],
        b"",
    )
    .ok();
    let http = |method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]| {
        crate::helper::http::tcp_request(&addr, method, path, headers, body).unwrap()
    };
    let page = http("GET", "/", &[], b"");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page
        .text()
        .contains("<form method=\"post\" action=\"/todos\">"));

    let a = http("POST", "/todos", &[], b"buy milk");
    assert_eq!(a.status, 201, "{}", a.text());
    assert_eq!(
        a.json(),
        serde_json::json!({"id": 1, "text": "buy milk", "done": false})
    );
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let b = http("POST", "/todos", &form, b"text=walk+the+%3Cdog%3E");
    assert_eq!(b.json()["text"], "walk the <dog>");
    let done = http("POST", "/todos/1/done", &[], b"");
    assert_eq!(done.json()["done"], true);
    let gone = http("DELETE", "/todos/2", &[], b"");
    assert_eq!(gone.status, 204);
    let list = http("GET", "/todos", &[], b"");
    assert_eq!(list.header("content-type"), Some("application/json"));
    assert_eq!(
        list.json(),
        serde_json::json!([{"id": 1, "text": "buy milk", "done": true}])
    );
    let page = http("GET", "/", &[], b"").text();
    assert!(page.contains("<li class=\"done\">buy milk</li>"), "{page}");

    assert_eq!(http("POST", "/todos", &[], b"  ").status, 400);
    assert_eq!(http("POST", "/todos/x/done", &[], b"").status, 404);
    assert_eq!(http("GET", "/nope", &[], b"").status, 404);
    // Bad input never stopped the handler: it still answers.
    assert_eq!(http("GET", "/todos", &[], b"").status, 200);
    let ps = d.get("/ps").ndjson();
    assert_eq!(ps[0]["state"], "active", "{ps:?}");
}
