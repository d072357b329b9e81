//! EDNS(0) (RFC 6891): the OPT record's header fields and its options.

use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::Error;
use crate::iana::{ExtendedErrorCode, OptionCode, RecordType};
use crate::message::Record;
use crate::svcb::be16;

/// The DO (DNSSEC OK) bit in the OPT record's flags.
const DNSSEC_OK: u16 = 0x8000;

/// The EDNS data of a message, read from its OPT record.
#[derive(Clone, Copy, Debug)]
pub struct Edns<'a> {
    udp_payload_size: u16,
    ttl: u32,
    options: &'a [u8],
    options_offset: usize,
}

impl<'a> Edns<'a> {
    /// Read EDNS data from an OPT record, checking every option.
    pub fn from_record(record: &Record<'a>) -> Result<Self, Error> {
        if record.rtype() != RecordType::OPT || !record.name().is_root() {
            return Err(Error::MisplacedOpt { offset: record.offset() });
        }
        let options = record.raw_data();
        for option in EdnsOptions::new(options, record.data_offset()) {
            option?;
        }
        Ok(Self {
            udp_payload_size: record.class().0,
            ttl: record.ttl(),
            options,
            options_offset: record.data_offset(),
        })
    }

    /// The sender's UDP payload size. Values under 512 are treated as 512 (RFC 6891 §6.2.3).
    pub fn udp_payload_size(&self) -> u16 {
        self.udp_payload_size.max(512)
    }

    /// The payload size exactly as sent.
    pub fn raw_udp_payload_size(&self) -> u16 {
        self.udp_payload_size
    }

    /// The upper eight bits of the extended rcode.
    pub fn extended_rcode_bits(&self) -> u8 {
        (self.ttl >> 24) as u8
    }

    /// The EDNS version.
    pub fn version(&self) -> u8 {
        (self.ttl >> 16) as u8
    }

    /// The DO bit.
    pub fn dnssec_ok(&self) -> bool {
        self.flags() & DNSSEC_OK != 0
    }

    /// The 16 flag bits (DO and the reserved Z bits).
    pub fn flags(&self) -> u16 {
        self.ttl as u16
    }

    /// The options, in order.
    pub fn options(&self) -> EdnsOptions<'a> {
        EdnsOptions::new(self.options, self.options_offset)
    }

    /// The options' wire form.
    pub fn options_wire(&self) -> &'a [u8] {
        self.options
    }

    /// The first option with `code`, if any.
    pub fn option(&self, code: OptionCode) -> Option<EdnsOption<'a>> {
        self.options().filter_map(Result::ok).find(|option| option.code() == code)
    }
}

/// Iterator over EDNS options in wire form.
#[derive(Clone, Debug)]
pub struct EdnsOptions<'a> {
    bytes: &'a [u8],
    position: usize,
    base: usize,
    failed: bool,
}

impl<'a> EdnsOptions<'a> {
    /// Options in `bytes`, which start at message offset `base` (for error positions).
    pub(crate) fn new(bytes: &'a [u8], base: usize) -> Self {
        Self { bytes, position: 0, base, failed: false }
    }
}

impl<'a> Iterator for EdnsOptions<'a> {
    type Item = Result<EdnsOption<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.position >= self.bytes.len() {
            return None;
        }
        let at = self.base + self.position;
        let result = (|| {
            let header = self.bytes.get(self.position..self.position + 4).ok_or_else(|| Error::UnexpectedEnd {
                offset: at,
                needed: (self.position + 4).saturating_sub(self.bytes.len()),
            })?;
            let code = OptionCode(be16(header));
            let len = usize::from(be16(header.get(2..).unwrap_or(&[])));
            let data =
                self.bytes.get(self.position + 4..self.position + 4 + len).ok_or_else(|| Error::UnexpectedEnd {
                    offset: at + 4,
                    needed: (self.position + 4 + len).saturating_sub(self.bytes.len()),
                })?;
            self.position += 4 + len;
            EdnsOption::parse(code, data, at)
        })();
        if result.is_err() {
            self.failed = true;
        }
        Some(result)
    }
}

