//! `.append TOPIC`: the input becomes a new frame's content; a list becomes one frame per item,
//! appended in one atomic batch.

use std::sync::Arc;

use nu_engine::command_prelude::*;
use xs::{Batch, NewFrame, Ttl, BATCH_MAX_FRAMES};

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
                "append only if the topic's newest frame is this id (or none); for a list, checked before its first item",
                None,
            )
            .named(
                "key",
                SyntaxShape::String,
                "idempotency key: a repeat returns the original frame (a list's item N gets KEY:N)",
                None,
            )
            .switch("with-timestamp", "add the frame's timestamp", None)
            .category(category())
    }

    fn description(&self) -> &str {
        "Append a frame; the input (nothing, string, binary, record as JSON, or a byte stream) is its content. A list appends one frame per item (each as one value would be), all or nothing in one batch, and returns them."
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
        let items = match input {
            PipelineData::Value(Value::List { vals, .. }, _) => Some(vals.into_owned()),
            PipelineData::ListStream(s, _) => Some(s.into_iter().collect::<Vec<_>>()),
            single => {
                let content = store_content(&ctx.store, &ctx.rt, single)?;
                let frame = NewFrame {
                    topic: topic.item,
                    meta: with_env_meta(es, stack, meta)?,
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
                return Ok(PipelineData::value(frame_value(&f, wt, span), None));
            }
        };
        let items = items.unwrap_or_default();
        if items.len() > BATCH_MAX_FRAMES {
            return Err(err(
                format!(
                    "a list of {} items: .append takes at most {BATCH_MAX_FRAMES} at once (split it)",
                    items.len()
                ),
                span,
            ));
        }
        let meta = with_env_meta(es, stack, meta)?;
        let mut frames = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let content = store_content(&ctx.store, &ctx.rt, PipelineData::value(item, None))?;
            frames.push(NewFrame {
                topic: topic.item.clone(),
                meta: meta.clone(),
                ttl,
                content,
                expect: if i == 0 { expect } else { None },
                key: key.as_ref().map(|k| format!("{k}:{}", i + 1)),
            });
        }
        if let Some(batch) = &ctx.batch {
            // Committed with the handler's other appends and its checkpoint, after the run.
            for frame in frames {
                batch.push(frame);
            }
            return Ok(PipelineData::empty());
        }
        if frames.is_empty() {
            return Ok(PipelineData::value(Value::list(Vec::new(), span), None));
        }
        let batch = Batch {
            frames,
            checkpoint: None,
            fence: None,
        };
        let stored = wait(ctx, ctx.store.append_batch(batch), span)?;
        let vals = stored.iter().map(|f| frame_value(f, wt, span)).collect();
        Ok(PipelineData::value(Value::list(vals, span), None))
    }
}

/// `meta` under the record of `$env.XS_APPEND_META`, if set (the script's own keys win).
fn with_env_meta(
    es: &EngineState,
    stack: &Stack,
    meta: Option<serde_json::Value>,
) -> Result<Option<serde_json::Value>, ShellError> {
    Ok(match stack.get_env_var(es, crate::nu::APPEND_META_ENV) {
        Some(base @ Value::Record { .. }) => match (to_json(base)?, meta) {
            (serde_json::Value::Object(base), Some(serde_json::Value::Object(own))) => Some(
                crate::nu::merge_meta(Some(serde_json::Value::Object(base)), &own),
            ),
            (serde_json::Value::Object(base), None) => Some(serde_json::Value::Object(base)),
            (_, meta) => meta,
        },
        _ => meta,
    })
}
