//! Typed record data.
//!
//! [`RecordData`] is generic over how names (`N`) and byte strings (`B`) are
//! held: [`RData`] borrows both from a message, [`RDataBuf`] owns them. Types
//! the crate does not know are kept as opaque bytes ([`Unknown`]) and are
//! never decompressed (RFC 3597 §4), so they round-trip byte for byte.

use core::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::Error;
use crate::edns::{EdnsOption, EdnsOptions};
use crate::iana::RecordType;
use crate::name::{MAX_NAME_LEN, Name, NameBuf, ToName};
use crate::present::{write_character_string, write_hex};
use crate::reader::Reader;
use crate::svcb::{SvcParams, check_params};

/// Record data, generic over name and byte-string storage.
#[derive(Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RecordData<N, B> {
    /// IPv4 address (RFC 1035).
    A(Ipv4Addr),
    /// IPv6 address (RFC 3596).
    Aaaa(Ipv6Addr),
    /// Name server (RFC 1035).
    Ns(N),
    /// Canonical name (RFC 1035).
    Cname(N),
    /// Delegation name (RFC 6672).
    Dname(N),
    /// Pointer (RFC 1035).
    Ptr(N),
    /// Mail exchange (RFC 1035).
    Mx(Mx<N>),
    /// Text (RFC 1035).
    Txt(Txt<B>),
    /// Start of authority (RFC 1035).
    Soa(Soa<N>),
    /// Service location (RFC 2782).
    Srv(Srv<N>),
    /// Certification authority authorisation (RFC 8659).
    Caa(Caa<B>),
    /// Naming authority pointer (RFC 3403).
    Naptr(Naptr<N, B>),
    /// Service binding (RFC 9460).
    Svcb(Svcb<N, B>),
    /// HTTPS service binding (RFC 9460).
    Https(Svcb<N, B>),
    /// EDNS options of an OPT pseudo-record (RFC 6891).
    Opt(Opt<B>),
    /// Any other type, kept as opaque bytes.
    Unknown(Unknown<B>),
}

/// Record data borrowed from a message.
pub type RData<'a> = RecordData<Name<'a>, &'a [u8]>;
/// Owned record data.
pub type RDataBuf = RecordData<NameBuf, Vec<u8>>;

/// MX data.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Mx<N> {
    /// Lower is preferred.
    pub preference: u16,
    /// The mail server.
    pub exchange: N,
}

/// SOA data.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Soa<N> {
    /// Primary name server.
    pub mname: N,
    /// Responsible mailbox.
    pub rname: N,
    /// Serial number.
    pub serial: u32,
    /// Refresh interval.
    pub refresh: u32,
    /// Retry interval.
    pub retry: u32,
    /// Expiry limit.
    pub expire: u32,
    /// Negative-caching TTL (RFC 2308).
    pub minimum: u32,
}

/// SRV data.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Srv<N> {
    /// Lower is preferred.
    pub priority: u16,
    /// Relative weight among equal priorities.
    pub weight: u16,
    /// Port.
    pub port: u16,
    /// Target host.
    pub target: N,
}

/// TXT data: one or more character-strings, kept in wire form (each string
/// prefixed by its length).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Txt<B>(pub(crate) B);

impl<B: AsRef<[u8]>> Txt<B> {
    /// The strings, without their length octets.
    pub fn strings(&self) -> CharacterStrings<'_> {
        CharacterStrings { bytes: self.0.as_ref() }
    }

    /// The wire form: each string preceded by its length.
    pub fn as_wire(&self) -> &[u8] {
        self.0.as_ref()
    }
}

impl Txt<Vec<u8>> {
    /// TXT data from strings; fails if one is over 255 octets.
    pub fn from_strings<S: AsRef<[u8]>>(strings: impl IntoIterator<Item = S>) -> Result<Self, Error> {
        let mut wire = Vec::new();
        for string in strings {
            let string = string.as_ref();
            let len = u8::try_from(string.len()).map_err(|_| Error::StringTooLong { column: 0 })?;
            wire.push(len);
            wire.extend_from_slice(string);
        }
        if wire.is_empty() {
            wire.push(0);
        }
        Ok(Self(wire))
    }
}

impl<B: AsRef<[u8]>> fmt::Debug for Txt<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.strings().map(String::from_utf8_lossy)).finish()
    }
}

/// Iterator over `<character-string>`s in wire form.
#[derive(Clone, Debug)]
pub struct CharacterStrings<'a> {
    bytes: &'a [u8],
}

