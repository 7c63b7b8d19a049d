//! [`Mount`]: one store served as a unit — its socket `<state>/sock` (and any TCP listeners),
//! its `xs.start` / `xs.stopping` frames and its processors — started and stopped whole.

use std::path::PathBuf;
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use xs::{NewFrame, Store};

use crate::daemon::{Daemon, Shared};
use crate::listener::{self, Listener};
use crate::placement::Placement;
use crate::{orphans, processor, ServeError};

/// How long the store gets to commit what is queued and close when it is unmounted.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// How long open connections get to finish when a store is unmounted.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// What a mount needs besides its store.
pub struct MountOptions {
    /// The directory of the socket `sock` (and of the generator tag).
    pub state: PathBuf,
    /// Listeners besides the socket (the default store's `--expose` / `--console`).
    pub tcp: Vec<Listener>,
    pub guard: Option<listener::Guard>,
    /// The meta of the `xs.start` frame.
    pub start_meta: serde_json::Value,
    /// What the generators' processes are tagged with.
    pub tag: orphans::Tag,
    /// Where the processors run (`None`: not in this daemon, `--no-processors`).
    pub placement: Option<Placement>,
    /// For a store mounted through a control store: that store, named in the `invalid`
    /// answering a store's create appended here.
    pub control: Option<PathBuf>,
}

/// A mounted store: serving until [`Mount::stop`].
pub struct Mount {
    pub daemon: Daemon,
    pub sock: PathBuf,
    processors: Vec<processor::Dispatcher>,
    placement: Option<Placement>,
    stop_accept: watch::Sender<bool>,
    accept: JoinHandle<GracefulShutdown>,
}

impl Mount {
    /// Binds the socket, appends `xs.start`, ends processes an earlier run's generators left
    /// behind, starts the processors and accepts connections.
    pub async fn start(
        store: Store,
        shared: &Shared,
        opts: MountOptions,
    ) -> Result<Mount, ServeError> {
        let daemon = Daemon::new(store.clone(), &opts.state, shared, opts.tag);
        let sock = opts.state.join("sock");
        let mut listeners = vec![listener::bind_unix(&sock)?];
        listeners.extend(opts.tcp);
        let start = NewFrame {
            meta: Some(opts.start_meta),
            ..NewFrame::new("xs.start")
        };
        if let Err(e) = store.append(start).await {
            let _ = std::fs::remove_file(&sock);
            return Err(e.into());
        }
        // Processes an earlier run's generators left behind (the daemon and its guard were
        // killed) end before the generators start again: never two copies.
        let p = opts.state.clone();
        let leftovers = tokio::task::spawn_blocking(move || orphans::sweep_store(&p))
            .await
            .unwrap_or(0);
        if leftovers > 0 {
            tracing::warn!(
                store = %opts.state.display(),
                processes = leftovers,
                "killed generator processes left behind by an earlier run"
            );
        }
        let processors = match &opts.placement {
            Some(p) => start_processors(&daemon, p, opts.control),
            None => {
                tracing::info!("processors are off (--no-processors)");
                Vec::new()
            }
        };
        let (stop_accept, stop_rx) = watch::channel(false);
        let accept = tokio::spawn(listener::serve(
            listeners,
            daemon.clone(),
            opts.guard,
            stop_rx,
        ));
        Ok(Mount {
            daemon,
            sock,
            processors,
            placement: opts.placement,
            stop_accept,
            accept,
        })
    }

    /// Resolves if the store's storage fails for good, with the reason.
    pub async fn failed(&self) -> String {
        self.daemon.store.failed().await
    }

    /// Stops accepting, stops the processors (each appends `stopped`), appends `xs.stopping`,
    /// closes the store, lets open connections finish (bounded) and removes the socket.
    pub async fn stop(self) -> Result<(), ServeError> {
        let store = self.daemon.store.clone();
        let _ = self.stop_accept.send(true);
        let graceful = self.accept.await.ok();
        futures::future::join_all(self.processors.into_iter().map(|p| p.stop())).await;
        if let Some(p) = &self.placement {
            p.stop();
        }
        if let Err(e) = store.append(NewFrame::new("xs.stopping")).await {
            tracing::warn!(error = %e, "could not append xs.stopping");
        }
        // Closing the store ends every follow stream after its last frames; then the open
        // connections finish their answers (bounded, so a stuck client cannot hold us).
        if tokio::time::timeout(CLOSE_GRACE, store.close())
            .await
            .is_err()
        {
            let _ = std::fs::remove_file(&self.sock);
            return Err(ServeError::Internal(format!(
                "the store did not close within {CLOSE_GRACE:?} (is its directory still there?)"
            )));
        }
        if let Some(g) = graceful {
            if tokio::time::timeout(SHUTDOWN_GRACE, g.shutdown())
                .await
                .is_err()
            {
                tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; closing them");
            }
        }
        let _ = std::fs::remove_file(&self.sock);
        Ok(())
    }

    /// After a storage failure: stops accepting and removes the socket, then stops the
    /// processors (bounded); nothing more is written.
    pub async fn abandon(self) {
        let _ = self.stop_accept.send(true);
        let _ = std::fs::remove_file(&self.sock);
        let stop = futures::future::join_all(self.processors.into_iter().map(|p| p.stop()));
        if tokio::time::timeout(CLOSE_GRACE, stop).await.is_err() {
            tracing::warn!("processors of a failed store did not stop within {CLOSE_GRACE:?}");
        }
        if let Some(p) = &self.placement {
            p.stop();
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.daemon.store.close()).await;
        if let Ok(g) = self.accept.await {
            let _ = tokio::time::timeout(Duration::from_secs(1), g.shutdown()).await;
        }
    }
}

/// Starts the dispatcher of every kind of processor (ours and cross.stream's words), and the
/// one answering creates of unknown kinds.
fn start_processors(
    d: &Daemon,
    at: &Placement,
    control: Option<PathBuf>,
) -> Vec<processor::Dispatcher> {
    use xs::lifecycle as words;
    let (store, ps) = (&d.store, &d.ps);
    #[allow(unused_mut)]
    let mut all = vec![
        processor::unknown::start(store.clone(), control),
        processor::start(
            crate::webhook::Webhook,
            &words::WEBHOOK,
            store.clone(),
            ps.clone(),
            at.clone(),
        ),
    ];
    #[cfg(feature = "nu")]
    {
        use processor::{action, generator, handler, Env};
        let env = Env::new(d.engine.clone(), d.generator_tag.clone());
        for vocab in [&words::HANDLER, &words::ACTOR] {
            let kind = handler::Handler(env.clone());
            all.push(processor::start(
                kind,
                vocab,
                store.clone(),
                ps.clone(),
                at.clone(),
            ));
        }
        for vocab in [&words::GENERATOR, &words::SERVICE] {
            let kind = generator::Generator(env.clone());
            all.push(processor::start(
                kind,
                vocab,
                store.clone(),
                ps.clone(),
                at.clone(),
            ));
        }
        let kind = action::Action(env);
        all.push(processor::start(
            kind,
            &words::ACTION,
            store.clone(),
            ps.clone(),
            at.clone(),
        ));
    }
    all
}