/// One EDNS option.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum EdnsOption<'a> {
    /// Client subnet (RFC 7871).
    ClientSubnet(ClientSubnet<'a>),
    /// Cookie (RFC 7873).
    Cookie(Cookie<'a>),
    /// Padding (RFC 7830); the bytes are normally zeros.
    Padding(&'a [u8]),
    /// Extended DNS error (RFC 8914).
    ExtendedError(ExtendedError<'a>),
    /// Name server identifier (RFC 5001); empty in queries.
    Nsid(&'a [u8]),
    /// TCP keepalive (RFC 7828): idle timeout in units of 100 ms, absent in queries.
    TcpKeepalive(Option<u16>),
    /// Any other option, kept raw.
    Unknown {
        /// Option code.
        code: OptionCode,
        /// Option data.
        data: &'a [u8],
    },
}

/// Zero bytes for padding options.
static ZEROS: [u8; 1024] = [0; 1024];

impl<'a> EdnsOption<'a> {
    fn parse(code: OptionCode, data: &'a [u8], offset: usize) -> Result<Self, Error> {
        let invalid = |rule| Error::InvalidRdata { rtype: RecordType::OPT, offset, rule };
        Ok(match code {
            OptionCode::CLIENT_SUBNET => {
                let (Some(family), Some(&source_prefix), Some(&scope_prefix)) =
                    (data.get(..2).map(be16), data.get(2), data.get(3))
                else {
                    return Err(invalid("client subnet option shorter than 4 octets"));
                };
                let address = data.get(4..).unwrap_or(&[]);
                let max_prefix = match family {
                    1 => 32,
                    2 => 128,
                    _ => return Err(invalid("client subnet family must be 1 (IPv4) or 2 (IPv6)")),
                };
                if source_prefix > max_prefix || scope_prefix > max_prefix {
                    return Err(invalid("client subnet prefix longer than the address"));
                }
                if address.len() != usize::from(source_prefix).div_ceil(8) {
                    return Err(invalid("client subnet address length does not match its source prefix"));
                }
                Self::ClientSubnet(ClientSubnet { family, source_prefix, scope_prefix, address })
            }
            OptionCode::COOKIE => {
                let len = data.len();
                if len != 8 && !(16..=40).contains(&len) {
                    return Err(invalid("cookie must be 8 octets, or 16 to 40 with a server cookie"));
                }
                let client: [u8; 8] = data.get(..8).and_then(|c| c.try_into().ok()).ok_or(invalid("cookie"))?;
                Self::Cookie(Cookie { client, server: data.get(8..).unwrap_or(&[]) })
            }
            OptionCode::PADDING => Self::Padding(data),
            OptionCode::EXTENDED_ERROR => {
                let Some(code) = data.get(..2).map(be16) else {
                    return Err(invalid("extended error shorter than 2 octets"));
                };
                Self::ExtendedError(ExtendedError {
                    info_code: ExtendedErrorCode(code),
                    extra_text: data.get(2..).unwrap_or(&[]),
                })
            }
            OptionCode::NSID => Self::Nsid(data),
            OptionCode::TCP_KEEPALIVE => match data.len() {
                0 => Self::TcpKeepalive(None),
                2 => Self::TcpKeepalive(Some(be16(data))),
                _ => return Err(invalid("tcp keepalive must be empty or 2 octets")),
            },
            _ => Self::Unknown { code, data },
        })
    }

    /// Padding of `len` zero bytes (at most 1024).
    pub fn padding(len: usize) -> Self {
        Self::Padding(ZEROS.get(..len).unwrap_or(&ZEROS))
    }

    /// The option code.
    pub fn code(&self) -> OptionCode {
        match self {
            Self::ClientSubnet(_) => OptionCode::CLIENT_SUBNET,
            Self::Cookie(_) => OptionCode::COOKIE,
            Self::Padding(_) => OptionCode::PADDING,
            Self::ExtendedError(_) => OptionCode::EXTENDED_ERROR,
            Self::Nsid(_) => OptionCode::NSID,
            Self::TcpKeepalive(_) => OptionCode::TCP_KEEPALIVE,
            Self::Unknown { code, .. } => *code,
        }
    }

    /// Length of the option data.
    pub fn data_len(&self) -> usize {
        match self {
            Self::ClientSubnet(subnet) => 4 + subnet.address.len(),
            Self::Cookie(cookie) => 8 + cookie.server.len(),
            Self::Padding(data) | Self::Nsid(data) | Self::Unknown { data, .. } => data.len(),
            Self::ExtendedError(error) => 2 + error.extra_text.len(),
            Self::TcpKeepalive(timeout) => timeout.map_or(0, |_| 2),
        }
    }

    /// Append the option (code, length, data) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        self.write_into(out)
    }

    pub(crate) fn write_into(&self, out: &mut impl ByteSink) -> Result<(), Error> {
        let len = u16::try_from(self.data_len()).map_err(|_| Error::EdnsTooLong)?;
        let code = self.code().0.to_be_bytes();
        let len = len.to_be_bytes();
        out.extend(&[code[0], code[1], len[0], len[1]]);
        match self {
            Self::ClientSubnet(subnet) => {
                let family = subnet.family.to_be_bytes();
                out.extend(&[family[0], family[1], subnet.source_prefix, subnet.scope_prefix]);
                out.extend(subnet.address);
            }
            Self::Cookie(cookie) => {
                out.extend(&cookie.client);
                out.extend(cookie.server);
            }
            Self::Padding(data) | Self::Nsid(data) | Self::Unknown { data, .. } => out.extend(data),
            Self::ExtendedError(error) => {
                out.extend(&error.info_code.0.to_be_bytes());
                out.extend(error.extra_text);
            }
            Self::TcpKeepalive(timeout) => {
                if let Some(timeout) = timeout {
                    out.extend(&timeout.to_be_bytes());
                }
            }
        }
        Ok(())
    }
}

/// Where option bytes are written.
pub(crate) trait ByteSink {
    fn extend(&mut self, bytes: &[u8]);
}

impl ByteSink for Vec<u8> {
    fn extend(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Option bytes kept inline up to 64 bytes (a cookie, a short extended
/// error, a client subnet), so a builder needs no allocation for them.
#[derive(Clone, Debug)]
pub(crate) struct OptionBytes {
    inline: [u8; 64],
    len: usize,
    spill: Vec<u8>,
}

impl OptionBytes {
    pub(crate) fn new() -> Self {
        Self { inline: [0; 64], len: 0, spill: Vec::new() }
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        if self.spill.is_empty() { self.inline.get(..self.len).unwrap_or(&[]) } else { &self.spill }
    }

    pub(crate) fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub(crate) fn truncate(&mut self, len: usize) {
        if self.spill.is_empty() {
            self.len = self.len.min(len);
        } else {
            self.spill.truncate(len);
        }
    }
}

impl ByteSink for OptionBytes {
    fn extend(&mut self, bytes: &[u8]) {
        if self.spill.is_empty() {
            if let Some(slot) = self.inline.get_mut(self.len..self.len + bytes.len()) {
                slot.copy_from_slice(bytes);
                self.len += bytes.len();
                return;
            }
            self.spill.extend_from_slice(self.inline.get(..self.len).unwrap_or(&[]));
        }
        self.spill.extend_from_slice(bytes);
    }
}

impl fmt::Display for EdnsOption<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ClientSubnet(subnet) => {
                write!(f, "ECS {}/{}/{}", subnet.address(), subnet.source_prefix, subnet.scope_prefix)
            }
            Self::Cookie(cookie) => {
                f.write_str("COOKIE ")?;
                crate::present::write_hex(&cookie.client, f)?;
                crate::present::write_hex(cookie.server, f)
            }
            Self::Padding(data) => write!(f, "PADDING {}", data.len()),
            Self::ExtendedError(error) => write!(f, "EDE {}", error),
            Self::Nsid(data) => {
                f.write_str("NSID ")?;
                crate::present::write_hex(data, f)
            }
            Self::TcpKeepalive(timeout) => match timeout {
                Some(timeout) => write!(f, "KEEPALIVE {timeout}"),
                None => f.write_str("KEEPALIVE"),
            },
            Self::Unknown { code, data } => {
                write!(f, "{code} ")?;
                crate::present::write_hex(data, f)
            }
        }
    }
}

/// The client subnet option (RFC 7871).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ClientSubnet<'a> {
    /// 1 for IPv4, 2 for IPv6.
    pub family: u16,
    /// Significant bits of the client address.
    pub source_prefix: u8,
    /// Bits the answer covers (0 in queries).
    pub scope_prefix: u8,
    /// The address, only as many octets as the prefix needs.
    pub address: &'a [u8],
}

impl ClientSubnet<'_> {
    /// The address, padded with zeros.
    pub fn address(&self) -> IpAddr {
        if self.family == 1 {
            let mut octets = [0u8; 4];
            for (slot, byte) in octets.iter_mut().zip(self.address) {
                *slot = *byte;
            }
            IpAddr::V4(Ipv4Addr::from(octets))
        } else {
            let mut octets = [0u8; 16];
            for (slot, byte) in octets.iter_mut().zip(self.address) {
                *slot = *byte;
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
    }
}

/// The cookie option (RFC 7873).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Cookie<'a> {
    /// The client cookie.
    pub client: [u8; 8],
    /// The server cookie (8 to 32 octets), empty if none.
    pub server: &'a [u8],
}

/// The extended DNS error option (RFC 8914).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ExtendedError<'a> {
    /// The info code.
    pub info_code: ExtendedErrorCode,
    /// UTF-8 text for people (may be empty).
    pub extra_text: &'a [u8],
}

impl fmt::Display for ExtendedError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.info_code.0, self.info_code)?;
        if !self.extra_text.is_empty() {
            write!(f, ": {}", String::from_utf8_lossy(self.extra_text))?;
        }
        Ok(())
    }
}

