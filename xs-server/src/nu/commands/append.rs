//! `.append TOPIC`: the input becomes a new frame's content.

use std::sync::Arc;

use nu_engine::command_prelude::*;
use xs::{NewFrame, Ttl};

use super::{category, err, wait};
use crate::nu::convert::{frame_value, store_content, to_json};
use crate::nu::Ctx;

#[derive(Clone)]
pub struct Append(pub Arc<Ctx>);

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
        let meta = match stack.get_env_var(es, crate::nu::APPEND_META_ENV) {
            Some(base @ Value::Record { .. }) => match (to_json(base)?, meta) {
                (serde_json::Value::Object(base), Some(serde_json::Value::Object(own))) => Some(
                    crate::nu::merge_meta(Some(serde_json::Value::Object(base)), &own),
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
        let f = wait(ctx, ctx.store.append(frame), span)?;
        Ok(PipelineData::value(frame_value(&f, wt, span), None))
    }
}
