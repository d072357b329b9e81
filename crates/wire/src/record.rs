//! Owned resource records, for zones, rules and tests.

use core::fmt;
use core::str::FromStr;

use crate::Error;
use crate::iana::{Class, RecordType};
use crate::message::Record;
use crate::name::NameBuf;
use crate::present::{Token, is_ttl, parse_name, parse_ttl, tokenize};
use crate::rdata::RDataBuf;

/// TTL used when a record's text gives none and the caller supplies no default.
pub const DEFAULT_TTL: u32 = 3600;

/// An owned resource record.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RecordBuf {
    /// Owner name.
    pub name: NameBuf,
    /// Class.
    pub class: Class,
    /// Time to live in seconds.
    pub ttl: u32,
    /// Typed data (its variant gives the type).
    pub data: RDataBuf,
}

impl RecordBuf {
    /// A record of class IN.
    pub fn new(name: NameBuf, ttl: u32, data: RDataBuf) -> Self {
        Self { name, class: Class::IN, ttl, data }
    }

    /// The record type.
    pub fn rtype(&self) -> RecordType {
        self.data.rtype()
    }

    /// An owned copy of a record read from a message.
    pub fn from_record(record: &Record<'_>) -> Result<Self, Error> {
        Ok(Self {
            name: record.name().to_name_buf(),
            class: record.class(),
            ttl: record.ttl(),
            data: record.data()?.to_owned_data(),
        })
    }

    /// Parse one record in presentation format: `owner [ttl] [class] type rdata`
    /// (TTL and class in either order). Relative names need `origin`.
    pub fn from_presentation(text: &str, origin: Option<&NameBuf>, default_ttl: Option<u32>) -> Result<Self, Error> {
        let tokens = tokenize(text)?;
        let (owner, rest) = tokens.split_first().ok_or(Error::MissingField { column: 0, field: "owner name" })?;
        let name = parse_name(*owner, origin)?;
        let fields = parse_ttl_class_type(rest, text.len())?;
        let data = RDataBuf::from_tokens(fields.rtype, fields.rdata, origin)?;
        Ok(Self {
            name,
            class: fields.class.unwrap_or(Class::IN),
            ttl: fields.ttl.or(default_ttl).unwrap_or(DEFAULT_TTL),
            data,
        })
    }
}

/// The fields between an owner name and the RDATA.
#[derive(Clone, Copy, Debug)]
pub struct TtlClassType<'t, 'a> {
    /// The TTL, if given.
    pub ttl: Option<u32>,
    /// The class, if given.
    pub class: Option<Class>,
    /// The type.
    pub rtype: RecordType,
    /// The RDATA fields.
    pub rdata: &'a [Token<'t>],
}

/// Read `[ttl] [class] type` (TTL and class in either order) from the front of `tokens`.
pub fn parse_ttl_class_type<'t, 'a>(tokens: &'a [Token<'t>], end_column: usize) -> Result<TtlClassType<'t, 'a>, Error> {
    let mut ttl = None;
    let mut class = None;
    let mut index = 0;
    loop {
        let token = tokens.get(index).ok_or(Error::MissingField { column: end_column, field: "type" })?;
        if ttl.is_none() && is_ttl(token.text) {
            ttl = Some(parse_ttl(token.text, token.column)?);
        } else if class.is_none() && !token.quoted && Class::from_mnemonic(token.text).is_some() {
            class = Class::from_mnemonic(token.text);
        } else {
            let rtype = RecordType::from_mnemonic(token.text)
                .ok_or(Error::UnknownMnemonic { column: token.column, what: "type" })?;
            return Ok(TtlClassType { ttl, class, rtype, rdata: tokens.get(index + 1..).unwrap_or(&[]) });
        }
        index += 1;
    }
}

impl FromStr for RecordBuf {
    type Err = Error;

    /// Parse `owner [ttl] [class] type rdata` with absolute names; the TTL defaults to 3600.
    fn from_str(text: &str) -> Result<Self, Error> {
        Self::from_presentation(text, None, None)
    }
}

impl fmt::Display for RecordBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {} {} {}", self.name, self.ttl, self.class, self.rtype(), self.data)
    }
}

impl fmt::Debug for RecordBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordBuf({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_unbound_style_local_data() {
        let record: RecordBuf = "www.example.com. 300 IN A 192.0.2.1".parse().expect("valid");
        assert_eq!(record.to_string(), "www.example.com. 300 IN A 192.0.2.1");
        let record: RecordBuf = "www.example.com. IN 1h AAAA ::1".parse().expect("class before TTL");
        assert_eq!(record.ttl, 3600);
        let record: RecordBuf = "txt.example. TXT \"hello world\"".parse().expect("defaults");
        assert_eq!(record.ttl, DEFAULT_TTL);
        assert_eq!(record.class, Class::IN);
    }

    #[test]
    fn errors_name_the_column() {
        assert_eq!(
            "www.example.com. 300 IN BOGUS x".parse::<RecordBuf>(),
            Err(Error::UnknownMnemonic { column: 24, what: "type" })
        );
        assert_eq!("www.example.com. 300".parse::<RecordBuf>(), Err(Error::MissingField { column: 20, field: "type" }));
        assert_eq!("www 300 A 1.2.3.4".parse::<RecordBuf>(), Err(Error::RelativeName { column: 0 }));
        let origin: NameBuf = "example.".parse().expect("origin");
        let record = RecordBuf::from_presentation("www A 1.2.3.4", Some(&origin), Some(60)).expect("relative");
        assert_eq!(record.to_string(), "www.example. 60 IN A 1.2.3.4");
    }
}
