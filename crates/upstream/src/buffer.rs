//! Kernel receive buffers for UDP sockets: the upstream pool's sockets and
//! (through [`request_receive_buffer`]) the server's listeners.
//!
//! A datagram that finds its socket's buffer full is dropped by the kernel
//! and counted in `UdpRcvbufErrors`; to a forwarder each such answer costs
//! a retransmission. Linux grants at most `net.core.rmem_max` (208 KiB by
//! default) through `SO_RCVBUF`; a process with `CAP_NET_ADMIN` may go past
//! it with `SO_RCVBUFFORCE`, which is tried first.

use std::os::fd::AsFd;

/// Ask the kernel for `bytes` of receive buffer on `socket`, past
/// `net.core.rmem_max` when the process may, and return the size granted,
/// in the same terms as asked (Linux reports twice the size, the other half
/// being its bookkeeping; that is halved here). `None` when it cannot be
/// read back. Never fails: a smaller buffer is still a working socket.
pub fn request_receive_buffer(socket: &impl AsFd, bytes: usize) -> Option<usize> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use nix::sys::socket::{getsockopt, setsockopt, sockopt};
        if setsockopt(socket, sockopt::RcvBufForce, &bytes).is_err() {
            let _ = setsockopt(socket, sockopt::RcvBuf, &bytes);
        }
        getsockopt(socket, sockopt::RcvBuf).ok().map(|reported| reported / 2)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let socket = socket2::SockRef::from(socket);
        let _ = socket.set_recv_buffer_size(bytes);
        socket.recv_buffer_size().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_granted_size_is_read_back_in_the_terms_asked() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        // Small enough for any rmem_max: granted as asked.
        assert_eq!(request_receive_buffer(&socket, 64 << 10), Some(64 << 10));
        // A huge ask is granted up to the limit (or in full with CAP_NET_ADMIN), never more.
        let granted = request_receive_buffer(&socket, 64 << 20).unwrap();
        assert!((64 << 10..=64 << 20).contains(&granted), "{granted}");
    }
}
