//! Creates of kinds nobody runs: `xs.<word>.<name>.create` where `<word>` is neither one of
//! ours nor cross.stream's (nor `xs.start`, `xs.module.*`, ...) is answered
//! `xs.<word>.<name>.invalid` naming the known kinds, never silence. Creates appended while
//! the daemon was down are answered at start, once. In a store mounted through a control
//! store, `xs.store.<name>.create` is answered `invalid` too: stores are added through the
//! control store (a create some earlier daemon answered, when the store was served on its own,
//! is left alone).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use tokio::sync::watch;
use xs::lifecycle::{self, Vocab, NOT_KINDS};
use xs::reader::Event;
use xs::{Follow, Frame, Id, NewFrame, ReadOptions, Store, TopicFilter};

use super::Dispatcher;

/// `xs.<word>.<name>.create` with an unknown `<word>` (or `store`, in a store mounted
/// through a control store) → `(word, name)`.
fn unknown_create(topic: &str, mounted: bool) -> Option<(&str, &str)> {
    let rest = topic.strip_prefix("xs.")?.strip_suffix(".create")?;
    let (word, name) = rest.split_once('.')?;
    let known = Vocab::of(word).is_some() || NOT_KINDS.contains(&word);
    let known = known && !(mounted && word == "store");
    (!known && !name.is_empty()).then_some((word, name))
}

/// Answers unknown kinds' creates until stopped; `control`: this store is mounted through
/// that control store.
pub fn start(store: Store, control: Option<PathBuf>) -> Dispatcher {
    let (stop, stop_rx) = watch::channel(false);
    Dispatcher {
        stop,
        task: tokio::spawn(run(store, control, stop_rx)),
    }
}

async fn run(store: Store, control: Option<PathBuf>, mut stop: watch::Receiver<bool>) {
    let mounted = control.is_some();
    let Ok(topic) = TopicFilter::parse("xs.*") else {
        return;
    };
    let mut reader = store.read_quiet(ReadOptions {
        follow: Follow::On,
        topic,
        ..ReadOptions::default()
    });
    let mut replaying = true;
    // While replaying: the creates seen, and those already answered.
    let mut creates: Vec<Frame> = Vec::new();
    let mut answered: HashSet<Id> = HashSet::new();
    loop {
        let events = tokio::select! {
            _ = crate::daemon::stopped(&mut stop) => return,
            e = reader.next_batch() => match e {
                Some(Ok(events)) => events,
                _ => return,
            },
        };
        for e in events {
            match e {
                Event::Frame(r) => {
                    let Ok(f) = r.frame() else { continue };
                    if unknown_create(&f.topic, mounted).is_some() {
                        if replaying {
                            creates.push(f);
                        } else {
                            answer(&store, &f, control.as_deref()).await;
                        }
                    } else if replaying
                        && (f.topic.ends_with(".invalid")
                            || (mounted && f.topic.starts_with("xs.store.")))
                    {
                        let c = f.meta.as_ref().and_then(|m| m.get("create_id"));
                        if let Some(id) = c.and_then(|v| v.as_str()) {
                            if let Ok(id) = xs::frame::parse_id(id) {
                                answered.insert(id);
                            }
                        }
                    }
                }
                Event::Threshold(_) if replaying => {
                    replaying = false;
                    for f in std::mem::take(&mut creates) {
                        if !answered.contains(&f.id) {
                            answer(&store, &f, control.as_deref()).await;
                        }
                    }
                    answered.clear();
                }
                _ => {}
            }
        }
    }
}

async fn answer(store: &Store, create: &Frame, control: Option<&Path>) {
    let Some((word, name)) = unknown_create(&create.topic, control.is_some()) else {
        return;
    };
    let error = match control {
        Some(c) if word == "store" => format!(
            "stores are added through the control store {}, not through a store it mounts",
            c.display()
        ),
        _ => lifecycle::unknown_kind(word),
    };
    tracing::warn!(topic = %create.topic, %error, "create of an unknown kind");
    let frame = NewFrame {
        meta: Some(serde_json::json!({ "create_id": create.id, "error": error })),
        // One answer, however many daemons of a shared stream give it.
        key: Some(create.id.to_string()),
        ..NewFrame::new(format!("xs.{word}.{name}.invalid"))
    };
    if let Err(e) = store.append(frame).await {
        tracing::warn!(error = %e, "could not answer a create of an unknown kind");
    }
}
