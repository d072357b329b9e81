//! Istio's two address allocators checked against independent
//! implementations written here from the algorithms' descriptions (not from
//! the crate's code): the sequential one as "the n-th allocatable service
//! gets the n-th address of 240.240.0.0/16 whose last octet is 1 to 254",
//! the hashed one with its own FNV-1a (64-bit arithmetic, masked), a map of
//! taken slots and an explicit walk over the occupied slots.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use signpost_rules::{IstioAllocator, IstioService};

fn services(count: usize) -> Vec<IstioService> {
    (0..count)
        .map(|i| IstioService {
            namespace: ["default", "payments", "istio-system"][i % 3].to_owned(),
            hostname: format!("svc-{i}.example.internal"),
            allocatable: i % 7 != 3,
        })
        .collect()
}

fn fnv1a(text: &str) -> u32 {
    let mut hash: u64 = 2_166_136_261;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = (hash * 16_777_619) & 0xffff_ffff;
    }
    hash as u32
}

#[test]
fn sequential_gives_the_nth_address_with_last_octet_1_to_254() {
    let services = services(700);
    let got = IstioAllocator::Sequential.allocate(&services);
    let mut expected =
        (0u8..=255).flat_map(|third| (1u8..=254).map(move |fourth| Ipv4Addr::new(240, 240, third, fourth)));
    for (service, addresses) in services.iter().zip(&got) {
        if service.allocatable {
            assert_eq!(addresses.map(|a| a.v4), expected.next(), "{}", service.hostname);
            assert_eq!(addresses.and_then(|a| a.v6), None);
        } else {
            assert_eq!(*addresses, None);
        }
    }
}

#[test]
fn hashed_matches_an_independent_double_hashing_implementation() {
    const SLOTS: u32 = 65_024;
    const PRIME: u32 = 65_011;
    // Enough services that collisions happen (and a duplicate key, which shares its address).
    let mut services = services(3_000);
    services.push(services[0].clone());
    let mut taken: BTreeMap<u32, usize> = BTreeMap::new();
    for (index, service) in services.iter().enumerate().filter(|(_, service)| service.allocatable) {
        let hash = fnv1a(&format!("{}/{}", service.namespace, service.hostname));
        let mut slot = hash % SLOTS;
        let mut probe = 1u64;
        while taken.contains_key(&slot) {
            let step = u64::from(PRIME - hash % PRIME);
            slot = ((u64::from(hash) + probe * step) % u64::from(SLOTS - 1)) as u32;
            probe += 1;
        }
        taken.insert(slot, index);
    }
    // Walk every slot in order: the counter moves one per slot, and once more
    // for an occupied slot that would land on a last octet of 0.
    let mut expected: BTreeMap<usize, (Ipv4Addr, Ipv6Addr)> = BTreeMap::new();
    let mut first_of_key: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    let mut counter = 0u32;
    for slot in 0..SLOTS {
        counter += 1;
        let Some(&index) = taken.get(&slot) else { continue };
        if counter.is_multiple_of(255) {
            counter += 1;
        }
        let key = format!("{}/{}", services[index].namespace, services[index].hostname);
        let (third, fourth) = *first_of_key.entry(key).or_insert((counter / 255, counter % 255));
        let v6_tail = if third == 0 { format!("{fourth:x}") } else { format!("{third:x}{fourth:x}") };
        expected.insert(
            index,
            (Ipv4Addr::new(240, 240, third as u8, fourth as u8), format!("2001:2::f0f0:{v6_tail}").parse().unwrap()),
        );
    }
    let got = IstioAllocator::Hashed.allocate(&services);
    let mut collisions = 0;
    for (index, service) in services.iter().enumerate() {
        let hash = fnv1a(&format!("{}/{}", service.namespace, service.hostname));
        if service.allocatable && taken.get(&(hash % SLOTS)) != Some(&index) {
            collisions += 1;
        }
        let want = expected.get(&index).copied();
        assert_eq!(got[index].map(|a| (a.v4, a.v6.unwrap())), want, "{}", service.hostname);
    }
    assert!(collisions > 0, "the sample must exercise double hashing");
    // The duplicate key gets the first one's address.
    assert_eq!(got[0], got[services.len() - 1]);
}
