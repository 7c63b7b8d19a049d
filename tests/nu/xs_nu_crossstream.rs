//! cross.stream 0.14.2's `xs.nu` against our daemon, in the interactive `nu` (0.115.1; `.ci/run`
//! installs it): a module of our own that makes the same `xs` calls as each command of theirs
//! (`xs-addr .cat .cas .cas-post .get .last .append .remove .rm .export .import .eval .id
//! ".id unpack" ".id pack" .tmp-spawn`; their `h. get`/`h. post` aliases belong to http-nu), and a
//! script that runs every one of them with its flags. Without `nu` the test prints `SKIPPED`
//! and passes, except under `CI`.

use std::path::PathBuf;
use std::process::Command;

use crate::helper::{have_tool, Daemon};

/// The calls cross.stream 0.14.2's `xs.nu` makes, each command running `xs` with the
/// arguments theirs passes.
const CROSS_STREAM_XS_NU: &str = r#"# The calls cross.stream 0.14.2's xs.nu makes, in our words: each command runs `xs` as it does.
def or-default [] { if $in == null { "~/.local/share/cross.stream/store" | path expand } else { $in } }
export def xs-addr [] { $env.XS_ADDR? | or-default }
def topics [t: any] { if ($t | describe -d | get type) == "list" { $t | str join "," } else { $t | into string } }
def frames [ts: bool] { lines | each {|l| $l | from json | if $ts { into datetime timestamp } else { $in } } }
def flag [on: bool, ...a] { if $on { $a } else { [] } }
def opt [name: string, v: any] { if $v != null { [$name $v] } else { [] } }

export def .cat [
  --follow (-f), --pulse (-p): int, --new (-n), --detail (-d), --with-timestamp
  --after: string, --from: string, --limit: int, --last: int
  --topic (-T): oneof<list<string>, string>
] {
  let a = [
    ...(flag $follow "--follow") ...(flag $new "--new") ...(flag $with_timestamp "--with-timestamp")
    ...(opt "--after" $after) ...(opt "--from" $from) ...(opt "--limit" $limit) ...(opt "--last" $last)
    ...(opt "--pulse" $pulse) ...(if $topic != null { [--topic (topics $topic)] } else { [] })
  ]
  xs cat (xs-addr) ...$a | frames $with_timestamp | if $detail { $in } else { each { reject ttl } }
}

def hash-of [h: any] {
  match ($h | describe -d | get type) { "string" => $h, "record" => ($h | get hash?), _ => null }
}
export def .cas [hash?: any] {
  let i = $in
  let h = hash-of (if $hash != null { $hash } else { $i })
  if $h == null { return }
  xs cas (xs-addr) $h
}
export def .cas-post [] { $in | xs cas-post (xs-addr) }
export def .get [id: string, --with-timestamp] {
  xs get (xs-addr) $id ...(flag $with_timestamp "--with-timestamp")
  | from json | if $with_timestamp { into datetime timestamp } else { $in }
}
export def .last [...args, --follow (-f), --with-timestamp] {
  let n = ($args | where ($it | describe) == "int" | append 1 | first)
  let t = ($args | where ($it | describe) != "int" | each {|x| topics $x } | append [null] | first)
  let a = [
    ...(if $t != null { [$t] } else { [] }) ...(if $n != 1 { [$n] } else { [] })
    ...(flag $follow "--follow") ...(flag $with_timestamp "--with-timestamp")
  ]
  let r = xs last (xs-addr) ...$a | lines | each {|l| $l | from json | if $with_timestamp { into datetime timestamp } else { $in } }
  if $n <= 1 { $r | first } else { $r }
}
export def .append [topic: string, --meta: record, --ttl: string, --with-timestamp] {
  xs append (xs-addr) $topic ...([
    ...(if $meta != null { [--meta ($meta | to json -r)] } else { [] })
    ...(opt "--ttl" $ttl) ...(flag $with_timestamp "--with-timestamp")
  ]) | from json | if $with_timestamp { into datetime timestamp } else { $in }
}
export def .remove [id: string] { xs remove (xs-addr) $id }
export alias .rm = .remove
export def .export [path: string] {
  if ($path | path exists) { print "path exists"; return }
  mkdir ($path | path join cas)
  xs cat (xs-addr) | save ($path | path join frames.jsonl)
  open ($path | path join frames.jsonl) | lines | each { from json | get hash } | uniq | each {|h|
    let out = $"($path)/cas/($h | encode base64)"
    .cas $h | save $out
  }
}
export def .import [path: string] {
  glob ([$path cas] | path join "*") | each {|f|
    let want = ($f | path basename | decode base64 | decode)
    let got = (^cat $f | xs cas-post (xs-addr))
    if $got != $want { error make {msg: $"hash mismatch got=($got) want=($want)"} }
    $got
  }
  open ($path | path join frames.jsonl) | lines | each { from json | to json -r | xs import (xs-addr) }
}
export def .eval [file?: string, --commands (-c): string] {
  if $commands != null { xs eval (xs-addr) -c $commands } else if $file != null { xs eval (xs-addr) $file } else {
    let s = $in
    if $s == null { error make {msg: "No script provided"} }
    xs eval (xs-addr) -c $s
  }
}
export def .id [] { xs scru128 }
export def ".id unpack" [id?: string] {
  let i = (if $id != null { $id } else { $in })
  let c = (xs scru128 unpack $i | from json)
  {ts_ms: $c.ts_ms, when: ($c.ts_ms * 1000000 | into int | into datetime), counter_hi: $c.counter_hi, counter_lo: $c.counter_lo, node: $c.node}
}
export def ".id pack" [components?: record] {
  let c = (if $components != null { $components } else { $in })
  $c | reject when? | to json | xs scru128 pack
}
export def .tmp-spawn [closure: closure] {
  let dir = (mktemp -d)
  let store = ($dir | path join store)
  mkdir $store
  let job = (job spawn { xs serve $store })
  $env.XS_ADDR = $store
  mut ready = false
  for _ in 0..100 {
    if (xs cat $store --last 1 | complete | get exit_code) == 0 { $ready = true; break }
    sleep 100ms
  }
  if not $ready { error make {msg: "xs serve did not start"} }
  let r = (do $closure)
  job kill $job
  sleep 50ms
  rm -rf $dir
  $r
}
"#;

