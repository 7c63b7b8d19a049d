//! `.cas-post`: stores the input as content (no frame); returns the hash.

use std::sync::Arc;

use nu_engine::command_prelude::*;

use super::{category, err};
use crate::nu::convert::{store_content, store_error};
use crate::nu::Ctx;

#[derive(Clone)]
pub struct CasPost(pub Arc<Ctx>);

impl Command for CasPost {
    fn name(&self) -> &str {
        ".cas-post"
    }

    fn signature(&self) -> Signature {
        Signature::build(".cas-post")
            .input_output_types(vec![(Type::Any, Type::String)])
            .category(category())
    }

    fn description(&self) -> &str {
        "Store the input as content (no frame) and return its hash."
    }

    fn run(
        &self,
        _es: &EngineState,
        _stack: &mut Stack,
        call: &Call,
        input: PipelineData,
    ) -> Result<PipelineData, ShellError> {
        let ctx = &self.0;
        let content = store_content(&ctx.store, &ctx.rt, input)?;
        let hash = ctx
            .rt
            .block_on(ctx.store.cas_put(content))
            .map_err(store_error)?
            .ok_or_else(|| err("nothing to store: the input is empty", call.head))?;
        Ok(PipelineData::value(
            Value::string(hash.to_string(), call.head),
            None,
        ))
    }
}
