//! The store commands scripts get: `.append .cat .last .get .cas .cas-post .remove .import
//! .topics .gc`,
//! with the CLI's flags. Each holds the [`Ctx`] of its engine instance.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nu_engine::command_prelude::*;
use nu_protocol::engine::StateWorkingSet;
use nu_protocol::{ListStream, Signals};
use xs::consumer::ConsumerRead;
use xs::reader::{Event, Reader};
use xs::{Frame, NewFrame, ReadOptions, Ttl};

use super::convert::{
    content_value, frame_value, shell_error, store_content, store_error, to_json,
};
use super::Ctx;

/// Adds the store commands, bound to `ctx`, to a working set.
pub fn add(ws: &mut StateWorkingSet, ctx: Arc<Ctx>) {
    ws.add_decl(Box::new(Append(ctx.clone())));
    ws.add_decl(Box::new(Cat(ctx.clone())));
    ws.add_decl(Box::new(Last(ctx.clone())));
    ws.add_decl(Box::new(Get(ctx.clone())));
    ws.add_decl(Box::new(Cas(ctx.clone())));
    ws.add_decl(Box::new(CasPost(ctx.clone())));
    ws.add_decl(Box::new(Remove(ctx.clone())));
    ws.add_decl(Box::new(Import(ctx.clone())));
    ws.add_decl(Box::new(Topics(ctx.clone())));
    ws.add_decl(Box::new(Gc(ctx)));
}

fn category() -> Category {
    Category::Custom("xs".into())
}

fn err(e: impl std::fmt::Display, span: Span) -> ShellError {
    ShellError::Generic(nu_protocol::shell_error::generic::GenericError::new(
        e.to_string(),
        "",
        span,
    ))
}

fn parse_id(s: &Spanned<String>) -> Result<xs::Id, ShellError> {
    xs::frame::parse_id(&s.item).map_err(|e| err(e, s.span))
}

#[derive(Clone)]
struct Append(Arc<Ctx>);

impl Command for Append {
    fn name(&self) -> &str {
        ".append"
    }

    fn signature(&self) -> Signature {
        Signature::build(".append")
            .input_output_types(vec![(Type::Any, Type::Any)])
            .required("topic", SyntaxShape::String, "the topic to append to")
            .named(
                "meta",
                SyntaxShape::Any,
                "meta (a record, stored as JSON)",
                None,
            )
            .named(
                "ttl",
                SyntaxShape::String,
                "forever, ephemeral, time:<ms> or last:<n>",
                None,
            )
            .named(
                "expect",
                SyntaxShape::String,
                "append only if the topic's newest frame is this id (or none)",
                None,
            )
            .named(
                "key",
                SyntaxShape::String,
                "idempotency key: a repeat returns the original frame",
                None,
            )
            .switch("with-timestamp", "add the frame's timestamp", None)
            .category(category())
    }

    fn description(&self) -> &str {
        "Append a frame; the input (nothing, string, binary, record as JSON, or a stream) is its content."
    }

