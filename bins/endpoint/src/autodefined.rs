//! Route 53 Resolver's autodefined rules, as zones in the VPC views:
//! `localhost` and the locally served reverse zones (RFC 6303, with the
//! RFC 1918 and RFC 6598 space; signpost-rules' `locally_served`), the
//! reverse zones of each VPC's IPv4 blocks, and with `enableDnsHostnames`
//! the EC2 names (`ip-10-0-0-5.ec2.internal`) of the VPC's addresses and
//! their PTR records. The reverse zones follow the VPC's AutodefinedReverse
//! setting. A private hosted zone of the same name replaces one; a FORWARD
//! rule for the same or a more specific name wins, as AWS documents.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, OnceLock};

use ipnet::{IpNet, Ipv4Net};
use signpost_rules::locally_served::{DefaultZone, default_zones, is_reverse};
use signpost_rules::{Zone, ZoneMode, ZoneSpec};
use signpost_wire::{NameBuf, RecordBuf};

use crate::model::{EndpointConfig, VpcConfig};

/// Blocks larger than this many addresses get no EC2 names (each address
/// is a record of the VPC's zones).
pub const MAX_HOSTNAME_ADDRESSES: u32 = 4096;

/// The TTL of EC2 names and their PTR records.
const HOSTNAME_TTL: u32 = 60;

struct SharedZone {
    apex: NameBuf,
    zone: Arc<Zone>,
    mode: ZoneMode,
    reverse: bool,
}

/// The zones every VPC shares, built once.
fn shared_zones() -> &'static [SharedZone] {
    static ZONES: OnceLock<Vec<SharedZone>> = OnceLock::new();
    ZONES.get_or_init(|| {
        default_zones(false)
            .into_iter()
            // AWS's autodefined rules cover localhost and reverse space, not
            // the special-use forward names (test, invalid, onion).
            .filter(|zone| zone.name == "localhost." || is_reverse(zone))
            .filter_map(|zone| build_shared(&zone))
            .collect()
    })
}

fn build_shared(zone: &DefaultZone) -> Option<SharedZone> {
    let apex: NameBuf = zone.name.parse().ok()?;
    let records: Vec<RecordBuf> = zone.records.iter().filter_map(|record| record.parse().ok()).collect();
    let built = Zone::from_records(apex.clone(), records).ok()?;
    Some(SharedZone {
        apex,
        zone: Arc::new(built),
        mode: if zone.redirect { ZoneMode::Redirect } else { ZoneMode::Authoritative },
        reverse: is_reverse(zone),
    })
}

/// The EC2 host name of `address` in `region`.
pub fn ec2_hostname(address: Ipv4Addr, region: &str) -> String {
    let [a, b, c, d] = address.octets();
    if region == "us-east-1" {
        format!("ip-{a}-{b}-{c}-{d}.ec2.internal.")
    } else {
        format!("ip-{a}-{b}-{c}-{d}.{region}.compute.internal.")
    }
}

/// The zone holding EC2 names in `region`.
fn hostname_zone(region: &str) -> String {
    if region == "us-east-1" { "ec2.internal.".to_string() } else { format!("{region}.compute.internal.") }
}

/// The reverse zones (octet-aligned) covering an IPv4 block: a /26 gets
/// its /24's zone, a /20 sixteen /24 zones.
fn reverse_zones(block: Ipv4Net) -> Vec<Ipv4Net> {
    let aligned = (u32::from(block.prefix_len()).div_ceil(8) * 8).clamp(8, 24) as u8;
    if aligned <= block.prefix_len() {
        return Ipv4Net::new(block.network(), aligned).map(|net| vec![net.trunc()]).unwrap_or_default();
    }
    block.subnets(aligned).map(|subnets| subnets.take(256).collect()).unwrap_or_default()
}

fn reverse_name(net: Ipv4Net) -> String {
    let octets = net.network().octets();
    let count = usize::from(net.prefix_len() / 8);
    let mut labels: Vec<String> = octets.iter().take(count).map(u8::to_string).collect();
    labels.reverse();
    format!("{}.in-addr.arpa.", labels.join("."))
}

fn ptr_name(address: Ipv4Addr) -> String {
    let [a, b, c, d] = address.octets();
    format!("{d}.{c}.{b}.{a}.in-addr.arpa.")
}

/// An autodefined zone of one VPC (none when its records do not make a zone).
fn vpc_zone(vpc: &str, apex: NameBuf, records: Vec<RecordBuf>) -> Option<ZoneSpec> {
    let id = format!("autodefined/{vpc}/{apex}");
    let zone = Zone::from_records(apex, records).ok()?;
    Some(ZoneSpec { id, zone: Arc::new(zone), views: vec![vpc.to_string()], mode: ZoneMode::Authoritative })
}

