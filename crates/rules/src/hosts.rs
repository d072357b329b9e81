//! Host tables (names to addresses, like /etc/hosts or Istio's ServiceEntry
//! hosts) and automatic address allocation for entries without an address.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use signpost_wire::NameBuf;

use crate::error::{Error, Location};

/// The IPv4 range automatic addresses come from unless configured: Istio's.
pub const DEFAULT_IPV4_RANGE: Ipv4Net = match Ipv4Net::new(Ipv4Addr::new(240, 240, 0, 0), 16) {
    Ok(net) => net,
    Err(_) => panic!("valid constant"),
};

/// One name of a host table and its addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostEntry {
    /// The name.
    pub name: NameBuf,
    /// Its addresses; empty means "allocate one automatically".
    pub addresses: Vec<IpAddr>,
}

impl HostEntry {
    /// An entry with these addresses (none: allocate automatically).
    pub fn new(name: NameBuf, addresses: impl IntoIterator<Item = IpAddr>) -> Self {
        Self { name, addresses: addresses.into_iter().collect() }
    }
}

/// Read /etc/hosts text: `address name [alias...]` per line, `#` comments.
/// A name on several lines gets every address given for it, in order.
pub fn parse_hosts(text: &str, file: Option<&Path>) -> Result<Vec<HostEntry>, Error> {
    let mut entries: Vec<HostEntry> = Vec::new();
    let mut positions: HashMap<NameBuf, usize> = HashMap::new();
    for (line_index, line) in text.lines().enumerate() {
        let content = line.split('#').next().unwrap_or_default();
        let mut fields = content.split_ascii_whitespace();
        let Some(address_text) = fields.next() else { continue };
        let at = |field: &str| {
            let column = field.as_ptr() as usize - line.as_ptr() as usize;
            Location {
                file: file.map(Path::to_path_buf),
                line: Some(line_index + 1),
                column: Some(line.get(..column).map_or(0, |before| before.chars().count()) + 1),
                field: None,
            }
        };
        // A zone index (`fe80::1%eth0`) means nothing to DNS.
        let without_zone = address_text.split('%').next().unwrap_or_default();
        let address: IpAddr = without_zone.parse().map_err(|_| Error::InvalidAddress {
            at: at(address_text),
            text: address_text.to_owned(),
            what: "IP address",
        })?;
        let mut any_name = false;
        for name_text in fields {
            any_name = true;
            let name = absolute_name(name_text).map_err(|source| Error::InvalidName {
                at: at(name_text),
                text: name_text.to_owned(),
                source,
            })?;
            match positions.get(&name) {
                Some(&position) => {
                    if let Some(entry) = entries.get_mut(position)
                        && !entry.addresses.contains(&address)
                    {
                        entry.addresses.push(address);
                    }
                }
                None => {
                    positions.insert(name.clone(), entries.len());
                    entries.push(HostEntry { name, addresses: vec![address] });
                }
            }
        }
        if !any_name {
            return Err(Error::InvalidEntry { at: at(address_text), problem: "a hosts line needs at least one name" });
        }
    }
    Ok(entries)
}

/// Read an /etc/hosts format file.
pub fn load_hosts(path: &Path) -> Result<Vec<HostEntry>, Error> {
    let text = std::fs::read_to_string(path).map_err(|error| Error::io(Location::default(), path, error))?;
    parse_hosts(&text, Some(path))
}

/// A name in presentation form, taken as absolute whether or not it ends in a dot.
pub(crate) fn absolute_name(text: &str) -> Result<NameBuf, signpost_wire::Error> {
    text.parse::<NameBuf>()
}

/// Where automatic addresses come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocationRanges {
    /// The IPv4 range (default 240.240.0.0/16).
    pub ipv4: Ipv4Net,
    /// The IPv6 range; `None` gives no automatic IPv6 addresses.
    pub ipv6: Option<Ipv6Net>,
}

