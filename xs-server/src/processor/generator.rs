//! Generators (and cross.stream's services): `{run: {|| ...}, duplex?, return_options?}`.
//! Each value the pipeline produces (or each line of a byte stream) becomes a `<name>.recv`
//! frame (`source_id` in its meta; what the script `.append`s carries a service's
//! `service_id`);
//! with `duplex`, the content of each `<name>.send` frame is fed to the pipeline's input.
//! `restart` says what happens when the pipeline ends: `"always"` (the default), `"on-failure"`
//! (an end without error finishes: `fin.ok`) or `"never"` (an end finishes, a failure fails:
//! `fin.error`). When the pipeline ends and restarts, it does so after a back-off: 1 s, doubling up to 60 s while runs
//! keep ending within a minute, back to 1 s after a run that lasted a minute. External
//! processes live in the generator's job and are killed (process group) when it stops; they
//! carry the daemon run's tag, so they die with the daemon however it dies (see `orphans`).

use std::io::BufRead;
use std::time::{Duration, Instant};

use nu_engine::ClosureEval;
use nu_protocol::engine::Closure;
use nu_protocol::{ByteStream, ByteStreamType, PipelineData, Signals, Span, Value};
use std::sync::{Arc, Mutex};

use xs::lifecycle::Vocab;
use xs::{Frame, Id, Store};

use super::nu_config::{self, output_frame, Env, ReturnOptions, Script};
use super::{Instance, Kind, Outcome};
use crate::nu::{script::ScriptError, Ctx, APPEND_META_ENV};

const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A run at least this long is healthy: the back-off starts over.
const HEALTHY: Duration = Duration::from_secs(60);

pub struct Generator(pub Env);

/// When a generator's pipeline runs again after it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Restart {
    Always,
    OnFailure,
    Never,
}

pub struct Config {
    script: Script,
    restart: Restart,
    tag: crate::orphans::Tag,
    run: Closure,
    ctx: Ctx,
    duplex: bool,
    ret: ReturnOptions,
}

impl Kind for Generator {
    type Config = Config;

