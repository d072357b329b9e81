//! Istio's automatic address allocation for ServiceEntry hosts without
//! addresses, in both of istiod's generations, so a host table can give
//! the addresses a mesh's sidecars would.
//!
//! - [`IstioAllocator::Sequential`]: istiod 1.8 to 1.19
//!   (`pilot/pkg/serviceregistry/serviceentry/servicediscovery.go`,
//!   `autoAllocateIPs`): services in istiod's order get 240.240.0.1,
//!   240.240.0.2, ..., skipping addresses whose last octet would be 0 (the
//!   counter jumps over multiples of 255, so 255 is never reached either).
//!   Istio's "DNS Proxying" document shows this one: its single
//!   ServiceEntry `auto.internal` gets 240.240.0.1. IPv4 only.
//! - [`IstioAllocator::Hashed`]: istiod 1.20 on (`autoallocate.go`, before
//!   the IP auto-allocation controller): each service's slot is the FNV-32a
//!   hash of `namespace/hostname` modulo 256·254 slots, collisions moved by
//!   double hashing with 65011 (the largest prime below the slot count);
//!   then the occupied slots, in slot order, get 240.240.x/255.x%255 with
//!   the same skip, and 2001:2::f0f0:… for IPv6 (RFC 5180's benchmarking
//!   range, written as istiod does: the two octets in hex, concatenated
//!   without padding).
//!
//! Services with an address, wildcard hosts and resolution NONE get none.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Which istiod allocator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IstioAllocator {
    /// istiod 1.8–1.19: in order (the DNS Proxying document's example).
    #[default]
    Sequential,
    /// istiod 1.20 on: by FNV-32a hash of `namespace/hostname`.
    Hashed,
}

/// A service as the allocator sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IstioService {
    /// The ServiceEntry's namespace.
    pub namespace: String,
    /// One host of it.
    pub hostname: String,
    /// Whether it may get an address: no `addresses`, not a wildcard host,
    /// resolution not NONE.
    pub allocatable: bool,
}

/// Addresses given to a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IstioAddresses {
    /// In 240.240.0.0/16.
    pub v4: Ipv4Addr,
    /// In 2001:2::/48 (the hashed allocator only).
    pub v6: Option<Ipv6Addr>,
}

/// Slots of the hashed allocator: 256·254.
const HASHED_SLOTS: u32 = 256 * 254;
/// The largest prime below the slot count (istiod's constant).
const HASHED_PRIME: u32 = 65_011;
/// The sequential allocator's limit: 255·255.
const SEQUENTIAL_LIMIT: u32 = 255 * 255;

impl IstioAllocator {
    /// The addresses of each service, in the order given (`None`: not allocatable, or out of addresses).
    pub fn allocate(self, services: &[IstioService]) -> Vec<Option<IstioAddresses>> {
        match self {
            Self::Sequential => sequential(services),
            Self::Hashed => hashed(services),
        }
    }
}

fn octets(x: u32) -> (u8, u8) {
    (u8::try_from(x / 255).unwrap_or(u8::MAX), u8::try_from(x % 255).unwrap_or(0))
}

fn sequential(services: &[IstioService]) -> Vec<Option<IstioAddresses>> {
    let mut x = 0u32;
    let mut out = Vec::with_capacity(services.len());
    for service in services {
        if !service.allocatable {
            out.push(None);
            continue;
        }
        x += 1;
        if x.is_multiple_of(255) {
            x += 1;
        }
        if x >= SEQUENTIAL_LIMIT {
            out.push(None);
            continue;
        }
        let (third, fourth) = octets(x);
        out.push(Some(IstioAddresses { v4: Ipv4Addr::new(240, 240, third, fourth), v6: None }));
    }
    out
}

/// FNV-1a, 32 bits.
pub(crate) fn fnv32a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |hash, byte| (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193))
}

