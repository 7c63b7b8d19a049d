//! Where a store's processors run (docs/DESIGN.md §6). [`Placement::Here`]: this daemon runs
//! them all (a local store). [`Placement::Cluster`]: the daemons of a shared stream split
//! them: a processor runs on the live member that wins its rendezvous hash, once that member
//! holds the processor's lease, and stops as soon as the lease is lost or must move.

use std::sync::Arc;

/// Where processors run, and this daemon's name; cheap to clone.
#[derive(Clone)]
pub struct Placement {
    /// This daemon's name (`--name`), in `xs.start` and `xs ps`.
    pub name: Arc<str>,
    /// The daemons sharing the stream, when processors are placed by lease.
    #[cfg(feature = "nats")]
    members: Option<Arc<cluster::Members>>,
}

impl Placement {
    /// Every processor runs in this daemon.
    pub fn here(name: &str) -> Placement {
        Placement {
            name: name.into(),
            #[cfg(feature = "nats")]
            members: None,
        }
    }

    /// Each processor runs on one daemon of the stream, by lease.
    #[cfg(feature = "nats")]
    pub fn cluster(members: Arc<cluster::Members>) -> Placement {
        Placement {
            name: members.name.as_str().into(),
            members: Some(members),
        }
    }

    /// Whether processors are shared with other daemons.
    pub fn shared(&self) -> bool {
        #[cfg(feature = "nats")]
        let shared = self.members.is_some();
        #[cfg(not(feature = "nats"))]
        let shared = false;
        shared
    }

    #[cfg(feature = "nats")]
    pub fn members(&self) -> Option<&Arc<cluster::Members>> {
        self.members.as_ref()
    }

    /// Stops the background tasks (announcements, watches).
    pub fn stop(&self) {
        #[cfg(feature = "nats")]
        if let Some(m) = &self.members {
            m.stop();
        }
    }
}

/// A default daemon name: the host name and a short random suffix.
pub fn default_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| {
            h.trim()
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '-'
                    }
                })
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "xs".into());
    let mut b = [0u8; 3];
    let _ = getrandom::fill(&mut b);
    format!("{host}-{}", hex::encode(b))
}

/// Checks a daemon name: it names a key in the members bucket.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!("--name {name:?}: 1 to 64 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "--name {name:?}: only letters, digits, '-' and '_' are allowed"
        ));
    }
    Ok(())
}

/// The weight of `member` for `key` in rendezvous hashing (the highest wins): FNV-1a over
/// both, then a 64-bit finalizer so that close names spread. Stable across builds.
pub fn weight(member: &str, key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in member.bytes().chain([0u8]).chain(key.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The member that should run `key`: the one of highest weight.
pub fn winner<'a>(members: impl IntoIterator<Item = &'a String>, key: &str) -> Option<&'a String> {
    members.into_iter().max_by_key(|m| (weight(m, key), *m))
}

#[cfg(feature = "nats")]
pub mod cluster {
    //! Membership (announcements every second, a watch giving the live set) and the leases
    //! of one daemon on a shared stream.

    use std::collections::{BTreeMap, BTreeSet, HashMap};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use futures::StreamExt;
    use tokio::sync::watch;
    use tokio::task::JoinHandle;
    use xs::jetstream::cluster::{Cluster, BEAT, LEASE_TTL, MEMBER_TTL};

    /// A lease counts as held locally until this long before it would lapse in the cluster,
    /// measured from when its last successful renewal was sent (covers clock-rate drift and a
    /// renewal in flight).
    const LEASE_MARGIN: Duration = Duration::from_millis(1500);

    /// This daemon as a member of the stream's cluster.
    pub struct Members {
        pub name: String,
        cluster: Cluster,
        /// The live members (this one included), once the first view is complete.
        live: watch::Sender<Option<BTreeSet<String>>>,
        /// Lease key → holder, as last seen.
        holders: Mutex<BTreeMap<String, String>>,
        tasks: Mutex<Vec<JoinHandle<()>>>,
    }

    impl Members {
        /// Joins: announces `name` every [`BEAT`] and follows the members and the leases.
        pub fn start(name: String, cluster: Cluster) -> Arc<Members> {
            let m = Arc::new(Members {
                name,
                cluster,
                live: watch::channel(None).0,
                holders: Mutex::default(),
                tasks: Mutex::default(),
            });
            let tasks = vec![
                tokio::spawn(beat(Arc::downgrade(&m))),
                tokio::spawn(follow_members(Arc::downgrade(&m))),
                tokio::spawn(follow_leases(Arc::downgrade(&m))),
            ];
            *m.tasks.lock().unwrap_or_else(|e| e.into_inner()) = tasks;
            m
        }

