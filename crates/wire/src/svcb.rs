//! SVCB/HTTPS parameters (RFC 9460): wire checks, typed views, presentation format.

use core::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::Error;
use crate::iana::{RecordType, SvcParamKey};
use crate::present::{Token, base64_decode, base64_encode, decode_text};
use crate::rdata::CharacterStrings;

/// Iterator over SVCB parameters in wire form (already checked).
#[derive(Clone, Debug)]
pub struct SvcParams<'a> {
    bytes: &'a [u8],
}

impl<'a> SvcParams<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }
}

impl<'a> Iterator for SvcParams<'a> {
    type Item = SvcParam<'a>;

    fn next(&mut self) -> Option<SvcParam<'a>> {
        let key = u16::from_be_bytes([*self.bytes.first()?, *self.bytes.get(1)?]);
        let len = usize::from(u16::from_be_bytes([*self.bytes.get(2)?, *self.bytes.get(3)?]));
        let value = self.bytes.get(4..4 + len)?;
        self.bytes = self.bytes.get(4 + len..).unwrap_or(&[]);
        Some(SvcParam { key: SvcParamKey(key), value })
    }
}

/// One parameter: a key and its value in wire form.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SvcParam<'a> {
    /// The key.
    pub key: SvcParamKey,
    /// The value's wire form.
    pub value: &'a [u8],
}

impl<'a> SvcParam<'a> {
    /// For `mandatory`: the listed keys.
    pub fn mandatory_keys(&self) -> impl Iterator<Item = SvcParamKey> + 'a {
        self.value.chunks_exact(2).map(|pair| SvcParamKey(be16(pair)))
    }

    /// For `alpn`: the protocol ids.
    pub fn alpn_ids(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        CharacterStrings::new(self.value)
    }

    /// For `port`: the port.
    pub fn port(&self) -> Option<u16> {
        let pair: [u8; 2] = self.value.try_into().ok()?;
        Some(u16::from_be_bytes(pair))
    }

    /// For `ipv4hint`: the addresses.
    pub fn ipv4_hints(&self) -> impl Iterator<Item = Ipv4Addr> + 'a {
        self.value.chunks_exact(4).filter_map(|chunk| <[u8; 4]>::try_from(chunk).ok()).map(Ipv4Addr::from)
    }

    /// For `ipv6hint`: the addresses.
    pub fn ipv6_hints(&self) -> impl Iterator<Item = Ipv6Addr> + 'a {
        self.value.chunks_exact(16).filter_map(|chunk| <[u8; 16]>::try_from(chunk).ok()).map(Ipv6Addr::from)
    }
}

/// Check parameters in wire form: keys strictly increasing, each value valid
/// for its key, and every mandatory key present.
pub(crate) fn check_params(bytes: &[u8], offset: usize, rtype: RecordType) -> Result<(), Error> {
    let invalid = |at: usize, rule: &'static str| Error::InvalidRdata { rtype, offset: at, rule };
    let mut position = 0usize;
    let mut previous: Option<u16> = None;
    let mut mandatory: &[u8] = &[];
    while position < bytes.len() {
        let at = offset + position;
        let header = bytes
            .get(position..position + 4)
            .ok_or_else(|| Error::UnexpectedEnd { offset: at, needed: (position + 4).saturating_sub(bytes.len()) })?;
        let key = be16(header);
        let len = usize::from(be16(header.get(2..).unwrap_or(&[])));
        let value = bytes.get(position + 4..position + 4 + len).ok_or_else(|| Error::UnexpectedEnd {
            offset: at + 4,
            needed: (position + 4 + len).saturating_sub(bytes.len()),
        })?;
        if previous.is_some_and(|p| p >= key) {
            return Err(invalid(at, "SvcParamKeys must be in strictly increasing order"));
        }
        previous = Some(key);
        match SvcParamKey(key) {
            SvcParamKey::MANDATORY => {
                if value.is_empty() || value.len() % 2 != 0 {
                    return Err(invalid(at, "mandatory must list one or more keys"));
                }
                let mut last = None;
                for pair in value.chunks_exact(2) {
                    let listed = be16(pair);
                    if listed == 0 || last.is_some_and(|l| l >= listed) {
                        return Err(invalid(at, "mandatory keys must be increasing and must not list mandatory"));
                    }
                    last = Some(listed);
                }
                mandatory = value;
            }
            SvcParamKey::ALPN => {
                if value.is_empty() {
                    return Err(invalid(at, "alpn must list one or more protocols"));
                }
                let mut rest = value;
                while let Some((&id_len, tail)) = rest.split_first() {
                    if id_len == 0 || tail.len() < usize::from(id_len) {
                        return Err(invalid(at, "alpn ids must be non-empty character-strings"));
                    }
                    rest = tail.get(usize::from(id_len)..).unwrap_or(&[]);
                }
            }
            SvcParamKey::NO_DEFAULT_ALPN if !value.is_empty() => {
                return Err(invalid(at, "no-default-alpn takes no value"));
            }
            SvcParamKey::PORT if value.len() != 2 => return Err(invalid(at, "port is two octets")),
            SvcParamKey::IPV4HINT if value.is_empty() || value.len() % 4 != 0 => {
                return Err(invalid(at, "ipv4hint is one or more IPv4 addresses"));
            }
            SvcParamKey::IPV6HINT if value.is_empty() || value.len() % 16 != 0 => {
                return Err(invalid(at, "ipv6hint is one or more IPv6 addresses"));
            }
            _ => {}
        }
        position += 4 + len;
    }
    for pair in mandatory.chunks_exact(2) {
        let listed = be16(pair);
        if !SvcParams::new(bytes).any(|param| param.key.0 == listed) {
            return Err(invalid(offset, "a key listed as mandatory is missing"));
        }
    }
    Ok(())
}

