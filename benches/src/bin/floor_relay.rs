//! The "forwarding floor" for the load benchmarks: a bare UDP relay that
//! passes every query to one backend and every answer back, doing the least
//! a forwarder can do in user space.
//!
//! It reads up to 32 client queries per `recvmmsg`, gives each a fresh
//! message ID (the next in sequence), remembers the client's address and
//! ID in a table indexed by that ID, and sends the batch to the backend in
//! one `sendmmsg` on a connected socket; answers come back the same way,
//! are matched by ID alone, get the client's ID back and leave in one
//! `sendmmsg`. One thread, `poll` when both sockets are empty, no
//! allocation per query, no timers, no retransmission, no cache.
//!
//! Its queries per CPU second are what the kernel's UDP path allows a
//! batched forwarder on this machine: a ceiling for `signpost-forward`'s
//! uncached forwarding, the way `floor_responder` is one for local answers.
//! It is not a forwarder anyone should run: sequential IDs and no check of
//! the answer's question or source make forged answers easy, and a query
//! whose answer never comes keeps its slot until the ID comes round again.
//!
//! Usage: `floor_relay LISTEN_ADDR:PORT BACKEND_ADDR:PORT`

#![allow(clippy::print_stderr)]

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::process::ExitCode;

use signpost_benches::mmsg::{self, BATCH};

/// Where the answer to one relayed query goes.
#[derive(Clone, Copy)]
struct Waiting {
    client: mmsg::Peer,
    id: u16,
    in_use: bool,
}

/// Relay queries from `clients` to `backend` and answers back, forever.
fn run(clients: &UdpSocket, backend: &UdpSocket) -> std::io::Result<()> {
    let nobody: mmsg::Peer = (mmsg::zeroed_address(), 0);
    let mut table = vec![Waiting { client: nobody, id: 0, in_use: false }; 1 << 16].into_boxed_slice();
    let mut next_id: u16 = 0;
    let (mut queries, mut answers) = (mmsg::Received::default(), mmsg::Received::default());
    let mut sender = mmsg::Sender::default();
    // The datagrams of a batch to pass on, with their destinations.
    let mut passing = [(0usize, None); BATCH];
    let (client_fd, backend_fd) = (clients.as_raw_fd(), backend.as_raw_fd());
    loop {
        let asked = queries.recv(client_fd, mmsg::Wait::No)?;
        let mut out = 0;
        for i in 0..asked {
            let ours = next_id;
            let Some(id) = swap_id(queries.packet_mut(i), ours) else { continue };
            next_id = next_id.wrapping_add(1);
            if let (Some(slot), Some(pass)) = (table.get_mut(usize::from(ours)), passing.get_mut(out)) {
                *slot = Waiting { client: queries.peer(i), id, in_use: true };
                *pass = (i, None);
                out += 1;
            }
        }
        send(&mut sender, backend_fd, &queries, &passing, out);

        let answered = answers.recv(backend_fd, mmsg::Wait::No)?;
        let mut out = 0;
        for i in 0..answered {
            let packet = answers.packet_mut(i);
            let Some(ours) = packet.get(..2).map(|id| u16::from_be_bytes([id[0], id[1]])) else { continue };
            let Some(slot) = table.get_mut(usize::from(ours)).filter(|slot| slot.in_use) else { continue };
            slot.in_use = false;
            if swap_id(packet, slot.id).is_none() {
                continue;
            }
            if let Some(pass) = passing.get_mut(out) {
                *pass = (i, Some(slot.client));
                out += 1;
            }
        }
        send(&mut sender, client_fd, &answers, &passing, out);

        if asked == 0 && answered == 0 {
            mmsg::wait_readable([client_fd, backend_fd])?;
        }
    }
}

/// Send the first `count` of `passing` (a received datagram's index and
/// where it goes) on `fd`.
fn send(
    sender: &mut mmsg::Sender,
    fd: RawFd,
    received: &mmsg::Received,
    passing: &[(usize, Option<mmsg::Peer>)],
    count: usize,
) {
    sender.send(fd, count, |n| {
        let (i, to) = passing.get(n).copied().unwrap_or((usize::MAX, None));
        (received.packet(i), to)
    });
}