        pub fn stop(&self) {
            for t in self
                .tasks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain(..)
            {
                t.abort();
            }
        }

        /// Whether this daemon should run `key` now.
        fn wins(&self, key: &str) -> bool {
            let live = self.live.borrow();
            live.as_ref()
                .and_then(|l| super::winner(l, key))
                .is_some_and(|w| *w == self.name)
        }

        /// Who runs `key`, as far as this daemon knows: its lease holder, if live.
        pub fn runs(&self, key: &str) -> Option<String> {
            let holder = self
                .holders
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(key)
                .cloned()?;
            let live = self.live.borrow();
            live.as_ref()
                .is_some_and(|l| l.contains(&holder))
                .then_some(holder)
        }

        /// Waits until this daemon is the one to run `key` and has taken its lease; `None`
        /// when `stop` turns true first. `waiting` is called on every round while it waits.
        pub async fn acquire(
            self: &Arc<Self>,
            key: &str,
            stop: &mut watch::Receiver<bool>,
            mut waiting: impl FnMut(Option<String>),
        ) -> Option<Lease> {
            let mut live = self.live.subscribe();
            loop {
                if *stop.borrow() {
                    return None;
                }
                if self.wins(key) {
                    let sent = Instant::now();
                    match self.cluster.acquire(key, &self.name).await {
                        Ok(Some(rev)) => return Some(Lease::start(self.clone(), key, rev, sent)),
                        Ok(None) => {}
                        Err(e) => tracing::warn!(key, error = %e, "taking a lease failed"),
                    }
                }
                waiting(self.runs(key));
                tokio::select! {
                    _ = crate::daemon::stopped(stop) => return None,
                    _ = live.changed() => {}
                    _ = tokio::time::sleep(BEAT) => {}
                }
            }
        }
    }

