//! Batched UDP syscalls: `recvmmsg`/`sendmmsg` with the packet's local
//! address (IP_PKTINFO / IPV6_PKTINFO) so a server bound to a wildcard
//! address answers from the address the query arrived on.
//!
//! This and privileges.rs are the crate's only `unsafe` code. The buffers handed to the kernel
//! are owned by the batch structs below; the `mmsghdr` pointers into them are
//! rebuilt right before every call, so moving a batch between calls is safe.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Packets per syscall.
pub(crate) const BATCH: usize = 32;
/// Largest datagram read or written per slot.
pub(crate) const SLOT: usize = 4096;
/// Room for one IP_PKTINFO or IPV6_PKTINFO control message.
const CONTROL: usize = 64;

/// Enable reporting of each packet's destination address.
pub(crate) fn enable_pktinfo(fd: RawFd, ipv6: bool) -> io::Result<()> {
    let on: libc::c_int = 1;
    let (level, name) =
        if ipv6 { (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO) } else { (libc::IPPROTO_IP, libc::IP_PKTINFO) };
    // SAFETY: `on` outlives the call and the length matches its type.
    let result = unsafe {
        libc::setsockopt(fd, level, name, (&raw const on).cast(), size_of::<libc::c_int>() as libc::socklen_t)
    };
    if result == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// One received datagram.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Received {
    pub(crate) len: usize,
    pub(crate) peer: SocketAddr,
    /// The address the packet was sent to, when the kernel reported it.
    pub(crate) local: Option<IpAddr>,
}

/// Buffers for receiving up to `BATCH` datagrams.
pub(crate) struct RecvBatch {
    buffers: Box<[[u8; SLOT]; BATCH]>,
    addresses: Box<[libc::sockaddr_storage; BATCH]>,
    controls: Box<[[u8; CONTROL]; BATCH]>,
    iovecs: Box<[libc::iovec; BATCH]>,
    headers: Box<[libc::mmsghdr; BATCH]>,
    received: [Option<Received>; BATCH],
}

// SAFETY: the raw pointers inside `iovecs`/`headers` only ever point into this
// struct's own boxes and are rebuilt before each use.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    pub(crate) fn new() -> Self {
        // SAFETY: all-zero bytes are valid for these plain C structs and arrays.
        unsafe {
            Self {
                buffers: Box::new([[0; SLOT]; BATCH]),
                addresses: Box::new(zeroed()),
                controls: Box::new([[0; CONTROL]; BATCH]),
                iovecs: Box::new(zeroed()),
                headers: Box::new(zeroed()),
                received: [None; BATCH],
            }
        }
    }

    /// Receive the datagrams queued on a non-blocking socket, up to `BATCH`;
    /// `WouldBlock` when there are none.
    pub(crate) fn receive(&mut self, fd: RawFd) -> io::Result<usize> {
        for index in 0..BATCH {
            let iovec = &mut self.iovecs[index];
            iovec.iov_base = self.buffers[index].as_mut_ptr().cast();
            iovec.iov_len = SLOT;
            let header = &mut self.headers[index].msg_hdr;
            header.msg_name = (&raw mut self.addresses[index]).cast();
            header.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_iov = &raw mut self.iovecs[index];
            header.msg_iovlen = 1;
            header.msg_control = self.controls[index].as_mut_ptr().cast();
            header.msg_controllen = CONTROL;
            header.msg_flags = 0;
            self.headers[index].msg_len = 0;
        }
        // SAFETY: every header points at buffers owned by `self` that live
        // for the whole call; lengths match the buffers.
        let count = unsafe {
            libc::recvmmsg(
                fd,
                self.headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if count < 0 {
            return Err(io::Error::last_os_error());
        }
        let count = count as usize;
        for index in 0..count {
            let header = &self.headers[index];
            let peer = sockaddr_to_std(&self.addresses[index]);
            self.received[index] = peer.map(|peer| Received {
                len: (header.msg_len as usize).min(SLOT),
                peer,
                local: self.local_address(index),
            });
        }
        Ok(count)
    }

    fn local_address(&self, index: usize) -> Option<IpAddr> {
        let header = &self.headers[index].msg_hdr;
        // SAFETY: walking the control buffer the kernel filled, with the
        // kernel-provided length, through libc's CMSG macros.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(header);
            while !cmsg.is_null() {
                let level = (*cmsg).cmsg_level;
                let kind = (*cmsg).cmsg_type;
                if level == libc::IPPROTO_IP && kind == libc::IP_PKTINFO {
                    let info: libc::in_pktinfo = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    return Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr))));
                }
                if level == libc::IPPROTO_IPV6 && kind == libc::IPV6_PKTINFO {
                    let info: libc::in6_pktinfo = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    return Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
                }
                cmsg = libc::CMSG_NXTHDR(header, cmsg);
            }
        }
        None
    }

    /// The datagram in slot `index`, if one was received there.
    pub(crate) fn get(&self, index: usize) -> Option<(&[u8], Received)> {
        let received = (*self.received.get(index)?)?;
        let bytes = self.buffers.get(index)?.get(..received.len)?;
        Some((bytes, received))
    }
}

