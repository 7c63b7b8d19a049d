//! `.last [TOPIC] [N]`: the newest frame(s), or with `--follow` a stream of updates.

use std::sync::Arc;

use nu_engine::command_prelude::*;
use xs::ReadOptions;

use super::read::{read_flags, read_query, read_stream};
use super::{category, err, wait};
use crate::nu::convert::frame_value;
use crate::nu::Ctx;

#[derive(Clone)]
pub struct Last(pub Arc<Ctx>);

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
        let mut frames: Vec<Value> = wait(&self.0, self.0.store.frames(opts), span)?
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
