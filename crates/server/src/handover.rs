//! Zero-loss restarts: listening sockets that move from one process to the
//! next instead of being closed and bound again.
//!
//! A socket closed and bound again loses what was queued on it, and for a
//! moment nobody listens: clients see timeouts. `SO_REUSEPORT` would let a
//! new process bind beside the old one, but the kernel hashes each packet
//! to one of the two sockets, and what sits in the old socket's queue when
//! the old process closes it is lost. So Signpost passes the socket objects
//! themselves, the way systemd socket activation, nginx's binary upgrade
//! and Envoy's hot restart do: the kernel's socket (and its receive queue)
//! outlives both processes, and only who reads it changes.
//!
//! - **systemd socket activation.** A process started with `LISTEN_FDS=N`
//!   and `LISTEN_PID` equal to its pid finds `N` bound sockets at
//!   descriptors 3, 4, ... (`sd_listen_fds(3)`). [`inherit_from_environment`]
//!   adopts them; each listener (DNS, admin, probes) that asks for the
//!   address an inherited socket is bound to takes that socket instead of
//!   binding one. Sockets no listener claims are closed by
//!   [`close_unclaimed`].
//! - **Hand-over on SIGUSR2.** [`hand_over`] starts the same executable
//!   again (the file now at its path, so a new binary upgrades it) with the
//!   same arguments and every listening socket this process serves at
//!   descriptors 3, 4, ..., in the systemd convention, plus a pipe at the
//!   next descriptor. The successor calls [`announce_ready`] once it
//!   serves, which writes to the pipe; only then does [`hand_over`] return,
//!   and the caller stops reading its sockets and drains the queries in
//!   flight (their answers leave through the same sockets). If the
//!   successor fails to start, the old process is told and goes on serving.
//!
//! `LISTEN_PID` cannot be set for a child whose pid is not yet known
//! without code between fork and exec that may not allocate, so a
//! successor gets `SIGNPOST_HANDOVER_FROM=<old pid>` instead and accepts
//! the sockets only if that is its parent.
//!
//! ```no_run
//! # async fn run() -> Result<(), signpost_server::Error> {
//! use std::time::Duration;
//! use signpost_server::handover;
//!
//! let inherited = handover::inherit_from_environment()?; // before binding
//! // ... bind and start servers: they take inherited sockets by address ...
//! handover::close_unclaimed();
//! handover::announce_ready()?; // tells a predecessor it may stop
//! // On SIGUSR2:
//! let successor = handover::hand_over(Duration::from_secs(30)).await?;
//! // ... stop serving, drain, exit 0.
//! # let _ = (inherited, successor); Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use socket2::{Socket, Type};

use crate::{Error, sys};

/// The first inherited descriptor (`SD_LISTEN_FDS_START`).
const FIRST_DESCRIPTOR: RawFd = 3;
/// How many sockets the systemd convention is trusted with.
const MAX_INHERITED: usize = 1024;
/// Set by [`hand_over`] to the old process's pid (systemd's `LISTEN_PID` stands for this).
pub const FROM_VARIABLE: &str = "SIGNPOST_HANDOVER_FROM";
/// Set by [`hand_over`] to the descriptor [`announce_ready`] writes to.
pub const READY_FD_VARIABLE: &str = "SIGNPOST_HANDOVER_READY_FD";

/// What kind of socket an inherited one is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Datagram,
    Listening,
}

/// A socket inherited at start-up and not yet claimed by a listener.
#[derive(Debug)]
struct Inherited {
    socket: Socket,
    kind: Kind,
    address: SocketAddr,
}

/// What [`inherit_from_environment`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Inheritance {
    /// How many sockets were adopted.
    pub sockets: usize,
    /// The pid of the process that handed them over, if it was a
    /// Signpost hand-over (none when systemd passed them).
    pub from: Option<u32>,
}

