//! The hash of the tables whose keys clients choose: the answer cache and
//! the questions in flight (the names in them are whatever a client asks).
//!
//! SipHash-1-3 (std's `RandomState`) cost about 200 instructions per cache
//! hit on a 20-byte key, more than the copy of the answer. foldhash is a
//! few multiplies per 16 bytes; keyed with secrets it makes it
//! impractical to compute colliding names offline, which is what the
//! tables need: the hash values never leave the process (no iteration
//! order, no hash is ever sent), and every table is keyed on its own.
//! Unlike foldhash's own `RandomState`, whose global seed comes from
//! addresses and the clock, both seeds here come from the operating
//! system's randomness (through `rand`).

use std::sync::OnceLock;

use foldhash::SharedSeed;
use foldhash::quality::SeedableRandomState;

/// A freshly keyed hasher builder for one table.
pub(crate) fn keyed() -> SeedableRandomState {
    static SHARED: OnceLock<SharedSeed> = OnceLock::new();
    let shared = SHARED.get_or_init(|| SharedSeed::from_u64(rand::random()));
    SeedableRandomState::with_seed(rand::random(), shared)
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::keyed;

    #[test]
    fn each_table_gets_its_own_key() {
        let name = b"\x07example\x03com\x00";
        let first = keyed().hash_one(name);
        let second = keyed().hash_one(name);
        assert_ne!(first, second, "two tables hashed a name alike");
        let table = keyed();
        assert_eq!(table.hash_one(name), table.hash_one(name));
    }
}
