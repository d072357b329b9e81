//! SOA serial numbers and their arithmetic (RFC 1982).

use core::cmp::Ordering;
use core::fmt;

/// An SOA serial number, compared as RFC 1982 §3.2 defines for
/// `SERIAL_BITS = 32`: `a < b` when `b` is ahead of `a` by less than 2^31,
/// wrapping around. Two serials exactly 2^31 apart are not comparable
/// (`partial_cmp` gives `None`), so neither is newer.
///
/// ```
/// use signpost_wire::Serial;
///
/// assert!(Serial(1) < Serial(2));
/// assert!(Serial(u32::MAX) < Serial(0)); // wrapped around
/// assert!(Serial(0).partial_cmp(&Serial(1 << 31)).is_none());
/// assert_eq!(Serial(u32::MAX).checked_add(2), Some(Serial(1)));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Serial(pub u32);

/// The largest increment RFC 1982 §3.1 allows in one addition: 2^31 - 1.
pub const MAX_SERIAL_INCREMENT: u32 = (1 << 31) - 1;

impl Serial {
    /// This serial plus `increment` modulo 2^32 (RFC 1982 §3.1); `None` when
    /// the increment is larger than 2^31 - 1, which the arithmetic leaves undefined.
    #[must_use]
    pub fn checked_add(self, increment: u32) -> Option<Self> {
        (increment <= MAX_SERIAL_INCREMENT).then(|| Self(self.0.wrapping_add(increment)))
    }

    /// Whether `self` is strictly newer than `other`.
    pub fn is_newer_than(self, other: Self) -> bool {
        self.partial_cmp(&other) == Some(Ordering::Greater)
    }
}

impl PartialOrd for Serial {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        let ahead = other.0.wrapping_sub(self.0);
        match ahead {
            0 => Some(Ordering::Equal),
            1..=MAX_SERIAL_INCREMENT => Some(Ordering::Less),
            0x8000_0000 => None,
            _ => Some(Ordering::Greater),
        }
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<u32> for Serial {
    fn from(value: u32) -> Self {
        Self(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc1982_examples() {
        // RFC 1982 §5.2 with SERIAL_BITS = 8 scaled up: the same relations hold at 32 bits.
        assert!(Serial(0) < Serial(1));
        assert!(Serial(0) < Serial(44));
        assert!(Serial(0) < Serial(MAX_SERIAL_INCREMENT));
        assert!(Serial(1) < Serial(1 << 31));
        assert!(Serial(1 << 31) > Serial(1));
        assert!(Serial(0xffff_fff0) < Serial(5));
        assert!(Serial(5) > Serial(0xffff_fff0));
        assert_eq!(Serial(7).partial_cmp(&Serial(7)), Some(Ordering::Equal));
        assert_eq!(Serial(7).partial_cmp(&Serial(7 + (1 << 31))), None);
        assert!(!Serial(7).is_newer_than(Serial(7 + (1 << 31))));
        assert!(!Serial(7 + (1 << 31)).is_newer_than(Serial(7)));
        assert_eq!(Serial(10).checked_add(1 << 31), None);
        assert_eq!(
            Serial(10).checked_add(MAX_SERIAL_INCREMENT),
            Some(Serial(10u32.wrapping_add(MAX_SERIAL_INCREMENT)))
        );
    }

    proptest! {
        #[test]
        fn adding_makes_newer(start in any::<u32>(), increment in 1..=MAX_SERIAL_INCREMENT) {
            let later = Serial(start).checked_add(increment).unwrap();
            prop_assert!(later.is_newer_than(Serial(start)));
            prop_assert!(Serial(start) < later);
            prop_assert!(!Serial(start).is_newer_than(later));
        }

        #[test]
        fn comparison_is_antisymmetric(a in any::<u32>(), b in any::<u32>()) {
            let forward = Serial(a).partial_cmp(&Serial(b));
            let backward = Serial(b).partial_cmp(&Serial(a));
            prop_assert_eq!(forward.map(Ordering::reverse), backward);
        }
    }
}
