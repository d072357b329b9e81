//! Batched UDP for the floor binaries (`floor_responder`, `floor_relay`):
//! `recvmmsg` into preallocated buffers and `sendmmsg` from borrowed ones,
//! and `poll`. Everything `unsafe` the floors need is here.

use std::io;
use std::os::fd::RawFd;

/// Datagrams per `recvmmsg` or `sendmmsg` call.
pub const BATCH: usize = 32;
/// Largest datagram received whole; longer ones are reported empty.
pub const MAX_DATAGRAM: usize = 4096;

/// A socket address as the kernel wrote it (an IPv4 one fits too), and its length.
pub type Peer = (libc::sockaddr_in6, libc::socklen_t);

/// How [`Received::recv`] waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Block until one datagram comes, then take what else is queued.
    ForOne,
    /// Take what is queued; none is not an error.
    No,
}

/// Preallocated buffers for one batch of received datagrams.
pub struct Received {
    /// One byte longer than `MAX_DATAGRAM` to spot oversized datagrams.
    packets: Box<[[u8; MAX_DATAGRAM + 1]; BATCH]>,
    lens: [usize; BATCH],
    peers: Box<[Peer; BATCH]>,
    iov: Box<[libc::iovec; BATCH]>,
    hdrs: Box<[libc::mmsghdr; BATCH]>,
}

impl Default for Received {
    /// Allocate the buffers; done once, before the serving loop.
    fn default() -> Self {
        Self {
            packets: Box::new([[0; MAX_DATAGRAM + 1]; BATCH]),
            lens: [0; BATCH],
            peers: Box::new([(zeroed_address(), 0); BATCH]),
            iov: Box::new([zeroed_iovec(); BATCH]),
            hdrs: Box::new([zeroed_header(); BATCH]),
        }
    }
}

impl Received {
    /// Receive up to [`BATCH`] datagrams on `fd`; how many. Oversized or
    /// truncated ones are reported with length 0. With [`Wait::No`], 0 when
    /// none is queued; ICMP errors of earlier sends are passed over.
    pub fn recv(&mut self, fd: RawFd, wait: Wait) -> io::Result<usize> {
        for i in 0..BATCH {
            let buffer = libc::iovec { iov_base: self.packets[i].as_mut_ptr().cast(), iov_len: MAX_DATAGRAM + 1 };
            let name = (std::ptr::from_mut(&mut self.peers[i].0), socklen_of::<libc::sockaddr_in6>());
            point(&mut self.hdrs[i], &mut self.iov[i], buffer, name);
        }
        let flags = match wait {
            Wait::ForOne => libc::MSG_WAITFORONE,
            Wait::No => libc::MSG_DONTWAIT,
        };
        loop {
            // SAFETY: `hdrs` holds BATCH initialised headers whose name and
            // iovec pointers point into `peers`, `iov` and `packets`, heap
            // buffers owned by `self` that outlive the call and are not
            // otherwise borrowed during it; every length given is its
            // buffer's, so the kernel writes within bounds.
            let n = unsafe {
                libc::recvmmsg(fd, self.hdrs.as_mut_ptr(), BATCH as libc::c_uint, flags, std::ptr::null_mut())
            };
            if n >= 0 {
                let n = usize::try_from(n).unwrap_or(0).min(BATCH);
                for i in 0..n {
                    let hdr = &self.hdrs[i];
                    let len = hdr.msg_len as usize;
                    let truncated = hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
                    self.lens[i] = if truncated || len > MAX_DATAGRAM { 0 } else { len };
                    self.peers[i].1 = hdr.msg_hdr.msg_namelen;
                }
                return Ok(n);
            }
            let error = io::Error::last_os_error();
            match error.kind() {
                io::ErrorKind::WouldBlock if wait == Wait::No => return Ok(0),
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::ConnectionRefused if wait == Wait::No => {}
                _ => return Err(error),
            }
        }
    }

    /// Received datagram `i`, to read or change in place.
    pub fn packet_mut(&mut self, i: usize) -> &mut [u8] {
        let len = self.lens.get(i).copied().unwrap_or(0);
        self.packets.get_mut(i).and_then(|packet| packet.get_mut(..len)).unwrap_or_default()
    }

    /// Received datagram `i`.
    pub fn packet(&self, i: usize) -> &[u8] {
        let len = self.lens.get(i).copied().unwrap_or(0);
        self.packets.get(i).and_then(|packet| packet.get(..len)).unwrap_or_default()
    }

