//! `.cat`: a lazy stream of frames, with the read flags of `xs cat`. As in cross.stream, a
//! frame is `{topic, id, hash, meta}`; `--detail` adds `ttl`; `-T` takes a string (commas
//! allowed) or a list of patterns.

use std::sync::Arc;

use nu_engine::command_prelude::*;
use xs::consumer::ConsumerRead;
use xs::ReadOptions;

use super::read::{read_flags, read_query, read_stream};
use super::{category, err, wait};
use crate::nu::Ctx;

#[derive(Clone)]
pub struct Cat(pub Arc<Ctx>);

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
                // The list first: as a string, `[a b]` would parse as the text "[a b]".
                SyntaxShape::OneOf(vec![
                    SyntaxShape::List(Box::new(SyntaxShape::String)),
                    SyntaxShape::String,
                ]),
                "topic patterns (a.b, a.*): a string, comma-separated, or a list",
                Some('T'),
            )
            .switch("detail", "every field of the frame (adds ttl)", Some('d'))
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
            ("consumer", "consumer"),
            ("start", "start"),
        ] {
            if let Some(v) = call.get_flag::<String>(es, stack, flag)? {
                q.push(format!("{key}={}", xs::read::encode_component(&v)));
            }
        }
        if let Some(t) = call.get_flag::<Value>(es, stack, "topic")? {
            q.push(format!(
                "topic={}",
                xs::read::encode_component(&topic_patterns(t)?)
            ));
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
            let pos = wait(&self.0, self.0.store.consumer_position(&c.name), call.head)?;
            c.apply(pos, &mut opts);
        }
        let frames = read_stream(&self.0, es, opts, consumer, call.head);
        if call.has_flag(es, stack, "detail")? {
            return Ok(frames);
        }
        Ok(match frames {
            PipelineData::ListStream(s, m) => PipelineData::list_stream(s.map(without_ttl), m),
            other => other,
        })
    }
}

/// `-T`'s value as the comma-separated patterns a read takes: a string as it is, a list
/// joined.
fn topic_patterns(v: Value) -> Result<String, ShellError> {
    let span = v.span();
    match v {
        Value::String { val, .. } => Ok(val),
        Value::List { vals, .. } => vals
            .into_iter()
            .map(|p| match p {
                Value::String { val, .. } if !val.is_empty() && !val.contains(',') => Ok(val),
                other => Err(err(
                    "each topic pattern in the list must be a non-empty string without commas",
                    other.span(),
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|ps| ps.join(",")),
        other => Err(err(
            format!(
                "--topic takes a string or a list of strings, not {}",
                other.get_type()
            ),
            span,
        )),
    }
}

/// A frame record without its `ttl` (what `.cat` shows unless `--detail`).
fn without_ttl(v: Value) -> Value {
    match v {
        Value::Record {
            val, internal_span, ..
        } => {
            let mut r = val.into_owned();
            r.remove("ttl");
            Value::record(r, internal_span)
        }
        other => other,
    }
}
