//! Entry points for the fuzz targets in `fuzz/` (not a stable API).
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::net::SocketAddr;

use crate::parse_resolv_conf;

/// Read fuzz bytes as resolv.conf: never an error, never a panic, at most
/// three nameservers, and a group that leaves out our own address.
pub fn resolv_conf(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let conf = parse_resolv_conf(&text);
    assert!(conf.nameservers.len() <= crate::MAX_NAMESERVERS);
    let own: SocketAddr = "127.0.0.1:53".parse().expect("an address");
    let group = conf.to_group("system", &[own]);
    assert!(group.servers.iter().all(|server| server.address != own));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_do_not_panic() {
        resolv_conf(b"nameserver 127.0.0.1\nnameserver 10.0.0.1\noptions timeout:99999999999 ndots:x\n");
        resolv_conf(b"nameserver fe80::1%99999999999\nsearch\n");
        resolv_conf(&[0xff, b'\n', b'#']);
    }
}