/// Put `id` in `packet`'s ID field; the ID it had, or `None` (nothing
/// changed) when the packet is too short to have one.
fn swap_id(packet: &mut [u8], id: u16) -> Option<u16> {
    let field = packet.get_mut(..2)?;
    let old = u16::from_be_bytes([field[0], field[1]]);
    field.copy_from_slice(&id.to_be_bytes());
    Some(old)
}

/// A UDP socket bound to `listen` and one connected to `backend`, both nonblocking.
fn sockets(listen: SocketAddr, backend: SocketAddr) -> std::io::Result<(UdpSocket, UdpSocket)> {
    let clients = UdpSocket::bind(listen)?;
    let local = if backend.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let upstream = UdpSocket::bind(local)?;
    upstream.connect(backend)?;
    clients.set_nonblocking(true)?;
    upstream.set_nonblocking(true)?;
    Ok((clients, upstream))
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(backend), None) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: floor_relay LISTEN_ADDR:PORT BACKEND_ADDR:PORT");
        return ExitCode::from(2);
    };
    let (listen, backend): (SocketAddr, SocketAddr) = match (listen.parse(), backend.parse()) {
        (Ok(listen), Ok(backend)) => (listen, backend),
        _ => {
            eprintln!("floor_relay: bad address in {listen:?} {backend:?}");
            return ExitCode::from(2);
        }
    };
    let (clients, upstream) = match sockets(listen, backend) {
        Ok(sockets) => sockets,
        Err(error) => {
            eprintln!("floor_relay: cannot set up {listen} -> {backend}: {error}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("floor_relay: relaying {listen} -> {backend}");
    match run(&clients, &upstream) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("floor_relay: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{run, sockets, swap_id};
    use std::net::UdpSocket;
    use std::time::Duration;

    #[test]
    fn ids_are_swapped_and_short_packets_left_alone() {
        let mut packet = [0x12, 0x34, 0xff];
        assert_eq!(swap_id(&mut packet, 7), Some(0x1234));
        assert_eq!(packet, [0, 7, 0xff]);
        let mut short = [1];
        assert_eq!(swap_id(&mut short, 7), None);
        assert_eq!(short, [1]);
    }

    /// Queries reach the backend with the relay's IDs; answers come back
    /// to each client with its own ID; an answer nobody waits for is dropped.
    #[test]
    fn queries_and_answers_are_relayed_with_their_ids() {
        let backend = UdpSocket::bind("127.0.0.1:0").expect("backend");
        backend.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let (listening, upstream) =
            sockets("127.0.0.1:0".parse().expect("address"), backend.local_addr().expect("address")).expect("sockets");
        let relay = listening.local_addr().expect("address");
        std::thread::spawn(move || run(&listening, &upstream));
        let clients: Vec<UdpSocket> = (0..3).map(|_| UdpSocket::bind("127.0.0.1:0").expect("client")).collect();
        for (n, client) in clients.iter().enumerate() {
            client.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
            client.send_to(&[0xab, n as u8, b'q', n as u8], relay).expect("send");
        }
        let mut buffer = [0u8; 64];
        let mut seen = Vec::new();
        let mut relay_upstream = None;
        for _ in 0..3 {
            let (len, from) = backend.recv_from(&mut buffer).expect("query relayed");
            relay_upstream = Some(from);
            let query = buffer[..len].to_vec();
            assert_eq!(query.len(), 4);
            assert_eq!(query[2], b'q');
            seen.push(u16::from_be_bytes([query[0], query[1]]));
            // Answer with the relay's ID and the client's number, marked.
            backend.send_to(&[query[0], query[1], b'a', query[3]], from).expect("answer");
        }
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 3, "every query gets its own ID upstream");
        for (n, client) in clients.iter().enumerate() {
            let len = client.recv(&mut buffer).expect("answer relayed");
            assert_eq!(&buffer[..len], &[0xab, n as u8, b'a', n as u8]);
        }
        // A second answer with an ID already answered is not sent anywhere.
        let upstream = relay_upstream.expect("the relay's upstream socket");
        for id in &seen {
            backend.send_to(&[id.to_be_bytes()[0], id.to_be_bytes()[1], b'a', 9], upstream).expect("stray");
        }
        for client in &clients {
            client.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
            assert!(client.recv(&mut buffer).is_err(), "a repeated answer reached a client");
        }
    }
}
