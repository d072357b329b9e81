//! Access control lists with Unbound's semantics (the most specific network
//! decides), turned into the flat allow-list the listeners check.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// What an access-control entry does with the clients in its network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AclAction {
    /// Serve them.
    Allow,
    /// Answer REFUSED.
    Refuse,
}

/// One access-control entry: a network and what to do with clients in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessControl {
    /// The clients' network (`10.0.0.0/8`, `2001:db8::/32`; an address alone is a host).
    pub network: String,
    /// What to do.
    pub action: AclAction,
}

/// The networks whose clients are served, for entries where the most
/// specific network containing a client decides and clients no entry covers
/// are refused. Later entries for the same network replace earlier ones.
///
/// Each allowed network has the more specific refused networks inside it cut
/// out, so a flat "is the client in any of these" check gives the same
/// answer as the longest-prefix match.
pub fn allowed_networks(entries: &[(IpNet, AclAction)]) -> Vec<IpNet> {
    let mut effective: Vec<(IpNet, AclAction)> = Vec::new();
    for (network, action) in entries {
        let network = network.trunc();
        match effective.iter_mut().find(|(existing, _)| *existing == network) {
            Some(entry) => entry.1 = *action,
            None => effective.push((network, *action)),
        }
    }
    let refused: Vec<IpNet> =
        effective.iter().filter(|(_, action)| *action == AclAction::Refuse).map(|(network, _)| *network).collect();
    let mut allowed = Vec::new();
    for (network, _) in effective.iter().filter(|(_, action)| *action == AclAction::Allow) {
        let mut pieces = vec![*network];
        for hole in refused.iter().filter(|hole| hole.prefix_len() > network.prefix_len() && network.contains(*hole)) {
            pieces = pieces.into_iter().flat_map(|piece| subtract(piece, *hole)).collect();
        }
        allowed.extend(pieces);
    }
    IpNet::aggregate(&allowed)
}

/// `network` without `hole`: the whole network when they do not overlap,
/// nothing when the hole covers it, else the siblings along the path down
/// to the hole (at most one per bit of prefix).
fn subtract(network: IpNet, hole: IpNet) -> Vec<IpNet> {
    if !network.contains(&hole) && !hole.contains(&network) {
        return vec![network];
    }
    if hole.contains(&network) {
        return Vec::new();
    }
    let mut pieces = Vec::new();
    for prefix in network.prefix_len() + 1..=hole.prefix_len() {
        let Ok(parent) = IpNet::new(hole.addr(), prefix - 1) else { continue };
        let Ok(halves) = parent.trunc().subnets(prefix) else { continue };
        pieces.extend(halves.filter(|half| !half.contains(&hole)));
    }
    pieces
}

/// Parse a network as Unbound writes it: `10.0.0.0/8`, or an address alone for a host.
pub(crate) fn parse_network(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>().ok().or_else(|| text.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    fn net(text: &str) -> IpNet {
        parse_network(text).unwrap()
    }

    fn allows(allowed: &[IpNet], address: &str) -> bool {
        let address: IpAddr = address.parse().unwrap();
        allowed.iter().any(|network| network.contains(&address))
    }

    #[test]
    fn the_most_specific_network_decides() {
        let allowed = allowed_networks(&[
            (net("0.0.0.0/0"), AclAction::Refuse),
            (net("10.0.0.0/8"), AclAction::Allow),
            (net("10.1.0.0/16"), AclAction::Refuse),
            (net("10.1.2.0/24"), AclAction::Allow),
            (net("10.1.2.3"), AclAction::Refuse),
            (net("::1"), AclAction::Allow),
        ]);
        assert!(allows(&allowed, "10.9.9.9"));
        assert!(!allows(&allowed, "10.1.9.9"));
        assert!(allows(&allowed, "10.1.2.4"));
        assert!(!allows(&allowed, "10.1.2.3"));
        assert!(!allows(&allowed, "192.0.2.1"));
        assert!(allows(&allowed, "::1"));
        assert!(!allows(&allowed, "::2"));
    }

    #[test]
    fn later_entries_replace_earlier_ones_for_the_same_network() {
        let allowed =
            allowed_networks(&[(net("10.0.0.0/8"), AclAction::Allow), (net("10.0.0.0/8"), AclAction::Refuse)]);
        assert!(allowed.is_empty());
    }

    #[test]
    fn a_brute_force_longest_match_agrees_on_random_tables() {
        // A fixed pseudo-random walk: deterministic, no extra dependency.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..200 {
            let entries: Vec<(IpNet, AclAction)> = (0..6)
                .map(|_| {
                    let address = IpAddr::from([10, (next() % 4) as u8, (next() % 4) as u8, (next() % 4) as u8]);
                    let prefix = [8u8, 16, 24, 30, 32][(next() % 5) as usize];
                    let action = if next() % 2 == 0 { AclAction::Allow } else { AclAction::Refuse };
                    (IpNet::new(address, prefix).unwrap().trunc(), action)
                })
                .collect();
            let allowed = allowed_networks(&entries);
            for _ in 0..50 {
                let address = IpAddr::from([10, (next() % 4) as u8, (next() % 4) as u8, (next() % 4) as u8]);
                let mut best: Option<(u8, AclAction)> = None;
                for (network, action) in &entries {
                    if network.contains(&address) && best.is_none_or(|(prefix, _)| network.prefix_len() >= prefix) {
                        best = Some((network.prefix_len(), *action));
                    }
                }
                let expected = best.is_some_and(|(_, action)| action == AclAction::Allow);
                assert_eq!(allows(&allowed, &address.to_string()), expected, "{entries:?} {address}");
            }
        }
    }
}
