//! Parsing and running scripts, and Nushell's errors as text (message, file, line, column).

use std::sync::Arc;

use nu_protocol::ast::Block;
use nu_protocol::debugger::WithoutDebug;
use nu_protocol::engine::{Closure, EngineState, Redirection, Stack, StateWorkingSet};
use nu_protocol::{OutDest, PipelineData, ShellError, Value};

/// A script that did not parse or failed, with Nushell's report.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ScriptError(pub String);

impl ScriptError {
    pub fn shell(es: &EngineState, e: &ShellError) -> ScriptError {
        let ws = StateWorkingSet::new(es);
        ScriptError(report(&ws, e))
    }

    pub fn msg(m: impl Into<String>) -> ScriptError {
        ScriptError(m.into())
    }
}

/// Nushell's plain report of an error: what went wrong, and where (`name:line:col` with the
/// source line), without colours.
fn report(ws: &StateWorkingSet, e: &dyn miette::Diagnostic) -> String {
    let text = nu_protocol::format_cli_error(None, ws, e, None);
    let text = text.strip_prefix("Error: ").unwrap_or(&text);
    text.trim_end().to_string()
}

/// Parses `source` (named `name` in error reports) into `es`.
pub fn parse(es: &mut EngineState, name: &str, source: &[u8]) -> Result<Arc<Block>, ScriptError> {
    let mut ws = StateWorkingSet::new(es);
    let block = nu_parser::parse(&mut ws, Some(name), source, false);
    if let Some(e) = ws.parse_errors.first() {
        return Err(ScriptError(report(&ws, e)));
    }
    if let Some(e) = ws.compile_errors.first() {
        return Err(ScriptError(report(&ws, e)));
    }
    let delta = ws.render();
    es.merge_delta(delta)
        .map_err(|e| ScriptError::shell(es, &e))?;
    Ok(block)
}

/// A stack for the daemon: external commands get no stdin (`input` fails rather than wait).
pub fn stack() -> Stack {
    Stack::new().suppress_stdin()
}

/// Runs a parsed block. The last command's output comes back as a stream (an external's
/// stdout as a byte stream), never printed on the daemon's stdout.
pub fn eval(
    es: &EngineState,
    block: &Block,
    input: PipelineData,
) -> Result<PipelineData, ShellError> {
    let mut stack = stack();
    let mut stack = stack.push_redirection(Some(Redirection::Pipe(OutDest::PipeSeparate)), None);
    nu_engine::eval_block::<WithoutDebug>(es, &mut stack, block, input).map(|r| r.body)
}

/// Parses and runs a script whose value is a record (a processor's configuration). The
/// environment the script sets (`$env.X = ...` at its top) becomes the engine's, so its
/// closures see it, as in cross.stream.
pub fn eval_config(
    es: &mut EngineState,
    name: &str,
    source: &[u8],
) -> Result<nu_protocol::Record, ScriptError> {
    let block = parse(es, name, source)?;
    let mut stack = stack();
    let value = {
        let mut piped =
            stack.push_redirection(Some(Redirection::Pipe(OutDest::PipeSeparate)), None);
        nu_engine::eval_block::<WithoutDebug>(es, &mut piped, &block, PipelineData::empty())
            .and_then(|r| {
                r.body
                    .into_value(block.span.unwrap_or_else(nu_protocol::Span::unknown))
            })
    }
    .map_err(|e| ScriptError::shell(es, &e))?;
    es.merge_env(&mut stack)
        .map_err(|e| ScriptError::shell(es, &e))?;
    match value {
        Value::Record { val, .. } => Ok(val.into_owned()),
        other => Err(ScriptError(format!(
            "the script must evaluate to a record (e.g. {{run: {{|frame| ...}}}}), not {}",
            other.get_type()
        ))),
    }
}

/// The closure under `key` of a config record, and how many positional parameters it takes.
pub fn closure(
    es: &EngineState,
    config: &nu_protocol::Record,
    key: &str,
) -> Result<(Closure, usize), ScriptError> {
    let v = config
        .get(key)
        .ok_or_else(|| ScriptError(format!("the config record has no `{key}` closure")))?;
    let c = v
        .as_closure()
        .map_err(|_| ScriptError(format!("`{key}` must be a closure, not {}", v.get_type())))?;
    let sig = &es.get_block(c.block_id).signature;
    let n = sig.required_positional.len() + sig.optional_positional.len();
    Ok((c.clone(), n))
}
