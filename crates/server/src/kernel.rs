//! What the kernel knows about the process's UDP sockets that the sockets
//! cannot say themselves: the receive buffer each was granted, and the
//! datagrams each lost because that buffer was full — the per-socket share
//! of the system's `UdpRcvbufErrors`, from the `drops` column of
//! `/proc/net/udp` and `/proc/net/udp6`. Read at a scrape, never on the
//! query path. Elsewhere than Linux nothing is known.

use std::collections::{HashMap, HashSet};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;

/// A listener's UDP sockets as the kernel knows them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct UdpSockets {
    /// The sockets' inode numbers (how /proc names them).
    pub(crate) inodes: Vec<u64>,
    /// The receive buffer granted to each, as asked (Linux books twice that).
    pub(crate) receive_buffer: Option<usize>,
}

impl UdpSockets {
    pub(crate) fn of(sockets: &[UdpSocket]) -> Self {
        let receive_buffer = sockets.first().and_then(|socket| {
            let reported = socket2::SockRef::from(socket).recv_buffer_size().ok()?;
            Some(if cfg!(any(target_os = "linux", target_os = "android")) { reported / 2 } else { reported })
        });
        Self { inodes: sockets.iter().filter_map(|socket| inode(socket.as_raw_fd())).collect(), receive_buffer }
    }
}

/// The inode of the socket behind `fd`: `/proc/self/fd/N` links to `socket:[inode]`.
fn inode(fd: i32) -> Option<u64> {
    let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    socket_inode(target.to_str()?)
}

fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// Every socket inode this process holds open.
pub(crate) fn own_socket_inodes() -> HashSet<u64> {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else { return HashSet::new() };
    entries
        .flatten()
        .filter_map(|entry| std::fs::read_link(entry.path()).ok())
        .filter_map(|target| socket_inode(target.to_str()?))
        .collect()
}

/// Datagrams the kernel dropped on each open UDP socket of this network
/// namespace, by inode.
pub(crate) fn udp_drops() -> HashMap<u64, u64> {
    let mut drops = HashMap::new();
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            drops.extend(parse_udp_table(&text));
        }
    }
    drops
}

/// The network namespace's `UdpRcvbufErrors` plus `Udp6RcvbufErrors`
/// (what `nstat` shows): datagrams dropped for a full receive buffer on any
/// socket of any process, the closed ones included. `None` when unreadable.
pub(crate) fn system_receive_buffer_errors() -> Option<u64> {
    let v4 = parse_snmp(&std::fs::read_to_string("/proc/net/snmp").ok()?)?;
    let v6 = std::fs::read_to_string("/proc/net/snmp6").ok().and_then(|text| parse_snmp6(&text)).unwrap_or(0);
    Some(v4 + v6)
}

/// `RcvbufErrors` of the `Udp:` lines of `/proc/net/snmp`: a line of names
/// followed by a line of values.
fn parse_snmp(text: &str) -> Option<u64> {
    let mut lines = text.lines().filter(|line| line.starts_with("Udp: "));
    let names = lines.next()?;
    let values = lines.next()?;
    let position = names.split_whitespace().position(|name| name == "RcvbufErrors")?;
    values.split_whitespace().nth(position)?.parse().ok()
}

/// `Udp6RcvbufErrors` of `/proc/net/snmp6`: one `name value` per line.
fn parse_snmp6(text: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        (fields.next()? == "Udp6RcvbufErrors").then(|| fields.next()?.parse().ok())?
    })
}

/// `(inode, drops)` of each row of a `/proc/net/udp` table: after the
/// header line, the tenth field is the inode and the thirteenth the drops.
fn parse_udp_table(text: &str) -> impl Iterator<Item = (u64, u64)> + '_ {
    text.lines().skip(1).filter_map(|line| {
        let mut fields = line.split_whitespace();
        let inode = fields.nth(9)?.parse().ok()?;
        let drops = fields.nth(2)?.parse().ok()?;
        Some((inode, drops))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_the_udp_table_give_inode_and_drops() {
        // Two rows of a real /proc/net/udp (Linux 6.1), the second with drops.
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  131: 0100007F:A5D3 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 5349417 2 ffff8881045c1a80 0
  716: 0100007F:E81C 0100007F:0035 01 00000000:00034000 00:00000000 00000000  1000        0 5349420 2 ffff8881045c2d00 165
";
        assert_eq!(parse_udp_table(table).collect::<Vec<_>>(), [(5349417, 0), (5349420, 165)]);
        assert_eq!(socket_inode("socket:[5349420]"), Some(5349420));
        assert_eq!(socket_inode("pipe:[12]"), None);
    }

    #[test]
    fn the_namespaces_receive_buffer_errors_are_read_as_nstat_shows_them() {
        // From a Linux 6.1 /proc/net/snmp and snmp6 (abridged).
        let snmp = "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 23682906 1541 759 23685413 165 0 0 0 0
UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
UdpLite: 0 0 0 0 7 0 0 0 0
";
        assert_eq!(parse_snmp(snmp), Some(165));
        let snmp6 = "Udp6InErrors                    \t3\nUdp6RcvbufErrors                \t2\nUdpLite6RcvbufErrors            \t9\n";
        assert_eq!(parse_snmp6(snmp6), Some(2));
        assert_eq!(parse_snmp("Ip: Forwarding\nIp: 1\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_open_socket_is_found_with_its_buffer_and_no_drops() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let granted = signpost_upstream::request_receive_buffer(&socket, 64 << 10);
        let known = UdpSockets::of(std::slice::from_ref(&socket));
        assert_eq!(known.receive_buffer, granted);
        let [inode] = known.inodes[..] else { panic!("one inode: {known:?}") };
        assert!(own_socket_inodes().contains(&inode));
        assert_eq!(udp_drops().get(&inode), Some(&0));
    }
}
