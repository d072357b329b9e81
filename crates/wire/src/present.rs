//! Presentation (zone-file) format: tokens, character-strings, hex, base64,
//! TTLs and RDATA of every type this crate knows, plus RFC 3597 `\# len hex`.

use core::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::Error;
use crate::iana::RecordType;
use crate::name::{Name, NameBuf};
use crate::rdata::{Caa, Mx, Naptr, RData, RDataBuf, RecordData, Soa, Srv, Svcb, Txt, Unknown};
use crate::svcb::parse_params;

/// One field of presentation-format text.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Token<'t> {
    /// The field's text. For a field that was one quoted string, the text
    /// between the quotes; otherwise the raw text. Escapes are not decoded.
    pub text: &'t str,
    /// Whether the field was a quoted string.
    pub quoted: bool,
    /// Byte offset of the field in the input.
    pub column: usize,
}

/// Split text into fields: whitespace separates, `"..."` groups, `;` starts a
/// comment to the end of the line, and unquoted parentheses are dropped (so a
/// whole parenthesised multi-line entry can be tokenized at once).
pub fn tokenize(text: &str) -> Result<Vec<Token<'_>>, Error> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes.get(index).copied().unwrap_or_default();
        match byte {
            b' ' | b'\t' | b'\r' | b'\n' | b'(' | b')' => index += 1,
            b';' => {
                while index < bytes.len() && bytes.get(index) != Some(&b'\n') {
                    index += 1;
                }
            }
            b'"' => {
                let start = index + 1;
                let end = find_closing_quote(bytes, start).ok_or(Error::UnterminatedQuote { column: index })?;
                tokens.push(Token { text: text.get(start..end).unwrap_or_default(), quoted: true, column: index });
                index = end + 1;
            }
            _ => {
                let start = index;
                let mut in_quotes = false;
                while let Some(&current) = bytes.get(index) {
                    match current {
                        b'\\' => index += 2,
                        b'"' => {
                            in_quotes = !in_quotes;
                            index += 1;
                        }
                        b' ' | b'\t' | b'\r' | b'\n' | b'(' | b')' | b';' if !in_quotes => break,
                        _ => index += 1,
                    }
                }
                if in_quotes {
                    return Err(Error::UnterminatedQuote { column: start });
                }
                let end = index.min(bytes.len());
                tokens.push(Token { text: text.get(start..end).unwrap_or_default(), quoted: false, column: start });
            }
        }
    }
    Ok(tokens)
}

fn find_closing_quote(bytes: &[u8], mut index: usize) -> Option<usize> {
    while let Some(&byte) = bytes.get(index) {
        match byte {
            b'\\' => index += 2,
            b'"' => return Some(index),
            _ => index += 1,
        }
    }
    None
}

/// Decode `\X` and `\DDD` escapes in a field's text into bytes.
pub fn decode_text(text: &str, column: usize) -> Result<Vec<u8>, Error> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        if byte == b'\\' {
            let (decoded, used) = crate::name::decode_escape(bytes, index + 1, column + index)?;
            out.push(decoded);
            index += 1 + used;
        } else {
            out.push(byte);
            index += 1;
        }
    }
    Ok(out)
}

/// Write a `<character-string>` quoted, escaping `"` and `\` and non-printable bytes.
pub fn write_character_string(bytes: &[u8], f: &mut impl fmt::Write) -> fmt::Result {
    f.write_char('"')?;
    for &byte in bytes {
        match byte {
            b'"' | b'\\' => {
                f.write_char('\\')?;
                f.write_char(char::from(byte))?;
            }
            0x20..=0x7e => f.write_char(char::from(byte))?,
            _ => write!(f, "\\{byte:03}")?,
        }
    }
    f.write_char('"')
}

/// Write bytes as lowercase hex.
pub fn write_hex(bytes: &[u8], f: &mut impl fmt::Write) -> fmt::Result {
    for byte in bytes {
        write!(f, "{byte:02x}")?;
    }
    Ok(())
}

