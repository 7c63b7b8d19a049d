//! Handlers (and cross.stream's actors): `{run: {|frame, state| ...}, initial?, start?,
//! topics?, pulse?, return_options?}`. Frames arrive one at a time in id order. The closure
//! answers `{out?, next?}`: `out` is emitted (`<name>.out`), `next` is the state for the next
//! frame; without `next` the handler finishes (`fin.ok`). The first state is `initial`, else
//! the default of the closure's state parameter (`{|frame, n = 0| ...}`), else null. Output
//! frames carry `handler_id` (an actor's: `actor_id`) and `frame_id`; a handler never sees its
//! own output.
//!
//! Exactly-once: the frames of a burst are run one after another, then their output (returned
//! or `.append`ed) and the checkpoint (position and state) are committed in one atomic batch.
//! After a crash the handler resumes after the last committed frame with the committed state.
//! On a shared stream the owner first writes a fencing checkpoint carrying its token
//! (`Instance::owner`), then commits each burst only while the checkpoint is still the one it
//! wrote last: a deposed owner's late burst is refused whole (no output, no checkpoint).

use std::sync::Arc;
use std::time::Duration;

use nu_engine::ClosureEval;
use nu_protocol::engine::Closure;
use nu_protocol::{IntoValue, PipelineData, Span, Value};
use xs::lifecycle::Vocab;
use xs::reader::{Event, Reader};
use xs::{Follow, Frame, Id, ReadOptions, Store, TopicFilter};

use super::nu_config::{self, check_keys, output_frame, Env, ReturnOptions, Script};
use super::{Instance, Kind, Outcome};
use crate::nu::convert::{frame_value, to_json};
use crate::nu::{script::ScriptError, Batch, Ctx};

/// Most frames run between two commits.
const BURST: usize = 1024;

pub struct Handler(pub Env);

/// Where a handler without a checkpoint starts.
#[derive(Debug, Clone, Copy)]
enum Start {
    First,
    /// After its create frame.
    New,
    After(Id),
}

pub struct Config {
    script: Script,
    run: Closure,
    batch: Arc<Batch>,
    ctx: Ctx,
    initial: serde_json::Value,
    start: Start,
    topics: TopicFilter,
    pulse: Option<Duration>,
    ret: ReturnOptions,
}

impl Kind for Handler {
    type Config = Config;

    fn parse(&self, store: &Store, frame: &Frame, vocab: &'static Vocab) -> Result<Config, String> {
        let batch = Arc::new(Batch::new(vocab.output));
        let ctx = Ctx {
            batch: Some(batch.clone()),
            ..Ctx::new(store.clone(), self.0.rt.clone())
        };
        let allowed = [
            "run",
            "initial",
            "start",
            "topics",
            "pulse",
            "return_options",
        ];
        let l = nu_config::load_checked(
            &self.0,
            store,
            frame,
            ctx.clone(),
            vocab.word,
            &allowed,
            ".out",
        )?;
        let (script, run, params, ret) = (l.script, l.run, l.params, l.ret);
        let c = &script.config;
        if params == 0 || params > 2 {
            return Err(
                "run must take the frame and, optionally, the state: {|frame, state| ...}".into(),
            );
        }
        let initial = match c.get("initial") {
            Some(v) => to_json(v).map_err(|e| ScriptError::shell(&script.engine, &e).0)?,
            None => state_default(&script, &run)?,
        };
        let start = match c.get("start") {
            None => Start::New,
            Some(v) => match v.as_str() {
                Ok("first") => Start::First,
                Ok("new") => Start::New,
                Ok(id) => Start::After(xs::frame::parse_id(id).map_err(|_| {
                    format!("start must be \"first\", \"new\" or a frame id, not {id:?}")
                })?),
                Err(_) => return Err("start must be a string".into()),
            },
        };
        let topics = match c.get("topics") {
            None => TopicFilter::All,
            // A value with no JSON form (a closure, ...) is neither a string nor a list.
            Some(v) => TopicFilter::from_json(&to_json(v).unwrap_or_default())
                .map_err(|e| e.to_string())?,
        };
        let pulse = match c.get("pulse") {
            None => None,
            Some(Value::Int { val, .. }) if *val > 0 => Some(Duration::from_millis(*val as u64)),
            Some(Value::Duration { val, .. }) if *val > 0 => {
                Some(Duration::from_nanos(*val as u64))
            }
            Some(_) => return Err("pulse must be a positive number of milliseconds".into()),
        };
        Ok(Config {
            script,
            run,
            batch,
            ctx,
            initial,
            start,
            topics,
            pulse,
            ret,
        })
    }

