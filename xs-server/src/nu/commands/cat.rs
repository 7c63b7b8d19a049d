//! `.cat`: a lazy stream of frames, with the read flags of `xs cat`.

use std::sync::Arc;

use nu_engine::command_prelude::*;
use xs::consumer::ConsumerRead;
use xs::ReadOptions;

use super::read::{read_flags, read_query, read_stream};
use super::{category, err};
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
                .store
                .consumer_position(&c.name)
                .map_err(|e| err(e, call.head))?;
            c.apply(pos, &mut opts);
        }
        Ok(read_stream(&self.0, es, opts, consumer, call.head))
    }
}