fn hex_decode(text: &str, column: usize) -> Result<Vec<u8>, Error> {
    let invalid = Error::InvalidEncoding { column, encoding: "hex" };
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return Err(invalid);
    }
    digits
        .chunks_exact(2)
        .map(|pair| {
            let high = char::from(pair.first().copied().unwrap_or_default()).to_digit(16);
            let low = char::from(pair.get(1).copied().unwrap_or_default()).to_digit(16);
            match (high, low) {
                (Some(high), Some(low)) => Ok((high * 16 + low) as u8),
                _ => Err(invalid),
            }
        })
        .collect()
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Write bytes as standard base64 with padding.
pub fn base64_encode(bytes: &[u8], f: &mut impl fmt::Write) -> fmt::Result {
    for chunk in bytes.chunks(3) {
        let b0 = chunk.first().copied().unwrap_or_default();
        let b1 = chunk.get(1).copied().unwrap_or_default();
        let b2 = chunk.get(2).copied().unwrap_or_default();
        let n = u32::from(b0) << 16 | u32::from(b1) << 8 | u32::from(b2);
        let symbol = |shift: u32| char::from(BASE64.get(((n >> shift) & 63) as usize).copied().unwrap_or(b'A'));
        f.write_char(symbol(18))?;
        f.write_char(symbol(12))?;
        f.write_char(if chunk.len() > 1 { symbol(6) } else { '=' })?;
        f.write_char(if chunk.len() > 2 { symbol(0) } else { '=' })?;
    }
    Ok(())
}

/// Decode standard base64 (padding optional, whitespace ignored).
pub fn base64_decode(text: &str, column: usize) -> Result<Vec<u8>, Error> {
    let invalid = Error::InvalidEncoding { column, encoding: "base64" };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut accumulator = 0u32;
    let mut bits = 0u32;
    let mut padding = 0;
    for byte in text.bytes().filter(|b| !b.is_ascii_whitespace()) {
        if byte == b'=' {
            padding += 1;
            continue;
        }
        if padding > 0 {
            return Err(invalid);
        }
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return Err(invalid),
        };
        accumulator = (accumulator << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((accumulator >> bits) as u8);
            accumulator &= (1 << bits) - 1;
        }
    }
    if padding > 2 || bits >= 6 || accumulator != 0 {
        return Err(invalid);
    }
    Ok(out)
}

/// Parse a TTL: seconds, or BIND units (`1w2d3h4m5s`, case-insensitive).
pub fn parse_ttl(text: &str, column: usize) -> Result<u32, Error> {
    let invalid = Error::InvalidNumber { column, field: "TTL" };
    if text.is_empty() {
        return Err(invalid);
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|_| invalid);
    }
    let mut total: u64 = 0;
    let mut current: u64 = 0;
    let mut have_digits = false;
    for byte in text.bytes() {
        if byte.is_ascii_digit() {
            current = current.checked_mul(10).and_then(|c| c.checked_add(u64::from(byte - b'0'))).ok_or(invalid)?;
            have_digits = true;
            continue;
        }
        let unit = match byte.to_ascii_lowercase() {
            b'w' => 604_800,
            b'd' => 86_400,
            b'h' => 3_600,
            b'm' => 60,
            b's' => 1,
            _ => return Err(invalid),
        };
        if !have_digits {
            return Err(invalid);
        }
        total = current.checked_mul(unit).and_then(|seconds| total.checked_add(seconds)).ok_or(invalid)?;
        current = 0;
        have_digits = false;
    }
    if have_digits {
        return Err(invalid);
    }
    u32::try_from(total).map_err(|_| invalid)
}

/// Whether `text` looks like a TTL (so a zone parser can tell TTL from class or type).
pub fn is_ttl(text: &str) -> bool {
    text.as_bytes().first().is_some_and(u8::is_ascii_digit) && parse_ttl(text, 0).is_ok()
}