impl Default for AllocationRanges {
    fn default() -> Self {
        Self { ipv4: DEFAULT_IPV4_RANGE, ipv6: None }
    }
}

/// Automatic addresses by name: the result of an allocation, and the state
/// that keeps them stable across restarts when saved and loaded again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allocations {
    /// Lowercased name to its addresses.
    by_name: BTreeMap<NameBuf, Allocated>,
}

/// The automatic addresses of one name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Allocated {
    /// Its IPv4 address.
    pub v4: Option<Ipv4Addr>,
    /// Its IPv6 address, when an IPv6 range is configured.
    pub v6: Option<Ipv6Addr>,
}

impl Allocations {
    /// The addresses allocated to `name`.
    pub fn get(&self, name: &NameBuf) -> Option<Allocated> {
        self.by_name.get(&name.to_lowercase()).copied()
    }

    /// Every name and its addresses, in canonical name order.
    pub fn iter(&self) -> impl Iterator<Item = (&NameBuf, &Allocated)> {
        self.by_name.iter()
    }

    /// How many names have addresses.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether no name has an address.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The state file text: one `name address` line per address.
    pub fn to_text(&self) -> String {
        let mut out = String::from("# signpost automatic host addresses: name address\n");
        for (name, allocated) in &self.by_name {
            if let Some(v4) = allocated.v4 {
                out.push_str(&format!("{name} {v4}\n"));
            }
            if let Some(v6) = allocated.v6 {
                out.push_str(&format!("{name} {v6}\n"));
            }
        }
        out
    }

    /// Read state file text written by [`Allocations::to_text`].
    pub fn parse(text: &str, file: Option<&Path>) -> Result<Self, Error> {
        let mut by_name: BTreeMap<NameBuf, Allocated> = BTreeMap::new();
        for (line_index, line) in text.lines().enumerate() {
            let content = line.split('#').next().unwrap_or_default();
            let fields: Vec<&str> = content.split_ascii_whitespace().collect();
            if fields.is_empty() {
                continue;
            }
            let bad = || Error::InvalidAllocationState {
                at: Location { file: file.map(Path::to_path_buf), line: Some(line_index + 1), ..Location::default() },
            };
            let [name, address] = fields.as_slice() else { return Err(bad()) };
            let name = absolute_name(name).map_err(|_| bad())?.to_lowercase();
            let entry = by_name.entry(name).or_default();
            match address.parse::<IpAddr>().map_err(|_| bad())? {
                IpAddr::V4(v4) => entry.v4 = Some(v4),
                IpAddr::V6(v6) => entry.v6 = Some(v6),
            }
        }
        Ok(Self { by_name })
    }

    /// Read a state file; a missing file is an empty state.
    pub fn load(path: &Path) -> Result<Self, Error> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, Some(path)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(error) => Err(Error::io(Location::default(), path, error)),
        }
    }

    /// Write the state file (to a temporary file renamed into place).
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let mut temporary = PathBuf::from(path);
        temporary.as_mut_os_string().push(".tmp");
        std::fs::write(&temporary, self.to_text())
            .and_then(|()| std::fs::rename(&temporary, path))
            .map_err(|error| Error::io(Location::default(), path, error))
    }
}