impl fmt::Display for SvcParam<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.key)?;
        match self.key {
            SvcParamKey::NO_DEFAULT_ALPN => Ok(()),
            SvcParamKey::MANDATORY => {
                f.write_str("=")?;
                write_comma_separated(self.mandatory_keys(), f)
            }
            SvcParamKey::ALPN => {
                f.write_str("=\"")?;
                for (index, id) in self.alpn_ids().enumerate() {
                    if index > 0 {
                        f.write_str(",")?;
                    }
                    for &byte in id {
                        match byte {
                            // A comma or backslash inside an id is escaped for the
                            // list (`\,`, `\\`), then every backslash of that is
                            // escaped again for the zone file.
                            b',' => f.write_str("\\\\,")?,
                            b'\\' => f.write_str("\\\\\\\\")?,
                            b'"' => f.write_str("\\\"")?,
                            0x20..=0x7e => write!(f, "{}", char::from(byte))?,
                            _ => write!(f, "\\{byte:03}")?,
                        }
                    }
                }
                f.write_str("\"")
            }
            SvcParamKey::PORT => match self.port() {
                Some(port) => write!(f, "={port}"),
                None => Err(fmt::Error),
            },
            SvcParamKey::IPV4HINT => {
                f.write_str("=")?;
                write_comma_separated(self.ipv4_hints(), f)
            }
            SvcParamKey::IPV6HINT => {
                f.write_str("=")?;
                write_comma_separated(self.ipv6_hints(), f)
            }
            SvcParamKey::ECH => {
                f.write_str("=")?;
                base64_encode(self.value, f)
            }
            _ => {
                if self.value.is_empty() {
                    return Ok(());
                }
                f.write_str("=")?;
                crate::present::write_character_string(self.value, f)
            }
        }
    }
}