struct Fields<'t, 'a> {
    tokens: &'a [Token<'t>],
    index: usize,
    end_column: usize,
    rtype: RecordType,
}

impl<'t, 'a> Fields<'t, 'a> {
    fn next(&mut self, field: &'static str) -> Result<Token<'t>, Error> {
        let token =
            self.tokens.get(self.index).copied().ok_or(Error::MissingField { column: self.end_column, field })?;
        self.index += 1;
        Ok(token)
    }

    fn number<T: core::str::FromStr>(&mut self, field: &'static str) -> Result<T, Error> {
        let token = self.next(field)?;
        token.text.parse().map_err(|_| Error::InvalidNumber { column: token.column, field })
    }

    fn time(&mut self, field: &'static str) -> Result<u32, Error> {
        let token = self.next(field)?;
        parse_ttl(token.text, token.column).map_err(|_| Error::InvalidNumber { column: token.column, field })
    }

    fn name(&mut self, field: &'static str, origin: Option<&NameBuf>) -> Result<NameBuf, Error> {
        let token = self.next(field)?;
        parse_name(token, origin)
    }

    fn string(&mut self, field: &'static str) -> Result<Vec<u8>, Error> {
        let token = self.next(field)?;
        let bytes = decode_text(token.text, token.column)?;
        if bytes.len() > 255 {
            return Err(Error::StringTooLong { column: token.column });
        }
        Ok(bytes)
    }

    fn rest(&mut self) -> &'a [Token<'t>] {
        let rest = self.tokens.get(self.index..).unwrap_or(&[]);
        self.index = self.tokens.len();
        rest
    }

    fn finish(&self) -> Result<(), Error> {
        match self.tokens.get(self.index) {
            Some(token) => Err(Error::UnexpectedField { column: token.column }),
            None => Ok(()),
        }
    }

    fn invalid(&self, column: usize, rule: &'static str) -> Error {
        Error::InvalidValue { rtype: self.rtype, column, rule }
    }
}

/// Parse a name field: absolute if it ends in a dot, else relative to `origin`
/// (an error without one). `@` is the origin.
pub fn parse_name(token: Token<'_>, origin: Option<&NameBuf>) -> Result<NameBuf, Error> {
    let column = token.column;
    let result = match origin {
        Some(origin) => NameBuf::from_presentation_relative(token.text, origin),
        None => {
            if !ends_with_unescaped_dot(token.text) {
                return Err(Error::RelativeName { column });
            }
            NameBuf::from_presentation(token.text)
        }
    };
    result.map_err(|error| error.shifted(column))
}

/// Whether a name's text ends in a dot that is not escaped: `a.` and `a\\\\.`
/// do, `a\\.` does not (a backslash can only be escaped by another, so the
/// run of backslashes before the dot decides).
fn ends_with_unescaped_dot(text: &str) -> bool {
    text.strip_suffix('.').is_some_and(|head| head.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 0)
}