impl std::fmt::Display for Inheritance {
    /// The start-up line: `took over 5 sockets from pid 1200 (pid 1342)`,
    /// `inherited 2 sockets from systemd (LISTEN_FDS)`, or nothing.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.from {
            _ if self.sockets == 0 => Ok(()),
            Some(from) => write!(f, "took over {} sockets from pid {from} (pid {})", self.sockets, std::process::id()),
            None => write!(f, "inherited {} sockets from systemd (LISTEN_FDS)", self.sockets),
        }
    }
}

/// How long a successor gets to announce that it serves before a
/// hand-over is given up.
pub const READY_WITHIN: Duration = Duration::from_secs(30);

/// A successor that took over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Successor {
    /// Its pid.
    pub pid: u32,
    /// How many sockets it was given.
    pub sockets: usize,
}

#[derive(Default)]
struct State {
    /// Taken once from the environment.
    adopted: bool,
    inherited: Vec<Inherited>,
    /// Where to tell a predecessor that this process serves.
    ready: Option<OwnedFd>,
    /// The listening sockets a hand-over passes on, by offer number: a
    /// duplicate of each, so the number can never name another file.
    offered: BTreeMap<u64, OwnedFd>,
}

fn state() -> MutexGuard<'static, State> {
    static STATE: OnceLock<Mutex<State>> = OnceLock::new();
    let mutex = STATE.get_or_init(|| Mutex::new(State::default()));
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Adopt the sockets systemd (`LISTEN_FDS`, `LISTEN_PID`) or a predecessor
/// ([`hand_over`]) passed to this process. Call it once, before anything
/// binds; later calls find nothing new. Variables meant for another
/// process (`LISTEN_PID` not ours) are ignored, as `sd_listen_fds` does.
pub fn inherit_from_environment() -> Result<Inheritance, Error> {
    let from_variables = |name: &str| std::env::var_os(name).and_then(|value| value.into_string().ok());
    let mut state = state();
    if state.adopted {
        return Ok(Inheritance::default());
    }
    state.adopted = true;
    let Some(count) = from_variables("LISTEN_FDS") else { return Ok(Inheritance::default()) };
    let count: usize = count.trim().parse().map_err(|_| Error::Inherit {
        descriptor: FIRST_DESCRIPTOR,
        reason: format!("LISTEN_FDS={count:?} is not a count"),
    })?;
    let from = match (from_variables("LISTEN_PID"), from_variables(FROM_VARIABLE)) {
        (Some(pid), _) if pid.trim().parse() == Ok(std::process::id()) => None,
        (Some(_), _) => return Ok(Inheritance::default()),
        (None, Some(parent)) if parent.trim().parse() == Ok(std::os::unix::process::parent_id()) => {
            Some(std::os::unix::process::parent_id())
        }
        (None, _) => return Ok(Inheritance::default()),
    };
    if count > MAX_INHERITED {
        return Err(Error::Inherit {
            descriptor: FIRST_DESCRIPTOR,
            reason: format!("LISTEN_FDS={count} is more than {MAX_INHERITED}"),
        });
    }
    for offset in 0..count {
        let descriptor = FIRST_DESCRIPTOR + offset as RawFd;
        let inherited = adopt(descriptor).map_err(|reason| Error::Inherit { descriptor, reason })?;
        state.inherited.push(inherited);
    }
    if from.is_some()
        && let Some(ready) = from_variables(READY_FD_VARIABLE)
    {
        let descriptor: RawFd = ready.trim().parse().map_err(|_| Error::Inherit {
            descriptor: FIRST_DESCRIPTOR,
            reason: format!("{READY_FD_VARIABLE}={ready:?} is not a descriptor"),
        })?;
        let owned = sys::adopt_descriptor(descriptor)
            .map_err(|error| Error::Inherit { descriptor, reason: format!("the ready pipe: {error}") })?;
        state.ready = Some(owned);
    }
    Ok(Inheritance { sockets: count, from })
}

