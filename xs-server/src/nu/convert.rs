//! Values between Nushell and xs: JSON ↔ nu `Value`, frames as records, and script output
//! as frame content.

use bytes::Bytes;
use nu_protocol::{IntoValue, PipelineData, Record, ShellError, Span, Value};
use xs::{Content, Frame, Store};

/// A frame as the record scripts see: `{topic, id, hash, meta, ttl}` (+ `timestamp`, the
/// id's time as a datetime).
pub fn frame_value(frame: &Frame, with_timestamp: bool, span: Span) -> Value {
    let mut r = Record::with_capacity(6);
    r.push("topic", Value::string(frame.topic.clone(), span));
    r.push("id", Value::string(frame.id.to_string(), span));
    r.push(
        "hash",
        match &frame.hash {
            Some(h) => Value::string(h.to_string(), span),
            None => Value::nothing(span),
        },
    );
    r.push(
        "meta",
        match &frame.meta {
            Some(m) => m.clone().into_value(span),
            None => Value::nothing(span),
        },
    );
    r.push(
        "ttl",
        match &frame.ttl {
            Some(t) => Value::string(t.to_string(), span),
            None => Value::nothing(span),
        },
    );
    if with_timestamp {
        let when = chrono::DateTime::from_timestamp_millis(frame.id.timestamp() as i64)
            .unwrap_or_default();
        r.push("timestamp", Value::date(when.fixed_offset(), span));
    }
    Value::record(r, span)
}

/// A nu value as JSON: filesizes in bytes, durations in nanoseconds, dates as RFC 3339,
/// binary as an array of bytes, ranges and cell paths as text. Closures are an error.
pub fn to_json(v: &Value) -> Result<serde_json::Value, ShellError> {
    use serde_json::Value as J;
    Ok(match v {
        Value::Bool { val, .. } => J::Bool(*val),
        Value::Int { val, .. } => J::from(*val),
        Value::Float { val, .. } => serde_json::Number::from_f64(*val).map_or(J::Null, J::Number),
        Value::String { val, .. } => J::String(val.clone()),
        Value::Glob { val, .. } => J::String(val.clone()),
        Value::Filesize { val, .. } => J::from(val.get()),
        Value::Duration { val, .. } => J::from(*val),
        Value::Date { val, .. } => J::String(val.to_rfc3339()),
        Value::Range { val, .. } => J::String(val.to_string()),
        Value::Record { val, .. } => {
            let mut m = serde_json::Map::with_capacity(val.len());
            for (k, v) in val.iter() {
                m.insert(k.clone(), to_json(v)?);
            }
            J::Object(m)
        }
        Value::List { vals, .. } => J::Array(vals.iter().map(to_json).collect::<Result<_, _>>()?),
        Value::Binary { val, .. } => J::Array(val.iter().map(|b| J::from(*b)).collect()),
        Value::CellPath { val, .. } => J::String(val.to_string()),
        Value::Nothing { .. } => J::Null,
        Value::Error { error, .. } => return Err((**error).clone()),
        Value::Closure { .. } | Value::Custom { .. } => {
            return Err(ShellError::CantConvert {
                to_type: "JSON".into(),
                from_type: v.get_type().to_string(),
                span: v.span(),
                help: Some(
                    "only data (records, lists, strings, numbers, ...) can be stored".into(),
                ),
            })
        }
    })
}

/// The bytes a single value is stored as: strings as UTF-8, binary as is, nothing as no
/// content, anything else as JSON.
pub fn value_bytes(v: &Value) -> Result<Option<Vec<u8>>, ShellError> {
    Ok(match v {
        Value::Nothing { .. } => None,
        Value::String { val, .. } => Some(val.clone().into_bytes()),
        Value::Binary { val, .. } => Some(val.to_vec()),
        other => {
            Some(serde_json::to_vec(&to_json(other)?).map_err(|e| shell_error(e.to_string()))?)
        }
    })
}

/// Stores pipeline data as content, streaming byte streams into the CAS. A list stream is
/// stored as a JSON array. Returns what to put in the frame.
pub fn store_content(
    store: &Store,
    rt: &tokio::runtime::Handle,
    input: PipelineData,
) -> Result<Content, ShellError> {
    match input {
        PipelineData::Empty => Ok(Content::None),
        PipelineData::Value(v, _) => bytes_content(store, rt, value_bytes(&v)?),
        PipelineData::ListStream(s, _) => {
            let list = Value::list(s.into_iter().collect(), Span::unknown());
            bytes_content(store, rt, value_bytes(&list)?)
        }
        PipelineData::ByteStream(s, _) => {
            let Some(mut reader) = s.reader() else {
                return Ok(Content::None);
            };
            let mut w = store.content_writer();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = std::io::Read::read(&mut reader, &mut buf)
                    .map_err(|e| shell_error(format!("reading the input: {e}")))?;
                if n == 0 {
                    break;
                }
                rt.block_on(w.write(&buf[..n])).map_err(store_error)?;
            }
            rt.block_on(w.finish()).map_err(store_error)
        }
    }
}

fn bytes_content(
    store: &Store,
    rt: &tokio::runtime::Handle,
    bytes: Option<Vec<u8>>,
) -> Result<Content, ShellError> {
    match bytes {
        None => Ok(Content::None),
        Some(b) if b.len() <= xs::INLINE_CONTENT_MAX => Ok(Content::inline(Bytes::from(b))),
        Some(b) => {
            let mut w = store.content_writer();
            rt.block_on(async {
                w.write(&b).await?;
                w.finish().await
            })
            .map_err(store_error)
        }
    }
}

/// Content as a value: a string when it is UTF-8, else binary.
pub fn content_value(bytes: Vec<u8>, span: Span) -> Value {
    match String::from_utf8(bytes) {
        Ok(s) => Value::string(s, span),
        Err(e) => Value::binary(e.into_bytes(), span),
    }
}

pub fn shell_error(msg: impl Into<String>) -> ShellError {
    ShellError::Generic(
        nu_protocol::shell_error::generic::GenericError::new_internal(msg.into(), ""),
    )
}

pub fn store_error(e: xs::Error) -> ShellError {
    shell_error(e.to_string())
}