/// Buffers for sending up to `BATCH` datagrams.
pub(crate) struct SendBatch {
    buffers: Box<[[u8; SLOT]; BATCH]>,
    lengths: [usize; BATCH],
    peers: Box<[libc::sockaddr_storage; BATCH]>,
    peer_lengths: [libc::socklen_t; BATCH],
    sources: [Option<IpAddr>; BATCH],
    controls: Box<[[u8; CONTROL]; BATCH]>,
    iovecs: Box<[libc::iovec; BATCH]>,
    headers: Box<[libc::mmsghdr; BATCH]>,
    count: usize,
}

// SAFETY: as for `RecvBatch`.
unsafe impl Send for SendBatch {}

impl SendBatch {
    pub(crate) fn new() -> Self {
        // SAFETY: all-zero bytes are valid for these plain C structs and arrays.
        unsafe {
            Self {
                buffers: Box::new([[0; SLOT]; BATCH]),
                lengths: [0; BATCH],
                peers: Box::new(zeroed()),
                peer_lengths: [0; BATCH],
                sources: [None; BATCH],
                controls: Box::new([[0; CONTROL]; BATCH]),
                iovecs: Box::new(zeroed()),
                headers: Box::new(zeroed()),
                count: 0,
            }
        }
    }

    pub(crate) fn is_full(&self) -> bool {
        self.count == BATCH
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The next free slot's buffer; commit it with `push`.
    pub(crate) fn next_buffer(&mut self) -> Option<&mut [u8; SLOT]> {
        self.buffers.get_mut(self.count)
    }

    /// Queue the first `len` bytes of the slot returned by `next_buffer`.
    pub(crate) fn push(&mut self, len: usize, peer: SocketAddr, source: Option<IpAddr>) {
        let index = self.count;
        if index >= BATCH {
            return;
        }
        self.lengths[index] = len.min(SLOT);
        self.peer_lengths[index] = std_to_sockaddr(peer, &mut self.peers[index]);
        self.sources[index] = source;
        self.count += 1;
    }

    /// Send everything queued; datagrams the kernel rejects are skipped.
    /// Returns how many were sent.
    pub(crate) fn flush(&mut self, fd: RawFd) -> usize {
        let count = self.count;
        for index in 0..count {
            let iovec = &mut self.iovecs[index];
            iovec.iov_base = self.buffers[index].as_mut_ptr().cast();
            iovec.iov_len = self.lengths[index];
            let control_len = self.write_source_control(index);
            let header = &mut self.headers[index].msg_hdr;
            header.msg_name = (&raw mut self.peers[index]).cast();
            header.msg_namelen = self.peer_lengths[index];
            header.msg_iov = &raw mut self.iovecs[index];
            header.msg_iovlen = 1;
            if control_len == 0 {
                header.msg_control = std::ptr::null_mut();
                header.msg_controllen = 0;
            } else {
                header.msg_control = self.controls[index].as_mut_ptr().cast();
                header.msg_controllen = control_len;
            }
            header.msg_flags = 0;
        }
        let mut sent = 0;
        let mut start = 0;
        while start < count {
            // SAFETY: headers[start..count] point at buffers owned by `self`.
            let result =
                unsafe { libc::sendmmsg(fd, self.headers.as_mut_ptr().add(start), (count - start) as libc::c_uint, 0) };
            if result <= 0 {
                // The first datagram failed (e.g. an ICMP error reported
                // late, or an unreachable peer): skip it and go on.
                start += 1;
                continue;
            }
            sent += result as usize;
            start += result as usize;
        }
        self.count = 0;
        sent
    }

    fn write_source_control(&mut self, index: usize) -> usize {
        let Some(source) = self.sources[index] else { return 0 };
        let control = &mut self.controls[index];
        control.fill(0);
        // SAFETY: all-zero is a valid msghdr; it only describes the control buffer.
        let mut header: libc::msghdr = unsafe { zeroed() };
        header.msg_control = control.as_mut_ptr().cast();
        header.msg_controllen = CONTROL;
        // SAFETY: the control buffer is CONTROL writable bytes.
        unsafe { write_pktinfo(&header, source) }
    }
}

/// Send one datagram to `peer`, from `source` when given (for sockets bound
/// to a wildcard address, so the reply leaves from the address the query
/// arrived on).
pub(crate) fn send_one(fd: RawFd, bytes: &[u8], peer: SocketAddr, source: Option<IpAddr>) -> io::Result<usize> {
    // SAFETY: all-zero is valid for these C structs.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let peer_len = std_to_sockaddr(peer, &mut storage);
    let mut control = [0u8; CONTROL];
    let mut iovec = libc::iovec { iov_base: bytes.as_ptr().cast_mut().cast(), iov_len: bytes.len() };
    // SAFETY: all-zero is a valid msghdr.
    let mut header: libc::msghdr = unsafe { zeroed() };
    header.msg_name = (&raw mut storage).cast();
    header.msg_namelen = peer_len;
    header.msg_iov = &raw mut iovec;
    header.msg_iovlen = 1;
    if let Some(source) = source {
        header.msg_control = control.as_mut_ptr().cast();
        header.msg_controllen = CONTROL;
        // SAFETY: the control buffer is large enough for one pktinfo cmsg.
        header.msg_controllen = unsafe { write_pktinfo(&header, source) };
        if header.msg_controllen == 0 {
            header.msg_control = std::ptr::null_mut();
        }
    }
    // SAFETY: the kernel only reads `bytes` (iov_base is not written to by sendmsg).
    let result = unsafe { libc::sendmsg(fd, &header, 0) };
    if result < 0 { Err(io::Error::last_os_error()) } else { Ok(result as usize) }
}

/// Write an IP_PKTINFO / IPV6_PKTINFO cmsg naming `source` into the control
/// buffer `header` describes; returns the control length used.
///
/// # Safety
/// `header.msg_control` must point at `header.msg_controllen` writable bytes,
/// at least CONTROL of them.
unsafe fn write_pktinfo(header: &libc::msghdr, source: IpAddr) -> usize {
    // SAFETY: guaranteed by the caller; the CMSG macros stay inside the buffer.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(header);
        if cmsg.is_null() {
            return 0;
        }
        match source {
            IpAddr::V4(addr) => {
                (*cmsg).cmsg_level = libc::IPPROTO_IP;
                (*cmsg).cmsg_type = libc::IP_PKTINFO;
                (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<libc::in_pktinfo>() as u32) as usize;
                let mut info: libc::in_pktinfo = zeroed();
                info.ipi_spec_dst.s_addr = u32::from(addr).to_be();
                std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast(), info);
                libc::CMSG_SPACE(size_of::<libc::in_pktinfo>() as u32) as usize
            }
            IpAddr::V6(addr) => {
                (*cmsg).cmsg_level = libc::IPPROTO_IPV6;
                (*cmsg).cmsg_type = libc::IPV6_PKTINFO;
                (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<libc::in6_pktinfo>() as u32) as usize;
                let mut info: libc::in6_pktinfo = zeroed();
                info.ipi6_addr.s6_addr = addr.octets();
                std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast(), info);
                libc::CMSG_SPACE(size_of::<libc::in6_pktinfo>() as u32) as usize
            }
        }
    }
}

