//! The read plumbing `.cat` and `.last` share: their common flags, and a read run on the
//! daemon's runtime whose frames the script pulls lazily (acknowledging a consumer's frames
//! as it goes).

use std::sync::Arc;
use std::time::{Duration, Instant};

use nu_engine::command_prelude::*;
use nu_protocol::{ListStream, Signals};
use xs::consumer::ConsumerRead;
use xs::reader::{Event, Reader};
use xs::{ReadOptions, Ttl};

use crate::nu::convert::{frame_value, shell_error};
use crate::nu::Ctx;

/// The read flags shared by `.cat` and `.last`.
pub(super) fn read_flags(sig: Signature) -> Signature {
    sig.switch("follow", "keep reading new frames", Some('f'))
        .named(
            "pulse",
            SyntaxShape::Int,
            "while following, an xs.pulse frame every this many ms",
            Some('p'),
        )
        .switch("with-timestamp", "add each frame's timestamp", None)
}

/// The `follow`, `pulse` and `with-timestamp` flags as query pairs.
pub(super) fn read_query(
    es: &EngineState,
    stack: &mut Stack,
    call: &Call,
) -> Result<Vec<String>, ShellError> {
    let mut q = Vec::new();
    match call.get_flag::<i64>(es, stack, "pulse")? {
        Some(ms) => q.push(format!("follow={ms}")),
        None if call.has_flag(es, stack, "follow")? => q.push("follow=true".into()),
        None => {}
    }
    if call.has_flag(es, stack, "with-timestamp")? {
        q.push("with-timestamp=true".into());
    }
    Ok(q)
}

/// Runs a read on the daemon's runtime and hands its frames to the script lazily; dropping
/// the stream ends the read.
pub(super) fn read_stream(
    ctx: &Arc<Ctx>,
    es: &EngineState,
    opts: ReadOptions,
    consumer: Option<ConsumerRead>,
    span: Span,
) -> PipelineData {
    let wt = opts.with_timestamp;
    let reader = {
        let _rt = ctx.rt.enter();
        ctx.store.read(opts)
    };
    let frames = Frames {
        reader,
        rt: ctx.rt.clone(),
        signals: es.signals().clone(),
        wt,
        span,
        acker: consumer.filter(|c| c.ack_auto).map(|c| Acker {
            ctx: ctx.clone(),
            name: c.name,
            pending: None,
            last_ack: Instant::now(),
        }),
    };
    PipelineData::list_stream(ListStream::new(frames, span, es.signals().clone()), None)
}

/// Acknowledges a consumer's frames as the script reads them, at most every 100 ms (and at
/// the end), so a fast reader does not pay an fsync per frame.
struct Acker {
    ctx: Arc<Ctx>,
    name: String,
    pending: Option<xs::Id>,
    last_ack: Instant,
}

impl Acker {
    fn flush(&mut self) {
        if let Some(id) = self.pending.take() {
            self.last_ack = Instant::now();
            if let Err(e) = self.ctx.rt.block_on(self.ctx.store.ack(&self.name, id)) {
                tracing::warn!(consumer = %self.name, error = %e, "auto-ack failed");
            }
        }
    }
}

impl Drop for Acker {
    fn drop(&mut self) {
        self.flush();
    }
}

struct Frames {
    reader: Reader,
    rt: tokio::runtime::Handle,
    /// Checked while waiting for frames, so an interrupted script stops waiting.
    signals: Signals,
    wt: bool,
    span: Span,
    acker: Option<Acker>,
}

impl Iterator for Frames {
    type Item = Value;

    fn next(&mut self) -> Option<Value> {
        loop {
            let reader = &mut self.reader;
            let next = self.rt.block_on(async {
                tokio::time::timeout(Duration::from_millis(250), reader.next()).await
            });
            let event = match next {
                Ok(e) => e?,
                Err(_) if self.signals.interrupted() => return None,
                Err(_) => {
                    if let Some(a) = &mut self.acker {
                        a.flush();
                    }
                    continue;
                }
            };
            let frame = match event {
                Ok(Event::Frame(r)) => r.frame(),
                Ok(Event::Threshold(f) | Event::Pulse(f)) => Ok(f),
                Err(e) => Err(e),
            };
            let frame = match frame {
                Ok(f) => f,
                Err(e) => return Some(Value::error(shell_error(e.to_string()), self.span)),
            };
            if let Some(a) = &mut self.acker {
                if frame.ttl != Some(Ttl::Ephemeral) {
                    a.pending = Some(frame.id);
                }
                if a.last_ack.elapsed() >= Duration::from_millis(100) {
                    a.flush();
                }
            }
            return Some(frame_value(&frame, self.wt, self.span));
        }
    }
}