    fn run(
        &self,
        es: &EngineState,
        stack: &mut Stack,
        call: &Call,
        input: PipelineData,
    ) -> Result<PipelineData, ShellError> {
        let span = call.head;
        let topic: Spanned<String> = call.req(es, stack, 0)?;
        xs::validate_topic(&topic.item).map_err(|e| err(e, topic.span))?;
        let meta = match call.get_flag::<Value>(es, stack, "meta")? {
            None => None,
            Some(v) => Some(to_json(&v)?),
        };
        let ttl = match call.get_flag::<Spanned<String>>(es, stack, "ttl")? {
            None => Ttl::Forever,
            Some(t) => t.item.parse().map_err(|e| err(e, t.span))?,
        };
        let expect = match call.get_flag::<Spanned<String>>(es, stack, "expect")? {
            None => None,
            Some(e) => Some(e.item.parse().map_err(|x| err(x, e.span))?),
        };
        let key: Option<String> = call.get_flag(es, stack, "key")?;
        let wt = call.has_flag(es, stack, "with-timestamp")?;
        let ctx = &self.0;
        let content = store_content(&ctx.store, &ctx.rt, input)?;
        let meta = match stack.get_env_var(es, super::APPEND_META_ENV) {
            Some(base @ Value::Record { .. }) => match (to_json(base)?, meta) {
                (serde_json::Value::Object(base), Some(serde_json::Value::Object(own))) => Some(
                    super::merge_meta(Some(serde_json::Value::Object(base)), &own),
                ),
                (serde_json::Value::Object(base), None) => Some(serde_json::Value::Object(base)),
                (_, meta) => meta,
            },
            _ => meta,
        };
        let frame = NewFrame {
            topic: topic.item,
            meta,
            ttl,
            content,
            expect,
            key,
        };
        if let Some(batch) = &ctx.batch {
            // A handler's appends are committed with its checkpoint, after the run.
            batch.push(frame);
            return Ok(PipelineData::empty());
        }
        let f = ctx
            .rt
            .block_on(ctx.store.append(frame))
            .map_err(|e| err(e, span))?;
        Ok(PipelineData::value(frame_value(&f, wt, span), None))
    }
}

/// The read flags shared by `.cat` and `.last`.
fn read_flags(sig: Signature) -> Signature {
    sig.switch("follow", "keep reading new frames", Some('f'))
        .named(
            "pulse",
            SyntaxShape::Int,
            "while following, an xs.pulse frame every this many ms",
            Some('p'),
        )
        .switch("with-timestamp", "add each frame's timestamp", None)
}

#[derive(Clone)]
struct Cat(Arc<Ctx>);

impl Command for Cat {
    fn name(&self) -> &str {
        ".cat"
    }

    fn signature(&self) -> Signature {
        read_flags(Signature::build(".cat"))
            .input_output_types(vec![(Type::Nothing, Type::list(Type::record()))])
            .switch(
                "new",
                "skip history: only frames appended from now on",
                Some('n'),
            )
            .named(
                "after",
                SyntaxShape::String,
                "start after this id",
                Some('a'),
            )
            .named("from", SyntaxShape::String, "start at this id", None)
            .named("limit", SyntaxShape::Int, "at most this many frames", None)
            .named(
                "last",
                SyntaxShape::Int,
                "only the newest n frames of history",
                None,
            )
            .named(
                "topic",
                SyntaxShape::String,
                "topic patterns: a.b, a.*, comma-separated",
                Some('T'),
            )
            .named(
                "consumer",
                SyntaxShape::String,
                "read as this durable consumer (from its position)",
                None,
            )
            .named(
                "start",
                SyntaxShape::String,
                "a new consumer starts at first, new or after an id",
                None,
            )
            .switch(
                "ack-auto",
                "acknowledge each frame for the consumer once it is read",
                None,
            )
            .category(category())
    }

    fn description(&self) -> &str {
        "Read frames (lazily): history, then xs.threshold and live frames with --follow."
    }

    fn run(
        &self,
        es: &EngineState,
        stack: &mut Stack,
        call: &Call,
        _input: PipelineData,
    ) -> Result<PipelineData, ShellError> {
        let mut q = read_query(es, stack, call)?;
        for (flag, key) in [("new", "new")] {
            if call.has_flag(es, stack, flag)? {
                q.push(format!("{key}=true"));
            }
        }
        for (flag, key) in [
            ("after", "after"),
            ("from", "from"),
            ("topic", "topic"),
            ("consumer", "consumer"),
            ("start", "start"),
        ] {
            if let Some(v) = call.get_flag::<String>(es, stack, flag)? {
                q.push(format!("{key}={}", xs::read::encode_component(&v)));
            }
        }
        for (flag, key) in [("limit", "limit"), ("last", "last")] {
            if let Some(v) = call.get_flag::<i64>(es, stack, flag)? {
                q.push(format!("{key}={v}"));
            }
        }
        if call.has_flag(es, stack, "ack-auto")? {
            q.push("ack=auto".into());
        }
        let query = q.join("&");
        let mut opts = ReadOptions::from_query(Some(&query)).map_err(|e| err(e, call.head))?;
        let consumer = ConsumerRead::from_query(Some(&query)).map_err(|e| err(e, call.head))?;
        if let Some(c) = &consumer {
            let pos = self
                .0
                .rt
                .block_on(self.0.store.consumer_position(&c.name))
                .map_err(|e| err(e, call.head))?;
            c.apply(pos, &mut opts);
        }
        Ok(read_stream(&self.0, es, opts, consumer, call.head))
    }
}

