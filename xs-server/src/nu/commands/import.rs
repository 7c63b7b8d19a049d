//! `.import`: stores frames as given, ids kept.

use std::sync::Arc;

use nu_engine::command_prelude::*;
use xs::Frame;

use super::{category, err, wait};
use crate::nu::convert::{frame_value, to_json};
use crate::nu::Ctx;

#[derive(Clone)]
pub struct Import(pub Arc<Ctx>);

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
            let f = wait(&self.0, self.0.store.import(frame), span)?;
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