/// Take ownership of one inherited descriptor and learn what it is.
fn adopt(descriptor: RawFd) -> Result<Inherited, String> {
    let owned = sys::adopt_descriptor(descriptor).map_err(|error| error.to_string())?;
    let socket = Socket::from(owned);
    let kind = match socket.r#type().map_err(|error| format!("not a socket: {error}"))? {
        Type::DGRAM => Kind::Datagram,
        Type::STREAM if socket.is_listener().unwrap_or(false) => Kind::Listening,
        Type::STREAM => return Err("a stream socket that is not listening".into()),
        other => return Err(format!("a socket of type {other:?}, neither UDP nor a TCP listener")),
    };
    let address = socket
        .local_addr()
        .ok()
        .and_then(|address| address.as_socket())
        .ok_or_else(|| "not bound to an IP address and port".to_string())?;
    socket.set_nonblocking(true).map_err(|error| error.to_string())?;
    Ok(Inherited { socket, kind, address })
}

/// The inherited UDP sockets bound to `address` (all of them: a
/// predecessor's `SO_REUSEPORT` group has one per worker, and each holds
/// its own queue). Empty when there are none, and for port 0.
pub(crate) fn take_udp(address: SocketAddr) -> Vec<std::net::UdpSocket> {
    take(Kind::Datagram, address).into_iter().map(Into::into).collect()
}

/// The inherited TCP listening socket bound to `address`, if any.
pub(crate) fn take_tcp(address: SocketAddr) -> Option<std::net::TcpListener> {
    take(Kind::Listening, address).into_iter().next().map(Into::into)
}

fn take(kind: Kind, address: SocketAddr) -> Vec<Socket> {
    if address.port() == 0 {
        return Vec::new();
    }
    let mut state = state();
    let (taken, kept) = std::mem::take(&mut state.inherited)
        .into_iter()
        .partition(|inherited| inherited.kind == kind && inherited.address == address);
    state.inherited = kept;
    let taken: Vec<Inherited> = taken;
    taken.into_iter().map(|inherited| inherited.socket).collect()
}

/// Close the inherited sockets no listener claimed (a listener the new
/// configuration no longer has); returns how many.
pub fn close_unclaimed() -> usize {
    let unclaimed = std::mem::take(&mut state().inherited);
    for socket in &unclaimed {
        tracing::warn!(address = %socket.address, kind = ?socket.kind, "an inherited socket no listener uses is closed");
    }
    unclaimed.len()
}

/// Tell the predecessor that handed its sockets over that this process
/// serves them now, so it may stop reading. Returns whether there was one.
///
/// Under systemd (`NOTIFY_SOCKET` set) the service manager hears it first:
/// `MAINPID=` names this process, so the predecessor's exit does not look
/// like the service's (the unit needs `NotifyAccess=all`, as
/// deploy/systemd/signpost-forward.service has).
pub fn announce_ready() -> Result<bool, Error> {
    let Some(ready) = state().ready.take() else { return Ok(false) };
    if let Some(socket) = std::env::var_os(NOTIFY_SOCKET_VARIABLE) {
        // The predecessor would then stop anyway: systemd, not told,
        // keeps watching it, so a failure here is logged, not fatal.
        if let Err(error) = notify_main_pid(&socket, std::process::id()) {
            tracing::error!(socket = ?socket, "cannot tell systemd the main process changed: {error}");
        }
    }
    let mut pipe = std::fs::File::from(ready);
    pipe.write_all(b"R").map_err(|source| Error::HandOver { step: "announcing readiness", source })?;
    Ok(true)
}

/// Where systemd listens for `sd_notify(3)` messages.
pub const NOTIFY_SOCKET_VARIABLE: &str = "NOTIFY_SOCKET";

/// Tell the service manager listening at `socket` (a path, or an abstract
/// name written with a leading `@`, as in `NOTIFY_SOCKET`) that `pid` is
/// the service's main process now and that it is ready (`sd_notify(3)`).
pub fn notify_main_pid(socket: &std::ffi::OsStr, pid: u32) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr as UnixAddress, UnixDatagram};
    let message = format!("MAINPID={pid}\nREADY=1\n");
    let sender = UnixDatagram::unbound()?;
    let sent = match socket.as_bytes().strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            sender.send_to_addr(message.as_bytes(), &UnixAddress::from_abstract_name(name)?)?
        }
        None => sender.send_to(message.as_bytes(), socket)?,
    };
    if sent == message.len() {
        Ok(())
    } else {
        Err(io::Error::new(io::ErrorKind::WriteZero, format!("sent {sent} of {} bytes", message.len())))
    }
}

