//! Actions: `{run: {|frame| ...}, return_options?}`. Appending `<name>.call` (content = the
//! closure's input, `meta.args` = arguments) runs it, each call on a thread of its own; the
//! result lands in `<name>.response`, a failure in `<name>.error`, both with `action_id` and
//! `frame_id` (the call) in their meta. Calls appended while the action was not running (the
//! daemon was down) and not yet answered are run when it starts. An answer carries the call's
//! id as its idempotency key: one answer per call, even across a takeover.

use std::collections::HashSet;

use nu_engine::ClosureEval;
use nu_protocol::engine::Closure;
use nu_protocol::{IntoValue, PipelineData, Span};
use xs::lifecycle::Vocab;
use xs::reader::Event;
use xs::{Follow, Frame, Id, NewFrame, ReadOptions, Store, TopicFilter};

use super::nu_config::{self, output_frame, Env, ReturnOptions, Script};
use super::{Instance, Kind, Outcome};
use crate::nu::convert::content_value;
use crate::nu::{script::ScriptError, Ctx, APPEND_META_ENV};

pub struct Action(pub Env);

pub struct Config {
    script: Script,
    run: Closure,
    ctx: Ctx,
    ret: ReturnOptions,
}

impl Kind for Action {
    type Config = Config;

    fn parse(&self, store: &Store, frame: &Frame, vocab: &'static Vocab) -> Result<Config, String> {
        let ctx = Ctx::new(store.clone(), self.0.rt.clone());
        let l = nu_config::load_checked(
            &self.0,
            store,
            frame,
            ctx.clone(),
            vocab.word,
            &["run", "return_options"],
            ".response",
        )?;
        if l.params > 1 {
            return Err("an action's run takes the call frame: {|frame| ...}".into());
        }
        Ok(Config {
            script: l.script,
            run: l.run,
            ctx,
            ret: l.ret,
        })
    }

    fn rearm(config: &Config) {
        config.script.job.reset();
    }

    fn run(
        &self,
        inst: Instance<Config>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Outcome> + Send>> {
        Box::pin(serve(inst))
    }
}

/// Runs every call: first those not answered yet, then each new one as it arrives.
async fn serve(inst: Instance<Config>) -> Outcome {
    let inst = std::sync::Arc::new(inst);
    let response = inst.config.ret.topic(&inst.name);
    let answered = match answered(&inst.store, &inst.name, &response, inst.create_id).await {
        Ok(a) => a,
        Err(e) => return Outcome::Failed(format!("reading pending calls: {e}")),
    };
    let topic = match TopicFilter::parse(&format!("{}.call", inst.name)) {
        Ok(t) => t,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let mut calls = inst.store.read_quiet(ReadOptions {
        follow: Follow::On,
        after: Some(inst.create_id),
        topic,
        ..ReadOptions::default()
    });
    let mut stop = inst.stop.clone();
    loop {
        tokio::select! {
            _ = crate::daemon::stopped(&mut stop) => return Outcome::Stopped,
            e = calls.next() => match e {
                Some(Ok(Event::Frame(r))) => match r.frame() {
                    Ok(f) if !answered.contains(&f.id) => spawn_call(&inst, f),
                    Ok(_) => {}
                    Err(e) => return Outcome::Failed(format!("reading a call: {e}")),
                },
                Some(Ok(_)) => {}
                Some(Err(e)) => return Outcome::Failed(format!("reading calls: {e}")),
                None => return Outcome::Stopped,
            },
        }
    }
}

/// The calls already answered (by a response or an error frame naming them).
async fn answered(
    store: &Store,
    name: &str,
    response: &str,
    create_id: Id,
) -> xs::Result<HashSet<Id>> {
    let opts = ReadOptions {
        topic: TopicFilter::parse(&format!("{response},{name}.error"))?,
        after: Some(create_id),
        ..ReadOptions::default()
    };
    Ok(store
        .frames(opts)
        .await?
        .iter()
        .filter_map(|f| f.meta.as_ref()?.get("frame_id")?.as_str()?.parse().ok())
        .collect())
}

fn spawn_call(inst: &std::sync::Arc<Instance<Config>>, call: Frame) {
    let inst = inst.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("xs-action-{}", inst.name))
        .spawn(move || {
            let c = &inst.config;
            let mut stamp = serde_json::Map::new();
            stamp.insert("action_id".into(), serde_json::Value::String(inst.create_id.to_string()));
            stamp.insert("frame_id".into(), serde_json::Value::String(call.id.to_string()));
            let mut answer = match run_call(&inst, &call, &stamp) {
                Ok(frame) => frame,
                Err(e) => {
                    inst.status.state("active", Some(e.clone()));
                    let mut meta = stamp.clone();
                    meta.insert("error".into(), serde_json::Value::String(e));
                    NewFrame {
                        topic: format!("{}.error", inst.name),
                        meta: Some(serde_json::Value::Object(meta)),
                        ..NewFrame::default()
                    }
                }
            };
            // One answer per call, even if two daemons of a shared stream ran it (its owner
            // died after running it, before its answer reached the next owner's copy).
            if answer.ttl != xs::Ttl::Ephemeral {
                answer.key = Some(format!("call-{}", call.id));
            }
            match c.ctx.rt.block_on(inst.store.append(answer)) {
                Ok(f) => inst.status.position(f.id),
                Err(e) => tracing::warn!(action = %inst.name, error = %e, "could not append an action's answer"),
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start an action call thread");
    }
}

/// Runs one call: the call frame as the argument, its content as the input.
fn run_call(
    inst: &Instance<Config>,
    call: &Frame,
    stamp: &serde_json::Map<String, serde_json::Value>,
) -> Result<NewFrame, String> {
    let c = &inst.config;
    let es = &c.script.engine;
    let span = Span::unknown();
    let shell = |e: nu_protocol::ShellError| ScriptError::shell(es, &e).0;
    let input = match &call.hash {
        None => PipelineData::empty(),
        Some(h) => match c
            .ctx
            .rt
            .block_on(inst.store.cas_read(h))
            .map_err(|e| e.to_string())?
        {
            Some(bytes) => PipelineData::value(content_value(bytes, span), None),
            None => return Err(format!("the call's content {h} is missing")),
        },
    };
    let mut stack = crate::nu::script::stack();
    stack.add_env_var(
        APPEND_META_ENV.into(),
        serde_json::Value::Object(stamp.clone()).into_value(span),
    );
    let mut closure = ClosureEval::new(es, &stack, c.run.clone());
    let value = closure
        .add_arg(crate::nu::convert::frame_value(call, false, span))
        .and_then(|cl| cl.run_with_input(input))
        .and_then(|p| p.into_value(span))
        .map_err(shell)?;
    output_frame(&c.ctx, &c.ret, &c.ret.topic(&inst.name), value, stamp).map_err(shell)
}
