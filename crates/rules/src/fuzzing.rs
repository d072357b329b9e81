//! Entry points for the fuzz targets in `fuzz/` (not a stable API).
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use signpost_wire::NameBuf;

use crate::{Source, Zone};

/// Parse a zone (origin `example.`, no `$INCLUDE`) from fuzz bytes; if it
/// parses, write it as a master file, read that back, and check the zone is
/// the same.
pub fn master_file(data: &[u8]) {
    let Ok(text) = core::str::from_utf8(data) else { return };
    let origin: NameBuf = "example.".parse().expect("valid origin");
    let Ok(zone) = Zone::parse_master_file(text, &origin, Source::memory()) else { return };
    let written = zone.to_master_file();
    let again = Zone::parse_master_file(&written, &origin, Source::memory())
        .unwrap_or_else(|error| panic!("written zone does not read back: {error}\n{written}"));
    assert_eq!(again, zone, "written zone reads back different\n{written}");
    let axfr: Vec<_> = zone.axfr().collect();
    assert_eq!(axfr.first(), axfr.last());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_do_not_panic() {
        master_file(b"$TTL 60\n@ SOA ns host 1 2 3 4 5\nwww A 192.0.2.1\n");
        master_file(b"garbage (");
        master_file(&[0xff, 0xfe]);
        master_file(include_bytes!("../../wire/tests/vectors/example.com.zone"));
    }
}
