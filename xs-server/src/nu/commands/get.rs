//! `.get ID`: one frame.

use std::sync::Arc;

use nu_engine::command_prelude::*;

use super::{category, err, parse_id, wait};
use crate::nu::convert::frame_value;
use crate::nu::Ctx;

#[derive(Clone)]
pub struct Get(pub Arc<Ctx>);

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
        match wait(&self.0, self.0.store.get(parse_id(&id)?), id.span)? {
            Some(f) => Ok(PipelineData::value(frame_value(&f, wt, call.head), None)),
            None => Err(err(format!("no frame with id {}", id.item), id.span)),
        }
    }
}