impl EndpointConfig {
    /// The autodefined zones of every VPC, each visible in the VPCs that
    /// have no private hosted zone of its name.
    pub(crate) fn autodefined_zones(&self) -> Vec<ZoneSpec> {
        let private: HashSet<(String, &str)> = self
            .private_hosted_zones
            .iter()
            .flat_map(|zone| {
                let apex = zone.name.trim_end_matches('.').to_ascii_lowercase() + ".";
                zone.vpcs.iter().map(move |association| (apex.clone(), association.vpc.as_str()))
            })
            .collect();
        let replaced = |apex: &NameBuf, vpc: &str| private.contains(&(apex.to_string().to_ascii_lowercase(), vpc));
        let mut specs = Vec::new();
        for shared in shared_zones() {
            let views: Vec<String> = self
                .vpcs
                .iter()
                .filter(|vpc| !shared.reverse || autodefined_reverse(vpc))
                .filter(|vpc| !replaced(&shared.apex, &vpc.id))
                .map(|vpc| vpc.id.clone())
                .collect();
            // No views would mean the default view: leave the zone out.
            if !views.is_empty() {
                specs.push(ZoneSpec {
                    id: format!("autodefined/{}", shared.apex),
                    zone: shared.zone.clone(),
                    views,
                    mode: shared.mode,
                });
            }
        }
        for vpc in &self.vpcs {
            let hostnames = vpc.dns_hostnames.unwrap_or(false);
            let blocks: Vec<Ipv4Net> = vpc
                .cidrs
                .iter()
                .filter_map(|cidr| match cidr {
                    IpNet::V4(block) => Some(*block),
                    IpNet::V6(_) => None,
                })
                .collect();
            let named = |block: &Ipv4Net| {
                hostnames && 1u64 << (32 - u32::from(block.prefix_len())) <= u64::from(MAX_HOSTNAME_ADDRESSES)
            };
            if autodefined_reverse(vpc) {
                for block in &blocks {
                    for zone_net in reverse_zones(*block) {
                        let Ok(apex) = reverse_name(zone_net).parse::<NameBuf>() else { continue };
                        if replaced(&apex, &vpc.id) {
                            continue;
                        }
                        let mut records = Vec::new();
                        if named(block) {
                            for address in block.hosts().filter(|address| zone_net.contains(address)) {
                                let text = format!(
                                    "{} {HOSTNAME_TTL} IN PTR {}",
                                    ptr_name(address),
                                    ec2_hostname(address, &self.region)
                                );
                                records.extend(text.parse::<RecordBuf>().ok());
                            }
                        }
                        specs.extend(vpc_zone(&vpc.id, apex, records));
                    }
                }
            }
            if hostnames {
                let Ok(apex) = hostname_zone(&self.region).parse::<NameBuf>() else { continue };
                if replaced(&apex, &vpc.id) {
                    continue;
                }
                let records: Vec<RecordBuf> = blocks
                    .iter()
                    .filter(|block| named(block))
                    .flat_map(|block| block.hosts())
                    .filter_map(|address| {
                        format!("{} {HOSTNAME_TTL} IN A {address}", ec2_hostname(address, &self.region)).parse().ok()
                    })
                    .collect();
                specs.extend(vpc_zone(&vpc.id, apex, records));
            }
        }
        specs
    }
}

/// The VPC's AutodefinedReverse setting (on unless turned off).
pub fn autodefined_reverse(vpc: &VpcConfig) -> bool {
    vpc.autodefined_reverse.unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_get_octet_aligned_reverse_zones() {
        let names = |text: &str| reverse_zones(text.parse().unwrap()).into_iter().map(reverse_name).collect::<Vec<_>>();
        assert_eq!(names("10.1.2.0/24"), ["2.1.10.in-addr.arpa."]);
        assert_eq!(names("10.1.2.64/26"), ["2.1.10.in-addr.arpa."]);
        assert_eq!(names("10.1.0.0/16"), ["1.10.in-addr.arpa."]);
        assert_eq!(names("10.1.0.0/23"), ["0.1.10.in-addr.arpa.", "1.1.10.in-addr.arpa."]);
        assert_eq!(names("10.0.0.0/8"), ["10.in-addr.arpa."]);
    }

    #[test]
    fn ec2_names_follow_the_region() {
        let address = Ipv4Addr::new(10, 0, 0, 5);
        assert_eq!(ec2_hostname(address, "us-east-1"), "ip-10-0-0-5.ec2.internal.");
        assert_eq!(ec2_hostname(address, "eu-west-1"), "ip-10-0-0-5.eu-west-1.compute.internal.");
        assert_eq!(ptr_name(address), "5.0.0.10.in-addr.arpa.");
    }

    #[test]
    fn the_shared_zones_hold_localhost_and_private_reverse_space_only() {
        let apexes: Vec<String> = shared_zones().iter().map(|zone| zone.apex.to_string()).collect();
        assert!(apexes.contains(&"localhost.".to_string()));
        assert!(apexes.contains(&"10.in-addr.arpa.".to_string()));
        assert!(apexes.contains(&"64.100.in-addr.arpa.".to_string()));
        assert!(apexes.contains(&"127.in-addr.arpa.".to_string()));
        assert!(!apexes.contains(&"test.".to_string()));
    }
}
