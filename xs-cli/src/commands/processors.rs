//! Sugar over the processor lifecycle topics (`xs.<kind>.<name>.create` / `.term`):
//! `xs handler register|unregister`, `xs generator spawn|terminate`,
//! `xs action define|undefine|call`, and cross.stream's words for the first two,
//! `xs actor register|unregister`, `xs service spawn|terminate`. Registering waits for the daemon's answer (`active`, or
//! `invalid` with Nushell's report); `action call` waits for the response and prints it.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};

use xs::lifecycle::{self as words, Vocab};

use crate::addr::{self, Addr};
use crate::client::{self, Client};

/// How long to wait for the daemon's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(clap::Subcommand)]
pub enum Handler {
    /// Register (or replace) handler NAME from a Nushell script
    #[command(override_usage = "xs handler register [ADDR] NAME FILE")]
    Register(Create),
    /// Stop handler NAME for good
    #[command(override_usage = "xs handler unregister [ADDR] NAME")]
    Unregister(Named),
}

#[derive(clap::Subcommand)]
pub enum Generator {
    /// Start (or replace) generator NAME from a Nushell script
    #[command(override_usage = "xs generator spawn [ADDR] NAME FILE")]
    Spawn(Create),
    /// Stop generator NAME for good (its processes are killed)
    #[command(override_usage = "xs generator terminate [ADDR] NAME")]
    Terminate(Named),
}

#[derive(clap::Subcommand)]
pub enum Action {
    /// Define (or replace) action NAME from a Nushell script
    #[command(override_usage = "xs action define [ADDR] NAME FILE")]
    Define(Create),
    /// Remove action NAME
    #[command(override_usage = "xs action undefine [ADDR] NAME")]
    Undefine(Named),
    /// Call action NAME (stdin is its input) and print the response
    #[command(override_usage = "xs action call [ADDR] NAME [--args JSON]")]
    Call(Call),
}

#[derive(clap::Subcommand)]
pub enum Actor {
    /// Register (or replace) actor NAME from a Nushell script
    #[command(override_usage = "xs actor register [ADDR] NAME FILE")]
    Register(Create),
    /// Stop actor NAME for good
    #[command(override_usage = "xs actor unregister [ADDR] NAME")]
    Unregister(Named),
}

#[derive(clap::Subcommand)]
pub enum Service {
    /// Start (or replace) service NAME from a Nushell script
    #[command(override_usage = "xs service spawn [ADDR] NAME FILE")]
    Spawn(Create),
    /// Stop service NAME for good (its processes are killed)
    #[command(override_usage = "xs service terminate [ADDR] NAME")]
    Terminate(Named),
}

#[derive(clap::Args)]
pub struct Create {
    /// [ADDR] NAME FILE (`-` for stdin)
    #[arg(value_name = "ARGS", num_args = 2..=3, required = true)]
    args: Vec<String>,
}

#[derive(clap::Args)]
pub struct Named {
    /// [ADDR] NAME
    #[arg(value_name = "ARGS", num_args = 1..=2, required = true)]
    pub(crate) args: Vec<String>,
}

#[derive(clap::Args)]
pub struct Call {
    /// [ADDR] NAME
    #[arg(value_name = "ARGS", num_args = 1..=2, required = true)]
    args: Vec<String>,
    /// Arguments, as JSON (the call frame's `meta.args`)
    #[arg(long = "args", value_name = "JSON")]
    args_json: Option<String>,
}

pub async fn handler(cmd: Handler) -> Result<()> {
    match cmd {
        Handler::Register(c) => create(&words::HANDLER, c).await,
        Handler::Unregister(n) => term(&words::HANDLER, n).await,
    }
}

pub async fn generator(cmd: Generator) -> Result<()> {
    match cmd {
        Generator::Spawn(c) => create(&words::GENERATOR, c).await,
        Generator::Terminate(n) => term(&words::GENERATOR, n).await,
    }
}

pub async fn actor(cmd: Actor) -> Result<()> {
    match cmd {
        Actor::Register(c) => create(&words::ACTOR, c).await,
        Actor::Unregister(n) => term(&words::ACTOR, n).await,
    }
}

pub async fn service(cmd: Service) -> Result<()> {
    match cmd {
        Service::Spawn(c) => create(&words::SERVICE, c).await,
        Service::Terminate(n) => term(&words::SERVICE, n).await,
    }
}

pub async fn action(cmd: Action) -> Result<()> {
    match cmd {
        Action::Define(c) => create(&words::ACTION, c).await,
        Action::Undefine(n) => term(&words::ACTION, n).await,
        Action::Call(c) => call(c).await,
    }
}

/// `[ADDR] NAME` (and what follows) → the address and the rest.
pub(crate) fn split(mut args: Vec<String>, rest: usize) -> Result<(Addr, Vec<String>)> {
    let addr = if args.len() > rest {
        addr::Addr::parse(&args.remove(0))?
    } else {
        addr::default_addr()?
    };
    xs::validate_topic(&args[0]).map_err(|e| anyhow!("invalid name {:?}: {e}", args[0]))?;
    Ok((addr, args))
}

async fn create(vocab: &Vocab, c: Create) -> Result<()> {
    let (addr, args) = split(c.args, 2)?;
    let (name, file) = (&args[0], &args[1]);
    let script = if file == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .context("cannot read the script from stdin")?;
        s
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read script file {file}"))?
    };
    created(vocab, addr, name, Bytes::from(script)).await
}

