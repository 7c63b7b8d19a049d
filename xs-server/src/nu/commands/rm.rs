//! `.rm ID [--purge]`: cross.stream's name for `.remove`.

use std::sync::Arc;

use nu_engine::command_prelude::*;

use super::remove::Remove;
use crate::nu::Ctx;

#[derive(Clone)]
pub struct Rm(pub Arc<Ctx>);

impl Command for Rm {
    fn name(&self) -> &str {
        ".rm"
    }

    fn signature(&self) -> Signature {
        let mut sig = Remove(self.0.clone()).signature();
        sig.name = ".rm".into();
        sig
    }

    fn description(&self) -> &str {
        "Remove a frame (and with --purge, its content); the same as .remove."
    }

    fn run(
        &self,
        es: &EngineState,
        stack: &mut Stack,
        call: &Call,
        input: PipelineData,
    ) -> Result<PipelineData, ShellError> {
        Remove(self.0.clone()).run(es, stack, call, input)
    }
}