/// The `follow`, `pulse` and `with-timestamp` flags as query pairs.
fn read_query(es: &EngineState, stack: &mut Stack, call: &Call) -> Result<Vec<String>, ShellError> {
    let mut q = Vec::new();
    match call.get_flag::<i64>(es, stack, "pulse")? {
        Some(ms) => q.push(format!("follow={ms}")),
        None if call.has_flag(es, stack, "follow")? => q.push("follow=true".into()),
        None => {}
    }
    if call.has_flag(es, stack, "with-timestamp")? {
        q.push("with-timestamp=true".into());
    }
    Ok(q)
}

/// Runs a read on the daemon's runtime and hands its frames to the script lazily; dropping
/// the stream ends the read.
fn read_stream(
    ctx: &Arc<Ctx>,
    es: &EngineState,
    opts: ReadOptions,
    consumer: Option<ConsumerRead>,
    span: Span,
) -> PipelineData {
    let wt = opts.with_timestamp;
    let reader = {
        let _rt = ctx.rt.enter();
        ctx.store.read(opts)
    };
    let frames = Frames {
        reader,
        rt: ctx.rt.clone(),
        signals: es.signals().clone(),
        wt,
        span,
        acker: consumer.filter(|c| c.ack_auto).map(|c| Acker {
            ctx: ctx.clone(),
            name: c.name,
            pending: None,
            last_ack: Instant::now(),
        }),
    };
    PipelineData::list_stream(ListStream::new(frames, span, es.signals().clone()), None)
}

/// Acknowledges a consumer's frames as the script reads them, at most every 100 ms (and at
/// the end), so a fast reader does not pay an fsync per frame.
struct Acker {
    ctx: Arc<Ctx>,
    name: String,
    pending: Option<xs::Id>,
    last_ack: Instant,
}

impl Acker {
    fn flush(&mut self) {
        if let Some(id) = self.pending.take() {
            self.last_ack = Instant::now();
            if let Err(e) = self.ctx.rt.block_on(self.ctx.store.ack(&self.name, id)) {
                tracing::warn!(consumer = %self.name, error = %e, "auto-ack failed");
            }
        }
    }
}

impl Drop for Acker {
    fn drop(&mut self) {
        self.flush();
    }
}

struct Frames {
    reader: Reader,
    rt: tokio::runtime::Handle,
    /// Checked while waiting for frames, so an interrupted script stops waiting.
    signals: Signals,
    wt: bool,
    span: Span,
    acker: Option<Acker>,
}

impl Iterator for Frames {
    type Item = Value;

    fn next(&mut self) -> Option<Value> {
        loop {
            let reader = &mut self.reader;
            let next = self.rt.block_on(async {
                tokio::time::timeout(Duration::from_millis(250), reader.next()).await
            });
            let event = match next {
                Ok(e) => e?,
                Err(_) if self.signals.interrupted() => return None,
                Err(_) => {
                    if let Some(a) = &mut self.acker {
                        a.flush();
                    }
                    continue;
                }
            };
            let frame = match event {
                Ok(Event::Frame(r)) => r.frame(),
                Ok(Event::Threshold(f) | Event::Pulse(f)) => Ok(f),
                Err(e) => Err(e),
            };
            let frame = match frame {
                Ok(f) => f,
                Err(e) => return Some(Value::error(shell_error(e.to_string()), self.span)),
            };
            if let Some(a) = &mut self.acker {
                if frame.ttl != Some(Ttl::Ephemeral) {
                    a.pending = Some(frame.id);
                }
                if a.last_ack.elapsed() >= Duration::from_millis(100) {
                    a.flush();
                }
            }
            return Some(frame_value(&frame, self.wt, self.span));
        }
    }
}

