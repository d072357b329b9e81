//! Ports: one nothing listens on; and the retry helpers that starting a
//! Signpost server on port 0 no longer needs (the server binds a UDP and
//! TCP pair on a port free for both, and never shares a port-0 UDP port:
//! `port_zero_servers_never_share_a_port` starts 2000 servers). They stay,
//! hidden, for code written against them; new code calls `start()` once.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};

use crate::Error;

/// How many times [`retry_addr_in_use`] starts a server.
pub const START_TRIES: usize = 10;

/// 127.0.0.1 and a UDP port nothing listens on (bound a moment ago and let
/// go): queries to it meet "port unreachable".
///
/// # Panics
///
/// When no UDP socket can be bound on 127.0.0.1.
pub fn closed_udp_port() -> SocketAddr {
    let socket = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap_or_else(|error| panic!("cannot bind UDP on 127.0.0.1: {error}"));
    socket.local_addr().unwrap_or_else(|error| panic!("no local address: {error}"))
}

/// Whether `error`, or an error it was caused by, is the operating system
/// saying an address is already in use, or a binary under test that
/// exited saying so ([`port_taken`]).
pub fn is_addr_in_use(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::AddrInUse)
            || error.downcast_ref::<Error>().is_some_and(port_taken)
        {
            return true;
        }
        current = error.source();
    }
    false
}

/// Start a server whose listeners are on port 0 with UDP and TCP sharing
/// the number: the kernel picks a port free for UDP, and another program may
/// hold that number for TCP. While `start` fails that way
/// ([`is_addr_in_use`]) it is called again, [`START_TRIES`] times at most.
pub async fn retry_addr_in_use<T, E, F, Fut>(mut start: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::error::Error + 'static,
{
    let mut tries = 1;
    loop {
        match start().await {
            Err(error) if tries < START_TRIES && is_addr_in_use(&error) => tries += 1,
            outcome => return outcome,
        }
    }
}

/// Whether a binary exited during start-up saying that a port is already in
/// use (the words Signpost's servers print for it): the binary-level case
/// for [`retry_addr_in_use`], for [`Binary::start_retrying`](crate::Binary::start_retrying).
pub fn port_taken(error: &Error) -> bool {
    matches!(error, Error::Exited { stderr, .. } if stderr.contains("already in use"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot listen: {0}")]
    struct Wrapped(#[source] std::io::Error);

    #[test]
    fn address_in_use_is_found_down_the_chain() {
        let in_use = Wrapped(std::io::Error::from(std::io::ErrorKind::AddrInUse));
        assert!(is_addr_in_use(&in_use));
        let refused = Wrapped(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        assert!(!is_addr_in_use(&refused));
    }

    #[tokio::test]
    async fn starts_are_tried_again_only_while_the_port_is_taken() {
        let mut calls = 0;
        let outcome: Result<u8, Wrapped> = retry_addr_in_use(|| {
            calls += 1;
            let result =
                if calls < 3 { Err(Wrapped(std::io::Error::from(std::io::ErrorKind::AddrInUse))) } else { Ok(7) };
            async move { result }
        })
        .await;
        assert_eq!((outcome.ok(), calls), (Some(7), 3));

        let mut calls = 0;
        let outcome: Result<u8, Wrapped> = retry_addr_in_use(|| {
            calls += 1;
            async { Err(Wrapped(std::io::Error::from(std::io::ErrorKind::PermissionDenied))) }
        })
        .await;
        assert!(outcome.is_err());
        assert_eq!(calls, 1, "other failures are final");
    }

    #[test]
    fn a_binary_saying_a_port_is_in_use_is_worth_another_try() {
        let exited = |stderr: &str| Error::Exited {
            program: "signpost-forward".into(),
            status: std::os::unix::process::ExitStatusExt::from_raw(256),
            stdout: String::new(),
            stderr: stderr.to_owned(),
        };
        assert!(port_taken(&exited("cannot listen for tcp on 127.0.0.1:5353: port 5353 is already in use")));
        assert!(!port_taken(&exited("invalid configuration")));
        // retry_addr_in_use tries such a start again.
        assert!(is_addr_in_use(&exited("port 5353 is already in use")));
        assert!(!is_addr_in_use(&exited("invalid configuration")));
    }
}