/// `a,b,c`: the value lists of `mandatory`, `ipv4hint` and `ipv6hint`.
fn write_comma_separated(items: impl Iterator<Item = impl fmt::Display>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    for (index, item) in items.enumerate() {
        if index > 0 {
            f.write_str(",")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

/// An `ipv4hint` or `ipv6hint` value, `a,b,c`, in wire form: each address's
/// octets in turn.
fn parse_hints<A: core::str::FromStr, const N: usize>(
    text: &str,
    column: usize,
    octets: fn(&A) -> [u8; N],
) -> Result<Vec<u8>, Error> {
    let mut wire = Vec::new();
    for item in text.split(',') {
        let addr: A = item.parse().map_err(|_| Error::InvalidAddress { column })?;
        wire.extend_from_slice(&octets(&addr));
    }
    Ok(wire)
}

/// Parse presentation-format parameters (`key=value` tokens) into sorted wire form.
pub(crate) fn parse_params(tokens: &[Token<'_>], rtype: RecordType) -> Result<Vec<u8>, Error> {
    let mut params: Vec<(u16, Vec<u8>, usize)> = Vec::new();
    for token in tokens {
        let column = token.column;
        let raw = token.text;
        let (key_text, value_text) = match raw.split_once('=') {
            Some((key, value)) => (key, Some(value)),
            None => (raw, None),
        };
        let key = SvcParamKey::from_mnemonic(key_text).ok_or(Error::UnknownMnemonic { column, what: "SvcParamKey" })?;
        if key == SvcParamKey(65535) {
            return Err(Error::InvalidValue { rtype, column, rule: "key65535 is reserved" });
        }
        let value_column = column + key_text.len() + 1;
        // A value may be quoted as a whole: key="a,b".
        let value_text = value_text.map(|value| {
            if token.quoted {
                value
            } else {
                value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value)
            }
        });
        let value = match (key, value_text) {
            (SvcParamKey::NO_DEFAULT_ALPN, None) => Vec::new(),
            (SvcParamKey::NO_DEFAULT_ALPN, Some(_)) => {
                return Err(Error::InvalidValue { rtype, column, rule: "no-default-alpn takes no value" });
            }
            // A key without `=` has an empty value (RFC 9460 §2.1), which is how
            // ohttp is always written (RFC 9540 §4) and how an empty value of an
            // uninterpreted key is shown; keys whose value must hold something
            // say so here.
            (
                SvcParamKey::MANDATORY
                | SvcParamKey::ALPN
                | SvcParamKey::PORT
                | SvcParamKey::IPV4HINT
                | SvcParamKey::ECH
                | SvcParamKey::IPV6HINT,
                None,
            ) => {
                return Err(Error::MissingField { column, field: "SvcParam value" });
            }
            (_, None) => Vec::new(),
            (SvcParamKey::MANDATORY, Some(text)) => {
                let mut keys = Vec::new();
                for item in text.split(',') {
                    let listed = SvcParamKey::from_mnemonic(item)
                        .ok_or(Error::UnknownMnemonic { column: value_column, what: "SvcParamKey" })?;
                    keys.push(listed.0);
                }
                keys.sort_unstable();
                if keys.windows(2).any(|pair| pair.first() == pair.last()) || keys.contains(&0) {
                    return Err(Error::InvalidValue {
                        rtype,
                        column,
                        rule: "mandatory lists a key twice or lists mandatory",
                    });
                }
                keys.iter().flat_map(|key| key.to_be_bytes()).collect()
            }
            (SvcParamKey::ALPN, Some(text)) => {
                let decoded = decode_text(text, value_column)?;
                let mut wire = Vec::new();
                let mut id = Vec::new();
                let mut bytes = decoded.iter().copied();
                let push_id = |id: &mut Vec<u8>, wire: &mut Vec<u8>| -> Result<(), Error> {
                    let len = u8::try_from(id.len()).ok().filter(|&len| len > 0).ok_or(Error::InvalidValue {
                        rtype,
                        column,
                        rule: "alpn ids are 1 to 255 octets",
                    })?;
                    wire.push(len);
                    wire.append(id);
                    Ok(())
                };
                while let Some(byte) = bytes.next() {
                    match byte {
                        b'\\' => id.push(bytes.next().ok_or(Error::InvalidEscape { column: value_column })?),
                        b',' => push_id(&mut id, &mut wire)?,
                        other => id.push(other),
                    }
                }
                push_id(&mut id, &mut wire)?;
                wire
            }
            (SvcParamKey::PORT, Some(text)) => text
                .parse::<u16>()
                .map_err(|_| Error::InvalidNumber { column: value_column, field: "port" })?
                .to_be_bytes()
                .to_vec(),
            (SvcParamKey::IPV4HINT, Some(text)) => parse_hints(text, value_column, Ipv4Addr::octets)?,
            (SvcParamKey::IPV6HINT, Some(text)) => parse_hints(text, value_column, Ipv6Addr::octets)?,
            (SvcParamKey::ECH, Some(text)) => base64_decode(text, value_column)?,
            (_, Some(text)) => decode_text(text, value_column)?,
        };
        if value.len() > usize::from(u16::MAX) {
            return Err(Error::InvalidValue { rtype, column, rule: "SvcParam value longer than 65535 octets" });
        }
        if params.iter().any(|(existing, _, _)| *existing == key.0) {
            return Err(Error::InvalidValue { rtype, column, rule: "SvcParamKey appears twice" });
        }
        params.push((key.0, value, column));
    }
    params.sort_by_key(|(key, _, _)| *key);
    let mut wire = Vec::new();
    for (key, value, _) in &params {
        wire.extend_from_slice(&key.to_be_bytes());
        wire.extend_from_slice(&(value.len() as u16).to_be_bytes());
        wire.extend_from_slice(value);
    }
    let first_column = tokens.first().map_or(0, |token| token.column);
    check_params(&wire, 0, rtype).map_err(|error| match error {
        Error::InvalidRdata { rule, .. } => Error::InvalidValue { rtype, column: first_column, rule },
        other => other,
    })?;
    Ok(wire)
}

/// A big-endian u16 from the first two bytes (0 if fewer).
pub(crate) fn be16(bytes: &[u8]) -> u16 {
    u16::from_be_bytes([bytes.first().copied().unwrap_or_default(), bytes.get(1).copied().unwrap_or_default()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::present::tokenize;

    fn params_from(text: &str) -> Result<Vec<u8>, Error> {
        let tokens = tokenize(text)?;
        parse_params(&tokens, RecordType::HTTPS)
    }

    #[test]
    fn presentation_round_trips_in_key_order() {
        let wire = params_from("port=8443 alpn=h2,h3 mandatory=alpn ipv4hint=192.0.2.1,192.0.2.2 no-default-alpn")
            .expect("valid");
        let shown: Vec<String> = SvcParams::new(&wire).map(|p| p.to_string()).collect();
        assert_eq!(
            shown,
            ["mandatory=alpn", "alpn=\"h2,h3\"", "no-default-alpn", "port=8443", "ipv4hint=192.0.2.1,192.0.2.2"]
        );
        let again = params_from(&shown.join(" ")).expect("reparse");
        assert_eq!(again, wire);
    }

    #[test]
    fn escaped_commas_stay_inside_alpn_ids() {
        let wire = params_from(r#"alpn="f\\,oo,bar""#).expect("valid");
        let param = SvcParams::new(&wire).next().expect("one");
        assert_eq!(param.alpn_ids().collect::<Vec<_>>(), [b"f,oo" as &[u8], b"bar"]);
        assert_eq!(params_from(&param.to_string()), Ok(wire));
    }

    #[test]
    fn backslashes_inside_alpn_ids_survive_display() {
        // From fuzzing (presentation target): an alpn id holding a backslash was
        // shown as `t\\\@` (the list escape `\\` with only one of its backslashes
        // escaped for the zone file), which reads back as `t@`: the backslash was
        // lost on the round trip. Minimised from:
        // `https. IN HTTPS 886 ipv4hint=092.0.2.1<1+2.0t alpn=h\005\0...t\\\\\@\0...:44`
        let wire = b"\x00\x01\x00\x04\x03t\\@";
        let param = SvcParams::new(wire).next().expect("one");
        assert_eq!(param.alpn_ids().collect::<Vec<_>>(), [b"t\\@" as &[u8]]);
        assert_eq!(param.to_string(), r#"alpn="t\\\\@""#);
        assert_eq!(params_from(&param.to_string()), Ok(wire.to_vec()));
        crate::fuzzing::presentation(br"https. IN HTTPS 886 ipv4hint=092.0.2.1<1+2.0t alpn=t\\\\@,a\\\,b");
    }

    #[test]
    fn wire_rules_are_enforced() {
        let at = |rule| Err(Error::InvalidRdata { rtype: RecordType::SVCB, offset: 0, rule });
        // Keys out of order.
        assert_eq!(
            check_params(b"\x00\x03\x00\x02\x01\xbb\x00\x01\x00\x03\x02h2", 0, RecordType::SVCB),
            Err(Error::InvalidRdata {
                rtype: RecordType::SVCB,
                offset: 6,
                rule: "SvcParamKeys must be in strictly increasing order"
            })
        );
        // Mandatory lists a key that is absent.
        assert_eq!(
            check_params(b"\x00\x00\x00\x02\x00\x03", 0, RecordType::SVCB),
            at("a key listed as mandatory is missing")
        );
        assert!(check_params(b"\x00\x03\x00\x01\x01", 0, RecordType::SVCB).is_err());
        assert!(params_from("port=1 port=2").is_err());
        assert!(params_from("alpn").is_err());
        assert!(params_from("mandatory=port").is_err());
        assert!(params_from("key65535=x").is_err());
        assert!(params_from("key999=").is_ok());
    }

    #[test]
    fn keys_with_a_mnemonic_and_an_empty_value_round_trip() {
        // From fuzzing (presentation target): `key08=` (ohttp with an empty
        // value) was shown as `ohttp`, which the parser refused because every
        // key with a mnemonic needed `=value`. RFC 9460 §2.1 reads a bare key
        // as an empty value, and RFC 9540 §4 writes ohttp only that way.
        let input = b"! SVCB 1 s%cL83 key08= key35=\0\0 key30 key21=\0hl@1[0i1.0";
        crate::fuzzing::presentation(input);
        let wire = params_from("key08= key35= key30").expect("valid");
        let shown: Vec<String> = SvcParams::new(&wire).map(|p| p.to_string()).collect();
        assert_eq!(shown, ["ohttp", "key30", "key35"]);
        assert_eq!(params_from(&shown.join(" ")), Ok(wire));
        assert_eq!(params_from("ohttp dohpath"), Ok(b"\x00\x07\x00\x00\x00\x08\x00\x00".to_vec()));
        for key in ["mandatory", "alpn", "port", "ipv4hint", "ech", "ipv6hint"] {
            assert_eq!(params_from(key), Err(Error::MissingField { column: 0, field: "SvcParam value" }), "{key}");
        }
    }

    #[test]
    fn ech_is_base64() {
        let wire = params_from("ech=AEX+/w==").expect("valid");
        let param = SvcParams::new(&wire).next().expect("one");
        assert_eq!(param.value, [0x00, 0x45, 0xfe, 0xff]);
        assert_eq!(param.to_string(), "ech=AEX+/w==");
    }
}