/// Allocate addresses for `names` (lowercased, deduplicated by the caller's
/// order of first appearance; each with where it was configured).
///
/// Explicit addresses in `reserved` are never handed out. Names in `pinned`
/// (a loaded state) keep their address while it is in range and not
/// reserved. Every other name takes the first free address of its probe
/// sequence; when two names want the same address the one with the smaller
/// priority hash keeps it and the other moves on (a stable matching, so the
/// result depends only on the set of names, not their order).
pub(crate) fn allocate(
    names: &[(NameBuf, Location)],
    reserved: &[IpAddr],
    pinned: &Allocations,
    ranges: AllocationRanges,
) -> Result<Allocations, Error> {
    // Sorted and deduplicated, so nothing below depends on the caller's order.
    let mut sorted: Vec<(NameBuf, Location)> =
        names.iter().map(|(name, at)| (name.to_lowercase(), at.clone())).collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    sorted.dedup_by(|later, earlier| later.0 == earlier.0);
    let names = sorted.as_slice();
    let mut result: BTreeMap<NameBuf, Allocated> =
        names.iter().map(|(name, _)| (name.clone(), Allocated::default())).collect();
    let v4 = Family::v4(ranges.ipv4);
    let found = allocate_family(&v4, names, reserved, pinned, |allocated| allocated.v4.map(IpAddr::V4))?;
    for (name, offset) in found {
        if let (Some(entry), IpAddr::V4(address)) = (result.get_mut(&name), v4.address(offset)) {
            entry.v4 = Some(address);
        }
    }
    if let Some(range) = ranges.ipv6 {
        let v6 = Family::v6(range);
        let found = allocate_family(&v6, names, reserved, pinned, |allocated| allocated.v6.map(IpAddr::V6))?;
        for (name, offset) in found {
            if let (Some(entry), IpAddr::V6(address)) = (result.get_mut(&name), v6.address(offset)) {
                entry.v6 = Some(address);
            }
        }
    }
    Ok(Allocations { by_name: result })
}

/// One address range as offsets `first..first + size`.
struct Family {
    net: IpNet,
    base: u128,
    first: u128,
    size: u128,
    tag: u64,
}

impl Family {
    fn v4(net: Ipv4Net) -> Self {
        let base = u128::from(u32::from(net.network()));
        let total = 1u128 << (32 - u32::from(net.prefix_len()));
        // Skip the network and broadcast addresses where the range has them.
        let (first, size) = if total > 2 { (1, total - 2) } else { (0, total) };
        Self { net: IpNet::V4(net), base, first, size, tag: 4 }
    }

    fn v6(net: Ipv6Net) -> Self {
        let base = u128::from(net.network());
        let bits = 128 - u32::from(net.prefix_len());
        let total = if bits >= 128 { u128::MAX } else { 1u128 << bits };
        // Skip the subnet-router anycast address (offset 0).
        let (first, size) = if total > 1 { (1, total - 1) } else { (0, total) };
        Self { net: IpNet::V6(net), base, first, size, tag: 6 }
    }

    fn offset_of(&self, address: IpAddr) -> Option<u128> {
        if !self.net.contains(&address) {
            return None;
        }
        let value = match address {
            IpAddr::V4(v4) => u128::from(u32::from(v4)),
            IpAddr::V6(v6) => u128::from(v6),
        };
        let offset = value - self.base;
        (offset >= self.first && offset < self.first + self.size).then_some(offset)
    }

    fn address(&self, offset: u128) -> IpAddr {
        match self.net {
            IpNet::V4(_) => IpAddr::V4(Ipv4Addr::from(u32::try_from(self.base + offset).unwrap_or(0))),
            IpNet::V6(_) => IpAddr::V6(Ipv6Addr::from(self.base.wrapping_add(offset))),
        }
    }

    /// Probe `attempt` of a name: 32 hashed offsets, then a linear walk that
    /// covers the whole range.
    fn probe(&self, seed: u64, attempt: u128) -> u128 {
        const HASHED: u128 = 32;
        let hashed = |index: u128| {
            let mixed = splitmix64(seed ^ splitmix64(self.tag.wrapping_mul(1 << 32) ^ index as u64));
            let wide = u128::from(mixed) << 64 | u128::from(splitmix64(mixed));
            self.first + wide % self.size
        };
        if attempt < HASHED {
            return hashed(attempt);
        }
        let start = hashed(HASHED - 1) - self.first;
        self.first + (start + (attempt - HASHED + 1)) % self.size
    }
}