impl<'a> CharacterStrings<'a> {
    /// Over `bytes`, a run of length-prefixed strings (TXT data, an SVCB
    /// `alpn` value).
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }
}

impl<'a> Iterator for CharacterStrings<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let (&len, rest) = self.bytes.split_first()?;
        let string = rest.get(..usize::from(len))?;
        self.bytes = rest.get(usize::from(len)..).unwrap_or(&[]);
        Some(string)
    }
}

/// CAA data.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Caa<B> {
    /// Flags; bit 128 is "issuer critical".
    pub flags: u8,
    /// Property tag (e.g. `issue`), 1 to 15 ASCII letters and digits.
    pub tag: B,
    /// Property value.
    pub value: B,
}

/// NAPTR data.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Naptr<N, B> {
    /// Processing order.
    pub order: u16,
    /// Preference among equal orders.
    pub preference: u16,
    /// Flags string.
    pub flags: B,
    /// Services string.
    pub services: B,
    /// Substitution expression.
    pub regexp: B,
    /// Replacement name.
    pub replacement: N,
}

/// SVCB or HTTPS data.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Svcb<N, B> {
    /// 0 is alias mode; anything else is service mode.
    pub priority: u16,
    /// Target name (`.` means the owner in service mode).
    pub target: N,
    /// Parameters in wire form, sorted by key and checked.
    pub(crate) params: B,
}

impl<N, B: AsRef<[u8]>> Svcb<N, B> {
    /// The parameters, in key order.
    pub fn params(&self) -> SvcParams<'_> {
        SvcParams::new(self.params.as_ref())
    }

    /// The parameters' wire form.
    pub fn params_wire(&self) -> &[u8] {
        self.params.as_ref()
    }
}

impl<N> Svcb<N, Vec<u8>> {
    /// SVCB data from a priority, a target and parameters in wire form (checked).
    pub fn new(priority: u16, target: N, params_wire: Vec<u8>) -> Result<Self, Error> {
        check_params(&params_wire, 0, RecordType::SVCB)?;
        Ok(Self { priority, target, params: params_wire })
    }
}

/// The options of an OPT record in wire form.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Opt<B>(pub(crate) B);

impl<B: AsRef<[u8]>> Opt<B> {
    /// The options, in order.
    pub fn options(&self) -> EdnsOptions<'_> {
        EdnsOptions::new(self.0.as_ref(), 0)
    }

    /// The wire form.
    pub fn as_wire(&self) -> &[u8] {
        self.0.as_ref()
    }
}

/// Data of a type this crate does not interpret.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Unknown<B> {
    /// The record type.
    pub rtype: RecordType,
    /// The RDATA, byte for byte.
    pub data: B,
}

impl<N, B> RecordData<N, B> {
    /// The record type this data belongs to.
    pub fn rtype(&self) -> RecordType {
        match self {
            Self::A(_) => RecordType::A,
            Self::Aaaa(_) => RecordType::AAAA,
            Self::Ns(_) => RecordType::NS,
            Self::Cname(_) => RecordType::CNAME,
            Self::Dname(_) => RecordType::DNAME,
            Self::Ptr(_) => RecordType::PTR,
            Self::Mx(_) => RecordType::MX,
            Self::Txt(_) => RecordType::TXT,
            Self::Soa(_) => RecordType::SOA,
            Self::Srv(_) => RecordType::SRV,
            Self::Caa(_) => RecordType::CAA,
            Self::Naptr(_) => RecordType::NAPTR,
            Self::Svcb(_) => RecordType::SVCB,
            Self::Https(_) => RecordType::HTTPS,
            Self::Opt(_) => RecordType::OPT,
            Self::Unknown(unknown) => unknown.rtype,
        }
    }
}

impl<'a> RData<'a> {
    /// Parse the RDATA of type `rtype` found at `message[offset..offset + len]`.
    #[inline(always)]
    pub fn parse(rtype: RecordType, message: &'a [u8], offset: usize, len: usize) -> Result<Self, Error> {
        // The common types inline, without a reader.
        match rtype {
            RecordType::A => fixed_address(message, offset, len).map(|octets: [u8; 4]| Self::A(octets.into())),
            RecordType::AAAA => fixed_address(message, offset, len).map(|octets: [u8; 16]| Self::Aaaa(octets.into())),
            RecordType::NS => only_name(message, offset, len, rtype).map(Self::Ns),
            RecordType::CNAME => only_name(message, offset, len, rtype).map(Self::Cname),
            RecordType::PTR => only_name(message, offset, len, rtype).map(Self::Ptr),
            RecordType::DNAME => only_name(message, offset, len, rtype).map(Self::Dname),
            _ => Self::parse_with_reader(rtype, message, offset, len),
        }
    }