fn hashed(services: &[IstioService]) -> Vec<Option<IstioAddresses>> {
    // Slot -> index into `services`.
    let mut slots: Vec<Option<usize>> = vec![None; HASHED_SLOTS as usize];
    let mut placed = 0u32;
    for (index, service) in services.iter().enumerate() {
        if !service.allocatable {
            continue;
        }
        if placed >= HASHED_SLOTS {
            break;
        }
        let key = format!("{}/{}", service.namespace, service.hostname);
        let hash = fnv32a(key.as_bytes());
        let first = hash % HASHED_SLOTS;
        // istiod probes without bound; a probe sequence can cycle without
        // finding a free slot, so this one gives up after as many probes as slots.
        let free = |slot: u32| slots.get(slot as usize).is_some_and(Option::is_none);
        let slot = if free(first) {
            Some(first)
        } else {
            let step = HASHED_PRIME - (hash % HASHED_PRIME);
            (1..=HASHED_SLOTS)
                .map(|probe| hash.wrapping_add(probe.wrapping_mul(step)) % (HASHED_SLOTS - 1))
                .find(|slot| free(*slot))
        };
        if let Some(entry) = slot.and_then(|slot| slots.get_mut(slot as usize)) {
            *entry = Some(index);
        }
        placed += 1;
    }
    let mut out = vec![None; services.len()];
    let mut by_key: std::collections::HashMap<String, (u8, u8)> = std::collections::HashMap::new();
    let mut x = 0u32;
    for index in slots.into_iter() {
        x += 1;
        let Some(index) = index else { continue };
        let Some(service) = services.get(index) else { continue };
        if x.is_multiple_of(255) {
            x += 1;
        }
        let key = format!("{}/{}", service.namespace, service.hostname);
        let (third, fourth) = *by_key.entry(key).or_insert_with(|| octets(x));
        let v6_last = if third == 0 { format!("{fourth:x}") } else { format!("{third:x}{fourth:x}") };
        let v6 = format!("2001:2::f0f0:{v6_last}").parse().ok();
        if let Some(slot) = out.get_mut(index) {
            *slot = Some(IstioAddresses { v4: Ipv4Addr::new(240, 240, third, fourth), v6 });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(namespace: &str, hostname: &str) -> IstioService {
        IstioService { namespace: namespace.into(), hostname: hostname.into(), allocatable: true }
    }

    #[test]
    fn the_dns_proxying_documents_example_gets_240_240_0_1() {
        let services = [service("default", "auto.internal")];
        let addresses = IstioAllocator::Sequential.allocate(&services);
        assert_eq!(addresses[0].map(|a| a.v4), Some(Ipv4Addr::new(240, 240, 0, 1)));
        assert_eq!(IstioAllocator::default(), IstioAllocator::Sequential);
    }

    #[test]
    fn sequential_skips_last_octet_zero_and_non_allocatable_services() {
        let mut services: Vec<IstioService> = (0..300).map(|i| service("ns", &format!("s{i}.internal"))).collect();
        services[1].allocatable = false;
        let addresses = IstioAllocator::Sequential.allocate(&services);
        assert_eq!(addresses[0].map(|a| a.v4), Some(Ipv4Addr::new(240, 240, 0, 1)));
        assert_eq!(addresses[1], None);
        assert_eq!(addresses[2].map(|a| a.v4), Some(Ipv4Addr::new(240, 240, 0, 2)));
        // The 254th allocatable service is 240.240.0.254, the next 240.240.1.1.
        assert_eq!(addresses[254].map(|a| a.v4), Some(Ipv4Addr::new(240, 240, 0, 254)));
        assert_eq!(addresses[255].map(|a| a.v4), Some(Ipv4Addr::new(240, 240, 1, 1)));
    }

    #[test]
    fn fnv32a_matches_the_published_vectors() {
        assert_eq!(fnv32a(b""), 0x811c_9dc5);
        assert_eq!(fnv32a(b"a"), 0xe40c_292c);
        assert_eq!(fnv32a(b"foobar"), 0xbf9c_f968);
    }
}
