//! What the daemons of one stream share to place the processors (docs/jetstream.md,
//! *Processors*): the members bucket `<NAME>_members` (each daemon puts its name every
//! [`BEAT`]; entries older than [`MEMBER_TTL`] are gone) and the leases bucket `<NAME>_leases`
//! (one key per processor, its value the holder's name; entries older than [`LEASE_TTL`] are
//! gone, so a dead holder's lease lapses). Deciding who runs what is the daemon's business.

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;

use super::{unavailable, JetStreamBackend};
use crate::error::{Error, Result};

/// How often a daemon announces itself, and renews its leases.
pub const BEAT: Duration = Duration::from_secs(1);

/// How long a member counts as live after its last announcement (the members bucket's
/// `max_age`; other daemons measure it on their own clocks from when they saw it).
pub const MEMBER_TTL: Duration = Duration::from_secs(5);

/// How long a lease lasts after its last renewal (the leases bucket's `max_age`).
pub const LEASE_TTL: Duration = Duration::from_secs(5);

/// A key of one of the buckets changed: its new value, `None` when deleted.
#[derive(Debug, Clone)]
pub struct KeyChange {
    /// The key.
    pub key: String,
    /// The value (a member's or a holder's name), if any.
    pub value: Option<String>,
    /// The initial values have all been delivered (what follows is live).
    pub current: bool,
}

/// The members and leases buckets of a stream; cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    members: kv::Store,
    leases: kv::Store,
}

impl JetStreamBackend {
    /// The stream's placement buckets, created if missing.
    pub async fn cluster(&self) -> Result<Cluster> {
        let js = jetstream::new(self.inner.client.clone());
        let name = &self.inner.stream_name;
        let replicas = self.inner.replicas;
        let bucket = async |suffix: &str, max_age: Duration| -> Result<kv::Store> {
            let bucket = format!("{name}_{suffix}");
            let what = format!("opening key-value bucket {bucket}");
            super::set_up(&what, || async {
                match js.get_key_value(&bucket).await {
                    Ok(s) => Ok(s),
                    Err(_) => js
                        .create_key_value(kv::Config {
                            bucket: bucket.clone(),
                            history: 1,
                            max_age,
                            num_replicas: replicas,
                            storage: stream::StorageType::File,
                            ..Default::default()
                        })
                        .await
                        .map_err(|e| e.to_string()),
                }
            })
            .await
            .map_err(|e| Error::Unavailable(format!("{what}: {e}")))
        };
        Ok(Cluster {
            members: bucket("members", MEMBER_TTL).await?,
            leases: bucket("leases", LEASE_TTL).await?,
        })
    }
}

impl Cluster {
    /// Announces member `name` (its value: the name too).
    pub async fn beat(&self, name: &str) -> Result<()> {
        self.members
            .put(name, Bytes::from(name.to_string()))
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    /// Every announcement from now on (the current members first).
    pub async fn watch_members(&self) -> Result<BoxStream<'static, Result<KeyChange>>> {
        watch(&self.members).await
    }

    /// Every change of a lease from now on (the current holders first). A lease that lapses
    /// (its holder died) is not reported: it is gone once someone else takes it.
    pub async fn watch_leases(&self) -> Result<BoxStream<'static, Result<KeyChange>>> {
        watch(&self.leases).await
    }

    /// Takes lease `key` for `holder` if nobody holds it: its revision, `None` if held.
    pub async fn acquire(&self, key: &str, holder: &str) -> Result<Option<u64>> {
        match self
            .leases
            .create(key, Bytes::from(holder.to_string()))
            .await
        {
            Ok(rev) => Ok(Some(rev)),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
            Err(e) if e.kind() == kv::CreateErrorKind::InvalidKey => {
                Err(Error::invalid(format!("{key:?} is not a valid lease key")))
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Renews lease `key` held at revision `rev`: the new revision, `None` if it was lost
    /// (it lapsed, or someone else holds it now).
    pub async fn renew(&self, key: &str, holder: &str, rev: u64) -> Result<Option<u64>> {
        match self
            .leases
            .update(key, Bytes::from(holder.to_string()), rev)
            .await
        {
            Ok(rev) => Ok(Some(rev)),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Gives lease `key` up, if it is still held at revision `rev`.
    pub async fn release(&self, key: &str, rev: u64) -> Result<()> {
        self.leases
            .delete_expect_revision(key, Some(rev))
            .await
            .map_err(unavailable)
    }
}

async fn watch(bucket: &kv::Store) -> Result<BoxStream<'static, Result<KeyChange>>> {
    let w = bucket.watch_all().await.map_err(unavailable)?;
    Ok(w.map(|e| {
        let e = e.map_err(unavailable)?;
        let value = (e.operation == kv::Operation::Put)
            .then(|| String::from_utf8_lossy(&e.value).into_owned());
        Ok(KeyChange {
            key: e.key,
            value,
            current: e.seen_current,
        })
    })
    .boxed())
}
