//! resolv.conf: the system's nameservers, as glibc reads them.

use std::net::IpAddr;
use std::path::Path;

use signpost_wire::NameBuf;

use crate::error::{Error, Location};

/// Nameservers glibc's resolver reads from resolv.conf (`MAXNS`); it ignores the rest.
pub const MAX_NAMESERVERS: usize = 3;

/// What a resolv.conf says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvConf {
    /// Every `nameserver` line's address, in order, with its line.
    pub nameservers: Vec<(IpAddr, Location)>,
    /// The search list (`search`, or `domain`, whichever comes last).
    pub search: Vec<NameBuf>,
    /// `options ndots:N`.
    pub ndots: Option<u8>,
}

impl ResolvConf {
    /// Read resolv.conf text. Unknown keywords and malformed options are
    /// ignored, as the C library does; a `nameserver` that is not an IP
    /// address is an error naming its line.
    pub fn parse(text: &str, file: Option<&Path>) -> Result<Self, Error> {
        let mut conf = Self::default();
        for (index, line) in text.lines().enumerate() {
            let content = line.split(['#', ';']).next().unwrap_or_default();
            let mut fields = content.split_ascii_whitespace();
            let at = |column: usize| Location {
                file: file.map(Path::to_path_buf),
                line: Some(index + 1),
                column: Some(column + 1),
                field: None,
            };
            match fields.next() {
                Some("nameserver") => {
                    let Some(text) = fields.next() else { continue };
                    let column = text.as_ptr() as usize - line.as_ptr() as usize;
                    // A zone index (`fe80::1%eth0`) is for the socket, not the list.
                    let address = text.split('%').next().unwrap_or_default();
                    let address: IpAddr = address.parse().map_err(|_| Error::InvalidAddress {
                        at: at(column),
                        text: text.to_owned(),
                        what: "nameserver address",
                    })?;
                    conf.nameservers.push((address, at(0).with_field("nameserver")));
                }
                Some("search" | "domain") => {
                    conf.search = fields.filter_map(|domain| domain.parse().ok()).collect();
                }
                Some("options") => {
                    for option in fields {
                        if let Some(value) = option.strip_prefix("ndots:") {
                            conf.ndots = value.parse::<u8>().ok().map(|n| n.min(15));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(conf)
    }

    /// Read a resolv.conf file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|error| Error::io(Location::default(), path, error))?;
        Self::parse(&text, Some(path))
    }

    /// The nameservers the C library uses: the first three.
    pub fn effective_nameservers(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.nameservers.iter().take(MAX_NAMESERVERS).map(|(address, _)| *address)
    }

    /// An error naming the first nameserver past the limit, if there is one
    /// (for configurations that must not silently lose servers).
    pub fn check_limit(&self) -> Result<(), Error> {
        match self.nameservers.get(MAX_NAMESERVERS) {
            Some((_, at)) => {
                Err(Error::TooManyNameservers { at: at.clone(), count: self.nameservers.len(), limit: MAX_NAMESERVERS })
            }
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_glibc_reads() {
        let text = "# generated\nnameserver 10.0.0.2\nnameserver fe80::1%eth0 ; link-local\nsearch corp.example example\noptions ndots:2 edns0\nnameserver 10.0.0.3\nnameserver 10.0.0.4\n";
        let conf = ResolvConf::parse(text, Some(Path::new("/etc/resolv.conf"))).expect("valid");
        assert_eq!(conf.nameservers.len(), 4);
        assert_eq!(conf.effective_nameservers().count(), 3);
        assert_eq!(conf.search.len(), 2);
        assert_eq!(conf.ndots, Some(2));
        let error = conf.check_limit().expect_err("four is too many");
        assert!(matches!(error, Error::TooManyNameservers { count: 4, limit: 3, .. }));
        assert_eq!(error.location().line, Some(7));
        assert_eq!(
            error.to_string(),
            "/etc/resolv.conf:7:1, field nameserver: 4 nameservers given, but resolv.conf allows at most 3"
        );
        let bad = ResolvConf::parse("nameserver 10.0.0\n", None).expect_err("bad address");
        assert_eq!(bad.location().column, Some(12));
    }
}