/// The OPT header fields a builder writes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct EdnsHeader {
    /// Our UDP payload size.
    pub udp_payload_size: u16,
    /// EDNS version (0).
    pub version: u8,
    /// The DO bit.
    pub dnssec_ok: bool,
}

impl Default for EdnsHeader {
    /// 1232 bytes, the DNS Flag Day 2020 recommendation; version 0; DO clear.
    fn default() -> Self {
        Self { udp_payload_size: 1232, version: 0, dnssec_ok: false }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_one(code: u16, data: &[u8]) -> Result<EdnsOption<'_>, Error> {
        EdnsOption::parse(OptionCode(code), data, 0)
    }

    #[test]
    fn client_subnet_checks_lengths() {
        let ecs = parse_one(8, &[0, 1, 24, 0, 192, 0, 2]).expect("valid");
        let EdnsOption::ClientSubnet(subnet) = ecs else { panic!("not ECS") };
        assert_eq!(subnet.address(), IpAddr::V4(Ipv4Addr::new(192, 0, 2, 0)));
        assert_eq!(ecs.to_string(), "ECS 192.0.2.0/24/0");
        assert!(parse_one(8, &[0, 1, 24, 0, 192, 0]).is_err());
        assert!(parse_one(8, &[0, 1, 33, 0, 1, 2, 3, 4, 5]).is_err());
        assert!(parse_one(8, &[0, 3, 0, 0]).is_err());
        let mut out = Vec::new();
        ecs.write_to(&mut out).expect("fits");
        assert_eq!(out, [0, 8, 0, 7, 0, 1, 24, 0, 192, 0, 2]);
    }