/// A listening socket offered to a successor while this lives.
#[derive(Debug)]
pub(crate) struct Offer(u64);

impl Drop for Offer {
    fn drop(&mut self) {
        state().offered.remove(&self.0);
    }
}

/// Offer a listening socket to a future successor until the returned
/// guard is dropped (keep it as long as the socket is served).
pub(crate) fn offer(socket: BorrowedFd<'_>) -> Option<Offer> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // A socket that cannot be duplicated (out of descriptors) is simply
    // not handed over; the successor binds it anew.
    let duplicate = socket.try_clone_to_owned().ok()?;
    let number = NEXT.fetch_add(1, Ordering::Relaxed);
    state().offered.insert(number, duplicate);
    Some(Offer(number))
}

/// Offer each socket of a slice.
pub(crate) fn offer_all<S: AsFd>(sockets: &[S]) -> Vec<Offer> {
    sockets.iter().filter_map(|socket| offer(socket.as_fd())).collect()
}

/// The executable to start: the file now at the path this one was started
/// from (an upgrade replaced it), not the deleted inode still running.
fn executable() -> Result<PathBuf, Error> {
    let path = std::env::current_exe().map_err(|source| Error::HandOver { step: "finding the executable", source })?;
    let text = path.as_os_str().to_string_lossy();
    Ok(match text.strip_suffix(" (deleted)") {
        Some(original) => PathBuf::from(original),
        None => path,
    })
}

/// Start a successor with every offered socket and wait (at most
/// `ready_within`) until it [announces](announce_ready) that it serves.
/// On success the caller should stop reading its sockets, drain the
/// queries in flight and exit; on failure the successor (if it started) is
/// killed and the caller goes on serving.
pub async fn hand_over(ready_within: Duration) -> Result<Successor, Error> {
    let sockets: Vec<OwnedFd> = {
        let state = state();
        state.offered.values().map(|socket| socket.try_clone()).collect::<io::Result<_>>()
    }
    .map_err(|source| Error::HandOver { step: "duplicating the listening sockets", source })?;
    let (mut reader, writer) =
        io::pipe().map_err(|source| Error::HandOver { step: "making the ready pipe", source })?;
    let count = sockets.len();
    let ready_descriptor = FIRST_DESCRIPTOR + count as RawFd;
    let mut command = Command::new(executable()?);
    command
        .args(std::env::args_os().skip(1))
        .env("LISTEN_FDS", count.to_string())
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDNAMES")
        .env(FROM_VARIABLE, std::process::id().to_string())
        .env(READY_FD_VARIABLE, OsString::from(ready_descriptor.to_string()))
        .stdin(Stdio::null());
    let mut descriptors = sockets;
    descriptors.push(OwnedFd::from(writer));
    sys::place_descriptors(&mut command, &descriptors, FIRST_DESCRIPTOR);
    let mut child = command.spawn().map_err(|source| Error::HandOver { step: "starting the successor", source })?;
    // Only the successor may hold the write end now: its exit ends the read.
    drop(descriptors);
    let pid = child.id();
    let read = tokio::task::spawn_blocking(move || {
        let mut byte = [0u8; 1];
        reader.read(&mut byte)
    });
    let outcome = tokio::time::timeout(ready_within, read).await;
    let failure = match outcome {
        Ok(Ok(Ok(1))) => {
            // Reaped by whoever adopts it once this process exits.
            drop(child);
            return Ok(Successor { pid, sockets: count });
        }
        Ok(Ok(Ok(_))) => io::Error::new(io::ErrorKind::UnexpectedEof, "the successor exited before it was ready"),
        Ok(Ok(Err(error))) => error,
        Ok(Err(failed)) => io::Error::other(failed),
        Err(_) => io::Error::new(io::ErrorKind::TimedOut, format!("not ready within {ready_within:?}")),
    };
    let _ = child.kill();
    let _ = child.wait();
    Err(Error::HandOver { step: "waiting for the successor", source: failure })
}

