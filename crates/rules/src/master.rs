//! RFC 1035 §5 master files: reading (with `$ORIGIN`, `$TTL`, `$INCLUDE`,
//! `@`, omitted owner, TTL and class, parentheses, comments, quoted strings
//! and RFC 3597 generic data) and writing.

use core::fmt::Write as _;
use core::ops::Range;
use std::path::{Path, PathBuf};

use signpost_wire::{
    Class, NameBuf, RDataBuf, RecordBuf, RecordType, Token, parse_name, parse_ttl, parse_ttl_class_type, tokenize,
};

use crate::error::{Error, Location};
use crate::zone::Zone;

/// How deep `$INCLUDE` may nest (which also stops include loops).
pub const MAX_INCLUDE_DEPTH: usize = 8;

/// Where master-file text comes from, for error locations and `$INCLUDE`.
#[derive(Clone, Copy, Debug)]
pub struct Source<'a> {
    /// The file name for error messages, if the text was read from a file.
    pub file: Option<&'a Path>,
    /// The directory `$INCLUDE` paths are relative to; `None` forbids `$INCLUDE`.
    pub include_dir: Option<&'a Path>,
}

impl<'a> Source<'a> {
    /// Text read from `file`: includes are relative to its directory.
    pub fn file(file: &'a Path) -> Self {
        Self { file: Some(file), include_dir: Some(file.parent().unwrap_or_else(|| Path::new("."))) }
    }

    /// Text from memory, with no `$INCLUDE` allowed.
    pub fn memory() -> Self {
        Self { file: None, include_dir: None }
    }
}

impl Zone {
    /// Read a zone from a master file on disk. `origin` is the zone's apex
    /// and the initial `$ORIGIN`.
    pub fn load(path: &Path, origin: &NameBuf) -> Result<Self, Error> {
        let text = read_text(path, Location::default())?;
        Self::parse_master_file(&text, origin, Source::file(path))
    }

    /// Read a zone from master-file text. The zone must have an SOA at `origin`.
    pub fn parse_master_file(text: &str, origin: &NameBuf, source: Source<'_>) -> Result<Self, Error> {
        let records = parse_records(text, origin, source)?;
        let class = records.first().map_or(Class::IN, |(record, _)| record.class);
        let at = Location { file: source.file.map(Path::to_path_buf), ..Location::default() };
        let with_locations = records.into_iter().map(|(record, at)| (record, Some(at))).collect();
        Self::build(origin.clone(), class, with_locations, &at)
    }

    /// The zone as a master file: `$ORIGIN`, then the SOA, then every other
    /// record in canonical order, one per line with absolute names.
    pub fn to_master_file(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "$ORIGIN {}", self.apex());
        let _ = writeln!(out, "{}", self.soa());
        for record in self.records().filter(|record| record.rtype() != RecordType::SOA) {
            let _ = writeln!(out, "{record}");
        }
        out
    }
}

/// Read the records of master-file text, each with where it was found.
/// Relative names are completed with `origin` (until `$ORIGIN` changes it).
pub fn parse_records(text: &str, origin: &NameBuf, source: Source<'_>) -> Result<Vec<(RecordBuf, Location)>, Error> {
    parse_records_with_ttl(text, origin, source, None)
}

/// [`parse_records`], with `default_ttl` for records without a TTL until a
/// `$TTL` line sets another (the test kit's zones given as text).
pub fn parse_records_with_ttl(
    text: &str,
    origin: &NameBuf,
    source: Source<'_>,
    default_ttl: Option<u32>,
) -> Result<Vec<(RecordBuf, Location)>, Error> {
    let mut parser = Parser { records: Vec::new() };
    let state = State {
        origin: origin.clone(),
        default_ttl,
        last_ttl: None,
        last_owner: None,
        last_class: None,
        soa_minimum: None,
    };
    parser.parse(text, source, state, 0)?;
    Ok(parser.records)
}

fn read_text(path: &Path, at: Location) -> Result<String, Error> {
    let bytes = std::fs::read(path).map_err(|error| Error::io(at, path, error))?;
    String::from_utf8(bytes).map_err(|error| {
        let bytes = error.as_bytes();
        let valid = error.utf8_error().valid_up_to();
        let line = bytes.get(..valid).map_or(0, |ok| ok.iter().filter(|&&b| b == b'\n').count()) + 1;
        Error::NotUtf8 { at: Location { file: Some(path.to_path_buf()), line: Some(line), ..Location::default() } }
    })
}

