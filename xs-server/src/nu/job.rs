//! A script's job: its interrupt flag and the external processes it started. Nushell puts
//! each external of a thread job in a process group of its own, so killing the group also
//! ends what that process started.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use nu_protocol::engine::{CurrentJob, EngineState, Mailbox, ThreadJob};
use nu_protocol::{JobId, Signals};

/// The engine's job: its interrupt flag and the external processes it started, each in a
/// process group of its own (nu puts them there when a thread job is set).
#[derive(Clone)]
pub struct Job {
    signals: Signals,
    thread_job: ThreadJob,
    interrupt: Arc<AtomicBool>,
}

static NEXT_JOB: AtomicUsize = AtomicUsize::new(1_000_000);

impl Job {
    /// Gives `es` a fresh interrupt flag and job.
    pub fn install(es: &mut EngineState) -> Job {
        let interrupt = Arc::new(AtomicBool::new(false));
        let signals = Signals::new(interrupt.clone());
        es.set_signals(signals.clone());
        es.pipeline_externals_state = Default::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread_job = ThreadJob::new(signals.clone(), None, tx);
        es.current_job = CurrentJob {
            id: JobId::new(NEXT_JOB.fetch_add(1, Ordering::Relaxed)),
            background_thread_job: Some(thread_job.clone()),
            mailbox: Arc::new(Mutex::new(Mailbox::new(rx))),
        };
        Job {
            signals,
            thread_job,
            interrupt,
        }
    }

    /// Interrupts the script and kills the process group of every external it started.
    pub fn kill(&self) {
        self.signals.trigger();
        for pid in self.thread_job.collect_pids() {
            kill_group(pid);
        }
    }

    /// Kills the externals the last run left behind (a generator about to restart).
    pub fn kill_externals(&self) {
        for pid in self.thread_job.collect_pids() {
            kill_group(pid);
            self.thread_job.remove_pid(pid);
        }
    }

    /// Clears the interrupt, so the script can run again (a processor that moved away and
    /// came back to this daemon).
    pub fn reset(&self) {
        self.signals.reset();
    }

    pub fn interrupted(&self) -> bool {
        self.interrupt.load(Ordering::Relaxed)
    }
}

fn kill_group(pid: u32) {
    let Some(pid) = rustix::process::Pid::from_raw(pid as i32) else {
        return;
    };
    if rustix::process::kill_process_group(pid, rustix::process::Signal::KILL).is_err() {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}