    /// Why a lease ended.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Lost {
        /// Another daemon should run it now (one joined): stop, then release.
        Move,
        /// Refused, or not renewed in time: someone else may hold it already.
        Lost,
    }

    /// A lease this daemon holds, renewed every [`BEAT`] until released or lost.
    pub struct Lease {
        members: Arc<Members>,
        key: String,
        /// The revision it was taken at: with the daemon's name, the owner's fencing token.
        first: u64,
        rev: Arc<Mutex<u64>>,
        /// When its last successful renewal (or the taking) was sent; `None` once lost.
        sent: Arc<Mutex<Option<Instant>>>,
        lost: watch::Receiver<Option<Lost>>,
        renewer: JoinHandle<()>,
    }

    impl Lease {
        fn start(members: Arc<Members>, key: &str, rev: u64, sent: Instant) -> Lease {
            let (tx, lost) = watch::channel(None);
            let shared = Arc::new(Mutex::new(rev));
            let sent = Arc::new(Mutex::new(Some(sent)));
            let renewer = tokio::spawn(renew(
                members.clone(),
                key.to_string(),
                shared.clone(),
                sent.clone(),
                tx,
            ));
            Lease {
                members,
                key: key.to_string(),
                first: rev,
                rev: shared,
                sent,
                lost,
                renewer,
            }
        }

        /// This holding's fencing token: unique to this daemon and this taking of the lease.
        pub fn token(&self) -> String {
            format!("{}:{}", self.members.name, self.first)
        }

        /// The holding as the processor sees it: its token, and whether the lease is still
        /// held on this daemon's clock.
        pub fn owner(&self) -> crate::processor::Owner {
            let sent = self.sent.clone();
            crate::processor::Owner {
                token: self.token(),
                held: Arc::new(move || held(&sent)),
            }
        }

        /// Resolves when the lease is lost or must move.
        pub async fn lost(&mut self) -> Lost {
            match self.lost.wait_for(|l| l.is_some()).await {
                Ok(l) => l.unwrap_or(Lost::Lost),
                Err(_) => Lost::Lost,
            }
        }

        /// Gives the lease up (after the processor stopped), so the next owner need not wait
        /// for it to lapse.
        pub async fn release(self) {
            self.renewer.abort();
            let rev = *self.rev.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = self.members.cluster.release(&self.key, rev).await {
                tracing::debug!(key = %self.key, error = %e, "releasing a lease failed (it lapses)");
            }
        }
    }

    /// Whether a lease whose last renewal was sent at `sent` still counts as held here.
    fn held(sent: &Mutex<Option<Instant>>) -> bool {
        sent.lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| t.elapsed() + LEASE_MARGIN < LEASE_TTL)
    }

    async fn renew(
        members: Arc<Members>,
        key: String,
        rev: Arc<Mutex<u64>>,
        sent: Arc<Mutex<Option<Instant>>>,
        lost: watch::Sender<Option<Lost>>,
    ) {
        let lose = |why| {
            *sent.lock().unwrap_or_else(|e| e.into_inner()) = None;
            let _ = lost.send(Some(why));
        };
        let mut tick = tokio::time::interval(BEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            // Checked first: after a pause (SIGSTOP) the lease may have lapsed long ago.
            if !held(&sent) {
                tracing::warn!(key, "lease not renewed in time; stopping the processor");
                lose(Lost::Lost);
                return;
            }
            if !members.wins(&key) && lost.borrow().is_none() {
                let _ = lost.send(Some(Lost::Move));
            }
            let now = Instant::now();
            let r = *rev.lock().unwrap_or_else(|e| e.into_inner());
            match members.cluster.renew(&key, &members.name, r).await {
                Ok(Some(new)) => {
                    *rev.lock().unwrap_or_else(|e| e.into_inner()) = new;
                    *sent.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
                }
                Ok(None) => {
                    tracing::warn!(key, "lease lost; stopping the processor");
                    lose(Lost::Lost);
                    return;
                }
                Err(e) => tracing::warn!(key, error = %e, "renewing a lease failed; retrying"),
            }
        }
    }

    async fn beat(m: std::sync::Weak<Members>) {
        let mut tick = tokio::time::interval(BEAT);
        loop {
            tick.tick().await;
            let Some(m) = m.upgrade() else { return };
            if let Err(e) = m.cluster.beat(&m.name).await {
                tracing::warn!(error = %e, "announcing this daemon failed");
            }
        }
    }

    /// Follows the members bucket; a member is live while its last announcement was seen
    /// less than [`MEMBER_TTL`] ago (on this daemon's clock).
    async fn follow_members(m: std::sync::Weak<Members>) {
        let mut seen: HashMap<String, Instant> = HashMap::new();
        let mut current = false;
        loop {
            let watch = match m.upgrade() {
                Some(m) => m.cluster.watch_members().await,
                None => return,
            };
            let mut w = match watch {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(error = %e, "watching the members failed; retrying");
                    tokio::time::sleep(BEAT).await;
                    continue;
                }
            };
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tokio::select! {
                    e = w.next() => match e {
                        Some(Ok(c)) => {
                            if c.value.is_some() {
                                seen.insert(c.key, Instant::now());
                            }
                            current |= c.current;
                        }
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "watching the members failed; retrying");
                            break;
                        }
                        None => break,
                    },
                    _ = tick.tick() => {}
                }
                let Some(m) = m.upgrade() else { return };
                seen.retain(|_, t| t.elapsed() < MEMBER_TTL);
                // The first view is complete once the watch delivered what the bucket held.
                if !current {
                    continue;
                }
                let mut live: BTreeSet<String> = seen.keys().cloned().collect();
                live.insert(m.name.clone());
                m.live.send_if_modified(|l| {
                    let changed = l.as_ref() != Some(&live);
                    if changed {
                        tracing::info!(members = ?live, "live daemons");
                        *l = Some(live);
                    }
                    changed
                });
            }
        }
    }

    /// Follows the leases bucket: who holds which lease.
    async fn follow_leases(m: std::sync::Weak<Members>) {
        loop {
            let watch = match m.upgrade() {
                Some(m) => m.cluster.watch_leases().await,
                None => return,
            };
            let mut w = match watch {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(error = %e, "watching the leases failed; retrying");
                    tokio::time::sleep(BEAT).await;
                    continue;
                }
            };
            while let Some(e) = w.next().await {
                let Some(m) = m.upgrade() else { return };
                match e {
                    Ok(c) => {
                        let mut h = m.holders.lock().unwrap_or_else(|e| e.into_inner());
                        match c.value {
                            Some(v) => h.insert(c.key, v),
                            None => h.remove(&c.key),
                        };
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "watching the leases failed; retrying");
                        break;
                    }
                }
            }
            tokio::time::sleep(BEAT).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendezvous_spreads_and_moves_little() {
        let three: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let keys: Vec<String> = (0..300).map(|i| format!("handler.h{i}")).collect();
        let mut per = std::collections::HashMap::new();
        for k in &keys {
            *per.entry(winner(&three, k).unwrap().clone()).or_insert(0) += 1;
        }
        for m in &three {
            assert!(per[m] > 60, "{m} runs {} of 300", per[m]);
        }
        // Removing c moves only c's keys.
        let two = &three[..2];
        for k in &keys {
            let w3 = winner(&three, k).unwrap();
            if w3 != "c" {
                assert_eq!(winner(two, k).unwrap(), w3);
            }
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("node-1_a").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a.b").is_err());
        assert!(check_name(&"x".repeat(65)).is_err());
        assert!(check_name(&default_name()).is_ok());
    }
}
