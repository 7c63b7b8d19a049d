//! `.cas HASH` (or a frame): content, as a string when it is UTF-8, else binary.

use std::sync::Arc;

use nu_engine::command_prelude::*;

use super::{category, err, wait};
use crate::nu::convert::content_value;
use crate::nu::Ctx;

#[derive(Clone)]
pub struct Cas(pub Arc<Ctx>);

impl Command for Cas {
    fn name(&self) -> &str {
        ".cas"
    }

    fn signature(&self) -> Signature {
        Signature::build(".cas")
            .input_output_types(vec![(Type::Nothing, Type::Any)])
            .required(
                "hash",
                SyntaxShape::Any,
                "the content's hash (or a frame record)",
            )
            .category(category())
    }

    fn description(&self) -> &str {
        "Content by hash: a string when it is UTF-8 text, else binary."
    }

    fn run(
        &self,
        es: &EngineState,
        stack: &mut Stack,
        call: &Call,
        _input: PipelineData,
    ) -> Result<PipelineData, ShellError> {
        let v: Value = call.req(es, stack, 0)?;
        let span = v.span();
        let hash = match &v {
            Value::String { val, .. } => val.clone(),
            Value::Record { val, .. } => match val.get("hash") {
                Some(Value::String { val, .. }) => val.clone(),
                _ => return Ok(PipelineData::value(Value::nothing(span), None)),
            },
            Value::Nothing { .. } => return Ok(PipelineData::value(Value::nothing(span), None)),
            other => {
                return Err(err(
                    format!("expected a hash or a frame, not {}", other.get_type()),
                    span,
                ))
            }
        };
        let sri = xs::frame::parse_hash(&hash).map_err(|e| err(e, span))?;
        match wait(&self.0, self.0.store.cas_read(&sri), span)? {
            Some(bytes) => Ok(PipelineData::value(content_value(bytes, call.head), None)),
            None => Err(err(format!("no content with hash {hash}"), span)),
        }
    }
}
