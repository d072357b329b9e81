//! Injected faults and query recording, for tests of code that depends on DNS.
//!
//! Both are off (one relaxed atomic load) unless a test turns them on through
//! the server handle.

use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use signpost_wire::{NameBuf, ToName};

/// What to do to a matching query.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FaultAction {
    /// Never answer.
    Drop,
    /// Answer after a delay.
    Delay(Duration),
    /// Answer SERVFAIL.
    ServFail,
    /// Answer UDP queries with TC set and no records; clients retry over
    /// TCP, where the query is answered as usual.
    Truncate,
    /// Close a TCP/DoT connection abruptly (over UDP: drop).
    TcpReset,
}

/// Where a fault applies.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum FaultTarget {
    /// Questions for this name and every name below it.
    Name(NameBuf),
    /// Queries forwarded to this upstream group.
    UpstreamGroup(String),
}

/// The faults in force.
#[derive(Default)]
pub(crate) struct Faults {
    active: AtomicBool,
    faults: RwLock<Vec<(FaultTarget, FaultAction)>>,
}

impl Faults {
    pub(crate) fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    pub(crate) fn add(&self, target: FaultTarget, action: FaultAction) {
        if let Ok(mut faults) = self.faults.write() {
            faults.retain(|(existing, _)| *existing != target);
            faults.push((target, action));
            self.active.store(true, Ordering::Relaxed);
        }
    }

    pub(crate) fn clear(&self) {
        if let Ok(mut faults) = self.faults.write() {
            faults.clear();
            self.active.store(false, Ordering::Relaxed);
        }
    }

    /// The fault for a question name (the most specific matching name wins).
    pub(crate) fn for_name(&self, name: &impl ToName) -> Option<FaultAction> {
        let faults = self.faults.read().ok()?;
        faults
            .iter()
            .filter_map(|(target, action)| match target {
                FaultTarget::Name(fault_name) => {
                    let mut scratch = [0u8; signpost_wire::MAX_NAME_LEN];
                    let flat = name.flat(&mut scratch);
                    signpost_wire::flat_is_subdomain(flat, fault_name.as_wire())
                        .then_some((fault_name.wire_len(), *action))
                }
                FaultTarget::UpstreamGroup(_) => None,
            })
            .max_by_key(|(len, _)| *len)
            .map(|(_, action)| action)
    }

    pub(crate) fn for_group(&self, group: &str) -> Option<FaultAction> {
        if !self.is_active() {
            return None;
        }
        let faults = self.faults.read().ok()?;
        faults.iter().find_map(|(target, action)| match target {
            FaultTarget::UpstreamGroup(name) if name == group => Some(*action),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_specific_name_fault_applies() {
        let faults = Faults::default();
        assert!(!faults.is_active());
        faults.add(FaultTarget::Name("example.com".parse().expect("name")), FaultAction::ServFail);
        faults.add(
            FaultTarget::Name("slow.example.com".parse().expect("name")),
            FaultAction::Delay(Duration::from_millis(5)),
        );
        faults.add(FaultTarget::UpstreamGroup("corp".into()), FaultAction::Drop);
        let name: NameBuf = "a.slow.example.com".parse().expect("name");
        assert_eq!(faults.for_name(&name), Some(FaultAction::Delay(Duration::from_millis(5))));
        let other: NameBuf = "www.example.com".parse().expect("name");
        assert_eq!(faults.for_name(&other), Some(FaultAction::ServFail));
        let unrelated: NameBuf = "example.org".parse().expect("name");
        assert_eq!(faults.for_name(&unrelated), None);
        assert_eq!(faults.for_group("corp"), Some(FaultAction::Drop));
        faults.clear();
        assert!(!faults.is_active());
    }
}
