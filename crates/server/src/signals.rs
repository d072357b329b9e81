//! The signals every Signpost binary answers, in one place: SIGHUP
//! reloads, SIGTERM drains (the lame-duck period when probes have one) and
//! stops, SIGINT stops at once, SIGUSR2 hands the listening sockets over to
//! a new process ([`handover`](crate::handover)).
//!
//! Install [`Signals`] before telling anyone the server is up: a SIGHUP
//! sent right after the start-up lines must reload, not end the process
//! (the default action until a handler exists).
//!
//! ```no_run
//! # async fn run(server: signpost_server::ServerHandle) -> std::io::Result<()> {
//! use signpost_server::signals::{Signals, Stop};
//!
//! let mut signals = Signals::install()?;
//! // ... print the start-up lines ...
//! let stop = signals
//!     .serve(None, |cause| {
//!         let server = server.clone();
//!         async move {
//!             if let Err(error) = server.reload_from_source().await {
//!                 eprintln!("reload ({cause}) failed: {error}");
//!             }
//!         }
//!     })
//!     .await;
//! if let Stop::HandedOver(successor) = &stop {
//!     println!("{successor}");
//! }
//! server.shutdown().await;
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::io;

use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::handover::{self, Successor};
use crate::probes::Probes;
use crate::watch::FileWatcher;

/// What asked for a reload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReloadCause {
    /// SIGHUP.
    Hangup,
    /// The watched configuration changed.
    FileChange,
}

impl fmt::Display for ReloadCause {
    /// As reload log lines name it: `SIGHUP`, `file change`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Hangup => "SIGHUP",
            Self::FileChange => "file change",
        })
    }
}

/// Why serving ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stop {
    /// SIGTERM: the lame-duck period, then a graceful stop.
    Terminate,
    /// SIGINT: a graceful stop at once.
    Interrupt,
    /// SIGUSR2: a successor took the sockets over; answer what was read and stop.
    HandedOver(Successor),
}

/// SIGHUP, SIGTERM, SIGINT and SIGUSR2, caught from the moment this is made.
#[derive(Debug)]
pub struct Signals {
    hangup: Signal,
    terminate: Signal,
    interrupt: Signal,
    upgrade: Signal,
}

impl Signals {
    /// Catch the four signals. Must run inside a tokio runtime.
    pub fn install() -> io::Result<Self> {
        Ok(Self {
            hangup: signal(SignalKind::hangup())?,
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            upgrade: signal(SignalKind::user_defined2())?,
        })
    }

    /// Serve until a stop: `reload` runs on SIGHUP and on each change
    /// `watcher` sees; SIGTERM and SIGINT return at once; SIGUSR2 starts a
    /// successor and returns once it serves (a failed hand-over is logged
    /// and serving goes on).
    pub async fn serve<F, R>(&mut self, mut watcher: Option<&mut FileWatcher>, mut reload: F) -> Stop
    where
        F: FnMut(ReloadCause) -> R,
        R: Future<Output = ()>,
    {
        loop {
            let changed = async {
                match watcher.as_deref_mut() {
                    Some(watcher) => watcher.changed().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.hangup.recv() => reload(ReloadCause::Hangup).await,
                Some(_) = changed => reload(ReloadCause::FileChange).await,
                _ = self.terminate.recv() => return Stop::Terminate,
                _ = self.interrupt.recv() => return Stop::Interrupt,
                _ = self.upgrade.recv() => if let Some(successor) = handover::try_hand_over().await {
                    return Stop::HandedOver(successor);
                },
            }
        }
    }

    /// What comes between a stop and the shutdown, for a server with
    /// probes: after a hand-over `/ready` fails at once; after SIGTERM, the
    /// lame-duck period (DNS and `/health` answer, `/ready` fails) until it
    /// ends or another SIGTERM or SIGINT cuts it short.
    pub async fn drain(&mut self, stop: Stop, probes: &Probes) {
        match stop {
            Stop::HandedOver(_) => probes.readiness().enter_lame_duck(),
            Stop::Terminate if !probes.lame_duck_period().is_zero() => {
                probes.readiness().enter_lame_duck();
                tracing::info!(
                    "lame duck for {:?}: answering DNS and /health, /ready fails; a second signal stops at once",
                    probes.lame_duck_period()
                );
                tokio::select! {
                    _ = probes.lame_duck() => {}
                    _ = self.terminate.recv() => {}
                    _ = self.interrupt.recv() => {}
                }
            }
            Stop::Terminate | Stop::Interrupt => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_causes_read_as_the_log_lines_name_them() {
        assert_eq!(ReloadCause::Hangup.to_string(), "SIGHUP");
        assert_eq!(ReloadCause::FileChange.to_string(), "file change");
    }

    #[tokio::test]
    async fn sighup_reloads_and_sigint_stops() {
        let mut signals = Signals::install().unwrap();
        let reloads = std::sync::Mutex::new(Vec::new());
        let sender = tokio::spawn(async {
            // kill(1) rather than libc: this crate keeps `unsafe` in sys.rs.
            for name in ["-HUP", "-INT"] {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                let status =
                    std::process::Command::new("kill").args([name, &std::process::id().to_string()]).status().unwrap();
                assert!(status.success());
            }
        });
        let stop = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            signals.serve(None, |cause| {
                reloads.lock().unwrap().push(cause);
                async {}
            }),
        )
        .await
        .unwrap();
        sender.await.unwrap();
        assert_eq!(stop, Stop::Interrupt);
        assert_eq!(*reloads.lock().unwrap(), [ReloadCause::Hangup]);
    }
}
