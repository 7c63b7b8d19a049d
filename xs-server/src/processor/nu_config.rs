//! What the Nushell processor kinds share: evaluating a create frame's script (with the
//! modules as of that frame) into a config record, reading its common fields, the job that
//! owns the external processes an instance starts, and running an instance on its own thread.

use std::future::Future;
use std::pin::Pin;

use nu_protocol::engine::{Closure, EngineState};
use nu_protocol::{Record, Value};
use tokio::sync::watch;
use xs::{Frame, Store, Ttl};

use super::{create_source, Outcome};
use crate::nu::{script, Ctx, Engine, Job, Modules};

/// What the Nushell kinds need to read their create frames.
#[derive(Clone)]
pub struct Env {
    pub engine: Engine,
    /// The daemon's runtime, for the store commands and waits on the engine's threads.
    pub rt: tokio::runtime::Handle,
    /// The daemon run's tag for the processes generators start (see `orphans`).
    pub generator_tag: crate::orphans::Tag,
}

impl Env {
    /// Called on the daemon's runtime.
    pub fn new(engine: Engine, generator_tag: crate::orphans::Tag) -> Env {
        Env {
            engine,
            rt: tokio::runtime::Handle::current(),
            generator_tag,
        }
    }
}

/// A create frame's script, evaluated and checked: the parts every kind has.
pub struct Loaded {
    pub script: Script,
    pub run: Closure,
    /// How many positional parameters `run` takes.
    pub params: usize,
    pub ret: ReturnOptions,
}

/// Evaluates the create frame of a `kind` processor with `ctx`, checks that its config has
/// only `allowed` keys, takes its `run` closure and its `return_options` (default suffix
/// `default_suffix`), and checks the output topic it makes for this processor's name.
pub fn load_checked(
    env: &Env,
    store: &Store,
    frame: &Frame,
    ctx: Ctx,
    kind: &str,
    allowed: &[&str],
    default_suffix: &str,
) -> Result<Loaded, String> {
    let script = load(&env.engine, store, frame, ctx)?;
    check_keys(&script.config, allowed)?;
    let (run, params) = script::closure(&script.engine, &script.config, "run").map_err(|e| e.0)?;
    let ret = ReturnOptions::parse(&script.config, default_suffix)?;
    let name = super::parse_topic(&format!("xs.{kind}."), &frame.topic).map_or("", |(n, _)| n);
    xs::validate_topic(&ret.topic(name)).map_err(|e| format!("return_options.suffix: {e}"))?;
    Ok(Loaded {
        script,
        run,
        params,
        ret,
    })
}

/// A processor script, evaluated: its engine and config record.
pub struct Script {
    pub engine: EngineState,
    pub config: Record,
    pub job: Job,
}

/// Evaluates the script of a create frame: modules as they were before the frame, store
/// commands bound to `ctx`, and a job of its own for external processes.
fn load(engine: &Engine, store: &Store, frame: &Frame, ctx: Ctx) -> Result<Script, String> {
    let source = create_source(store, frame)?;
    let modules = ctx
        .rt
        .block_on(Modules::load(store, Some(frame.id)))
        .map_err(|e| e.to_string())?;
    let mut es = engine.instance(ctx, &modules).map_err(|e| e.0)?;
    let job = Job::install(&mut es);
    let config =
        script::eval_config(&mut es, &format!("{}.nu", frame.topic), &source).map_err(|e| e.0)?;
    Ok(Script {
        engine: es,
        config,
        job,
    })
}

/// Checks that the config has only `allowed` keys.
pub fn check_keys(config: &Record, allowed: &[&str]) -> Result<(), String> {
    for k in config.columns() {
        if !allowed.contains(&k.as_str()) {
            return Err(format!(
                "unknown config key `{k}` (expected: {})",
                allowed.join(", ")
            ));
        }
    }
    Ok(())
}

/// `return_options: {suffix?, ttl?, target?}`: where and how output frames are written.
#[derive(Debug, Clone)]
pub struct ReturnOptions {
    /// Appended to the processor's name to make the output topic (`.out`, `.recv`, ...).
    pub suffix: String,
    pub ttl: Ttl,
    /// `target: "cas"`: a record is stored as JSON content instead of becoming the meta.
    pub to_cas: bool,
}

impl ReturnOptions {
    pub fn parse(config: &Record, default_suffix: &str) -> Result<ReturnOptions, String> {
        let mut o = ReturnOptions {
            suffix: default_suffix.to_string(),
            ttl: Ttl::Forever,
            to_cas: false,
        };
        let Some(v) = config.get("return_options") else {
            return Ok(o);
        };
        let r = v
            .as_record()
            .map_err(|_| "return_options must be a record {suffix?, ttl?, target?}".to_string())?;
        check_keys(r, &["suffix", "ttl", "target"]).map_err(|e| format!("return_options: {e}"))?;
        if let Some(s) = r.get("suffix") {
            let s = s
                .as_str()
                .map_err(|_| "return_options.suffix must be a string")?;
            o.suffix = if s.starts_with('.') {
                s.to_string()
            } else {
                format!(".{s}")
            };
        }
        if let Some(t) = r.get("ttl") {
            let t = t
                .as_str()
                .map_err(|_| "return_options.ttl must be a string")?;
            o.ttl = t.parse().map_err(|e| format!("return_options.ttl: {e}"))?;
        }
        if let Some(t) = r.get("target") {
            match t.as_str() {
                Ok("cas") => o.to_cas = true,
                _ => return Err("return_options.target must be \"cas\"".into()),
            }
        }
        Ok(o)
    }

    /// The output topic of processor `name`; checked when the config is read.
    pub fn topic(&self, name: &str) -> String {
        format!("{name}{}", self.suffix)
    }
}

/// An output value as a frame: a record is its meta (unless `target: "cas"`), anything
/// else its content; `stamp` is set over the meta. `None` for nothing.
pub fn output_frame(
    ctx: &Ctx,
    opts: &ReturnOptions,
    topic: &str,
    value: Value,
    stamp: &serde_json::Map<String, serde_json::Value>,
) -> Result<xs::NewFrame, nu_protocol::ShellError> {
    use crate::nu::convert;
    let (meta, content) = match value {
        Value::Record { .. } if !opts.to_cas => {
            (Some(convert::to_json(&value)?), xs::Content::None)
        }
        v => {
            let data = nu_protocol::PipelineData::value(v, None);
            (None, convert::store_content(&ctx.store, &ctx.rt, data)?)
        }
    };
    Ok(xs::NewFrame {
        topic: topic.to_string(),
        meta: Some(crate::nu::merge_meta(meta, stamp)),
        ttl: opts.ttl,
        content,
        ..Default::default()
    })
}

/// Runs `body` on a thread of its own (Nushell blocks); when `stop` turns true, the job is
/// killed so the script and its externals end.
pub fn on_thread(
    name: String,
    job: Job,
    mut stop: watch::Receiver<bool>,
    body: impl FnOnce() -> Outcome + Send + 'static,
) -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
    Box::pin(async move {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name(format!("xs-{name}"))
            .spawn(move || {
                let _ = tx.send(body());
            });
        if let Err(e) = spawned {
            return Outcome::Failed(format!("starting a thread: {e}"));
        }
        let killer = {
            let job = job.clone();
            tokio::spawn(async move {
                crate::daemon::stopped(&mut stop).await;
                job.kill();
            })
        };
        let outcome = rx
            .await
            .unwrap_or_else(|_| Outcome::Failed("the processor's thread panicked".into()));
        killer.abort();
        outcome
    })
}
