//! Locally served zones (RFC 6303, RFC 6761, RFC 6598's AS112 space), as
//! Unbound's default local zones have them (unbound.conf(5), "The default
//! zones"), shared by signpost-forward (Unbound's defaults) and
//! signpost-endpoint (Route 53 Resolver's autodefined rules):
//! localhost, the loopback reverse zones, onion, test, invalid, and unless
//! `unblock-lan-zones: yes` the AS112 reverse zones of private and reserved
//! address space and home.arpa. A local-zone of the same name, of any type
//! (`nodefault` too), replaces one; `local-zones-disable-default: yes`
//! drops them all.

const SOA: &str = "10800 IN SOA localhost. nobody.invalid. 1 3600 1200 604800 10800";
const NS: &str = "10800 IN NS localhost.";
const IP6_LOOPBACK: &str = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.";
const IP6_UNSPECIFIED: &str = "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.";

/// A default zone: its name, whether it is `redirect` (else `static`), and its records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefaultZone {
    /// Its apex, with the final dot.
    pub name: String,
    /// Whether every name below the apex gets the apex's data (`localhost`).
    pub redirect: bool,
    /// Its records in presentation format (NS, SOA and any data).
    pub records: Vec<String>,
}

fn empty(name: &str) -> DefaultZone {
    DefaultZone {
        name: name.to_owned(),
        redirect: false,
        records: vec![format!("{name} {NS}"), format!("{name} {SOA}")],
    }
}

/// Whether a default zone is reverse space (`in-addr.arpa` or `ip6.arpa`).
pub fn is_reverse(zone: &DefaultZone) -> bool {
    zone.name.ends_with(".in-addr.arpa.") || zone.name.ends_with(".ip6.arpa.")
}

/// The default zones, in Unbound's order: without `unblock_lan_zones`
/// also the AS112 reverse zones of private and reserved space.
pub fn default_zones(unblock_lan_zones: bool) -> Vec<DefaultZone> {
    let mut zones = vec![
        DefaultZone {
            name: "localhost.".into(),
            redirect: true,
            records: vec![
                format!("localhost. {NS}"),
                format!("localhost. {SOA}"),
                "localhost. 10800 IN A 127.0.0.1".into(),
                "localhost. 10800 IN AAAA ::1".into(),
            ],
        },
        {
            let mut zone = empty("127.in-addr.arpa.");
            zone.records.push("1.0.0.127.in-addr.arpa. 10800 IN PTR localhost.".into());
            zone
        },
        {
            let mut zone = empty(IP6_LOOPBACK);
            zone.records.push(format!("{IP6_LOOPBACK} 10800 IN PTR localhost."));
            zone
        },
        empty("onion."),
        empty("test."),
        empty("invalid."),
    ];
    if unblock_lan_zones {
        return zones;
    }
    let mut as112: Vec<String> = vec!["home.arpa.".into(), "10.in-addr.arpa.".into()];
    as112.extend((16..=31).map(|octet| format!("{octet}.172.in-addr.arpa.")));
    as112.extend(
        [
            "168.192.in-addr.arpa.",
            "0.in-addr.arpa.",
            "254.169.in-addr.arpa.",
            "2.0.192.in-addr.arpa.",
            "100.51.198.in-addr.arpa.",
            "113.0.203.in-addr.arpa.",
            "255.255.255.255.in-addr.arpa.",
        ]
        .map(String::from),
    );
    as112.extend((64..=127).map(|octet| format!("{octet}.100.in-addr.arpa.")));
    as112.push(IP6_UNSPECIFIED.into());
    as112.push("d.f.ip6.arpa.".into());
    as112.extend(["8", "9", "a", "b"].map(|nibble| format!("{nibble}.e.f.ip6.arpa.")));
    as112.push("8.b.d.0.1.0.0.2.ip6.arpa.".into());
    zones.extend(as112.iter().map(|name| empty(name)));
    zones
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lan_zones_can_be_unblocked() {
        let all = default_zones(false);
        let unblocked = default_zones(true);
        assert_eq!(unblocked.len(), 6);
        assert_eq!(all.len(), 6 + 2 + 16 + 7 + 64 + 1 + 1 + 4 + 1);
        assert!(all.iter().any(|zone| zone.name == "10.in-addr.arpa."));
        assert!(
            all.iter().all(|zone| zone.records.iter().all(|record| record.parse::<signpost_wire::RecordBuf>().is_ok()))
        );
    }
}