    /// The other types, read with a bounded reader.
    fn parse_with_reader(rtype: RecordType, message: &'a [u8], offset: usize, len: usize) -> Result<Self, Error> {
        let mut outer = Reader::at(message, offset);
        let mut reader = outer.sub(len)?;
        let end = offset + len;
        let data = match rtype {
            RecordType::MX => {
                let preference = reader.u16()?;
                Self::Mx(Mx { preference, exchange: read_name(&mut reader, end, rtype)? })
            }
            RecordType::TXT => {
                if len == 0 {
                    return Err(Error::InvalidRdata { rtype, offset, rule: "TXT needs at least one string" });
                }
                let bytes = reader.rest();
                let mut check = Reader::at(message, offset);
                let mut check = check.sub(len)?;
                while !check.is_empty() {
                    check.character_string()?;
                }
                Self::Txt(Txt(bytes))
            }
            RecordType::SOA => {
                let mname = read_name(&mut reader, end, rtype)?;
                let rname = read_name(&mut reader, end, rtype)?;
                Self::Soa(Soa {
                    mname,
                    rname,
                    serial: reader.u32()?,
                    refresh: reader.u32()?,
                    retry: reader.u32()?,
                    expire: reader.u32()?,
                    minimum: reader.u32()?,
                })
            }
            RecordType::SRV => Self::Srv(Srv {
                priority: reader.u16()?,
                weight: reader.u16()?,
                port: reader.u16()?,
                target: read_name(&mut reader, end, rtype)?,
            }),
            RecordType::CAA => {
                let flags = reader.u8()?;
                let tag_offset = reader.position();
                let tag = reader.character_string()?;
                if tag.is_empty() || tag.len() > 15 || !tag.iter().all(u8::is_ascii_alphanumeric) {
                    return Err(Error::InvalidRdata {
                        rtype,
                        offset: tag_offset,
                        rule: "CAA tag must be 1 to 15 letters or digits",
                    });
                }
                Self::Caa(Caa { flags, tag, value: reader.rest() })
            }
            RecordType::NAPTR => Self::Naptr(Naptr {
                order: reader.u16()?,
                preference: reader.u16()?,
                flags: reader.character_string()?,
                services: reader.character_string()?,
                regexp: reader.character_string()?,
                replacement: read_name(&mut reader, end, rtype)?,
            }),
            RecordType::SVCB | RecordType::HTTPS => {
                let priority = reader.u16()?;
                let target = read_name(&mut reader, end, rtype)?;
                let params_offset = reader.position();
                let params = reader.rest();
                check_params(params, params_offset, rtype)?;
                let svcb = Svcb { priority, target, params };
                if rtype == RecordType::SVCB { Self::Svcb(svcb) } else { Self::Https(svcb) }
            }
            RecordType::OPT => {
                let bytes = reader.rest();
                for option in EdnsOptions::new(bytes, offset) {
                    option?;
                }
                Self::Opt(Opt(bytes))
            }
            _ => Self::Unknown(Unknown { rtype, data: reader.rest() }),
        };
        if !reader.is_empty() {
            return Err(Error::RdataLength { rtype, offset, rdlength: len, used: reader.position() - offset });
        }
        Ok(data)
    }

    /// An owned copy (names decompressed, case kept).
    pub fn to_owned_data(&self) -> RDataBuf {
        self.map(|name| name.to_name_buf(), |bytes| bytes.to_vec())
    }
}

/// RDATA that is exactly an address of N octets.
#[inline(always)]
fn fixed_address<const N: usize>(message: &[u8], offset: usize, len: usize) -> Result<[u8; N], Error> {
    let Some(data) = message.get(offset..offset + len) else {
        return Err(Error::UnexpectedEnd { offset, needed: offset + len - message.len().min(offset + len) });
    };
    match <[u8; N]>::try_from(data) {
        Ok(octets) => Ok(octets),
        Err(_) if len < N => Err(Error::UnexpectedEnd { offset, needed: N - len }),
        Err(_) => Err(Error::RdataLength {
            rtype: if N == 4 { RecordType::A } else { RecordType::AAAA },
            offset,
            rdlength: len,
            used: N,
        }),
    }
}