impl RDataBuf {
    /// Parse RDATA of type `rtype` from presentation-format fields.
    ///
    /// Relative names are completed with `origin`; without one they are an
    /// error. Every type accepts RFC 3597 `\# len hex`; types this crate does
    /// not know accept only that.
    pub fn from_tokens(rtype: RecordType, tokens: &[Token<'_>], origin: Option<&NameBuf>) -> Result<Self, Error> {
        let end_column = tokens.last().map_or(0, |t| t.column + t.text.len());
        let mut fields = Fields { tokens, index: 0, end_column, rtype };
        if tokens.first().is_some_and(|t| t.text == "\\#" && !t.quoted) {
            fields.index = 1;
            return parse_generic(rtype, &mut fields);
        }
        let data = match rtype {
            RecordType::A => {
                let token = fields.next("IPv4 address")?;
                let addr: Ipv4Addr = token.text.parse().map_err(|_| Error::InvalidAddress { column: token.column })?;
                Self::A(addr)
            }
            RecordType::AAAA => {
                let token = fields.next("IPv6 address")?;
                let addr: Ipv6Addr = token.text.parse().map_err(|_| Error::InvalidAddress { column: token.column })?;
                Self::Aaaa(addr)
            }
            RecordType::NS => Self::Ns(fields.name("name server", origin)?),
            RecordType::CNAME => Self::Cname(fields.name("canonical name", origin)?),
            RecordType::DNAME => Self::Dname(fields.name("target", origin)?),
            RecordType::PTR => Self::Ptr(fields.name("pointer name", origin)?),
            RecordType::MX => {
                Self::Mx(Mx { preference: fields.number("preference")?, exchange: fields.name("exchange", origin)? })
            }
            RecordType::TXT => {
                let mut wire = Vec::new();
                let strings = fields.rest();
                if strings.is_empty() {
                    return Err(Error::MissingField { column: end_column, field: "text" });
                }
                for token in strings {
                    let bytes = decode_text(token.text, token.column)?;
                    // Long unquoted data is split into 255-octet strings, as BIND does.
                    if bytes.len() > 255 && token.quoted {
                        return Err(Error::StringTooLong { column: token.column });
                    }
                    for chunk in bytes.chunks(255) {
                        wire.push(chunk.len() as u8);
                        wire.extend_from_slice(chunk);
                    }
                    if bytes.is_empty() {
                        wire.push(0);
                    }
                }
                Self::Txt(Txt(wire))
            }
            RecordType::SOA => Self::Soa(Soa {
                mname: fields.name("primary name server", origin)?,
                rname: fields.name("responsible mailbox", origin)?,
                serial: fields.number("serial")?,
                refresh: fields.time("refresh")?,
                retry: fields.time("retry")?,
                expire: fields.time("expire")?,
                minimum: fields.time("minimum")?,
            }),
            RecordType::SRV => Self::Srv(Srv {
                priority: fields.number("priority")?,
                weight: fields.number("weight")?,
                port: fields.number("port")?,
                target: fields.name("target", origin)?,
            }),
            RecordType::CAA => {
                let flags = fields.number("flags")?;
                let tag_token = fields.next("tag")?;
                let tag = tag_token.text.as_bytes().to_vec();
                if tag.is_empty() || tag.len() > 15 || !tag.iter().all(u8::is_ascii_alphanumeric) {
                    return Err(fields.invalid(tag_token.column, "CAA tag must be 1 to 15 letters or digits"));
                }
                let value_token = fields.next("value")?;
                let value = decode_text(value_token.text, value_token.column)?;
                Self::Caa(Caa { flags, tag, value })
            }
            RecordType::NAPTR => Self::Naptr(Naptr {
                order: fields.number("order")?,
                preference: fields.number("preference")?,
                flags: fields.string("flags")?,
                services: fields.string("services")?,
                regexp: fields.string("regexp")?,
                replacement: fields.name("replacement", origin)?,
            }),
            RecordType::SVCB | RecordType::HTTPS => {
                let priority: u16 = fields.number("priority")?;
                let target = fields.name("target", origin)?;
                let params_tokens = fields.rest();
                if priority == 0 && !params_tokens.is_empty() {
                    return Err(fields.invalid(
                        params_tokens.first().map_or(0, |t| t.column),
                        "alias mode (priority 0) takes no parameters",
                    ));
                }
                let params = parse_params(params_tokens, rtype)?;
                let svcb = Svcb { priority, target, params };
                if rtype == RecordType::SVCB { Self::Svcb(svcb) } else { Self::Https(svcb) }
            }
            _ => {
                let column = tokens.first().map_or(end_column, |t| t.column);
                return Err(Error::InvalidValue {
                    rtype,
                    column,
                    rule: "this type is only accepted in \\# generic syntax",
                });
            }
        };
        fields.finish()?;
        Ok(data)
    }
}

fn parse_generic(rtype: RecordType, fields: &mut Fields<'_, '_>) -> Result<RDataBuf, Error> {
    let len: usize = fields.number("RDATA length")?;
    let hex_tokens = fields.rest();
    let column = hex_tokens.first().map_or(fields.end_column, |t| t.column);
    let mismatch = Error::InvalidValue { rtype, column, rule: "\\# length does not match the hex data" };
    // Check the announced length before reserving space for it.
    if len > usize::from(u16::MAX) {
        return Err(mismatch);
    }
    let mut data = Vec::with_capacity(len);
    for token in hex_tokens {
        data.extend(hex_decode(token.text, token.column)?);
    }
    if data.len() != len {
        return Err(mismatch);
    }
    // Known types given generically are read as wire data, names uncompressed
    // (OPT included: its options must be well formed, as on the wire).
    let invalid = Error::InvalidValue { rtype, column, rule: "generic data is not valid for this type" };
    let parsed = RData::parse(rtype, &data, 0, data.len()).map_err(|_| invalid)?;
    if matches!(parsed, RecordData::Unknown(_)) {
        return Ok(RecordData::Unknown(Unknown { rtype, data }));
    }
    if contains_pointer(&parsed) {
        return Err(Error::InvalidValue { rtype, column, rule: "generic data may not hold compressed names" });
    }
    Ok(parsed.to_owned_data())
}

fn contains_pointer(data: &RData<'_>) -> bool {
    let compressed = |name: &Name<'_>| name.is_compressed();
    match data {
        RecordData::Ns(n) | RecordData::Cname(n) | RecordData::Dname(n) | RecordData::Ptr(n) => compressed(n),
        RecordData::Mx(mx) => compressed(&mx.exchange),
        RecordData::Soa(soa) => compressed(&soa.mname) || compressed(&soa.rname),
        RecordData::Srv(srv) => compressed(&srv.target),
        RecordData::Naptr(naptr) => compressed(&naptr.replacement),
        RecordData::Svcb(svcb) | RecordData::Https(svcb) => compressed(&svcb.target),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rdata(rtype: RecordType, text: &str) -> Result<RDataBuf, Error> {
        let origin: NameBuf = "example.com.".parse().expect("origin");
        RDataBuf::from_tokens(rtype, &tokenize(text)?, Some(&origin))
    }

    #[test]
    fn tokenizer_handles_quotes_comments_and_parentheses() {
        let tokens = tokenize("a \"b c\" ( d\n e ) ; comment\n f\"g h\"").expect("valid");
        let texts: Vec<_> = tokens.iter().map(|t| (t.text, t.quoted)).collect();
        assert_eq!(texts, [("a", false), ("b c", true), ("d", false), ("e", false), ("f\"g h\"", false)]);
        assert_eq!(tokens[1].column, 2);
        assert_eq!(tokenize("\"open"), Err(Error::UnterminatedQuote { column: 0 }));
        assert_eq!(tokenize("a\\ b").expect("escaped space").len(), 1);
    }

    #[test]
    fn every_known_type_round_trips_through_presentation() {
        let cases = [
            (RecordType::A, "192.0.2.1"),
            (RecordType::AAAA, "2001:db8::1"),
            (RecordType::NS, "ns1.example.com."),
            (RecordType::CNAME, "target.example.net."),
            (RecordType::DNAME, "example.net."),
            (RecordType::PTR, "host.example.com."),
            (RecordType::MX, "10 mail.example.com."),
            (RecordType::TXT, "\"v=spf1 -all\" \"second \\\"quoted\\\"\" \"\\000\\255\""),
            (RecordType::SOA, "ns1.example.com. hostmaster.example.com. 2024010101 7200 3600 1209600 300"),
            (RecordType::SRV, "10 60 5060 sip.example.com."),
            (RecordType::CAA, "0 issue \"letsencrypt.org\""),
            (RecordType::NAPTR, "100 10 \"U\" \"E2U+sip\" \"!^.*$!sip:info@example.com!\" ."),
            (RecordType::SVCB, "1 svc.example.com. alpn=\"h2,h3\" port=8443 ipv6hint=2001:db8::1"),
            (RecordType::HTTPS, "0 pool.example.net."),
            (RecordType(65280), "\\# 3 abcdef"),
        ];
        for (rtype, text) in cases {
            let parsed = rdata(rtype, text).unwrap_or_else(|e| panic!("{rtype} {text}: {e}"));
            assert_eq!(parsed.to_string(), text, "{rtype}");
            let wire = parsed.to_wire();
            let back = RData::parse(rtype, &wire, 0, wire.len()).expect("wire parses");
            assert_eq!(back.to_owned_data(), parsed, "{rtype}");
        }
    }

    #[test]
    fn relative_names_units_and_generic_syntax() {
        assert_eq!(rdata(RecordType::CNAME, "www").expect("ok").to_string(), "www.example.com.");
        assert_eq!(rdata(RecordType::MX, "10 @").expect("ok").to_string(), "10 example.com.");
        let soa = rdata(RecordType::SOA, "ns hostmaster 1 1h 30m 1w 1d").expect("ok");
        assert_eq!(soa.to_string(), "ns.example.com. hostmaster.example.com. 1 3600 1800 604800 86400");
        assert_eq!(rdata(RecordType::A, "\\# 4 c0000201").expect("ok"), RDataBuf::A(Ipv4Addr::new(192, 0, 2, 1)));
        assert!(rdata(RecordType::A, "\\# 5 c0000201").is_err());
        assert!(rdata(RecordType::A, "\\# 3 c00002").is_err());
        assert!(rdata(RecordType::DS, "12345 8 2 abcd").is_err());
        assert_eq!(rdata(RecordType::DS, "\\# 2 abcd").expect("ok").to_string(), "\\# 2 abcd");
    }

    #[test]
    fn errors_point_at_the_field() {
        assert_eq!(rdata(RecordType::A, "192.0.2"), Err(Error::InvalidAddress { column: 0 }));
        assert_eq!(rdata(RecordType::MX, "ten mail"), Err(Error::InvalidNumber { column: 0, field: "preference" }));
        assert_eq!(rdata(RecordType::MX, "10"), Err(Error::MissingField { column: 2, field: "exchange" }));
        assert_eq!(rdata(RecordType::A, "1.2.3.4 extra"), Err(Error::UnexpectedField { column: 8 }));
        assert_eq!(rdata(RecordType::CNAME, "a..b"), Err(Error::EmptyLabel { column: 2 }));
        assert_eq!(
            RDataBuf::from_tokens(RecordType::NS, &tokenize("  ns1").expect("ok"), None),
            Err(Error::RelativeName { column: 2 })
        );
    }

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("3600", 0), Ok(3600));
        assert_eq!(parse_ttl("1h30m", 0), Ok(5400));
        assert_eq!(parse_ttl("1W", 0), Ok(604_800));
        assert!(parse_ttl("1x", 0).is_err());
        assert!(parse_ttl("h", 0).is_err());
        assert!(parse_ttl("5", 0).is_ok() && parse_ttl("4294967296", 0).is_err());
        assert!(is_ttl("300") && !is_ttl("IN") && !is_ttl("A"));
    }

