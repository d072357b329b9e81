//! The crate's error type.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// An application's own error, carried by [`Error::Reload`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong starting or running a server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A listener could not bind its socket.
    #[error("cannot listen for {transport} on {address}: {source}{hint}")]
    Bind {
        /// The transport ("udp", "tcp", "dot", "doh", "admin").
        transport: &'static str,
        /// The address asked for.
        address: SocketAddr,
        /// The operating system's error.
        source: io::Error,
        /// What to do about it (starts with a newline when present).
        hint: String,
    },
    /// A TLS certificate or key could not be used.
    #[error("TLS configuration for listener {listener}: {reason} ({path})")]
    Tls {
        /// The listener.
        listener: String,
        /// The file involved.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A listener is configured inconsistently.
    #[error("listener {listener}: {reason}")]
    Listener {
        /// The listener.
        listener: String,
        /// What was wrong.
        reason: String,
    },
    /// A listener's id is already a running listener's.
    #[error("a listener with id {id:?} is already running")]
    DuplicateListener {
        /// The id.
        id: String,
    },
    /// No running listener has this id.
    #[error("no listener with id {id:?} is running")]
    UnknownListener {
        /// The id asked for.
        id: String,
    },
    /// A listener names a rate-limit group `limits.groups` does not define.
    #[error("listener {listener}: no rate-limit group named {group:?} in limits.groups")]
    UnknownLimitGroup {
        /// The listener.
        listener: String,
        /// The group it names.
        group: String,
    },
    /// The query log could not be opened.
    #[error("query log: {0}")]
    QueryLog(io::Error),
    /// Rebuilding rules and upstreams from the configuration source failed
    /// (the application's error is the source, and the message); the
    /// running configuration stays.
    #[error("{source}")]
    Reload {
        /// The application's error: downcast it to the application's type.
        #[source]
        source: BoxError,
    },
    /// A reload was asked of a server given no configuration source.
    #[error("this server has no configuration source to reload from")]
    NoReloadSource,
    /// `--user` names no user of this machine.
    #[error("no user named {user:?} (not in the password database, and not a number)")]
    UnknownUser {
        /// The name given.
        user: String,
    },
    /// Becoming an unprivileged user failed (not running as root, say).
    #[error("cannot drop privileges to {user:?}: {step} failed: {source}")]
    DropPrivileges {
        /// The user asked for.
        user: String,
        /// The call that failed (`setgroups`, `setgid`, `setuid`, `verify`).
        step: &'static str,
        /// The operating system's error.
        source: io::Error,
    },
    /// A configuration file's directory cannot be watched.
    #[error("cannot watch {} for configuration changes: {source}", path.display())]
    Watch {
        /// The directory.
        path: PathBuf,
        /// The watcher's error.
        source: notify::Error,
    },
    /// The `dnstap` settings cannot be served.
    #[error("dnstap: {problem}")]
    DnstapConfig {
        /// What is wrong with them.
        problem: &'static str,
    },
    /// A file for TLS to the dnstap collector could not be used.
    #[error("TLS to the dnstap collector: {reason} ({path})")]
    DnstapTls {
        /// The file involved.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A Frame Streams peer (a dnstap collector) broke the protocol.
    #[error("dnstap frame stream: {problem}")]
    Frame {
        /// What it sent that it should not have.
        problem: &'static str,
    },
    /// A socket passed at start-up (systemd's `LISTEN_FDS` or a
    /// predecessor's hand-over) cannot be used.
    #[error("inherited descriptor {descriptor}: {reason}")]
    Inherit {
        /// The descriptor (3 is the first).
        descriptor: i32,
        /// What was wrong with it.
        reason: String,
    },
    /// Handing the listening sockets over to a successor failed; this
    /// process goes on serving them.
    #[error("hand-over to a successor: {step} failed: {source}")]
    HandOver {
        /// The step that failed.
        step: &'static str,
        /// The operating system's error.
        source: io::Error,
    },
    /// Any other I/O failure.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The operating system's error.
        source: io::Error,
    },
}

impl Error {
    /// A bind error with advice for the common causes.
    pub(crate) fn bind(transport: &'static str, address: SocketAddr, source: io::Error) -> Self {
        let hint = match source.kind() {
            io::ErrorKind::AddrInUse => {
                let holder =
                    who_listens(address, transport == "udp").map(|who| format!(" by {who}")).unwrap_or_default();
                let mut hint = format!("\n  port {} is already in use{holder}.", address.port());
                if address.port() == 53 {
                    hint.push_str(
                        "\n  On systemd machines systemd-resolved listens on 127.0.0.53 and 127.0.0.54:53; bind a \
                         different address (e.g. 127.0.0.1) or another port (e.g. 5353).",
                    );
                } else {
                    hint.push_str("\n  Stop the other program or choose another port.");
                }
                hint
            }
            io::ErrorKind::PermissionDenied if address.port() < 1024 => format!(
                "\n  ports below 1024 need root or CAP_NET_BIND_SERVICE: run as root, or grant it with \
                 `sudo setcap cap_net_bind_service=+ep <binary>`, or use a port of 1024 or more (e.g. 5353) instead of {}.",
                address.port()
            ),
            io::ErrorKind::AddrNotAvailable => {
                format!("\n  {} is not an address of this machine.", address.ip())
            }
            _ => String::new(),
        };
        Self::Bind { transport, address, source, hint }
    }
}

/// Best effort: name the process holding a listening socket on `address`'s
/// port, from /proc (Linux only; needs permission to read other processes'
/// file descriptors).
fn who_listens(address: SocketAddr, udp: bool) -> Option<String> {
    let tables: &[&str] = if udp { &["/proc/net/udp", "/proc/net/udp6"] } else { &["/proc/net/tcp", "/proc/net/tcp6"] };
    let port = format!(":{:04X}", address.port());
    let mut inodes = Vec::new();
    for table in tables {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (fields.get(1), fields.get(3), fields.get(9)) else {
                continue;
            };
            // TCP sockets must be listening (0A); UDP sockets are "unconnected" (07).
            let listening = if udp { *state == "07" } else { *state == "0A" };
            if listening && local.ends_with(&port) {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let processes = std::fs::read_dir("/proc").ok()?;
    for process in processes.flatten() {
        let pid = process.file_name();
        let Some(pid) = pid.to_str().filter(|p| p.bytes().all(|b| b.is_ascii_digit())) else { continue };
        let Ok(fds) = std::fs::read_dir(process.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else { continue };
            if inodes.iter().any(|inode| target.as_os_str() == inode.as_str()) {
                let name = std::fs::read_to_string(process.path().join("comm")).unwrap_or_default();
                return Some(format!("{} (pid {pid})", name.trim()));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_in_use_names_the_holder() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let address = socket.local_addr().expect("addr");
        let error = std::net::UdpSocket::bind(address).expect_err("in use");
        let message = Error::bind("udp", address, error).to_string();
        assert!(message.contains("already in use"), "{message}");
        // This test process holds it.
        assert!(message.contains("pid"), "{message}");
    }

    #[test]
    fn low_ports_explain_the_capability() {
        let error = io::Error::from(io::ErrorKind::PermissionDenied);
        let message = Error::bind("udp", "127.0.0.1:53".parse().expect("addr"), error).to_string();
        assert!(message.contains("CAP_NET_BIND_SERVICE"), "{message}");
        assert!(message.contains("5353"), "{message}");
    }
}