#[derive(Clone)]
struct Last(Arc<Ctx>);

impl Command for Last {
    fn name(&self) -> &str {
        ".last"
    }

    fn signature(&self) -> Signature {
        read_flags(Signature::build(".last"))
            .input_output_types(vec![(Type::Nothing, Type::Any)])
            .optional(
                "topic",
                SyntaxShape::String,
                "topic pattern (default: every topic)",
            )
            .optional(
                "n",
                SyntaxShape::Int,
                "how many of the newest frames (default 1)",
            )
            .category(category())
    }

    fn description(&self) -> &str {
        "The newest frame (a record, or nothing), or the newest n as a list; --follow streams updates."
    }

    fn run(
        &self,
        es: &EngineState,
        stack: &mut Stack,
        call: &Call,
        _input: PipelineData,
    ) -> Result<PipelineData, ShellError> {
        let span = call.head;
        let topic: Option<String> = call.opt(es, stack, 0)?;
        let n: Option<Spanned<i64>> = call.opt(es, stack, 1)?;
        let n = match n {
            None => 1,
            Some(n) if n.item >= 1 => n.item,
            Some(n) => return Err(err("n must be at least 1", n.span)),
        };
        let mut q = read_query(es, stack, call)?;
        q.push(format!("last={n}"));
        if let Some(t) = &topic {
            q.push(format!("topic={}", xs::read::encode_component(t)));
        }
        let opts = ReadOptions::from_query(Some(&q.join("&"))).map_err(|e| err(e, span))?;
        if opts.is_follow() {
            return Ok(read_stream(&self.0, es, opts, None, span));
        }
        let wt = opts.with_timestamp;
        let mut frames: Vec<Value> = self
            .0
            .rt
            .block_on(self.0.store.frames(opts))
            .map_err(|e| err(e, span))?
            .iter()
            .map(|f| frame_value(f, wt, span))
            .collect();
        if n == 1 {
            return Ok(PipelineData::value(
                frames.pop().unwrap_or(Value::nothing(span)),
                None,
            ));
        }
        Ok(PipelineData::value(Value::list(frames, span), None))
    }
}

#[derive(Clone)]
struct Get(Arc<Ctx>);

impl Command for Get {
    fn name(&self) -> &str {
        ".get"
    }

    fn signature(&self) -> Signature {
        Signature::build(".get")
            .input_output_types(vec![(Type::Nothing, Type::record())])
            .required("id", SyntaxShape::String, "the frame's id")
            .switch("with-timestamp", "add the frame's timestamp", None)
            .category(category())
    }

    fn description(&self) -> &str {
        "The frame with this id."
    }

    fn run(
        &self,
        es: &EngineState,
        stack: &mut Stack,
        call: &Call,
        _input: PipelineData,
    ) -> Result<PipelineData, ShellError> {
        let id: Spanned<String> = call.req(es, stack, 0)?;
        let wt = call.has_flag(es, stack, "with-timestamp")?;
        match self
            .0
            .rt
            .block_on(self.0.store.get(parse_id(&id)?))
            .map_err(|e| err(e, id.span))?
        {
            Some(f) => Ok(PipelineData::value(frame_value(&f, wt, call.head), None)),
            None => Err(err(format!("no frame with id {}", id.item), id.span)),
        }
    }
}

#[derive(Clone)]
struct Cas(Arc<Ctx>);

