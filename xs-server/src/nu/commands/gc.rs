//! `.gc`: removes unreferenced content.

use std::sync::Arc;

use nu_engine::command_prelude::*;

use super::{category, wait};
use crate::nu::Ctx;

#[derive(Clone)]
pub struct Gc(pub Arc<Ctx>);

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
        let r = wait(&self.0, self.0.store.gc(), span)?;
        let json = serde_json::to_value(r).unwrap_or_default();
        Ok(PipelineData::value(
            nu_protocol::IntoValue::into_value(json, span),
            None,
        ))
    }
}
