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

/// Largest query accepted; anything longer is dropped.
const MAX_QUERY: usize = 1232;
/// Largest answer written: header + 255-byte name + 4 + the 16-byte answer.
const MAX_ANSWER: usize = 12 + 255 + 4 + 16;
/// Datagrams per `recvmmsg`/`sendmmsg` call in batched mode.
const BATCH: usize = 32;

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

/// Batched receive and send through `recvmmsg`/`sendmmsg`.
fn run_batched(socket: &UdpSocket) -> std::io::Result<()> {
    let mut batch = mmsg::Batch::new();
    let fd = socket.as_raw_fd();
    loop {
        let received = batch.recv(fd)?;
        let mut replies = 0;
        for i in 0..received {
            let (query, reply) = batch.slot(i);
            if let Some(len) = answer(query, reply) {
                batch.queue_reply(i, replies, len);
                replies += 1;
            }
        }
        batch.send(fd, replies);
    }
}

/// Everything `unsafe` in this binary: the `recvmmsg`/`sendmmsg` batch.
mod mmsg {
    use super::{BATCH, MAX_ANSWER, MAX_QUERY};
    use std::io;
    use std::os::fd::RawFd;

    /// Preallocated buffers and headers for one batch of datagrams.
    pub(super) struct Batch {
        /// Receive buffers; one byte longer than `MAX_QUERY` to spot oversize queries.
        rx: Box<[[u8; MAX_QUERY + 1]; BATCH]>,
        /// Length of each received datagram.
        rx_len: [usize; BATCH],
        /// Source address of each received datagram.
        peers: Box<[libc::sockaddr_storage; BATCH]>,
        /// Length of each source address.
        peer_len: [libc::socklen_t; BATCH],
        /// Answer buffers, indexed like `rx`.
        tx: Box<[[u8; MAX_ANSWER]; BATCH]>,
        /// For each queued reply: (index of the query slot, answer length).
        queued: [(usize, usize); BATCH],
        /// Scatter/gather entries, one per message.
        iov: Box<[libc::iovec; BATCH]>,
        /// The message headers passed to the kernel.
        hdrs: Box<[libc::mmsghdr; BATCH]>,
    }

    impl Batch {
        /// Allocates the buffers; done once, before the serving loop.
        pub(super) fn new() -> Self {
            // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C structs
            // of integers and raw pointers, for which all-zero bytes are a
            // valid value (null pointers, zero lengths).
            let (peers, iov, hdrs) = unsafe {
                (
                    Box::new(std::mem::zeroed::<[libc::sockaddr_storage; BATCH]>()),
                    Box::new(std::mem::zeroed::<[libc::iovec; BATCH]>()),
                    Box::new(std::mem::zeroed::<[libc::mmsghdr; BATCH]>()),
                )
            };
            Self {
                rx: Box::new([[0; MAX_QUERY + 1]; BATCH]),
                rx_len: [0; BATCH],
                peers,
                peer_len: [0; BATCH],
                tx: Box::new([[0; MAX_ANSWER]; BATCH]),
                queued: [(0, 0); BATCH],
                iov,
                hdrs,
            }
        }

        /// Points message header `nth` at one buffer (`buffer.0`, `buffer.1`
        /// bytes) and at peer slot `peer`, of `peer_len` bytes; no control data.
        #[inline]
        fn prepare(&mut self, nth: usize, buffer: (*mut u8, usize), peer: usize, peer_len: libc::socklen_t) {
            self.iov[nth] = libc::iovec { iov_base: buffer.0.cast(), iov_len: buffer.1 };
            let hdr = &mut self.hdrs[nth].msg_hdr;
            hdr.msg_name = std::ptr::from_mut(&mut self.peers[peer]).cast();
            hdr.msg_namelen = peer_len;
            hdr.msg_iov = &mut self.iov[nth];
            hdr.msg_iovlen = 1;
            hdr.msg_control = std::ptr::null_mut();
            hdr.msg_controllen = 0;
            hdr.msg_flags = 0;
            self.hdrs[nth].msg_len = 0;
        }

        /// Blocks until at least one datagram arrives, then takes up to
        /// `BATCH` without waiting further. Returns how many were received;
        /// oversized or truncated datagrams are reported with length 0 so
        /// the parser drops them.
        pub(super) fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
            for i in 0..BATCH {
                let buffer = self.rx[i].as_mut_ptr();
                self.prepare(i, (buffer, MAX_QUERY + 1), i, socklen_of::<libc::sockaddr_storage>());
            }
            loop {
                // SAFETY: `hdrs` holds BATCH initialised headers whose name
                // and iovec pointers point into `peers`, `iov` and `rx`,
                // heap buffers owned by `self` that outlive the call and are
                // not otherwise borrowed during it; each iovec's length is
                // its buffer's length and each msg_namelen is the size of
                // its sockaddr_storage, so the kernel writes within bounds.
                let n = unsafe {
                    libc::recvmmsg(
                        fd,
                        self.hdrs.as_mut_ptr(),
                        BATCH as libc::c_uint,
                        libc::MSG_WAITFORONE,
                        std::ptr::null_mut(),
                    )
                };
                if n >= 0 {
                    let n = usize::try_from(n).unwrap_or(0).min(BATCH);
                    for i in 0..n {
                        let hdr = &self.hdrs[i];
                        let len = hdr.msg_len as usize;
                        let truncated = hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
                        self.rx_len[i] = if truncated || len > MAX_QUERY { 0 } else { len };
                        self.peer_len[i] = hdr.msg_hdr.msg_namelen;
                    }
                    return Ok(n);
                }
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }

        /// The received query in slot `i` and the answer buffer for it.
        pub(super) fn slot(&mut self, i: usize) -> (&[u8], &mut [u8; MAX_ANSWER]) {
            (&self.rx[i][..self.rx_len[i]], &mut self.tx[i])
        }

        /// Queues the answer of length `len` in slot `slot` as reply number `nth`.
        pub(super) fn queue_reply(&mut self, slot: usize, nth: usize, len: usize) {
            self.queued[nth] = (slot, len.min(MAX_ANSWER));
        }

        /// Sends the first `count` queued replies to their queries' sources.
        /// Send errors are ignored: a lost answer is a timeout for the client.
        pub(super) fn send(&mut self, fd: RawFd, count: usize) {
            let count = count.min(BATCH);
            for nth in 0..count {
                let (slot, len) = self.queued[nth];
                let buffer = self.tx[slot].as_mut_ptr();
                self.prepare(nth, (buffer, len), slot, self.peer_len[slot]);
            }
            let mut sent = 0;
            while sent < count {
                // SAFETY: the first `count` headers were just initialised
                // to point into `tx`, `peers` and `iov`, heap buffers owned
                // by `self`; each iov_len is at most its buffer's length and
                // each msg_namelen is what recvmmsg reported for that
                // address, at most the size of sockaddr_storage. `sent <
                // count <= BATCH`, so the pointer and length stay in bounds.
                let n =
                    unsafe { libc::sendmmsg(fd, self.hdrs.as_mut_ptr().add(sent), (count - sent) as libc::c_uint, 0) };
                match usize::try_from(n) {
                    Ok(n) if n > 0 => sent += n,
                    // Skip the message that failed and go on with the rest.
                    _ => {
                        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                            sent += 1;
                        }
                    }
                }
            }
        }
    }

    /// `size_of::<T>()` as a `socklen_t`.
    fn socklen_of<T>() -> libc::socklen_t {
        libc::socklen_t::try_from(size_of::<T>()).unwrap_or(libc::socklen_t::MAX)
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
    use super::{MAX_ANSWER, answer};

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
}