impl Command for Cas {
    fn name(&self) -> &str {
        ".cas"
    }

    fn signature(&self) -> Signature {
        Signature::build(".cas")
            .input_output_types(vec![(Type::Nothing, Type::Any)])
            .required(
                "hash",
                SyntaxShape::Any,
                "the content's hash (or a frame record)",
            )
            .category(category())
    }

    fn description(&self) -> &str {
        "Content by hash: a string when it is UTF-8 text, else binary."
    }

    fn run(
        &self,
        es: &EngineState,
        stack: &mut Stack,
        call: &Call,
        _input: PipelineData,
    ) -> Result<PipelineData, ShellError> {
        let v: Value = call.req(es, stack, 0)?;
        let span = v.span();
        let hash = match &v {
            Value::String { val, .. } => val.clone(),
            Value::Record { val, .. } => match val.get("hash") {
                Some(Value::String { val, .. }) => val.clone(),
                _ => return Ok(PipelineData::value(Value::nothing(span), None)),
            },
            Value::Nothing { .. } => return Ok(PipelineData::value(Value::nothing(span), None)),
            other => {
                return Err(err(
                    format!("expected a hash or a frame, not {}", other.get_type()),
                    span,
                ))
            }
        };
        let sri = xs::frame::parse_hash(&hash).map_err(|e| err(e, span))?;
        match self
            .0
            .rt
            .block_on(self.0.store.cas_read(&sri))
            .map_err(|e| err(e, span))?
        {
            Some(bytes) => Ok(PipelineData::value(content_value(bytes, call.head), None)),
            None => Err(err(format!("no content with hash {hash}"), span)),
        }
    }
}

#[derive(Clone)]
struct CasPost(Arc<Ctx>);

impl Command for CasPost {
    fn name(&self) -> &str {
        ".cas-post"
    }

    fn signature(&self) -> Signature {
        Signature::build(".cas-post")
            .input_output_types(vec![(Type::Any, Type::String)])
            .category(category())
    }

    fn description(&self) -> &str {
        "Store the input as content (no frame) and return its hash."
    }

    fn run(
        &self,
        _es: &EngineState,
        _stack: &mut Stack,
        call: &Call,
        input: PipelineData,
    ) -> Result<PipelineData, ShellError> {
        let ctx = &self.0;
        let content = store_content(&ctx.store, &ctx.rt, input)?;
        let hash = ctx
            .rt
            .block_on(ctx.store.cas_put(content))
            .map_err(store_error)?
            .ok_or_else(|| err("nothing to store: the input is empty", call.head))?;
        Ok(PipelineData::value(
            Value::string(hash.to_string(), call.head),
            None,
        ))
    }
}

#[derive(Clone)]
struct Remove(Arc<Ctx>);

impl Command for Remove {
    fn name(&self) -> &str {
        ".remove"
    }

    fn signature(&self) -> Signature {
        Signature::build(".remove")
            .input_output_types(vec![(Type::Nothing, Type::Nothing)])
            .required("id", SyntaxShape::String, "the frame's id")
            .switch(
                "purge",
                "also remove its content if no other frame references it",
                None,
            )
            .category(category())
    }

    fn description(&self) -> &str {
        "Remove a frame (and with --purge, its content)."
    }

    fn run(
        &self,
        es: &EngineState,
        stack: &mut Stack,
        call: &Call,
        _input: PipelineData,
    ) -> Result<PipelineData, ShellError> {
        let id: Spanned<String> = call.req(es, stack, 0)?;
        let parsed = parse_id(&id)?;
        let store = &self.0.store;
        let r = if call.has_flag(es, stack, "purge")? {
            self.0.rt.block_on(store.remove_purge(parsed)).map(|_| ())
        } else {
            self.0.rt.block_on(store.remove(parsed))
        };
        r.map_err(|e| err(e, id.span))?;
        Ok(PipelineData::empty())
    }
}

#[derive(Clone)]
struct Import(Arc<Ctx>);

