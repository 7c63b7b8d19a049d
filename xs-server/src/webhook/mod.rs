//! Webhook subscriptions: the `xs.webhook.<name>.<event>` lifecycle (DESIGN.md §6) — rebuilt at
//! start from that prefix only, then followed live — and one delivery task per live webhook.

mod config;
mod deliver;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use xs::{Frame, Id, NewFrame, ReadOptions, Store, TopicFilter};

pub use config::Config;
pub use deliver::consumer_name;

use crate::ps::{self, Table};

const PREFIX: &str = "xs.webhook.";

/// The running webhook dispatcher; [`Webhooks::stop`] ends it.
pub struct Webhooks {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Rebuilds the webhooks of `store` from their lifecycle frames and runs them.
pub fn start(store: Store) -> Webhooks {
    let (stop, stop_rx) = watch::channel(false);
    let table = ps::table(store.path());
    table.lock().unwrap_or_else(|e| e.into_inner()).clear();
    let d = Dispatcher {
        store,
        table,
        names: BTreeMap::new(),
        answered: HashSet::new(),
        pending: Vec::new(),
        replaying: true,
    };
    Webhooks {
        stop,
        task: tokio::spawn(d.run(stop_rx)),
    }
}

impl Webhooks {
    /// Stops every delivery (an in-flight request is abandoned, not acknowledged) and appends
    /// `.stopped` for each live webhook; they resume on the next start.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// A live webhook: its create frame, config and delivery task.
struct Running {
    create_id: Id,
    config: Arc<Config>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

struct Dispatcher {
    store: Store,
    table: Table,
    /// The live instance of each name.
    names: BTreeMap<String, Running>,
    /// `(create id, event)` answers already in the stream.
    answered: HashSet<(Id, String)>,
    /// Answers owed while replaying, appended once replay is done (unless already there).
    pending: Vec<(String, &'static str, Id, serde_json::Value)>,
    replaying: bool,
}

/// A lifecycle frame, with the create's config read (or why it is invalid).
struct Event {
    frame: Frame,
    config: Option<Result<Config, String>>,
}

impl Dispatcher {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut live = self.store.subscribe();
        let mut after: Option<Id> = None;
        loop {
            let events = match scan(&self.store, after).await {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(error = %e, "reading webhook lifecycle frames");
                    break;
                }
            };
            for ev in events {
                after = Some(ev.frame.id);
                self.apply(ev).await;
            }
            if self.replaying {
                self.finish_replay().await;
            }
            loop {
                tokio::select! {
                    _ = crate::stopped(&mut stop) => {
                        self.shutdown().await;
                        return;
                    }
                    r = live.recv() => match r {
                        Ok(f) if f.frame.topic.starts_with(PREFIX)
                            && after.is_none_or(|a| f.frame.id > a) => break,
                        Ok(_) => {}
                        Err(RecvError::Lagged(_)) => break,
                        Err(RecvError::Closed) => {
                            self.shutdown().await;
                            return;
                        }
                    },
                }
            }
        }
        self.shutdown().await;
    }

    async fn apply(&mut self, ev: Event) {
        let Some((name, event)) = parse_topic(&ev.frame.topic) else {
            return;
        };
        let name = name.to_string();
        let id = ev.frame.id;
        match event {
            "create" => match ev.config.unwrap_or_else(|| Err("no config".into())) {
                Ok(config) => {
                    if let Some(old) = self.names.remove(&name) {
                        let old_id = old.create_id;
                        old.halt().await;
                        self.answer(
                            &name,
                            "replaced",
                            old_id,
                            serde_json::json!({"replaced_by": id}),
                        )
                        .await;
                    }
                    let (stop, _) = watch::channel(false);
                    let r = Running {
                        create_id: id,
                        config: Arc::new(config),
                        stop,
                        task: None,
                    };
                    self.names.insert(name.clone(), r);
                    if !self.replaying {
                        self.launch(&name).await;
                    }
                }
                Err(error) => {
                    tracing::warn!(webhook = %name, %error, "invalid webhook config");
                    self.answer(&name, "invalid", id, serde_json::json!({ "error": error }))
                        .await;
                    if !self.names.contains_key(&name) {
                        self.set_row(&name, id, "invalid", None, Some(error));
                    }
                }
            },
            "term" => {
                if let Some(old) = self.names.remove(&name) {
                    let (old_id, url) = (old.create_id, Some(old.config.url.to_string()));
                    old.halt().await;
                    self.answer(
                        &name,
                        "fin.term",
                        old_id,
                        serde_json::json!({ "term_id": id }),
                    )
                    .await;
                    self.set_row(&name, old_id, "terminated", url, None);
                }
            }
            other => {
                let create = ev
                    .frame
                    .meta
                    .as_ref()
                    .and_then(|m| m.get("create_id"))
                    .and_then(|v| v.as_str())
                    .and_then(|s| xs::frame::parse_id(s).ok());
                if let Some(c) = create {
                    self.answered.insert((c, other.to_string()));
                }
            }
        }
    }

    /// After replay: appends the answers the stream still lacks (e.g. for frames appended
    /// while the daemon was down), then starts every live webhook.
    async fn finish_replay(&mut self) {
        self.replaying = false;
        for (name, event, create_id, extra) in std::mem::take(&mut self.pending) {
            if !self.answered.contains(&(create_id, event.to_string())) {
                self.append(&name, event, create_id, extra).await;
            }
        }
        let names: Vec<String> = self.names.keys().cloned().collect();
        for name in names {
            self.launch(&name).await;
        }
    }

