//! `.remove ID [--purge]`: removes a frame (and its content).

use std::sync::Arc;

use nu_engine::command_prelude::*;

use super::{category, parse_id, wait};
use crate::nu::Ctx;

#[derive(Clone)]
pub struct Remove(pub Arc<Ctx>);

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
        if call.has_flag(es, stack, "purge")? {
            wait(&self.0, store.remove_purge(parsed), id.span)?;
        } else {
            wait(&self.0, store.remove(parsed), id.span)?;
        }
        Ok(PipelineData::empty())
    }
}