struct Parser {
    records: Vec<(RecordBuf, Location)>,
}

struct State {
    origin: NameBuf,
    /// From `$TTL`.
    default_ttl: Option<u32>,
    /// The last TTL given explicitly (RFC 1035's default before `$TTL` existed).
    last_ttl: Option<u32>,
    last_owner: Option<NameBuf>,
    last_class: Option<Class>,
    /// The SOA's minimum, the default of last resort (BIND's RFC 1035 mode).
    soa_minimum: Option<u32>,
}

/// One logical entry: a line, or several joined by parentheses.
struct Entry<'t> {
    text: &'t str,
    /// Offset of `text` in the file.
    offset: usize,
}

impl Parser {
    fn parse(&mut self, text: &str, source: Source<'_>, mut state: State, depth: usize) -> Result<(), Error> {
        let file = source.file.map(Path::to_path_buf);
        let locate = |offset: usize| Location::at_offset(file.clone(), text, offset);
        let ranges =
            split_entries(text).map_err(|(offset, problem)| Error::ZoneFile { at: locate(offset), problem })?;
        for range in ranges {
            let entry = Entry { text: text.get(range.clone()).unwrap_or_default(), offset: range.start };
            let syntax = |error: signpost_wire::Error| Error::ZoneSyntax {
                at: locate(entry.offset + error.position().unwrap_or(0)),
                source: error,
            };
            let tokens = tokenize(entry.text).map_err(syntax)?;
            let Some(first) = tokens.first() else { continue };
            let owner_omitted = entry.text.starts_with([' ', '\t']);
            if !owner_omitted && !first.quoted && first.text.starts_with('$') {
                self.directive(&tokens, &entry, source, &mut state, depth, &locate)?;
                continue;
            }
            let (owner, rest) = if owner_omitted {
                let owner = state.last_owner.clone().ok_or_else(|| Error::ZoneFile {
                    at: locate(entry.offset + first.column),
                    problem: "the owner name is omitted but no earlier record gives one",
                })?;
                (owner, tokens.as_slice())
            } else {
                (parse_name(*first, Some(&state.origin)).map_err(syntax)?, tokens.get(1..).unwrap_or(&[]))
            };
            let fields = parse_ttl_class_type(rest, entry.text.len()).map_err(syntax)?;
            let data = RDataBuf::from_tokens(fields.rtype, fields.rdata, Some(&state.origin)).map_err(syntax)?;
            if fields.ttl.is_some() {
                state.last_ttl = fields.ttl;
            }
            let soa_minimum = match &data {
                RDataBuf::Soa(soa) => Some(soa.minimum),
                _ => None,
            };
            if soa_minimum.is_some() {
                state.soa_minimum = soa_minimum;
            }
            let ttl = fields.ttl.or(state.default_ttl).or(state.last_ttl).or(state.soa_minimum).ok_or_else(|| {
                Error::ZoneFile {
                    at: locate(entry.offset + first.column),
                    problem: "no TTL given, and no $TTL, earlier TTL or SOA to default to",
                }
            })?;
            let class = fields.class.or(state.last_class).unwrap_or(Class::IN);
            state.last_class = Some(class);
            state.last_owner = Some(owner.clone());
            self.records.push((RecordBuf { name: owner, class, ttl, data }, locate(entry.offset)));
        }
        Ok(())
    }