/// Appends `xs.<kind>.<name>.create` with `content`, waits for `active` (printed), or
/// `invalid` or `fin.error` (an error with the daemon's reason).
pub(crate) async fn created(vocab: &Vocab, addr: Addr, name: &str, content: Bytes) -> Result<()> {
    let kind = vocab.word;
    let client = Client::new(addr);
    let topic = format!("xs.{kind}.{name}.create");
    let created = append(&client, &topic, content, None).await?;
    let id = frame_id(&created)?;
    let answers = ["active", "invalid", "fin.error"].map(|e| format!("xs.{kind}.{name}.{e}"));
    let answer = wait_for(&client, &answers.join(","), &id, |f| {
        meta_str(f, vocab.create_key()) == Some(&id)
    })
    .await?;
    let topic = answer["topic"].as_str().unwrap_or_default();
    if topic.ends_with(".invalid") {
        let error = meta_str(&answer, vocab.invalid_error).unwrap_or("invalid");
        return Err(client::Report(format!("{kind} {name} is invalid:\n{error}")).into());
    }
    if topic.ends_with(".fin.error") {
        let error = meta_str(&answer, vocab.fin_error).unwrap_or("failed");
        return Err(client::Report(format!("{kind} {name} failed:\n{error}")).into());
    }
    client::write_stdout(format!("{answer}\n").as_bytes())
}

async fn term(vocab: &Vocab, n: Named) -> Result<()> {
    let kind = vocab.word;
    let (addr, args) = split(n.args, 1)?;
    let client = Client::new(addr);
    let rows = listed(&client, "/ps").await?;
    if !rows
        .iter()
        .any(|r| r["kind"] == kind && r["name"] == args[0].as_str())
    {
        return Err(client::Report(format!(
            "no {kind} named {} in this store (`xs ps` lists them)",
            args[0]
        ))
        .into());
    }
    let frame = append(
        &client,
        &format!("xs.{kind}.{}.term", args[0]),
        Bytes::new(),
        None,
    )
    .await?;
    client::write_stdout(format!("{frame}\n").as_bytes())
}

async fn call(c: Call) -> Result<()> {
    let (addr, args) = split(c.args, 1)?;
    let name = &args[0];
    let meta = match &c.args_json {
        Some(a) => {
            let v: serde_json::Value =
                serde_json::from_str(a).context("--args is not valid JSON")?;
            Some(serde_json::json!({ "args": v }))
        }
        None => None,
    };
    let input = if std::io::stdin().is_terminal() {
        Vec::new()
    } else {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut b).context("cannot read stdin")?;
        b
    };
    let client = Client::new(addr);
    let called = append(&client, &format!("{name}.call"), Bytes::from(input), meta).await?;
    let id = frame_id(&called)?;
    // Any answer topic (a suffix may be configured), pointing at this call.
    let answer = wait_for(&client, &format!("{name}.*"), &id, |f| {
        meta_str(f, "frame_id") == Some(&id) && f["topic"].as_str() != Some(&format!("{name}.call"))
    })
    .await?;
    if answer["topic"].as_str() == Some(&format!("{name}.error")) {
        let error = meta_str(&answer, "error").unwrap_or("unknown error");
        return Err(client::Report(format!("action {name} failed:\n{error}")).into());
    }
    match answer["hash"].as_str() {
        Some(hash) => {
            let uri = format!("/cas/{}", xs::read::encode_component(hash));
            client.print(Method::GET, &uri, false).await?;
            Ok(())
        }
        None => client::write_stdout(format!("{}\n", answer["meta"]).as_bytes()),
    }
}

/// The NDJSON rows a listing (`/ps`, `/stores`) answers.
pub(crate) async fn listed(client: &Client, path: &str) -> Result<Vec<serde_json::Value>> {
    let resp = client
        .send(Request::get(path).body(client::empty())?)
        .await?;
    let rows = resp.into_body().collect().await?.to_bytes();
    Ok(rows
        .split(|b| *b == b'\n')
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect())
}

pub(crate) fn frame_id(frame: &serde_json::Value) -> Result<String> {
    frame["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("the daemon answered a frame without an id"))
}

pub(crate) fn meta_str<'a>(frame: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    frame["meta"][key].as_str()
}

/// Appends a frame and returns it.
pub(crate) async fn append(
    client: &Client,
    topic: &str,
    content: Bytes,
    meta: Option<serde_json::Value>,
) -> Result<serde_json::Value> {
    let mut req = Request::post(format!("/append/{topic}"));
    if let Some(meta) = meta {
        let encoded = base64::engine::general_purpose::STANDARD.encode(meta.to_string());
        req = req.header("xs-meta", encoded);
    }
    let body = Full::new(content)
        .map_err(|never| match never {})
        .boxed_unsync();
    let resp = client.send(req.body(body)?).await?;
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok(serde_json::from_slice(&bytes)?)
}

/// Follows `topics` after frame `after` until a frame matches.
pub(crate) async fn wait_for(
    client: &Client,
    topics: &str,
    after: &str,
    matches: impl Fn(&serde_json::Value) -> bool,
) -> Result<serde_json::Value> {
    let uri = format!(
        "/?follow=true&after={after}&topic={}",
        xs::read::encode_component(topics)
    );
    let req = Request::get(uri).body(client::empty())?;
    let mut body = client.send(req).await?.into_body();
    let found = async {
        let mut buf = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| anyhow!("lost the connection to the xs daemon: {e}"))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            buf.extend_from_slice(&data);
            while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&line) {
                    if matches(&v) {
                        return Ok(v);
                    }
                }
            }
        }
        Err(anyhow!("the xs daemon stopped before answering"))
    };
    tokio::time::timeout(ANSWER_TIMEOUT, found)
        .await
        .map_err(|_| anyhow!("no answer from the xs daemon within {ANSWER_TIMEOUT:?}"))?
}
