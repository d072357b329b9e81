//! The "kernel floor" for the load benchmarks: a bare UDP responder that
//! answers every well-formed query with one `A 127.0.0.1` record.
//!
//! It does the least a DNS server can do — parse the header and question
//! with bounds checks, write a fixed answer, send it back — so its
//! queries-per-CPU-second figure is the ceiling the kernel's UDP path allows
//! on this machine. `benches/load/run.sh` runs it in two modes:
//!
//! * `simple`: one `recvfrom`/`sendto` pair per query;
//! * `batched`: `recvmmsg`/`sendmmsg` with up to 32 datagrams per syscall.
//!
//! Usage: `floor_responder ADDR:PORT simple|batched`
//!
//! No allocation happens per query: all buffers are allocated once at start.
//! Malformed queries (short, a response, not a QUERY opcode, not exactly one
//! question, a bad or compressed name, truncated) are dropped silently.

#![allow(clippy::print_stderr)]

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::ExitCode;

use signpost_benches::mmsg::{self, BATCH};

/// Largest query accepted; anything longer is dropped.
const MAX_QUERY: usize = 1232;
/// Largest answer written: header + 255-byte name + 4 + the 16-byte answer.
const MAX_ANSWER: usize = 12 + 255 + 4 + 16;

/// Writes the answer to `query` into `out`, returning its length, or `None`
/// when the query is malformed and must be dropped.
///
/// The answer copies the ID and RD bit, sets QR and AA, echoes the question
/// and, for `A`/`IN` questions, adds `<pointer to qname> A IN 60 127.0.0.1`.
/// Other question types get an empty NOERROR answer.
fn answer(query: &[u8], out: &mut [u8; MAX_ANSWER]) -> Option<usize> {
    let header = query.get(..12)?;
    let flags_hi = header[2];
    // QR must be clear (a query) and the opcode must be QUERY (0).
    if flags_hi & 0x80 != 0 || (flags_hi >> 3) & 0x0f != 0 {
        return None;
    }
    if header[4..6] != [0, 1] {
        return None;
    }
    // Walk the question name: uncompressed labels only, at most 255 bytes.
    let mut pos = 12;
    loop {
        let len = usize::from(*query.get(pos)?);
        if len == 0 {
            pos += 1;
            break;
        }
        if len > 63 {
            return None;
        }
        pos += 1 + len;
        if pos - 12 >= 255 {
            return None;
        }
    }
    let question_end = pos + 4;
    let question = query.get(12..question_end)?;
    let qtype = [question[question.len() - 4], question[question.len() - 3]];
    let qclass = [question[question.len() - 2], question[question.len() - 1]];
    let answers = u8::from(qtype == [0, 1] && qclass == [0, 1]);

    out[0] = header[0];
    out[1] = header[1];
    // QR | opcode 0 | AA | RD copied from the query.
    out[2] = 0x84 | (flags_hi & 0x01);
    // RA clear, RCODE NOERROR.
    out[3] = 0;
    out[4..12].copy_from_slice(&[0, 1, 0, answers, 0, 0, 0, 0]);
    let mut len = 12 + question.len();
    out.get_mut(12..len)?.copy_from_slice(question);
    if answers == 1 {
        const RECORD: [u8; 16] = [
            0xc0, 0x0c, // pointer to the question name at offset 12
            0x00, 0x01, // TYPE A
            0x00, 0x01, // CLASS IN
            0x00, 0x00, 0x00, 0x3c, // TTL 60
            0x00, 0x04, // RDLENGTH
            127, 0, 0, 1, // RDATA
        ];
        out.get_mut(len..len + RECORD.len())?.copy_from_slice(&RECORD);
        len += RECORD.len();
    }
    Some(len)
}

/// One `recvfrom`/`sendto` pair per query.
fn run_simple(socket: &UdpSocket) -> std::io::Result<()> {
    let mut rx = [0u8; MAX_QUERY + 1];
    let mut tx = [0u8; MAX_ANSWER];
    loop {
        let (n, peer) = socket.recv_from(&mut rx)?;
        if n > MAX_QUERY {
            continue;
        }
        if let Some(len) = answer(&rx[..n], &mut tx) {
            // A failed send (e.g. the client went away) is not fatal.
            let _ = socket.send_to(&tx[..len], peer);
        }
    }
}