fn allocate_family(
    family: &Family,
    names: &[(NameBuf, Location)],
    reserved: &[IpAddr],
    pinned: &Allocations,
    pinned_address: impl Fn(&Allocated) -> Option<IpAddr>,
) -> Result<Vec<(NameBuf, u128)>, Error> {
    let exhausted = |at: &Location| Error::AllocationExhausted { at: at.clone(), range: family.net };
    let mut taken: HashMap<u128, Option<usize>> = HashMap::new();
    for address in reserved {
        if let Some(offset) = family.offset_of(*address) {
            taken.insert(offset, None);
        }
    }
    let mut owner: Vec<Option<u128>> = vec![None; names.len()];
    // Pinned names first (in name order: two pins on one address resolve the same way every time).
    for (index, (name, _)) in names.iter().enumerate() {
        let Some(address) = pinned.get(name).as_ref().and_then(&pinned_address) else { continue };
        let Some(offset) = family.offset_of(address) else { continue };
        if let std::collections::hash_map::Entry::Vacant(slot) = taken.entry(offset) {
            slot.insert(Some(usize::MAX));
            if let Some(own) = owner.get_mut(index) {
                *own = Some(offset);
            }
        }
    }
    let free = family.size.saturating_sub(taken.len() as u128);
    let wanted = owner.iter().filter(|own| own.is_none()).count() as u128;
    if wanted > free {
        let first_unplaced = owner.iter().position(Option::is_none).and_then(|index| names.get(index));
        return Err(exhausted(first_unplaced.map_or(&Location::default(), |(_, at)| at)));
    }
    let seeds: Vec<u64> = names.iter().map(|(name, _)| fnv1a(name.as_wire())).collect();
    let priority = |index: usize| (splitmix64(seeds.get(index).copied().unwrap_or(0) ^ 0xa5a5_a5a5_a5a5_a5a5), index);
    let mut attempts: Vec<u128> = vec![0; names.len()];
    let mut queue: Vec<usize> =
        (0..names.len()).filter(|&index| owner.get(index).is_some_and(Option::is_none)).collect();
    let limit = family.size.saturating_add(64);
    while let Some(index) = queue.pop() {
        let seed = seeds.get(index).copied().unwrap_or(0);
        loop {
            let attempt = attempts.get(index).copied().unwrap_or(0);
            if attempt >= limit {
                return Err(exhausted(names.get(index).map_or(&Location::default(), |(_, at)| at)));
            }
            if let Some(count) = attempts.get_mut(index) {
                *count += 1;
            }
            let offset = family.probe(seed, attempt);
            match taken.get(&offset).copied() {
                None => {
                    taken.insert(offset, Some(index));
                    if let Some(own) = owner.get_mut(index) {
                        *own = Some(offset);
                    }
                    break;
                }
                Some(Some(holder)) if holder != usize::MAX && priority(index) < priority(holder) => {
                    taken.insert(offset, Some(index));
                    if let Some(own) = owner.get_mut(index) {
                        *own = Some(offset);
                    }
                    if let Some(own) = owner.get_mut(holder) {
                        *own = None;
                    }
                    queue.push(holder);
                    break;
                }
                Some(_) => {}
            }
        }
    }
    Ok(names.iter().zip(owner).filter_map(|((name, _), offset)| Some((name.clone(), offset?))).collect())
}

