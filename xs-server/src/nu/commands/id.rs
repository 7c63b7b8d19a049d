//! `.id`, `.id unpack`, `.id pack`: SCRU128 ids as cross.stream's scripts use them. `.id` is
//! a new id; `.id unpack` gives `{ts_ms, when, counter_hi, counter_lo, node}` (`when` is
//! `ts_ms` as a datetime, for reading); `.id pack` takes that record back (`when` and other
//! keys ignored: `ts_ms` is the time).

use nu_engine::command_prelude::*;

use super::{category, err};

#[derive(Clone)]
pub struct Id;

impl Command for Id {
    fn name(&self) -> &str {
        ".id"
    }

    fn signature(&self) -> Signature {
        Signature::build(".id")
            .input_output_types(vec![(Type::Nothing, Type::String)])
            .category(category())
    }

    fn description(&self) -> &str {
        "A new SCRU128 id (time-sorted, like a frame's)."
    }

    fn run(
        &self,
        _es: &EngineState,
        _stack: &mut Stack,
        call: &Call,
        _input: PipelineData,
    ) -> Result<PipelineData, ShellError> {
        Ok(PipelineData::value(
            Value::string(scru128::new().to_string(), call.head),
            None,
        ))
    }
}

#[derive(Clone)]
pub struct IdUnpack;

impl Command for IdUnpack {
    fn name(&self) -> &str {
        ".id unpack"
    }

    fn signature(&self) -> Signature {
        Signature::build(".id unpack")
            .input_output_types(vec![
                (Type::Nothing, Type::record()),
                (Type::String, Type::record()),
            ])
            .optional("id", SyntaxShape::String, "the id (else the input)")
            .category(category())
    }

    fn description(&self) -> &str {
        "An id's fields: {ts_ms, when, counter_hi, counter_lo, node}."
    }

    fn run(
        &self,
        es: &EngineState,
        stack: &mut Stack,
        call: &Call,
        input: PipelineData,
    ) -> Result<PipelineData, ShellError> {
        let span = call.head;
        let id = match call.opt::<Spanned<String>>(es, stack, 0)? {
            Some(id) => id,
            None => match input.into_value(span)? {
                Value::String {
                    val, internal_span, ..
                } => Spanned {
                    item: val,
                    span: internal_span,
                },
                other => {
                    return Err(err(
                        format!("expected an id (a string), not {}", other.get_type()),
                        other.span(),
                    ))
                }
            },
        };
        let parsed = xs::frame::parse_id(id.item.trim()).map_err(|e| err(e, id.span))?;
        Ok(PipelineData::value(unpack(parsed, span), None))
    }
}

fn unpack(id: xs::Id, span: Span) -> Value {
    let ms = id.timestamp();
    let when = chrono::DateTime::from_timestamp_millis(ms as i64).unwrap_or_default();
    let mut r = Record::with_capacity(5);
    r.push("ts_ms", Value::int(ms as i64, span));
    r.push("when", Value::date(when.fixed_offset(), span));
    r.push("counter_hi", Value::int(id.counter_hi().into(), span));
    r.push("counter_lo", Value::int(id.counter_lo().into(), span));
    r.push("node", Value::string(format!("{:08x}", id.entropy()), span));
    Value::record(r, span)
}

#[derive(Clone)]
pub struct IdPack;

impl Command for IdPack {
    fn name(&self) -> &str {
        ".id pack"
    }

    fn signature(&self) -> Signature {
        Signature::build(".id pack")
            .input_output_types(vec![
                (Type::Nothing, Type::String),
                (Type::record(), Type::String),
            ])
            .optional(
                "fields",
                SyntaxShape::Record(vec![].into()),
                "{ts_ms, counter_hi, counter_lo, node} (else the input)",
            )
            .category(category())
    }

    fn description(&self) -> &str {
        "The id with these fields (what .id unpack gives)."
    }

    fn run(
        &self,
        es: &EngineState,
        stack: &mut Stack,
        call: &Call,
        input: PipelineData,
    ) -> Result<PipelineData, ShellError> {
        let span = call.head;
        let v = match call.opt::<Value>(es, stack, 0)? {
            Some(v) => v,
            None => input.into_value(span)?,
        };
        let at = v.span();
        let Value::Record { val, .. } = &v else {
            return Err(err(
                format!(
                    "expected a record {{ts_ms, counter_hi, counter_lo, node}}, not {}",
                    v.get_type()
                ),
                at,
            ));
        };
        let int = |k: &str| -> Result<u64, ShellError> {
            match val.get(k) {
                Some(Value::Int { val, .. }) if *val >= 0 => Ok(*val as u64),
                Some(other) => Err(err(
                    format!("{k} must be a non-negative integer"),
                    other.span(),
                )),
                None => Err(err(format!("the record has no {k}"), at)),
            }
        };
        let (ms, hi, lo) = (int("ts_ms")?, int("counter_hi")?, int("counter_lo")?);
        let node = match val.get("node") {
            Some(Value::String {
                val, internal_span, ..
            }) => u32::from_str_radix(val, 16)
                .map_err(|_| err("node must be at most 8 hex digits", *internal_span))?,
            Some(other) => return Err(err("node must be a hex string", other.span())),
            None => return Err(err("the record has no node", at)),
        };
        let (Ok(hi), Ok(lo)) = (u32::try_from(hi), u32::try_from(lo)) else {
            return Err(err("counter_hi and counter_lo must be below 2^24", at));
        };
        let id = xs::Id::try_from_fields(ms, hi, lo, node).map_err(|_| {
            err(
                "a field is out of range (ts_ms < 2^48, counters < 2^24)",
                at,
            )
        })?;
        Ok(PipelineData::value(
            Value::string(id.to_string(), span),
            None,
        ))
    }
}