    fn directive(
        &mut self,
        tokens: &[Token<'_>],
        entry: &Entry<'_>,
        source: Source<'_>,
        state: &mut State,
        depth: usize,
        locate: &dyn Fn(usize) -> Location,
    ) -> Result<(), Error> {
        let at = |token: &Token<'_>| locate(entry.offset + token.column);
        let syntax = |error: signpost_wire::Error| Error::ZoneSyntax {
            at: locate(entry.offset + error.position().unwrap_or(0)),
            source: error,
        };
        let Some((keyword, arguments)) = tokens.split_first() else { return Ok(()) };
        let missing = |problem| Error::ZoneFile { at: locate(entry.offset + entry.text.len()), problem };
        if keyword.text.eq_ignore_ascii_case("$ORIGIN") {
            let [name] = arguments else {
                return Err(missing("$ORIGIN takes exactly one domain name"));
            };
            state.origin = parse_name(*name, Some(&state.origin)).map_err(syntax)?;
        } else if keyword.text.eq_ignore_ascii_case("$TTL") {
            let [ttl] = arguments else {
                return Err(missing("$TTL takes exactly one TTL"));
            };
            state.default_ttl = Some(parse_ttl(ttl.text, ttl.column).map_err(syntax)?);
        } else if keyword.text.eq_ignore_ascii_case("$INCLUDE") {
            let (path_token, origin_token) = match arguments {
                [path] => (path, None),
                [path, origin] => (path, Some(origin)),
                _ => return Err(missing("$INCLUDE takes a file name and an optional origin")),
            };
            let Some(dir) = source.include_dir else {
                return Err(Error::ZoneFile { at: at(keyword), problem: "$INCLUDE is not allowed in this text" });
            };
            if depth + 1 > MAX_INCLUDE_DEPTH {
                return Err(Error::IncludeDepth { at: at(keyword), limit: MAX_INCLUDE_DEPTH });
            }
            let path: PathBuf = dir.join(path_token.text);
            let origin = match origin_token {
                Some(token) => parse_name(*token, Some(&state.origin)).map_err(syntax)?,
                None => state.origin.clone(),
            };
            let text = read_text(&path, at(path_token))?;
            let included = State {
                origin,
                default_ttl: state.default_ttl,
                last_ttl: state.last_ttl,
                last_owner: None,
                last_class: state.last_class,
                soa_minimum: state.soa_minimum,
            };
            // The included file's $ORIGIN and $TTL do not leak back (RFC 1035 §5.1).
            self.parse(&text, Source::file(&path), included, depth + 1)?;
        } else {
            return Err(Error::ZoneFile {
                at: at(keyword),
                problem: "unknown or unsupported directive ($ORIGIN, $TTL and $INCLUDE are supported)",
            });
        }
        Ok(())
    }
}

/// Split text into logical entries: newlines end an entry unless inside
/// parentheses or quotes. Comments and escapes are skipped over.
fn split_entries(text: &str) -> Result<Vec<Range<usize>>, (usize, &'static str)> {
    let bytes = text.as_bytes();
    let mut entries = Vec::new();
    let mut start = 0;
    let mut depth = 0usize;
    let mut open_at = 0;
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        match byte {
            b'\\' => index += 1,
            b'"' => {
                let quote_at = index;
                index += 1;
                loop {
                    match bytes.get(index) {
                        Some(b'\\') => index += 2,
                        Some(b'"') => break,
                        Some(_) => index += 1,
                        None => return Err((quote_at, "unterminated quoted string")),
                    }
                }
            }
            b';' => {
                while bytes.get(index + 1).is_some_and(|&next| next != b'\n') {
                    index += 1;
                }
            }
            b'(' => {
                if depth == 0 {
                    open_at = index;
                }
                depth += 1;
            }
            b')' => {
                depth = depth.checked_sub(1).ok_or((index, "closing parenthesis without an opening one"))?;
            }
            b'\n' if depth == 0 => {
                entries.push(start..index);
                start = index + 1;
            }
            _ => {}
        }
        index += 1;
    }
    if depth > 0 {
        return Err((open_at, "parenthesis not closed before the end of the file"));
    }
    if start < text.len() {
        entries.push(start..text.len());
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::name;

    fn parse(text: &str) -> Result<Zone, Error> {
        Zone::parse_master_file(text, &name("example."), Source::memory())
    }

    #[test]
    fn every_syntax_feature_of_rfc1035() {
        let text = "\
; a comment line
$TTL 1h
@   IN  SOA ns1 hostmaster ( 2024010101 ; serial
            7200        ; refresh
            900 1209600 300 )
    IN  NS  ns1                 ; owner omitted: still @
ns1     A   192.0.2.53
        AAAA 2001:db8::53       ; owner omitted: ns1
www 300 IN A 192.0.2.80
www IN 300 A 192.0.2.81         ; class before TTL
txt     TXT \"hello world\" \"semi;colon\" \"quote \\\"x\\\"\"
$ORIGIN sub.example.
host    A   192.0.2.9
@       MX  10 host
abs.example. A 192.0.2.10
priv    TYPE65280 \\# 3 abcdef
";
        let zone = parse(text).unwrap_or_else(|e| panic!("{e}"));
        let text_of = |owner: &str, rtype| {
            zone.rrset(&name(owner), rtype).iter().map(|r| r.to_string()).collect::<Vec<_>>().join("\n")
        };
        assert_eq!(
            text_of("example.", RecordType::SOA),
            "example. 3600 IN SOA ns1.example. hostmaster.example. 2024010101 7200 900 1209600 300"
        );
        assert_eq!(text_of("example.", RecordType::NS), "example. 3600 IN NS ns1.example.");
        assert_eq!(text_of("ns1.example.", RecordType::AAAA), "ns1.example. 3600 IN AAAA 2001:db8::53");
        assert_eq!(
            text_of("www.example.", RecordType::A),
            "www.example. 300 IN A 192.0.2.80\nwww.example. 300 IN A 192.0.2.81"
        );
        assert_eq!(
            text_of("txt.example.", RecordType::TXT),
            "txt.example. 3600 IN TXT \"hello world\" \"semi;colon\" \"quote \\\"x\\\"\""
        );
        assert_eq!(text_of("host.sub.example.", RecordType::A), "host.sub.example. 3600 IN A 192.0.2.9");
        assert_eq!(text_of("sub.example.", RecordType::MX), "sub.example. 3600 IN MX 10 host.sub.example.");
        assert_eq!(text_of("abs.example.", RecordType::A), "abs.example. 3600 IN A 192.0.2.10");
        assert_eq!(text_of("priv.sub.example.", RecordType(65280)), "priv.sub.example. 3600 IN TYPE65280 \\# 3 abcdef");
    }

    #[test]
    fn ttl_defaults_follow_ttl_directive_then_last_ttl_then_soa_minimum() {
        let zone = parse("@ SOA ns host 1 2 3 4 77\na A 192.0.2.1\nb 5 A 192.0.2.2\nc A 192.0.2.3\n").expect("valid");
        assert_eq!(zone.soa().ttl, 77);
        assert_eq!(zone.rrset(&name("a.example."), RecordType::A)[0].ttl, 77);
        assert_eq!(zone.rrset(&name("c.example."), RecordType::A)[0].ttl, 5);
        let error = parse("a A 192.0.2.1\n").expect_err("no TTL");
        let with_default = parse_records_with_ttl(
            "a A 192.0.2.1\n$TTL 5\nb A 192.0.2.2\n",
            &name("example."),
            Source::memory(),
            Some(60),
        )
        .expect("a default TTL");
        assert_eq!(with_default.iter().map(|(record, _)| record.ttl).collect::<Vec<_>>(), [60, 5]);
        assert_eq!(error.location(), &Location::in_file_less(1, 1));
    }

    #[test]
    fn errors_name_the_line_and_column() {
        let error = parse("$TTL 60\n@ SOA ns host 1 2 3 4 5\nwww A 192.0.2\n").expect_err("bad address");
        assert!(matches!(error, Error::ZoneSyntax { source: signpost_wire::Error::InvalidAddress { .. }, .. }));
        assert_eq!(error.location(), &Location::in_file_less(3, 7));
        let error = parse("$TTL 60\n@ SOA ns host ( 1 2\n 3 4\n five )\n").expect_err("bad number");
        assert_eq!(error.location(), &Location::in_file_less(4, 2));
        let error = parse("$TTL 60\n@ SOA ns host ( 1 2 3 4 5\n").expect_err("unclosed");
        assert!(matches!(error, Error::ZoneFile { .. }));
        assert_eq!(error.location(), &Location::in_file_less(2, 15));
        let error = parse("$TTL 60\n@ SOA ns host 1 2 3 4 5 )\n").expect_err("stray )");
        assert_eq!(error.location(), &Location::in_file_less(2, 25));
        let error = parse("$TTL 60\n@ TXT \"open\n").expect_err("quote");
        assert_eq!(error.location(), &Location::in_file_less(2, 7));
        let error = parse("$GENERATE 1-4 host$ A 192.0.2.$\n").expect_err("unsupported");
        assert_eq!(error.location(), &Location::in_file_less(1, 1));
        let error =
            parse("$TTL 60\n@ SOA ns host 1 2 3 4 5\n  A 192.0.2.1\nwww.other. A 192.0.2.1\n").expect_err("out");
        assert!(matches!(error, Error::OutOfZone { .. }));
        assert_eq!(error.location(), &Location::in_file_less(4, 1));
        let error = parse("$TTL 60\n@ SOA ns host 1 2 3 4 5\n$INCLUDE other.zone\n").expect_err("no includes");
        assert_eq!(error.location(), &Location::in_file_less(3, 1));
        let error = parse("$TTL 60\nwww A 192.0.2.1\n").expect_err("no SOA");
        assert!(matches!(error, Error::InvalidZoneData { .. }));
    }

    #[test]
    fn written_zones_read_back_the_same() {
        let zone = parse(
            "$TTL 60\n@ SOA ns host 1 2 3 4 5\n@ NS ns\nns A 192.0.2.1\n*.w TXT \"a b\" \"\\000\"\n\\@odd\\$ A 192.0.2.2\n",
        )
        .expect("valid");
        let text = zone.to_master_file();
        assert!(text.starts_with("$ORIGIN example.\nexample. 60 IN SOA"));
        assert_eq!(parse(&text).expect("reads back"), zone);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use signpost_wire::{Mx, Srv, Txt, Unknown};

        fn label() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                proptest::sample::select(vec![b"www".to_vec(), b"a".to_vec(), b"*".to_vec(), b"mail".to_vec()]),
                proptest::collection::vec(
                    proptest::sample::select(vec![
                        b'a', b'Z', b'0', b'-', b'.', b'\\', b'"', b'@', b'$', b';', b' ', 0, 200
                    ]),
                    1..6
                ),
            ]
        }