    fn parse(&self, store: &Store, frame: &Frame, vocab: &'static Vocab) -> Result<Config, String> {
        let ctx = Ctx::new(store.clone(), self.0.rt.clone());
        let l = nu_config::load_checked(
            &self.0,
            store,
            frame,
            ctx.clone(),
            vocab.word,
            &["run", "duplex", "restart", "return_options"],
            ".recv",
        )?;
        if l.params != 0 {
            return Err("a generator's run takes no parameters: {|| ...} (duplex input is the pipeline input)".into());
        }
        let duplex = match l.script.config.get("duplex") {
            None => false,
            Some(Value::Bool { val, .. }) => *val,
            Some(_) => return Err("duplex must be true or false".into()),
        };
        let restart = match l.script.config.get("restart") {
            None => Restart::Always,
            Some(v) => match v.as_str() {
                Ok("always") => Restart::Always,
                Ok("on-failure") => Restart::OnFailure,
                Ok("never") => Restart::Never,
                _ => return Err("restart must be \"always\", \"on-failure\" or \"never\"".into()),
            },
        };
        Ok(Config {
            script: l.script,
            restart,
            tag: self.0.generator_tag.clone(),
            run: l.run,
            ctx,
            duplex,
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
        let job = inst.config.script.job.clone();
        let name = format!("generator-{}", inst.name);
        let stop = inst.stop.clone();
        // Duplex input starts after the newest frame now, before `active` is appended: a
        // client that waits for `active` and then sends is never missed.
        Box::pin(async move {
            let fed = Arc::new(Mutex::new(inst.store.last_id().await.ok().flatten()));
            nu_config::on_thread(name, job, stop, move || supervise(&inst, fed)).await
        })
    }
}

/// Runs the pipeline again and again until stopped.
fn supervise(inst: &Instance<Config>, fed: Arc<Mutex<Option<Id>>>) -> Outcome {
    let c = &inst.config;
    let mut backoff = BACKOFF_FIRST;
    loop {
        let started = Instant::now();
        let result = run_once(inst, fed.clone());
        c.script.job.kill_externals();
        if *inst.stop.borrow() || c.script.job.interrupted() || !inst.held() {
            return Outcome::Stopped;
        }
        match (result, c.restart) {
            (Ok(()), Restart::OnFailure | Restart::Never) => return Outcome::Done,
            (Err(e), Restart::Never) => return Outcome::Failed(e),
            (Ok(()), Restart::Always) => {
                tracing::info!(generator = %inst.name, "pipeline ended; restarting");
                inst.status.state("restarting", None);
            }
            (Err(e), _) => {
                tracing::warn!(generator = %inst.name, error = %e, "pipeline failed; restarting");
                inst.status.state("restarting", Some(e));
            }
        }
        if started.elapsed() >= HEALTHY {
            backoff = BACKOFF_FIRST;
        }
        let mut stop = inst.stop.clone();
        let stopped = c.ctx.rt.block_on(async {
            tokio::select! {
                _ = crate::daemon::stopped(&mut stop) => true,
                _ = tokio::time::sleep(backoff) => false,
            }
        });
        if stopped {
            return Outcome::Stopped;
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
        inst.status.state("active", None);
    }
}

/// One run of the pipeline: its output appended as `<name>.recv` frames.
fn run_once(inst: &Instance<Config>, fed: Arc<Mutex<Option<Id>>>) -> Result<(), String> {
    let c = &inst.config;
    let es = &c.script.engine;
    let span = Span::unknown();
    let shell = |e: nu_protocol::ShellError| ScriptError::shell(es, &e).0;
    let id = serde_json::Value::String(inst.create_id.to_string());
    let mut stamp = serde_json::Map::new();
    stamp.insert(inst.vocab.output.into(), id.clone());
    let mut appended = serde_json::Map::new();
    appended.insert(inst.vocab.append.into(), id);
    let mut stack = crate::nu::script::stack();
    stack.add_env_var(
        APPEND_META_ENV.into(),
        nu_protocol::IntoValue::into_value(serde_json::Value::Object(appended), span),
    );
    stack.add_env_var(
        crate::orphans::ENV.into(),
        Value::string(c.tag.as_str(), span),
    );
    let input = if c.duplex {
        duplex_input(inst, fed, es.signals().clone())
    } else {
        PipelineData::empty()
    };
    let piped = stack.push_redirection(
        Some(nu_protocol::engine::Redirection::Pipe(
            nu_protocol::OutDest::PipeSeparate,
        )),
        None,
    );
    let mut closure = ClosureEval::new_preserve_out_dest(es, &piped, c.run.clone());
    let out = closure.run_with_input(input).map_err(shell)?;
    let topic = c.ret.topic(&inst.name);
    let emit = |v: Value| -> Result<(), String> {
        if matches!(v, Value::Nothing { .. }) {
            return Ok(());
        }
        if let Value::Error { error, .. } = v {
            return Err(shell(*error));
        }
        // After a pause past the lease another daemon runs the generator: what this one's
        // process printed meanwhile is dropped, not appended twice.
        if !inst.held() {
            return Err("its lease lapsed here (another daemon runs it now)".into());
        }
        let frame = output_frame(&c.ctx, &c.ret, &topic, v, &stamp).map_err(shell)?;
        c.ctx
            .rt
            .block_on(inst.store.append(frame))
            .map(|f| inst.status.position(f.id))
            .map_err(|e| e.to_string())
    };
    match out {
        PipelineData::Empty => Ok(()),
        PipelineData::Value(v, _) => emit(v),
        PipelineData::ListStream(s, _) => {
            for v in s {
                emit(v)?;
            }
            Ok(())
        }
        PipelineData::ByteStream(s, _) => match s.into_child() {
            Ok(mut child) => {
                if let Some(stdout) = child.stdout.take() {
                    for line in std::io::BufReader::new(stdout).lines() {
                        let line =
                            line.map_err(|e| format!("reading the pipeline's output: {e}"))?;
                        emit(Value::string(line, span))?;
                    }
                }
                child.wait().map_err(shell)
            }
            Err(s) => {
                if let Some(lines) = s.lines() {
                    for line in lines {
                        emit(Value::string(line.map_err(shell)?, span))?;
                    }
                }
                Ok(())
            }
        },
    }
}

/// The pipeline's input for a duplex generator: the content of each `<name>.send` frame
/// after `fed` (the last one fed to any run), each ending with a newline. Frames are read
/// from the store after that position, then followed live, so none falls between runs.
fn duplex_input(
    inst: &Instance<Config>,
    fed: Arc<Mutex<Option<Id>>>,
    signals: Signals,
) -> PipelineData {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(64);
    let store = inst.store.clone();
    let topic = format!("{}.send", inst.name);
    let mut stop = inst.stop.clone();
    inst.config.ctx.rt.spawn(async move {
        let Ok(topic) = xs::TopicFilter::parse(&topic) else {
            return;
        };
        let after = *fed.lock().unwrap_or_else(|e| e.into_inner());
        let mut sends = store.read_quiet(xs::ReadOptions {
            follow: xs::Follow::On,
            after,
            topic,
            ..Default::default()
        });
        loop {
            let record = tokio::select! {
                _ = crate::daemon::stopped(&mut stop) => return,
                e = sends.next() => match e {
                    Some(Ok(xs::reader::Event::Frame(r))) => r,
                    Some(Ok(_)) => continue,
                    _ => return,
                },
            };
            // Only stored sends are fed (an ephemeral one could not be fed again after a
            // restart).
            let Ok(f) = record.frame() else { continue };
            if f.ttl == Some(xs::Ttl::Ephemeral) {
                continue;
            }
            let Some(hash) = &f.hash else { continue };
            let Ok(Some(mut bytes)) = store.cas_read(hash).await else {
                continue;
            };
            if bytes.last() != Some(&b'\n') {
                bytes.push(b'\n');
            }
            let tx = tx.clone();
            let sent = tokio::task::spawn_blocking(move || tx.send(bytes).is_ok()).await;
            if !matches!(sent, Ok(true)) {
                return;
            }
            *fed.lock().unwrap_or_else(|e| e.into_inner()) = Some(f.id);
        }
    });
    let reader = ChannelReader {
        rx,
        chunk: Vec::new(),
        at: 0,
    };
    let stream = ByteStream::read(reader, Span::unknown(), signals, ByteStreamType::String);
    PipelineData::byte_stream(stream, None)
}

/// Reads chunks from a channel, handing out what is there at once (like a pipe): an
/// external command fed from it sees each line as soon as it arrives.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.chunk.len() {
            match self.rx.recv() {
                Ok(c) => {
                    self.chunk = c;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
