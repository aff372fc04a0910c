//! A dedicated, long-lived thread that forks every job process.
//!
//! Job processes must not outlive their agent, so each sets `PR_SET_PDEATHSIG(SIGTERM)`
//! before exec. Linux sends that signal when the *thread* that forked the child exits,
//! not the process — and tokio may retire an idle blocking-pool thread at any time,
//! which would SIGTERM a healthy job. Forking from this one thread, which lives as
//! long as the [`Spawner`], ties the signal to the executor's lifetime instead.
//! (Dropping the last `Spawner` therefore sends SIGTERM to every job it started.)
//!
//! The death signal reaches only the direct child; its own children are ended by the
//! process-group kill on exit and, after an agent crash, by
//! [`end_orphans`](super::end_orphans) when the agent restarts.

use std::io;
use std::sync::mpsc as std_mpsc;

use tokio::process::{Child, Command};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

struct Request {
    command: Command,
    reply: oneshot::Sender<io::Result<Child>>,
}

/// Sends spawn requests to the spawner thread.
#[derive(Debug, Clone)]
pub struct Spawner {
    requests: std_mpsc::Sender<Request>,
}

impl Spawner {
    /// Starts the spawner thread. Children are registered with `runtime`, whose reactor
    /// reaps them and drives their pipes.
    pub fn start(runtime: Handle) -> io::Result<Self> {
        let (requests, incoming) = std_mpsc::channel::<Request>();
        std::thread::Builder::new().name("saturn-spawner".into()).spawn(move || {
            let _runtime = runtime.enter();
            while let Ok(mut request) = incoming.recv() {
                let _ = request.reply.send(request.command.spawn());
            }
        })?;
        Ok(Self { requests })
    }

    /// Spawns `command` on the spawner thread, adding the parent-death signal.
    pub async fn spawn(&self, mut command: Command) -> io::Result<Child> {
        let parent = std::process::id();
        // SAFETY: the closure runs in the forked child before exec; it only makes
        // async-signal-safe system calls (prctl, getppid) and allocates nothing.
        unsafe {
            command.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)?;
                // The parent may have died between fork and prctl; then no signal
                // would ever come, so refuse to start instead.
                // (An errno, not a message: allocating between fork and exec can deadlock.)
                if nix::unistd::getppid().as_raw() as u32 != parent {
                    return Err(io::Error::from(nix::errno::Errno::ESRCH));
                }
                Ok(())
            });
        }
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request { command, reply })
            .map_err(|_| io::Error::other("the spawner thread has stopped"))?;
        answer.await.map_err(|_| io::Error::other("the spawner thread has stopped"))?
    }
}