/// RDATA that is exactly one (possibly compressed) name.
#[inline(always)]
fn only_name(message: &[u8], offset: usize, len: usize, rtype: RecordType) -> Result<Name<'_>, Error> {
    if message.len() < offset + len {
        return Err(Error::UnexpectedEnd { offset, needed: offset + len - message.len() });
    }
    let (name, after) = Name::from_message(message, offset)?;
    if after != offset + len {
        return Err(Error::RdataLength { rtype, offset, rdlength: len, used: after - offset });
    }
    Ok(name)
}

fn read_name<'a>(reader: &mut Reader<'a>, end: usize, rtype: RecordType) -> Result<Name<'a>, Error> {
    let start = reader.position();
    let (name, after) = Name::from_message(reader.message(), start)?;
    if after > end {
        return Err(Error::RdataLength {
            rtype,
            offset: start,
            rdlength: end.saturating_sub(start),
            used: after - start,
        });
    }
    reader.seek(after);
    Ok(name)
}

impl<N, B> RecordData<N, B> {
    /// Convert names and byte strings with the given functions.
    pub fn map<'s, N2, B2>(
        &'s self,
        mut name: impl FnMut(&'s N) -> N2,
        mut bytes: impl FnMut(&'s B) -> B2,
    ) -> RecordData<N2, B2> {
        match self {
            Self::A(addr) => RecordData::A(*addr),
            Self::Aaaa(addr) => RecordData::Aaaa(*addr),
            Self::Ns(n) => RecordData::Ns(name(n)),
            Self::Cname(n) => RecordData::Cname(name(n)),
            Self::Dname(n) => RecordData::Dname(name(n)),
            Self::Ptr(n) => RecordData::Ptr(name(n)),
            Self::Mx(mx) => RecordData::Mx(Mx { preference: mx.preference, exchange: name(&mx.exchange) }),
            Self::Txt(txt) => RecordData::Txt(Txt(bytes(&txt.0))),
            Self::Soa(soa) => RecordData::Soa(Soa {
                mname: name(&soa.mname),
                rname: name(&soa.rname),
                serial: soa.serial,
                refresh: soa.refresh,
                retry: soa.retry,
                expire: soa.expire,
                minimum: soa.minimum,
            }),
            Self::Srv(srv) => RecordData::Srv(Srv {
                priority: srv.priority,
                weight: srv.weight,
                port: srv.port,
                target: name(&srv.target),
            }),
            Self::Caa(caa) => RecordData::Caa(Caa { flags: caa.flags, tag: bytes(&caa.tag), value: bytes(&caa.value) }),
            Self::Naptr(naptr) => RecordData::Naptr(Naptr {
                order: naptr.order,
                preference: naptr.preference,
                flags: bytes(&naptr.flags),
                services: bytes(&naptr.services),
                regexp: bytes(&naptr.regexp),
                replacement: name(&naptr.replacement),
            }),
            Self::Svcb(svcb) => RecordData::Svcb(Svcb {
                priority: svcb.priority,
                target: name(&svcb.target),
                params: bytes(&svcb.params),
            }),
            Self::Https(svcb) => RecordData::Https(Svcb {
                priority: svcb.priority,
                target: name(&svcb.target),
                params: bytes(&svcb.params),
            }),
            Self::Opt(opt) => RecordData::Opt(Opt(bytes(&opt.0))),
            Self::Unknown(unknown) => RecordData::Unknown(Unknown { rtype: unknown.rtype, data: bytes(&unknown.data) }),
        }
    }
}

impl RDataBuf {
    /// A borrowed view of this data.
    pub fn as_rdata(&self) -> RecordData<&NameBuf, &[u8]> {
        self.map(|name| name, |bytes| bytes.as_slice())
    }

    /// OPT data from options.
    pub fn opt_from_options<'o>(options: impl IntoIterator<Item = EdnsOption<'o>>) -> Result<Self, Error> {
        let mut wire = Vec::new();
        for option in options {
            option.write_to(&mut wire)?;
        }
        Ok(Self::Opt(Opt(wire)))
    }
}

