//! The embedded Nushell engine (nu-* 0.115.1): one base engine state with the standard
//! commands and the standard library (`use std/...`), built once; each script run (an eval, a processor) gets its own copy with the
//! store commands bound to the store and the `xs.module.*` modules it may `use`.
//! Evaluation blocks, so it always runs on dedicated threads, never on the async runtime.

mod commands;
pub mod convert;
mod job;
mod modules;
pub mod script;

use std::path::Path;
use std::sync::{Arc, Mutex};

use nu_protocol::engine::{EngineState, Stack, StateWorkingSet};
use nu_protocol::{Config, IntoValue, Record, Span, Value};
use xs::{NewFrame, Store};

pub use job::Job;
pub use modules::Modules;
pub use script::ScriptError;

/// The base engine: standard commands and the daemon's environment; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    base: Arc<EngineState>,
}

impl Engine {
    /// Builds the base engine (a few milliseconds). `cwd` becomes `$env.PWD`.
    pub fn new(cwd: &Path) -> Result<Engine, ScriptError> {
        let mut es = nu_cmd_lang::create_default_context();
        es = nu_command::add_shell_command_context(es);
        es = nu_cli::add_cli_context(es);
        let span = Span::unknown();
        // Fancy without colours: the message, then `╭─[name:line:col]` and the source line.
        let config = Config {
            use_ansi_coloring: nu_protocol::UseAnsiColoring::False,
            error_style: nu_protocol::ErrorStyle::Fancy,
            ..Config::default()
        };
        es.set_config(config.clone());
        es.add_env_var("config".into(), config.into_value(span));
        es.add_env_var("ENV_CONVERSIONS".into(), Value::record(Record::new(), span));
        nu_cli::gather_parent_env_vars(&mut es, cwd);
        let mut stack = Stack::new();
        nu_engine::convert_env_values(&mut es, &mut stack)
            .map_err(|e| ScriptError::shell(&es, &e))?;
        es.merge_env(&mut stack)
            .map_err(|e| ScriptError::shell(&es, &e))?;
        es.generate_nu_constant();
        // The standard library (`use std/random`, `use std/log`, ...) and its prelude, as in
        // `nu` itself: kept in memory, nothing read from disk.
        nu_std::load_standard_library(&mut es)
            .map_err(|e| ScriptError::msg(format!("loading the standard library: {e}")))?;
        // Scripts run headless: `input` fails instead of waiting for a terminal.
        es.is_interactive = false;
        Ok(Engine { base: Arc::new(es) })
    }

    /// A copy of the engine for one use: the store commands bound to `ctx`, and `modules`
    /// registered so that scripts can `use` them.
    pub fn instance(&self, ctx: Ctx, modules: &Modules) -> Result<EngineState, ScriptError> {
        let mut es = (*self.base).clone();
        let mut ws = StateWorkingSet::new(&es);
        commands::add(&mut ws, Arc::new(ctx));
        modules.register(&mut ws);
        let delta = ws.render();
        es.merge_delta(delta)
            .map_err(|e| ScriptError::shell(&es, &e))?;
        Ok(es)
    }
}

/// What the store commands of one engine instance are bound to.
#[derive(Clone)]
pub struct Ctx {
    pub store: Store,
    /// The daemon's runtime, to run store futures from the engine's threads.
    pub rt: tokio::runtime::Handle,
    /// Set for handlers: `.append` adds to this batch instead of appending at once.
    pub batch: Option<Arc<Batch>>,
}

/// The environment variable whose record `.append` puts under each frame's meta (the
/// script's own `--meta` keys win): how a generator or an action call marks its frames.
pub const APPEND_META_ENV: &str = "XS_APPEND_META";

impl Ctx {
    pub fn new(store: Store, rt: tokio::runtime::Handle) -> Ctx {
        Ctx {
            store,
            rt,
            batch: None,
        }
    }
}

/// The frames a handler's run has appended so far, committed with its checkpoint.
pub struct Batch {
    frames: Mutex<Vec<NewFrame>>,
    /// The meta key naming the handler (`handler_id`, an actor's `actor_id`).
    key: &'static str,
    /// The handler and the frame at hand, set over the meta of each frame (`<key>`,
    /// `frame_id`).
    at: Mutex<Option<(xs::Id, xs::Id)>>,
}

impl Batch {
    /// An empty batch whose frames name their handler under `key`.
    pub fn new(key: &'static str) -> Batch {
        Batch {
            frames: Mutex::default(),
            key,
            at: Mutex::default(),
        }
    }

    /// The frame the handler is running on now.
    pub fn set_frame(&self, handler_id: xs::Id, frame_id: xs::Id) {
        *self.at.lock().unwrap_or_else(|e| e.into_inner()) = Some((handler_id, frame_id));
    }

    /// `{<key>, frame_id}` of the frame at hand.
    pub fn stamp(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        if let Some((h, f)) = *self.at.lock().unwrap_or_else(|e| e.into_inner()) {
            m.insert(self.key.into(), serde_json::Value::String(h.to_string()));
            m.insert("frame_id".into(), serde_json::Value::String(f.to_string()));
        }
        m
    }

    pub fn push(&self, mut frame: NewFrame) {
        frame.meta = Some(merge_meta(frame.meta.take(), &self.stamp()));
        self.frames
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(frame);
    }

    pub fn len(&self) -> usize {
        self.frames.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops the frames after the first `n`.
    pub fn truncate(&self, n: usize) {
        self.frames
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .truncate(n);
    }

    pub fn take(&self) -> Vec<NewFrame> {
        std::mem::take(&mut *self.frames.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// `meta` (an object, or nothing) with `stamp`'s keys set over it. A meta that is not an
/// object is kept under `"value"`.
pub fn merge_meta(
    meta: Option<serde_json::Value>,
    stamp: &serde_json::Map<String, serde_json::Value>,
) -> serde_json::Value {
    let mut m = match meta {
        None | Some(serde_json::Value::Null) => serde_json::Map::new(),
        Some(serde_json::Value::Object(m)) => m,
        Some(other) => {
            let mut m = serde_json::Map::new();
            m.insert("value".into(), other);
            m
        }
    };
    for (k, v) in stamp {
        m.insert(k.clone(), v.clone());
    }
    serde_json::Value::Object(m)
}