    fn rearm(config: &Config) {
        config.script.job.reset();
        // A burst stopped before its commit runs again from the checkpoint.
        config.batch.take();
    }

    fn run(
        &self,
        inst: Instance<Config>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Outcome> + Send>> {
        let job = inst.config.script.job.clone();
        let name = format!("handler-{}", inst.name);
        let stop = inst.stop.clone();
        nu_config::on_thread(name, job, stop, move || match run(&inst) {
            Ok(o) => o,
            Err(e) => Outcome::Failed(e),
        })
    }
}

/// The default of `run`'s state parameter (`{|frame, n = 0| ...}`), or null.
fn state_default(script: &Script, run: &Closure) -> Result<serde_json::Value, String> {
    let sig = &script.engine.get_block(run.block_id).signature;
    let param = match sig.required_positional.len() {
        0 => sig.optional_positional.get(1),
        1 => sig.optional_positional.first(),
        _ => None,
    };
    match param.and_then(|p| p.default_value.as_ref()) {
        Some(v) => to_json(v).map_err(|e| {
            format!(
                "the state parameter's default: {}",
                ScriptError::shell(&script.engine, &e).0
            )
        }),
        None => Ok(serde_json::Value::Null),
    }
}

/// The checkpoint of handler instance `create_id`: `{position, state}` as JSON.
fn checkpoint_name(name: &str, create_id: &Id) -> String {
    format!("handler/{name}/{create_id}")
}

/// What one run of the closure asked for.
enum Step {
    Next(Value),
    Finish,
}

/// A checkpoint's position and state (`None`: where the config says to start).
fn resume(
    inst: &Instance<Config>,
    bytes: Option<&[u8]>,
) -> Result<(Option<Id>, serde_json::Value), String> {
    let c = &inst.config;
    match bytes {
        Some(bytes) => {
            let v: serde_json::Value = serde_json::from_slice(bytes)
                .map_err(|e| format!("reading the handler's checkpoint: {e}"))?;
            let pos = v
                .get("position")
                .and_then(|p| p.as_str())
                .and_then(|p| xs::frame::parse_id(p).ok());
            Ok((pos, v.get("state").cloned().unwrap_or_default()))
        }
        None => {
            let pos = match c.start {
                Start::First => None,
                Start::New => Some(inst.create_id),
                Start::After(id) => Some(id),
            };
            Ok((pos, c.initial.clone()))
        }
    }
}

/// The checkpoint's value: position, state and, on a shared stream, the owner's token.
fn checkpoint_value(pos: Option<Id>, state: serde_json::Value, owner: Option<&str>) -> Vec<u8> {
    let mut v = serde_json::json!({
        "position": pos.map(|p| p.to_string()),
        "state": state,
    });
    if let Some(o) = owner {
        v["owner"] = serde_json::json!(o);
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

/// On a shared stream: makes the checkpoint this owner's (its current position and state,
/// with the owner's token), so that no earlier owner can commit any more. Answers the
/// position, the state and what the checkpoint now holds; `None` if told to stop first.
#[allow(clippy::type_complexity)]
fn fence(
    inst: &Instance<Config>,
    ck: &str,
    token: &str,
) -> Result<Option<(Option<Id>, serde_json::Value, Vec<u8>)>, String> {
    let rt = &inst.config.ctx.rt;
    loop {
        if stopping(inst) {
            return Ok(None);
        }
        let current = rt
            .block_on(inst.store.checkpoint(ck))
            .map_err(|e| e.to_string())?;
        let (pos, state) = resume(inst, current.as_deref())?;
        let value = checkpoint_value(pos, state.clone(), Some(token));
        let batch = xs::Batch {
            frames: Vec::new(),
            checkpoint: Some((ck.to_string(), value.clone())),
            fence: Some(match current {
                Some(c) => xs::Fence::Holds(c),
                None => xs::Fence::Unset,
            }),
        };
        match rt.block_on(inst.store.append_batch(batch)) {
            Ok(_) => return Ok(Some((pos, state, value))),
            // A commit landed between the read and the fence (the previous owner's last
            // burst): read again.
            Err(xs::Error::Fenced { .. }) => continue,
            Err(e) => return Err(format!("fencing the handler's checkpoint: {e}")),
        }
    }
}

fn run(inst: &Instance<Config>) -> Result<Outcome, String> {
    let c = &inst.config;
    let es = &c.script.engine;
    let store = &inst.store;
    let ck = checkpoint_name(&inst.name, &inst.create_id);
    let span = Span::unknown();
    // What the checkpoint holds, as this owner wrote it (shared streams only).
    let mut held: Option<Vec<u8>> = None;
    let (mut pos, state) = match inst.fence() {
        Some(token) => match fence(inst, &ck, token)? {
            Some((pos, state, value)) => {
                held = Some(value);
                (pos, state)
            }
            None => return Ok(Outcome::Stopped),
        },
        None => {
            let checkpoint = c.ctx.rt.block_on(store.checkpoint(&ck));
            resume(inst, checkpoint.map_err(|e| e.to_string())?.as_deref())?
        }
    };
    let mut state = state.into_value(span);
    if let Some(p) = pos {
        inst.status.position(p);
    }
    let own_id = inst.create_id.to_string();
    let own_lifecycle = format!("xs.{}.{}.", inst.vocab.word, inst.name);
    let out_topic = c.ret.topic(&inst.name);
    let stack = crate::nu::script::stack();
    let mut closure = ClosureEval::new(es, &stack, c.run.clone());
    let follow = match c.pulse {
        Some(p) => Follow::Pulse(u64::try_from(p.as_millis()).unwrap_or(u64::MAX).max(1)),
        None => Follow::On,
    };
    let mut reader = {
        let _rt = c.ctx.rt.enter();
        store.read_quiet(ReadOptions {
            follow,
            after: pos,
            topic: c.topics.clone(),
            ..ReadOptions::default()
        })
    };
    loop {
        if stopping(inst) {
            return Ok(Outcome::Stopped);
        }
        let Some(events) = next_burst(inst, &mut reader, &c.ctx.rt) else {
            return Ok(Outcome::Stopped);
        };
        let mut finished = false;
        for event in events.map_err(|e| e.to_string())? {
            let f = match event {
                Event::Threshold(_) => continue,
                Event::Pulse(p) => p,
                Event::Frame(r) => {
                    let f = r.frame().map_err(|e| e.to_string())?;
                    // Handlers see stored frames only; never their own lifecycle or output.
                    let ephemeral = f.ttl == Some(xs::Ttl::Ephemeral);
                    if ephemeral
                        || f.topic.starts_with(&own_lifecycle)
                        || is_own(&f, inst.vocab.output, &own_id)
                    {
                        pos = Some(f.id);
                        continue;
                    }
                    f
                }
            };
            let pulse = f.topic == "xs.pulse";
            let before = c.batch.len();
            match call(&mut closure, c, &f, &state, inst.create_id, &out_topic) {
                Ok(step) => {
                    if !pulse {
                        pos = Some(f.id);
                    }
                    if apply(step, &mut state) {
                        finished = true;
                        break;
                    }
                }
                Err(_) if stopping(inst) => return Ok(Outcome::Stopped),
                Err(e) => {
                    // What the frames before this one produced is kept; this one's is not.
                    c.batch.truncate(before);
                    if !commit(inst, &ck, pos, &state, &mut held)? {
                        return Ok(Outcome::Stopped);
                    }
                    return Ok(Outcome::FailedOn(format!("on frame {}: {e}", f.id), f.id));
                }
            }
        }
        if stopping(inst) {
            // Not committed: the burst runs again when (if) the handler resumes.
            return Ok(Outcome::Stopped);
        }
        if !commit(inst, &ck, pos, &state, &mut held)? {
            return Ok(Outcome::Stopped);
        }
        if let Some(p) = pos {
            inst.status.position(p);
        }
        if finished {
            return Ok(Outcome::Done);
        }
    }
}

/// Whether the handler was told to stop (term, replaced, daemon stopping).
fn stopping(inst: &Instance<Config>) -> bool {
    *inst.stop.borrow() || inst.config.script.job.interrupted()
}

fn is_own(f: &Frame, key: &str, own_id: &str) -> bool {
    f.meta
        .as_ref()
        .and_then(|m| m.get(key))
        .and_then(|v| v.as_str())
        == Some(own_id)
}

/// Runs the closure on one frame; its output goes to the batch.
fn call(
    closure: &mut ClosureEval,
    c: &Config,
    f: &Frame,
    state: &Value,
    own_id: Id,
    out_topic: &str,
) -> Result<Step, String> {
    let es = &c.script.engine;
    let span = Span::unknown();
    c.batch.set_frame(own_id, f.id);
    let shell = |e: nu_protocol::ShellError| ScriptError::shell(es, &e).0;
    let result = closure
        .add_arg(frame_value(f, false, span))
        .and_then(|cl| cl.add_arg(state.clone()))
        .and_then(|cl| cl.run_with_input(PipelineData::empty()))
        .and_then(|p| p.into_value(span))
        .map_err(shell)?;
    let mut record = match result {
        Value::Nothing { .. } => return Ok(Step::Finish),
        Value::Record { val, .. } => val.into_owned(),
        other => {
            return Err(format!(
                "a handler returns {{out?, next?}} (or nothing to finish), not {}",
                other.get_type()
            ))
        }
    };
    check_keys(&record, &["out", "next"]).map_err(|e| format!("the handler's answer: {e}"))?;
    if let Some(out) = record.remove("out") {
        if !matches!(out, Value::Nothing { .. }) {
            let frame =
                output_frame(&c.ctx, &c.ret, out_topic, out, &c.batch.stamp()).map_err(shell)?;
            c.batch.push(frame);
        }
    }
    Ok(match record.remove("next") {
        Some(next) => Step::Next(next),
        None => Step::Finish,
    })
}

/// Applies a step to the state; true when the handler finishes.
fn apply(step: Step, state: &mut Value) -> bool {
    match step {
        Step::Next(v) => {
            *state = v;
            false
        }
        Step::Finish => true,
    }
}

/// Commits the batch's frames and the checkpoint in one atomic, durable write; on a shared
/// stream only if the checkpoint still holds what this owner wrote last (`held`). Answers
/// false when it does not: another daemon owns the handler now, nothing was written.
fn commit(
    inst: &Instance<Config>,
    ck: &str,
    pos: Option<Id>,
    state: &Value,
    held: &mut Option<Vec<u8>>,
) -> Result<bool, String> {
    let c = &inst.config;
    let state = to_json(state).map_err(|e| {
        format!(
            "the handler's state must be data that JSON can hold: {}",
            ScriptError::shell(&c.script.engine, &e).0
        )
    })?;
    let value = checkpoint_value(pos, state, inst.fence());
    let frames = c.batch.take();
    let r = c.ctx.rt.block_on(inst.store.append_batch(xs::Batch {
        frames,
        checkpoint: Some((ck.to_string(), value.clone())),
        fence: held.take().map(xs::Fence::Holds),
    }));
    match r {
        Ok(_) => {
            if inst.fence().is_some() {
                *held = Some(value);
            }
            Ok(true)
        }
        Err(xs::Error::Fenced { .. }) => {
            tracing::warn!(handler = %inst.name, "another daemon owns this handler now; its burst is dropped here");
            Ok(false)
        }
        Err(e) => Err(format!("committing the handler's output: {e}")),
    }
}

/// The next burst of events (waiting for at least one, then at most [`BURST`]); `None`
/// when the handler must stop or the read ended.
fn next_burst(
    inst: &Instance<Config>,
    reader: &mut Reader,
    rt: &tokio::runtime::Handle,
) -> Option<xs::Result<Vec<Event>>> {
    let mut stop = inst.stop.clone();
    rt.block_on(async {
        let first = tokio::select! {
            _ = crate::daemon::stopped(&mut stop) => return None,
            e = reader.next() => e?,
        };
        Some(first.and_then(|first| {
            let mut events = vec![first];
            events.extend(reader.ready(BURST - 1)?);
            Ok(events)
        }))
    })
}