/// Where record data is written: a builder (with compression) or a plain buffer.
pub(crate) trait Sink {
    fn put(&mut self, bytes: &[u8]) -> Result<(), Error>;
    fn put_fixed<const N: usize>(&mut self, bytes: &[u8; N]) -> Result<(), Error> {
        self.put(bytes)
    }
    /// Write a name, compressing it only if `compress` and the sink supports it.
    fn put_name(&mut self, name: &impl ToName, compress: bool) -> Result<(), Error>;
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.extend_from_slice(bytes);
        Ok(())
    }

    fn put_name(&mut self, name: &impl ToName, _compress: bool) -> Result<(), Error> {
        let mut scratch = [0u8; MAX_NAME_LEN];
        self.extend_from_slice(name.flat(&mut scratch));
        Ok(())
    }
}

impl<N: ToName, B: AsRef<[u8]>> RecordData<N, B> {
    /// Write the RDATA. Names are compressed only in the RFC 1035 types
    /// (NS, CNAME, PTR, MX, SOA), as RFC 3597 §4 requires.
    pub(crate) fn write_to(&self, sink: &mut impl Sink) -> Result<(), Error> {
        match self {
            Self::A(addr) => sink.put_fixed(&addr.octets()),
            Self::Aaaa(addr) => sink.put_fixed(&addr.octets()),
            Self::Ns(name) | Self::Cname(name) | Self::Ptr(name) => sink.put_name(name, true),
            Self::Dname(name) => sink.put_name(name, false),
            Self::Mx(mx) => {
                sink.put_fixed(&mx.preference.to_be_bytes())?;
                sink.put_name(&mx.exchange, true)
            }
            Self::Txt(txt) => sink.put(txt.0.as_ref()),
            Self::Soa(soa) => {
                sink.put_name(&soa.mname, true)?;
                sink.put_name(&soa.rname, true)?;
                for value in [soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum] {
                    sink.put(&value.to_be_bytes())?;
                }
                Ok(())
            }
            Self::Srv(srv) => {
                for value in [srv.priority, srv.weight, srv.port] {
                    sink.put(&value.to_be_bytes())?;
                }
                sink.put_name(&srv.target, false)
            }
            Self::Caa(caa) => {
                let tag = caa.tag.as_ref();
                sink.put(&[caa.flags, tag.len() as u8])?;
                sink.put(tag)?;
                sink.put(caa.value.as_ref())
            }
            Self::Naptr(naptr) => {
                sink.put(&naptr.order.to_be_bytes())?;
                sink.put(&naptr.preference.to_be_bytes())?;
                for string in [&naptr.flags, &naptr.services, &naptr.regexp] {
                    let string = string.as_ref();
                    sink.put(&[string.len() as u8])?;
                    sink.put(string)?;
                }
                sink.put_name(&naptr.replacement, false)
            }
            Self::Svcb(svcb) | Self::Https(svcb) => {
                sink.put(&svcb.priority.to_be_bytes())?;
                sink.put_name(&svcb.target, false)?;
                sink.put(svcb.params.as_ref())
            }
            Self::Opt(opt) => sink.put(opt.0.as_ref()),
            Self::Unknown(unknown) => sink.put(unknown.data.as_ref()),
        }
    }

    /// The uncompressed wire form of the RDATA.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = self.write_to(&mut out);
        out
    }
}

impl<N: fmt::Display, B: AsRef<[u8]>> fmt::Display for RecordData<N, B> {
    /// Presentation format (RFC 1035 §5.1, RFC 3597 §5 for unknown types).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::A(addr) => write!(f, "{addr}"),
            Self::Aaaa(addr) => write!(f, "{addr}"),
            Self::Ns(name) | Self::Cname(name) | Self::Dname(name) | Self::Ptr(name) => write!(f, "{name}"),
            Self::Mx(mx) => write!(f, "{} {}", mx.preference, mx.exchange),
            Self::Txt(txt) => {
                for (index, string) in txt.strings().enumerate() {
                    if index > 0 {
                        f.write_str(" ")?;
                    }
                    write_character_string(string, f)?;
                }
                Ok(())
            }
            Self::Soa(soa) => write!(
                f,
                "{} {} {} {} {} {} {}",
                soa.mname, soa.rname, soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum
            ),
            Self::Srv(srv) => write!(f, "{} {} {} {}", srv.priority, srv.weight, srv.port, srv.target),
            Self::Caa(caa) => {
                write!(f, "{} ", caa.flags)?;
                for &byte in caa.tag.as_ref() {
                    f.write_str(core::str::from_utf8(&[byte]).unwrap_or("?"))?;
                }
                f.write_str(" ")?;
                write_character_string(caa.value.as_ref(), f)
            }
            Self::Naptr(naptr) => {
                write!(f, "{} {} ", naptr.order, naptr.preference)?;
                for string in [&naptr.flags, &naptr.services, &naptr.regexp] {
                    write_character_string(string.as_ref(), f)?;
                    f.write_str(" ")?;
                }
                write!(f, "{}", naptr.replacement)
            }
            Self::Svcb(svcb) | Self::Https(svcb) => {
                write!(f, "{} {}", svcb.priority, svcb.target)?;
                for param in svcb.params() {
                    write!(f, " {param}")?;
                }
                Ok(())
            }
            Self::Opt(opt) => write_generic(opt.0.as_ref(), f),
            Self::Unknown(unknown) => write_generic(unknown.data.as_ref(), f),
        }
    }
}