impl Command for Import {
    fn name(&self) -> &str {
        ".import"
    }

    fn signature(&self) -> Signature {
        Signature::build(".import")
            .input_output_types(vec![(Type::Any, Type::Any)])
            .category(category())
    }

    fn description(&self) -> &str {
        "Store frames as given, ids kept (a frame record, a list of them, or JSON lines); their content must already be stored."
    }

    fn run(
        &self,
        _es: &EngineState,
        _stack: &mut Stack,
        call: &Call,
        input: PipelineData,
    ) -> Result<PipelineData, ShellError> {
        let span = call.head;
        let value = input.into_value(span)?;
        let items: Vec<serde_json::Value> = match &value {
            Value::List { vals, .. } => vals.iter().map(to_json).collect::<Result<_, _>>()?,
            Value::String { val, .. } => val
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    serde_json::from_str(l)
                        .map_err(|e| err(format!("invalid frame JSON: {e}"), span))
                })
                .collect::<Result<_, _>>()?,
            other => vec![to_json(other)?],
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let json = serde_json::to_vec(&item).map_err(|e| err(e, span))?;
            let frame = Frame::from_json(&json).map_err(|e| err(e, span))?;
            let f = self
                .0
                .rt
                .block_on(self.0.store.import(frame))
                .map_err(|e| err(e, span))?;
            out.push(frame_value(&f, false, span));
        }
        Ok(PipelineData::value(
            if out.len() == 1 {
                out.pop().expect("one frame")
            } else {
                Value::list(out, span)
            },
            None,
        ))
    }
}

#[derive(Clone)]
struct Topics(Arc<Ctx>);

impl Command for Topics {
    fn name(&self) -> &str {
        ".topics"
    }

    fn signature(&self) -> Signature {
        Signature::build(".topics")
            .input_output_types(vec![(Type::Nothing, Type::list(Type::record()))])
            .optional(
                "prefix",
                SyntaxShape::String,
                "only topics under this prefix",
            )
            .switch("children", "one row per direct child level instead", None)
            .category(category())
    }

    fn description(&self) -> &str {
        "Topics with their frame count, first and last id (from the topic index)."
    }

    fn run(
        &self,
        es: &EngineState,
        stack: &mut Stack,
        call: &Call,
        _input: PipelineData,
    ) -> Result<PipelineData, ShellError> {
        let span = call.head;
        let prefix: Option<String> = call.opt(es, stack, 0)?;
        let children = call.has_flag(es, stack, "children")?;
        let rows = self
            .0
            .rt
            .block_on(self.0.store.topics(prefix.as_deref(), children))
            .map_err(|e| err(e, span))?;
        let rows = rows
            .into_iter()
            .map(|t| {
                let json = serde_json::to_value(&t).unwrap_or_default();
                nu_protocol::IntoValue::into_value(json, span)
            })
            .collect();
        Ok(PipelineData::value(Value::list(rows, span), None))
    }
}

#[derive(Clone)]
struct Gc(Arc<Ctx>);

impl Command for Gc {
    fn name(&self) -> &str {
        ".gc"
    }

    fn signature(&self) -> Signature {
        Signature::build(".gc")
            .input_output_types(vec![(Type::Nothing, Type::record())])
            .category(category())
    }

    fn description(&self) -> &str {
        "Remove every content blob no frame references; returns {blobs, bytes}."
    }

    fn run(
        &self,
        _es: &EngineState,
        _stack: &mut Stack,
        call: &Call,
        _input: PipelineData,
    ) -> Result<PipelineData, ShellError> {
        let span = call.head;
        let r = self
            .0
            .rt
            .block_on(self.0.store.gc())
            .map_err(|e| err(e, span))?;
        let json = serde_json::to_value(r).unwrap_or_default();
        Ok(PipelineData::value(
            nu_protocol::IntoValue::into_value(json, span),
            None,
        ))
    }
}