/// Every command of it, with its flags; prints one JSON record of what each answered.
const DRIVE: &str = r#"use MODULE *
mut r = {}
$r.addr = ((xs-addr) == $env.XS_ADDR)
let a = ("hello" | .append chat --meta {u: bob})
let b = ("later" | .append chat --ttl "last:5" --with-timestamp)
{k: 1} | .append obj
$r.append = [$a.topic $a.meta.u ($b.timestamp | describe) $b.ttl]
$r.cat = (.cat | where topic != xs.start | get topic)
$r.cat_detail = (.cat -d -T chat | columns | sort)
$r.cat_plain = (.cat -T chat | columns | sort)
$r.cat_T_list = (.cat -T [chat obj] | length)
$r.cat_T_str = (.cat --topic "chat,obj" | length)
$r.cat_ts = (.cat --with-timestamp -T chat | get timestamp | each { describe } | uniq)
$r.cat_limit = (.cat --limit 2 | length)
$r.cat_last = (.cat --last 1 | get topic)
$r.cat_after = (.cat --after $a.id | get topic)
$r.cat_from = (.cat --from $a.id -T chat | length)
$r.cat_follow = (.cat -f -p 50 -n | first | get topic)
$r.cas = [(.cas $a.hash) ($a | .cas) (.cas $a) ("x y" | .cas-post | .cas)]
$r.get = [(.get $a.id | get topic) (.get $a.id --with-timestamp | get timestamp | describe)]
$r.last = [(.last | get topic) (.last chat | .cas) (.last chat 2 | length) (.last [chat obj] 3 | length) (.last chat --with-timestamp | get timestamp | describe)]
# `.last --follow` collects `xs last --follow` into a `let` first, which never ends in nu
# 0.115.1 (whatever the store); its call is checked on its own.
$r.last_follow = (xs last (xs-addr) chat --follow | lines | first | from json | get topic)
$r.eval = [(.eval -c "1 + 2") ("6 * 7" | .eval)]
"'from a file'" | save ($env.DUMP | path join s.nu)
$r.eval_file = (.eval ($env.DUMP | path join s.nu))
let id = .id
$r.id = [($id | str length) ((.id unpack $id | .id pack) == $id) ($id | .id unpack | get when | describe) ((.id unpack $id).ts_ms | describe)]
let dump = ($env.DUMP | path join backup)
.export $dump
$r.export = [(ls ($dump | path join cas) | length) (open ($dump | path join frames.jsonl) | lines | length)]
$r.import = (with-env {XS_ADDR: $env.XS_ADDR2} { .import $dump | ignore; .cat -T chat | each { .cas } })
$r.tmp_spawn = (.tmp-spawn { "t" | .append tmp | ignore; .last tmp | .cas })
.remove $b.id
$r.remove = (.cat -T chat | length)
.rm $a.id
$r.rm = (.cat -T chat | length)
$r | to json -r | print
"#;

#[test]
fn cross_stream_xs_nu_in_nushell() {
    if !have_tool("nu", "--version", "npm install -g nushell@0.115.1") {
        return;
    }
    let d = Daemon::start();
    let other = Daemon::start();
    let tmp = tempfile::tempdir().unwrap();
    let module = tmp.path().join("xs.nu");
    std::fs::write(&module, CROSS_STREAM_XS_NU).unwrap();
    let script = tmp.path().join("drive.nu");
    std::fs::write(
        &script,
        DRIVE.replace("MODULE", &format!("'{}'", module.display())),
    )
    .unwrap();
    let bin = PathBuf::from(crate::helper::XS);
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = Command::new("nu")
        .arg("--no-config-file")
        .arg(&script)
        .env("XS_ADDR", d.addr())
        .env("XS_ADDR2", other.addr())
        .env("DUMP", tmp.path())
        .env("PATH", path)
        .output()
        .expect("running nu");
    assert!(
        run.status.success(),
        "nu failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&run.stdout)));
    let want = serde_json::json!({
        "addr": true,
        "append": ["chat", "bob", "datetime", "last:5"],
        "cat": ["chat", "chat", "obj"],
        "cat_detail": ["hash", "id", "meta", "topic", "ttl"],
        "cat_plain": ["hash", "id", "meta", "topic"],
        "cat_T_list": 3,
        "cat_T_str": 3,
        "cat_ts": ["datetime"],
        "cat_limit": 2,
        "cat_last": ["obj"],
        "cat_after": ["chat", "obj"],
        "cat_from": 2,
        "cat_follow": "xs.pulse",
        "cas": ["hello", "hello", "hello", "x y"],
        "get": ["chat", "datetime"],
        "last": ["obj", "later", 2, 3, "datetime"],
        "last_follow": "chat",
        "eval": ["3", "42"],
        "eval_file": "from a file",
        "id": [25, true, "datetime", "int"],
        "export": [3, 4],
        "import": ["hello", "later"],
        "tmp_spawn": "t",
        "remove": 1,
        "rm": 0
    });
    assert_eq!(got, want);
    // The export landed in the other store with its ids.
    assert_eq!(
        other.read("topic=chat").len(),
        2,
        "{:?}",
        other.read("topic=chat")
    );
    d.assert_no_panic();
}