fn write_generic(data: &[u8], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "\\# {}", data.len())?;
    if !data.is_empty() {
        f.write_str(" ")?;
        write_hex(data, f)?;
    }
    Ok(())
}

impl<N: fmt::Display, B: AsRef<[u8]>> fmt::Debug for RecordData<N, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.rtype(), self)
    }
}

impl PartialEq<RDataBuf> for RData<'_> {
    fn eq(&self, other: &RDataBuf) -> bool {
        self.rtype() == other.rtype() && self.to_owned_data() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_at_zero(rtype: RecordType, bytes: &[u8]) -> Result<RData<'_>, Error> {
        RData::parse(rtype, bytes, 0, bytes.len())
    }

    #[test]
    fn fixed_size_types_check_their_length() {
        assert_eq!(parse_at_zero(RecordType::A, &[1, 2, 3, 4]), Ok(RData::A(Ipv4Addr::new(1, 2, 3, 4))));
        assert_eq!(
            parse_at_zero(RecordType::A, &[1, 2, 3, 4, 5]),
            Err(Error::RdataLength { rtype: RecordType::A, offset: 0, rdlength: 5, used: 4 })
        );
        assert_eq!(parse_at_zero(RecordType::A, &[1, 2, 3]), Err(Error::UnexpectedEnd { offset: 0, needed: 1 }));
    }

    #[test]
    fn names_in_rdata_must_end_inside_it() {
        // MX whose RDLENGTH stops in the middle of the exchange name.
        let message = b"\x00\x0a\x04mail\x00";
        assert_eq!(
            RData::parse(RecordType::MX, message, 0, 5),
            Err(Error::RdataLength { rtype: RecordType::MX, offset: 2, rdlength: 3, used: 6 })
        );
        let mx = RData::parse(RecordType::MX, message, 0, message.len()).expect("valid");
        assert_eq!(mx.to_string(), "10 mail.");
    }

    #[test]
    fn unknown_types_are_kept_raw_and_shown_generically() {
        let data = parse_at_zero(RecordType(65280), &[0xde, 0xad, 0xc0, 0x00]).expect("opaque");
        assert_eq!(data.to_string(), "\\# 4 deadc000");
        assert_eq!(data.to_wire(), [0xde, 0xad, 0xc0, 0x00]);
        assert_eq!(parse_at_zero(RecordType(65280), &[]).expect("empty").to_string(), "\\# 0");
    }

    #[test]
    fn txt_and_caa_show_quoted_strings() {
        let txt = parse_at_zero(RecordType::TXT, b"\x05hello\x07a \"b\" \\").expect("valid");
        assert_eq!(txt.to_string(), "\"hello\" \"a \\\"b\\\" \\\\\"");
        assert!(parse_at_zero(RecordType::TXT, b"\x05hell").is_err());
        let caa = parse_at_zero(RecordType::CAA, b"\x80\x05issueletsencrypt.org").expect("valid");
        assert_eq!(caa.to_string(), "128 issue \"letsencrypt.org\"");
        assert!(parse_at_zero(RecordType::CAA, b"\x00\x00x").is_err());
    }

    #[test]
    fn owned_copies_compare_equal_to_views() {
        let message = b"\x00\x0a\x04mail\x07example\x00";
        let view = RData::parse(RecordType::MX, message, 0, message.len()).expect("valid");
        let owned = view.to_owned_data();
        assert_eq!(view, owned);
        assert_eq!(owned.to_wire(), message);
    }
}