    /// Starts `name`'s delivery task and appends `.active`.
    async fn launch(&mut self, name: &str) {
        let Some(r) = self.names.get_mut(name) else {
            return;
        };
        let (create_id, config) = (r.create_id, r.config.clone());
        let position = self
            .store
            .consumer_position(&consumer_name(name))
            .ok()
            .flatten();
        {
            let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
            t.insert(
                ("webhook", name.to_string()),
                ps::Status {
                    kind: "webhook",
                    name: name.to_string(),
                    state: "active",
                    since: ps::now(),
                    create_id,
                    position,
                    last_error: None,
                    failures: 0,
                    url: Some(config.url.to_string()),
                },
            );
        }
        let (stop, stop_rx) = watch::channel(false);
        let delivery = deliver::Delivery {
            store: self.store.clone(),
            name: name.to_string(),
            create_id,
            config,
            table: self.table.clone(),
        };
        r.stop = stop;
        r.task = Some(tokio::spawn(delivery.run(stop_rx)));
        self.append(name, "active", create_id, serde_json::json!({}))
            .await;
    }

    async fn shutdown(&mut self) {
        for (name, r) in std::mem::take(&mut self.names) {
            let create_id = r.create_id;
            r.halt().await;
            self.append(&name, "stopped", create_id, serde_json::json!({}))
                .await;
        }
    }

    /// Answers `event` for `create_id` now, or after replay if we are replaying.
    async fn answer(
        &mut self,
        name: &str,
        event: &'static str,
        create_id: Id,
        extra: serde_json::Value,
    ) {
        if self.replaying {
            self.pending
                .push((name.to_string(), event, create_id, extra));
        } else {
            self.append(name, event, create_id, extra).await;
        }
    }

    async fn append(&mut self, name: &str, event: &str, create_id: Id, extra: serde_json::Value) {
        let mut meta = serde_json::json!({ "create_id": create_id });
        if let serde_json::Value::Object(m) = extra {
            for (k, v) in m {
                meta[k] = v;
            }
        }
        let frame = NewFrame {
            meta: Some(meta),
            ..NewFrame::new(format!("{PREFIX}{name}.{event}"))
        };
        self.answered.insert((create_id, event.to_string()));
        if let Err(e) = self.store.append(frame).await {
            tracing::warn!(webhook = %name, event, error = %e, "could not append a webhook lifecycle frame");
        }
    }

    fn set_row(
        &self,
        name: &str,
        create_id: Id,
        state: &'static str,
        url: Option<String>,
        error: Option<String>,
    ) {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let key = ("webhook", name.to_string());
        let position = t.get(&key).and_then(|s| s.position);
        let last_error = error.or_else(|| t.get(&key).and_then(|s| s.last_error.clone()));
        let url = url.or_else(|| t.get(&key).and_then(|s| s.url.clone()));
        t.insert(
            key,
            ps::Status {
                kind: "webhook",
                name: name.to_string(),
                state,
                since: ps::now(),
                create_id,
                position,
                last_error,
                failures: 0,
                url,
            },
        );
    }
}

impl Running {
    /// Stops the delivery task and waits for it.
    async fn halt(self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task {
            let _ = t.await;
        }
    }
}

/// `xs.webhook.<name>.<event>` → `(name, event)`; `None` for other topics or events.
fn parse_topic(topic: &str) -> Option<(&str, &str)> {
    let rest = topic.strip_prefix(PREFIX)?;
    for event in [
        "fin.term",
        "fin.ok",
        "fin.error",
        "create",
        "term",
        "active",
        "invalid",
        "replaced",
        "stopped",
    ] {
        if let Some(name) = rest.strip_suffix(event).and_then(|n| n.strip_suffix('.')) {
            if !name.is_empty() {
                return Some((name, event));
            }
        }
    }
    None
}

/// Every lifecycle frame after `after`, with each create's config read from its content
/// (or, without content, its meta).
async fn scan(store: &Store, after: Option<Id>) -> xs::Result<Vec<Event>> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        let opts = ReadOptions {
            after,
            topic: TopicFilter::parse("xs.webhook.*")?,
            ..ReadOptions::default()
        };
        let mut frames = Vec::new();
        store.scan(&opts, |raw| {
            match Frame::from_json(raw.json) {
                Ok(f) => frames.push(f),
                Err(e) => tracing::error!(error = %e, "skipping a bad webhook frame"),
            }
            true
        })?;
        let mut out = Vec::with_capacity(frames.len());
        for frame in frames {
            let config = match parse_topic(&frame.topic) {
                Some((_, "create")) => Some(read_config(&store, &frame)),
                _ => None,
            };
            out.push(Event { frame, config });
        }
        Ok(out)
    })
    .await
    .map_err(|e| xs::Error::Internal(format!("webhook scan task failed: {e}")))?
}

fn read_config(store: &Store, frame: &Frame) -> Result<Config, String> {
    if let Some(hash) = &frame.hash {
        match store.cas_read(hash) {
            Ok(Some(bytes)) => return Config::parse(&bytes),
            Ok(None) => return Err(format!("the create frame's content {hash} is missing")),
            Err(e) => return Err(format!("reading the create frame's content: {e}")),
        }
    }
    match &frame.meta {
        Some(meta) => Config::parse(meta.to_string().as_bytes()),
        None => Err("the create frame has no content or meta: expected JSON {url, topics?, start?, headers?}".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_topic;

    #[test]
    fn lifecycle_topics() {
        assert_eq!(
            parse_topic("xs.webhook.a.b.create"),
            Some(("a.b", "create"))
        );
        assert_eq!(
            parse_topic("xs.webhook.w.fin.term"),
            Some(("w", "fin.term"))
        );
        assert_eq!(parse_topic("xs.webhook.w.term"), Some(("w", "term")));
        assert_eq!(parse_topic("xs.webhook.create"), None);
        assert_eq!(parse_topic("xs.handler.w.create"), None);
    }
}