/// Batched receive and send through `recvmmsg`/`sendmmsg`
/// ([`signpost_benches::mmsg`]).
fn run_batched(socket: &UdpSocket) -> std::io::Result<()> {
    let mut received = mmsg::Received::default();
    let mut sender = mmsg::Sender::default();
    let mut answers = Box::new([[0u8; MAX_ANSWER]; BATCH]);
    // For each answer: the query it answers and its length.
    let mut queued = [(0usize, 0usize); BATCH];
    let fd = socket.as_raw_fd();
    loop {
        let count = received.recv(fd, mmsg::Wait::ForOne)?;
        let mut replies = 0;
        for (i, out) in answers.iter_mut().enumerate().take(count) {
            let query = received.packet(i);
            if query.len() > MAX_QUERY {
                continue;
            }
            if let (Some(len), Some(slot)) = (answer(query, out), queued.get_mut(replies)) {
                *slot = (i, len);
                replies += 1;
            }
        }
        let answers = &*answers;
        sender.send(fd, replies, |n| {
            let (i, len) = queued.get(n).copied().unwrap_or_default();
            let bytes = answers.get(i).and_then(|answer| answer.get(..len)).unwrap_or_default();
            (bytes, Some(received.peer(i)))
        });
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(mode), None) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: floor_responder ADDR:PORT simple|batched");
        return ExitCode::from(2);
    };
    let addr: SocketAddr = match addr.parse() {
        Ok(addr) => addr,
        Err(err) => {
            eprintln!("floor_responder: bad address {addr:?}: {err}");
            return ExitCode::from(2);
        }
    };
    let run: fn(&UdpSocket) -> std::io::Result<()> = match mode.as_str() {
        "simple" => run_simple,
        "batched" => run_batched,
        other => {
            eprintln!("floor_responder: unknown mode {other:?} (want simple or batched)");
            return ExitCode::from(2);
        }
    };
    let socket = match UdpSocket::bind(addr) {
        Ok(socket) => socket,
        Err(err) => {
            eprintln!("floor_responder: cannot bind {addr}: {err}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("floor_responder: {mode} mode on {addr}");
    match run(&socket) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("floor_responder: {err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_ANSWER, answer, run_batched};
    use std::net::UdpSocket;
    use std::time::Duration;

    /// A query for `a.example` A IN with RD set and ID 0x1234.
    const QUERY: &[u8] = &[
        0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, // header
        1, b'a', 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0, // name
        0, 1, 0, 1, // A IN
    ];

    #[test]
    fn answers_a_query() {
        let mut out = [0u8; MAX_ANSWER];
        let len = answer(QUERY, &mut out).unwrap();
        assert_eq!(len, QUERY.len() + 16);
        assert_eq!(&out[..4], &[0x12, 0x34, 0x85, 0x00]);
        assert_eq!(&out[4..12], &[0, 1, 0, 1, 0, 0, 0, 0]);
        assert_eq!(&out[12..QUERY.len()], &QUERY[12..]);
        assert_eq!(&out[QUERY.len()..len], &[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]);
    }

    #[test]
    fn drops_malformed() {
        let mut out = [0u8; MAX_ANSWER];
        for cut in 0..QUERY.len() {
            assert_eq!(answer(&QUERY[..cut], &mut out), None, "cut at {cut}");
        }
        let mut response = QUERY.to_vec();
        response[2] |= 0x80;
        assert_eq!(answer(&response, &mut out), None);
        let mut compressed = QUERY.to_vec();
        compressed[12] = 0xc0;
        assert_eq!(answer(&compressed, &mut out), None);
        let mut two = QUERY.to_vec();
        two[5] = 2;
        assert_eq!(answer(&two, &mut out), None);
        // A name longer than 255 bytes.
        let mut long = QUERY[..12].to_vec();
        for _ in 0..5 {
            long.push(63);
            long.extend_from_slice(&[b'x'; 63]);
        }
        long.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(answer(&long, &mut out), None);
    }

    #[test]
    fn no_answer_for_other_types() {
        let mut out = [0u8; MAX_ANSWER];
        let mut aaaa = QUERY.to_vec();
        aaaa[24] = 28;
        let len = answer(&aaaa, &mut out).unwrap();
        assert_eq!(len, aaaa.len());
        assert_eq!(&out[6..8], &[0, 0]);
    }

    /// The batched loop answers each client at its own address, and a
    /// malformed datagram among them is dropped without stopping it.
    #[test]
    fn batched_mode_answers_every_client() {
        let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let address = server.local_addr().expect("address");
        std::thread::spawn(move || run_batched(&server));
        let clients: Vec<UdpSocket> = (0..3).map(|_| UdpSocket::bind("127.0.0.1:0").expect("client")).collect();
        clients[0].send_to(b"not a query", address).expect("send");
        for (n, client) in clients.iter().enumerate() {
            client.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
            let mut query = QUERY.to_vec();
            query[1] = n as u8;
            client.send_to(&query, address).expect("send");
        }
        for (n, client) in clients.iter().enumerate() {
            let mut buffer = [0u8; 512];
            let len = client.recv(&mut buffer).expect("answer");
            assert_eq!(len, QUERY.len() + 16);
            assert_eq!(&buffer[..2], &[0x12, n as u8], "client {n} got another client's answer");
        }
    }
}