impl std::fmt::Display for Successor {
    /// The old process's line: `handed over 5 sockets to pid 1342`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "handed over {} sockets to pid {}", self.sockets, self.pid)
    }
}

/// [`hand_over`] with [`READY_WITHIN`], as a binary does on SIGUSR2, with
/// the outcome logged: the successor, or `None` (and the error logged)
/// when this process should go on serving.
pub async fn try_hand_over() -> Option<Successor> {
    tracing::info!("SIGUSR2: starting a successor with the listening sockets");
    match hand_over(READY_WITHIN).await {
        Ok(successor) => Some(successor),
        Err(error) => {
            tracing::error!("{error}; still serving");
            None
        }
    }
}

/// How many sockets are offered to a successor now.
pub fn offered_count() -> usize {
    state().offered.len()
}

/// What kind of socket a descriptor is.
#[cfg(test)]
fn kind_of(socket: &impl AsFd) -> Option<Kind> {
    match socket2::SockRef::from(socket).r#type().ok()? {
        Type::DGRAM => Some(Kind::Datagram),
        Type::STREAM => Some(Kind::Listening),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_last_as_long_as_their_guard() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let before = offered_count();
        let offer = offer(socket.as_fd()).unwrap();
        assert!(offered_count() > before);
        let number = offer.0;
        assert!(state().offered.contains_key(&number));
        drop(offer);
        assert!(!state().offered.contains_key(&number));
    }

    #[test]
    fn inherited_sockets_are_taken_by_kind_and_address_once() {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (udp_address, tcp_address) = (udp.local_addr().unwrap(), tcp.local_addr().unwrap());
        assert_eq!(kind_of(&udp), Some(Kind::Datagram));
        assert_eq!(kind_of(&tcp), Some(Kind::Listening));
        state().inherited.extend([
            Inherited { socket: Socket::from(udp), kind: Kind::Datagram, address: udp_address },
            Inherited { socket: Socket::from(tcp), kind: Kind::Listening, address: tcp_address },
        ]);
        assert!(take_tcp(udp_address).is_none(), "a UDP socket is no TCP listener");
        assert!(take_udp(SocketAddr::from(([127, 0, 0, 1], 0))).is_empty(), "port 0 never inherits");
        let taken = take_udp(udp_address);
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].local_addr().unwrap(), udp_address);
        assert!(take_udp(udp_address).is_empty(), "taken once");
        assert_eq!(take_tcp(tcp_address).map(|listener| listener.local_addr().unwrap()), Some(tcp_address));
    }

    #[test]
    fn systemd_hears_the_new_main_pid_at_a_path_and_at_an_abstract_name() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("notify");
        let listener = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        notify_main_pid(path.as_os_str(), 4242).unwrap();
        let mut buffer = [0u8; 64];
        let length = listener.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..length], b"MAINPID=4242\nREADY=1\n");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("signpost-notify-test-{}", std::process::id());
        let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = std::os::unix::net::UnixDatagram::bind_addr(&address).unwrap();
        notify_main_pid(std::ffi::OsStr::new(&format!("@{name}")), std::process::id()).unwrap();
        let length = listener.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..length], format!("MAINPID={}\nREADY=1\n", std::process::id()).as_bytes());
    }

    #[test]
    fn nobody_listening_is_an_error() {
        let directory = tempfile::tempdir().unwrap();
        let missing = directory.path().join("absent");
        assert!(notify_main_pid(missing.as_os_str(), 1).is_err());
    }

    #[test]
    fn the_executable_is_the_file_at_the_path() {
        let path = executable().unwrap();
        assert!(path.exists(), "{}", path.display());
    }
}