    #[test]
    fn cookies_and_errors_round_trip() {
        let cookie = parse_one(10, &[1, 2, 3, 4, 5, 6, 7, 8]).expect("client only");
        assert!(matches!(cookie, EdnsOption::Cookie(Cookie { server: &[], .. })));
        assert!(parse_one(10, &[1; 9]).is_err());
        assert!(parse_one(10, &[1; 41]).is_err());
        let ede = parse_one(15, b"\x00\x16all upstreams timed out").expect("valid");
        assert_eq!(ede.to_string(), "EDE 22 (No Reachable Authority): all upstreams timed out");
        assert!(parse_one(15, b"\x00").is_err());
        assert_eq!(EdnsOption::padding(3), EdnsOption::Padding(&[0, 0, 0]));
        assert_eq!(parse_one(65001, b"xy"), Ok(EdnsOption::Unknown { code: OptionCode(65001), data: b"xy" }));
    }

    #[test]
    fn option_iterator_stops_at_the_first_error() {
        let bytes = [0, 12, 0, 1, 0, 0, 10, 0, 3];
        let mut options = EdnsOptions::new(&bytes, 100);
        assert_eq!(options.next(), Some(Ok(EdnsOption::Padding(&[0]))));
        assert_eq!(options.next(), Some(Err(Error::UnexpectedEnd { offset: 109, needed: 3 })));
        assert_eq!(options.next(), None);
    }
}