        fn owner() -> impl Strategy<Value = NameBuf> {
            proptest::collection::vec(label(), 0..3).prop_map(|labels| {
                let mut name: NameBuf = "example.".parse().expect("apex");
                for label in labels.iter().rev() {
                    name = name.prepend(label).expect("short");
                }
                name
            })
        }

        fn data() -> impl Strategy<Value = RDataBuf> {
            prop_oneof![
                any::<[u8; 4]>().prop_map(|octets| RDataBuf::A(octets.into())),
                any::<[u8; 16]>().prop_map(|octets| RDataBuf::Aaaa(octets.into())),
                proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..12), 1..3)
                    .prop_map(|strings| RDataBuf::Txt(Txt::from_strings(strings).expect("short"))),
                (any::<u16>(), owner()).prop_map(|(preference, exchange)| RDataBuf::Mx(Mx { preference, exchange })),
                (any::<u16>(), any::<u16>(), any::<u16>(), owner())
                    .prop_map(|(priority, weight, port, target)| RDataBuf::Srv(Srv { priority, weight, port, target })),
                proptest::collection::vec(any::<u8>(), 0..10)
                    .prop_map(|data| RDataBuf::Unknown(Unknown { rtype: RecordType(65280), data })),
            ]
        }

        proptest! {
            #[test]
            fn a_written_zone_reads_back_the_same(records in proptest::collection::vec((owner(), 0u32..100_000, data()), 0..12)) {
                let apex: NameBuf = "example.".parse().expect("apex");
                let records = records.into_iter().map(|(name, ttl, data)| RecordBuf::new(name, ttl, data));
                let zone = Zone::from_records(apex.clone(), records).expect("valid zone");
                let text = zone.to_master_file();
                let again = Zone::parse_master_file(&text, &apex, Source::memory());
                prop_assert!(again.is_ok(), "{:?}\n{}", again.err(), text);
                prop_assert_eq!(again.expect("checked"), zone);
            }
        }
    }

    impl Location {
        fn in_file_less(line: usize, column: usize) -> Self {
            Self { file: None, line: Some(line), column: Some(column), field: None }
        }
    }
}