    #[test]
    fn ttl_whose_unit_product_overflows_is_an_error() {
        // From fuzzing (presentation target): 18 digits times the seconds in a
        // week overflowed u64 in `current * unit` (a panic with overflow checks,
        // a silently wrong TTL without them).
        assert_eq!(parse_ttl("333333333333333333w", 4), Err(Error::InvalidNumber { column: 4, field: "TTL" }));
        assert!(!is_ttl("333333333333333333w"));
        let input = b"bcb@  3333333333333333w\x7f\x00\x00\x00=ww\n";
        let origin: NameBuf = "example.".parse().expect("origin");
        let text = core::str::from_utf8(input).expect("utf-8");
        assert!(crate::RecordBuf::from_presentation(text, Some(&origin), Some(300)).is_err());
        assert_eq!(parse_ttl("4294967295s", 0), Ok(u32::MAX));
        assert!(parse_ttl("4294967296s", 0).is_err());
    }

    #[test]
    fn generic_length_is_checked_before_allocating() {
        // From fuzzing (build_then_parse target): `TYPE65280 \# 68888888888888888 0NSOA...`
        // made parse_generic reserve that many bytes before comparing the length
        // with the hex data: an allocation of 69 PB, which aborts the process.
        let expected = Err(Error::InvalidValue {
            rtype: RecordType(65280),
            column: 21,
            rule: "\\# length does not match the hex data",
        });
        assert_eq!(rdata(RecordType(65280), "\\# 68888888888888888 00"), expected);
        assert!(rdata(RecordType(65280), "\\# 65536 00").is_err());
    }