    /// Where datagram `i` came from.
    pub fn peer(&self, i: usize) -> Peer {
        self.peers.get(i).copied().unwrap_or_else(|| (zeroed_address(), 0))
    }
}

/// Headers for one `sendmmsg` of borrowed buffers.
pub struct Sender {
    names: Box<[libc::sockaddr_in6; BATCH]>,
    iov: Box<[libc::iovec; BATCH]>,
    hdrs: Box<[libc::mmsghdr; BATCH]>,
}

impl Default for Sender {
    /// Allocate the headers; done once, before the serving loop.
    fn default() -> Self {
        Self {
            names: Box::new([zeroed_address(); BATCH]),
            iov: Box::new([zeroed_iovec(); BATCH]),
            hdrs: Box::new([zeroed_header(); BATCH]),
        }
    }
}

impl Sender {
    /// Send `count` (at most [`BATCH`]) datagrams on `fd`: `datagram(n)`
    /// gives the `n`th, its bytes and where to (`None`: the socket's
    /// connected peer). A datagram the kernel refuses is skipped (to a
    /// client, a lost datagram is a timeout).
    pub fn send<'d>(&mut self, fd: RawFd, count: usize, mut datagram: impl FnMut(usize) -> (&'d [u8], Option<Peer>)) {
        let count = count.min(BATCH);
        for n in 0..count {
            let (bytes, to) = datagram(n);
            // The kernel only reads through iov_base here (sendmmsg).
            let buffer = libc::iovec { iov_base: bytes.as_ptr().cast_mut().cast(), iov_len: bytes.len() };
            let name = match to {
                Some((address, len)) => {
                    self.names[n] = address;
                    (std::ptr::from_mut(&mut self.names[n]), len.min(socklen_of::<libc::sockaddr_in6>()))
                }
                None => (std::ptr::null_mut(), 0),
            };
            point(&mut self.hdrs[n], &mut self.iov[n], buffer, name);
        }
        let mut sent = 0;
        while sent < count {
            // SAFETY: the first `count` headers were just initialised to
            // point into `names` and `iov` (owned by `self`) and at the
            // datagrams' bytes, which are borrowed for 'd, beyond this call;
            // each length is its buffer's and each msg_namelen at most the
            // size of sockaddr_in6. `sent < count <= BATCH` keeps the
            // pointer in bounds.
            let n = unsafe { libc::sendmmsg(fd, self.hdrs.as_mut_ptr().add(sent), (count - sent) as libc::c_uint, 0) };
            match usize::try_from(n) {
                Ok(n) if n > 0 => sent += n,
                // Skip the datagram that failed and go on with the rest.
                _ => {
                    if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                        sent += 1;
                    }
                }
            }
        }
    }
}

/// Point `header` at one buffer (kept in `iov`) and at `name` (`name.1`
/// bytes; null for none), with no control data.
fn point(
    header: &mut libc::mmsghdr,
    iov: &mut libc::iovec,
    buffer: libc::iovec,
    name: (*mut libc::sockaddr_in6, libc::socklen_t),
) {
    *iov = buffer;
    let hdr = &mut header.msg_hdr;
    hdr.msg_name = name.0.cast();
    hdr.msg_namelen = name.1;
    hdr.msg_iov = iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = std::ptr::null_mut();
    hdr.msg_controllen = 0;
    hdr.msg_flags = 0;
    header.msg_len = 0;
}

/// Block until one of `fds` is readable.
pub fn wait_readable<const N: usize>(fds: [RawFd; N]) -> io::Result<()> {
    let mut polled = fds.map(|fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 });
    loop {
        // SAFETY: `polled` holds N initialised pollfd structs and outlives
        // the call; the count passed is N.
        let n = unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, -1) };
        if n >= 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// An all-zero socket address (the unspecified IPv6 address, port 0).
pub fn zeroed_address() -> libc::sockaddr_in6 {
    // SAFETY: sockaddr_in6 is a plain C struct of integers, for which
    // all-zero bytes are a valid value.
    unsafe { std::mem::zeroed() }
}

fn zeroed_iovec() -> libc::iovec {
    libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }
}

fn zeroed_header() -> libc::mmsghdr {
    // SAFETY: mmsghdr is a plain C struct of integers and raw pointers, for
    // which all-zero bytes are a valid value (null pointers, zero lengths).
    unsafe { std::mem::zeroed() }
}

/// `size_of::<T>()` as a `socklen_t`.
fn socklen_of<T>() -> libc::socklen_t {
    libc::socklen_t::try_from(size_of::<T>()).unwrap_or(libc::socklen_t::MAX)
}
