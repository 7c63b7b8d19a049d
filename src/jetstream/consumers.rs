//! Durable consumer positions shared by every daemon on the stream: the key-value bucket
//! `<NAME>_consumers` (replicated like the stream, history 1). Key: the consumer's name
//! hex-encoded (names allow characters KV keys do not; hex keeps the names' byte order).
//! Value: the last acknowledged id. An ack is a compare-and-set on the key's revision that
//! keeps the larger id, so whichever daemons ack, in whatever order, a position never moves
//! backwards and no ack is lost.

use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures::TryStreamExt;

use super::{unavailable, Inner};
use crate::backend::Backend;
use crate::consumer::{ConsumerInfo, LAG_CAP};
use crate::error::{Error, Result};
use crate::frame::{parse_id, Id};

fn key_of(name: &str) -> String {
    hex::encode(name.as_bytes())
}

fn name_of(key: &str) -> Option<String> {
    String::from_utf8(hex::decode(key).ok()?).ok()
}

fn position(e: &kv::Entry) -> Result<Id> {
    std::str::from_utf8(&e.value)
        .ok()
        .and_then(|s| parse_id(s).ok())
        .ok_or_else(|| Error::Corrupt(format!("consumer position {:?}", e.value)))
}

impl Inner {
    /// The newest id this daemon knows was assigned: stored in the copy, or given by a writer
    /// (its own, or another daemon's frames it applied or relayed, removed ones included).
    fn newest_assigned(&self) -> Result<Option<Id>> {
        Ok(self
            .copy
            .newest_id()?
            .max(*self.assigned.lock().unwrap_or_else(|e| e.into_inner())))
    }

    /// `id` must not be after the newest id assigned; an id another daemon gave that this
    /// copy has not applied yet is waited for (up to the end of the stream as it is now).
    async fn check_ackable(&self, id: Id) -> Result<()> {
        if self.newest_assigned()?.is_some_and(|l| id <= l) {
            return Ok(());
        }
        if self.catch_up_now().await.is_ok() && self.newest_assigned()?.is_some_and(|l| id <= l) {
            return Ok(());
        }
        Err(Error::invalid(format!(
            "cannot acknowledge {id}: it is after the newest frame in the store"
        )))
    }

    /// Moves consumer `name` to the larger of its position and `id`; answers the position.
    pub(crate) async fn ack(&self, name: &str, id: Id) -> Result<Id> {
        self.check_ackable(id).await?;
        let key = key_of(name);
        let value = Bytes::from(id.to_string());
        let deadline = Instant::now() + self.write_timeout;
        let mut backoff = 1;
        loop {
            let entry = self
                .consumers
                .entry(key.as_str())
                .await
                .map_err(unavailable)?;
            // A conflict (another daemon acked in between: wrong revision, 10164, or already
            // created) or a transient failure: read again and compare, until the deadline.
            let failed = match entry {
                Some(e) if e.operation == kv::Operation::Put => {
                    let current = position(&e)?;
                    if current >= id {
                        return Ok(current);
                    }
                    match self.consumers.update(&key, value.clone(), e.revision).await {
                        Ok(_) => return Ok(id),
                        Err(err) => err.to_string(),
                    }
                }
                // No position, or a deleted one: create it (the client expects the
                // tombstone's revision).
                _ => match self.consumers.create(&key, value.clone()).await {
                    Ok(_) => return Ok(id),
                    Err(err) => err.to_string(),
                },
            };
            if Instant::now() >= deadline {
                return Err(Error::Unavailable(format!(
                    "consumer {name}: no ack in time ({failed})"
                )));
            }
            tokio::time::sleep(Duration::from_millis(backoff)).await;
            backoff = (backoff * 2).min(100);
        }
    }

    /// Forgets consumer `name`; `NotFound` if it has no position.
    pub(crate) async fn remove_consumer(&self, name: &str) -> Result<()> {
        let key = key_of(name);
        let deadline = Instant::now() + self.write_timeout;
        loop {
            let entry = self
                .consumers
                .entry(key.as_str())
                .await
                .map_err(unavailable)?;
            let Some(e) = entry.filter(|e| e.operation == kv::Operation::Put) else {
                return Err(Error::NotFound(format!("no consumer named {name:?}")));
            };
            // Expecting the revision read: an ack in between is not undone silently.
            match self
                .consumers
                .delete_expect_revision(&key, Some(e.revision))
                .await
            {
                Ok(()) => return Ok(()),
                Err(err) if Instant::now() >= deadline => return Err(unavailable(err)),
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    /// Every consumer with a position (or only `only`), by name, with its lag in this copy.
    pub(crate) async fn consumers(&self, only: Option<&str>) -> Result<Vec<ConsumerInfo>> {
        let mut found = Vec::new();
        match only {
            Some(name) => {
                let entry = self
                    .consumers
                    .entry(key_of(name))
                    .await
                    .map_err(unavailable)?;
                if let Some(e) = entry.filter(|e| e.operation == kv::Operation::Put) {
                    found.push((name.to_string(), position(&e)?));
                }
            }
            None => {
                let mut keys: Vec<String> = self
                    .consumers
                    .keys()
                    .await
                    .map_err(unavailable)?
                    .try_collect()
                    .await
                    .map_err(unavailable)?;
                keys.sort();
                for key in keys {
                    let Some(name) = name_of(&key) else { continue };
                    let entry = self.consumers.entry(key).await.map_err(unavailable)?;
                    if let Some(e) = entry.filter(|e| e.operation == kv::Operation::Put) {
                        found.push((name, position(&e)?));
                    }
                }
            }
        }
        let mut out = Vec::with_capacity(found.len());
        for (name, position) in found {
            out.push(ConsumerInfo {
                lag: Backend::count_after(&self.copy, Some(position), LAG_CAP).await?,
                name,
                position,
            });
        }
        Ok(out)
    }
}