    #[test]
    fn generic_opt_data_must_hold_well_formed_options() {
        // From fuzzing (presentation target): `p\0\0\0\x0e TYPE41 \# 3 3000fe` was
        // taken as OPT data without looking at it, so the record parsed from
        // text but its wire form did not (an option code with no length).
        let input = b"p\0\0\0\x0e TYPE41 \\# 3 3000fe\n";
        let origin: NameBuf = "example.".parse().expect("origin");
        let text = core::str::from_utf8(input).expect("utf-8");
        assert_eq!(
            crate::RecordBuf::from_presentation(text, Some(&origin), Some(300)),
            Err(Error::InvalidValue {
                rtype: RecordType::OPT,
                column: 18,
                rule: "generic data is not valid for this type"
            })
        );
        // Well-formed options are still accepted: NSID with no data.
        assert_eq!(rdata(RecordType::OPT, "\\# 4 00030000").expect("ok").to_string(), "\\# 4 00030000");
    }

    #[test]
    fn a_dot_after_an_escaped_backslash_ends_an_absolute_name() {
        // From fuzzing (presentation target): `t\\\\\\\\. TXT l` has an absolute
        // owner (four escaped backslashes, then the final dot), but parse_name
        // without an origin took any name ending in `\.` for a relative one, so
        // the record's own display did not parse.
        let input = b"t\\\\\\\\\\\\\\\\. TXT l  \\\\\\x\n\0 \0\0 \0e";
        let text = core::str::from_utf8(input).expect("utf-8");
        let origin: NameBuf = "example.".parse().expect("origin");
        let record = crate::RecordBuf::from_presentation(text, Some(&origin), Some(300)).expect("valid");
        assert_eq!(record.name.to_string(), r"t\\\\\\\\.");
        let shown = record.to_string();
        assert_eq!(crate::RecordBuf::from_presentation(&shown, None, None), Ok(record));
        assert!(
            ends_with_unescaped_dot(".") && ends_with_unescaped_dot("a\\\\.") && ends_with_unescaped_dot("a\\046.")
        );
        assert!(
            !ends_with_unescaped_dot("a\\.") && !ends_with_unescaped_dot("a\\\\\\.") && !ends_with_unescaped_dot("a")
        );
        let token = |text| Token { text, quoted: false, column: 3 };
        assert_eq!(parse_name(token("a\\."), None), Err(Error::RelativeName { column: 3 }));
    }

    #[test]
    fn base64_round_trips() {
        for data in [&b""[..], b"f", b"fo", b"foo", b"foob", b"\x00\xff\x10"] {
            let mut text = String::new();
            base64_encode(data, &mut text).expect("write");
            assert_eq!(base64_decode(&text, 0), Ok(data.to_vec()));
        }
        assert!(base64_decode("Zm9v=Zm9v", 0).is_err());
        assert!(base64_decode("Zm9", 0).is_err() || base64_decode("Zm9", 0) == Ok(b"fo".to_vec()));
    }
}
