//! `.topics [PREFIX] [--children]`: rows of the topic index.

use std::sync::Arc;

use nu_engine::command_prelude::*;

use super::{category, wait};
use crate::nu::Ctx;

#[derive(Clone)]
pub struct Topics(pub Arc<Ctx>);

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
        let rows = wait(
            &self.0,
            self.0.store.topics(prefix.as_deref(), children),
            span,
        )?;
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