/// Register a UDP socket with the tokio reactor for readability.
pub(crate) fn register_readable(
    socket: std::sync::Arc<std::net::UdpSocket>,
) -> io::Result<tokio::io::unix::AsyncFd<std::sync::Arc<std::net::UdpSocket>>> {
    // SAFETY: the `AsyncFd` owns an `Arc` of the socket, so the descriptor
    // stays open and names the same socket for the `AsyncFd`'s whole life,
    // and `as_raw_fd` of an `Arc<UdpSocket>` always returns that descriptor.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(socket, tokio::io::Interest::READABLE) }
        .map_err(io::Error::from)
}

/// Make closing this TCP socket send a reset instead of a FIN.
pub(crate) fn set_linger_zero(fd: RawFd) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: `linger` outlives the call and the length matches its type; a
    // failure (e.g. an fd already closed) only means no reset is sent.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

fn sockaddr_to_std(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let addr: libc::sockaddr_in =
                unsafe { std::ptr::read_unaligned((storage as *const libc::sockaddr_storage).cast()) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
                u16::from_be(addr.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let addr: libc::sockaddr_in6 =
                unsafe { std::ptr::read_unaligned((storage as *const libc::sockaddr_storage).cast()) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(addr.sin6_addr.s6_addr),
                u16::from_be(addr.sin6_port),
                addr.sin6_flowinfo,
                addr.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn std_to_sockaddr(addr: SocketAddr, storage: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(v4) => {
            // SAFETY: all-zero is a valid sockaddr_in.
            let mut out: libc::sockaddr_in = unsafe { zeroed() };
            out.sin_family = libc::AF_INET as libc::sa_family_t;
            out.sin_port = v4.port().to_be();
            out.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
            // SAFETY: sockaddr_storage is larger than sockaddr_in.
            unsafe { std::ptr::write_unaligned((storage as *mut libc::sockaddr_storage).cast(), out) };
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(v6) => {
            // SAFETY: all-zero is a valid sockaddr_in6.
            let mut out: libc::sockaddr_in6 = unsafe { zeroed() };
            out.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            out.sin6_port = v6.port().to_be();
            out.sin6_addr.s6_addr = v6.ip().octets();
            out.sin6_flowinfo = v6.flowinfo();
            out.sin6_scope_id = v6.scope_id();
            // SAFETY: sockaddr_storage is larger than sockaddr_in6.
            unsafe { std::ptr::write_unaligned((storage as *mut libc::sockaddr_storage).cast(), out) };
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    #[test]
    fn a_batch_round_trips_through_loopback_with_local_addresses() {
        let server = UdpSocket::bind("0.0.0.0:0").expect("bind");
        enable_pktinfo(server.as_raw_fd(), false).expect("pktinfo");
        server.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let port = server.local_addr().expect("addr").port();
        let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
        client.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        for index in 0..5u8 {
            client.send_to(&[index; 20], ("127.0.0.2", port)).expect("send");
        }
        let mut receive = RecvBatch::new();
        let mut total = 0;
        let mut send = SendBatch::new();
        while total < 5 {
            let count = match receive.receive(server.as_raw_fd()) {
                Ok(count) => count,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                Err(error) => panic!("receive: {error}"),
            };
            for index in 0..count {
                let (bytes, info) = receive.get(index).expect("slot");
                assert_eq!(bytes.len(), 20);
                assert_eq!(info.local, Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))));
                assert_eq!(info.peer, client.local_addr().expect("addr"));
                let slot = send.next_buffer().expect("room");
                slot[..3].copy_from_slice(&bytes[..3]);
                send.push(3, info.peer, info.local);
            }
            total += count;
        }
        assert_eq!(send.flush(server.as_raw_fd()), 5);
        for _ in 0..5 {
            let mut buffer = [0u8; 64];
            let (len, from) = client.recv_from(&mut buffer).expect("reply");
            assert_eq!(len, 3);
            // The reply comes from the address the query was sent to.
            assert_eq!(from.ip(), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        }
    }
}