/// FNV-1a, 64 bits: a hash that stays the same across Rust releases and platforms.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for &byte in bytes {
        hash ^= u64::from(byte.to_ascii_lowercase());
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The SplitMix64 finaliser.
fn splitmix64(mut value: u64) -> u64 {
    value = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::name;

    /// Host tables keep names in lower case.
    fn lower_name(text: &str) -> NameBuf {
        name(text).to_lowercase()
    }

    fn names(texts: &[&str]) -> Vec<(NameBuf, Location)> {
        texts.iter().map(|text| (lower_name(text), Location::default())).collect()
    }

    #[test]
    fn etc_hosts_format() {
        let text = "127.0.0.1 localhost\n::1 localhost ip6-localhost # both\n\n# comment\n10.0.0.5\tdb.internal db\nfe80::1%eth0 link.local\n";
        let entries = parse_hosts(text, None).expect("valid");
        let find = |n: &str| entries.iter().find(|e| e.name == lower_name(n)).expect("present");
        assert_eq!(find("localhost").addresses, ["127.0.0.1".parse::<IpAddr>().unwrap(), "::1".parse().unwrap()]);
        assert_eq!(find("ip6-localhost").addresses.len(), 1);
        assert_eq!(find("db").addresses, [IpAddr::from([10, 0, 0, 5])]);
        assert_eq!(find("link.local").addresses, ["fe80::1".parse::<IpAddr>().unwrap()]);
        let error = parse_hosts("10.0.0.1 ok\n10.0.0.300 bad\n", Some(Path::new("hosts"))).expect_err("bad address");
        assert_eq!(error.location(), &Location::in_file("hosts", 2, 1));
        let error = parse_hosts("10.0.0.1   a..b\n", None).expect_err("bad name");
        assert_eq!(error.location().column, Some(12));
        assert!(parse_hosts("10.0.0.1\n", None).is_err());
    }

    #[test]
    fn allocation_is_deterministic_collision_free_and_order_independent() {
        let list = names(&["a.svc", "b.svc", "c.svc", "d.svc", "e.svc"]);
        let ranges = AllocationRanges { ipv4: DEFAULT_IPV4_RANGE, ipv6: Some("fd00::/64".parse().unwrap()) };
        let first = allocate(&list, &[], &Allocations::default(), ranges).expect("room");
        let mut reversed = list.clone();
        reversed.reverse();
        assert_eq!(allocate(&reversed, &[], &Allocations::default(), ranges).expect("room"), first);
        let v4: std::collections::HashSet<_> = first.iter().map(|(_, a)| a.v4.expect("v4")).collect();
        assert_eq!(v4.len(), 5);
        for (_, allocated) in first.iter() {
            assert!(DEFAULT_IPV4_RANGE.contains(&allocated.v4.expect("v4")));
            assert!(allocated.v6.is_some());
        }
    }

    #[test]
    fn a_full_small_range_still_gives_every_name_a_distinct_address() {
        // A /29 has 6 usable addresses; one is reserved by an explicit entry.
        let ranges = AllocationRanges { ipv4: "10.9.0.0/29".parse().unwrap(), ipv6: None };
        let list = names(&["a", "b", "c", "d", "e"]);
        let reserved = [IpAddr::from([10, 9, 0, 3])];
        let result = allocate(&list, &reserved, &Allocations::default(), ranges).expect("exactly fits");
        let mut all: Vec<Ipv4Addr> = result.iter().map(|(_, a)| a.v4.expect("v4")).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 5);
        assert!(!all.contains(&Ipv4Addr::new(10, 9, 0, 3)));
        assert!(!all.contains(&Ipv4Addr::new(10, 9, 0, 0)) && !all.contains(&Ipv4Addr::new(10, 9, 0, 7)));
        let one_more = names(&["a", "b", "c", "d", "e", "f"]);
        assert!(matches!(
            allocate(&one_more, &reserved, &Allocations::default(), ranges),
            Err(Error::AllocationExhausted { .. })
        ));
    }

    #[test]
    fn pinned_state_keeps_addresses_when_names_are_added() {
        let ranges = AllocationRanges { ipv4: "10.9.0.0/28".parse().unwrap(), ipv6: None };
        let before = allocate(&names(&["a", "b", "c"]), &[], &Allocations::default(), ranges).expect("room");
        let state = Allocations::parse(&before.to_text(), None).expect("round trip");
        assert_eq!(state, before);
        let grown = names(&["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"]);
        let after = allocate(&grown, &[], &state, ranges).expect("room");
        for (name, allocated) in before.iter() {
            assert_eq!(after.get(name), Some(*allocated), "{name} moved");
        }
        assert!(Allocations::parse("a.svc. not-an-address\n", Some(Path::new("state"))).is_err());
    }
}
