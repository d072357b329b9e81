//! The crate's one error type, and where an error was found.
//!
//! [`Error`] is also the configuration error the applications share: their
//! own error enums (signpost-forward's `ConfigError`, signpost-endpoint's
//! `EndpointError`) wrap it for everything it already says — an unreadable
//! file, TOML syntax, a bad name or record, a duplicate, an unknown group —
//! and add only what is theirs.

use core::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use signpost_wire::{NameBuf, RecordType};

/// Where something was found: a file, a line and column in it (1-based), and
/// the configuration field (`rules[3].suffix`), each when known.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub file: Option<PathBuf>,
    /// Line, counted from 1.
    pub line: Option<usize>,
    /// Column in characters, counted from 1.
    pub column: Option<usize>,
    /// The configuration field, as a path such as `rules[3].suffix`.
    pub field: Option<String>,
}

impl Location {
    /// A location that names only a configuration field.
    pub fn field(field: impl Into<String>) -> Self {
        Self { field: Some(field.into()), ..Self::default() }
    }

    /// A location in a file.
    pub fn in_file(file: impl Into<PathBuf>, line: usize, column: usize) -> Self {
        Self { file: Some(file.into()), line: Some(line), column: Some(column), field: None }
    }

    /// The position of byte `offset` of `text`, which was read from `file`.
    pub(crate) fn at_offset(file: Option<PathBuf>, text: &str, offset: usize) -> Self {
        let (line, column) = line_and_column(text, offset);
        Self { file, line: Some(line), column: Some(column), field: None }
    }

    /// `"{self}: "`, or nothing when nothing is known (a file named on the
    /// command line has no place of its own to point at).
    pub fn prefix(&self) -> String {
        if *self == Self::default() { String::new() } else { format!("{self}: ") }
    }

    /// This location with `field` set.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

/// Line and column (both from 1, the column in characters) of byte `offset` in `text`.
pub(crate) fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or_default();
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |index| index + 1);
    let column = before.get(line_start..).map_or(0, |rest| rest.chars().count()) + 1;
    (line, column)
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut wrote = false;
        if let Some(file) = &self.file {
            write!(f, "{}", file.display())?;
            wrote = true;
        }
        if let Some(line) = self.line {
            write!(f, "{}{line}", if wrote { ":" } else { "line " })?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
            wrote = true;
        }
        if let Some(field) = &self.field {
            write!(f, "{}field {field}", if wrote { ", " } else { "" })?;
            wrote = true;
        }
        if !wrote {
            f.write_str("<unknown location>")?;
        }
        Ok(())
    }
}

/// What went wrong while loading configuration, zones or host tables, or
/// while building or changing a rule set, and where.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read.
    #[error("{}cannot read {}: {source}", at.prefix(), path.display())]
    Io {
        /// Where the file was named (the including file or config field), if anywhere.
        at: Location,
        /// The file that could not be read.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// A file is not UTF-8 text.
    #[error("{at}: the file is not UTF-8 text")]
    NotUtf8 {
        /// The file, and the line of the first bad byte.
        at: Location,
    },
    /// TOML that does not parse or does not fit the configuration types.
    #[error("{at}: {message}")]
    Toml {
        /// Where the TOML parser stopped.
        at: Location,
        /// The TOML parser's message.
        message: String,
    },
    /// A domain name that does not parse.
    #[error("{at}: invalid domain name {text:?}: {source}")]
    InvalidName {
        /// Where the name is.
        at: Location,
        /// The text given.
        text: String,
        /// Why it is invalid.
        #[source]
        source: signpost_wire::Error,
    },
    /// A resource record in presentation format that does not parse (an
    /// inline zone record, an unbound.conf `local-data:`).
    #[error("{at}: invalid record {text:?}: {source}")]
    InvalidRecord {
        /// Where the record is.
        at: Location,
        /// The text given.
        text: String,
        /// Why it is invalid.
        #[source]
        source: signpost_wire::Error,
    },
    /// A regular expression that does not compile.
    #[error("{at}: invalid regular expression {pattern:?}: {message}")]
    InvalidRegex {
        /// Where the pattern is.
        at: Location,
        /// The pattern.
        pattern: String,
        /// The regex compiler's message.
        message: String,
    },
    /// An address or network (CIDR) that does not parse, or one of the wrong family.
    #[error("{at}: invalid {what} {text:?}")]
    InvalidAddress {
        /// Where it is.
        at: Location,
        /// The text given.
        text: String,
        /// What was expected, e.g. `"CIDR network"` or `"IPv4 address"`.
        what: &'static str,
    },
    /// A configuration entry that is missing a field, or has fields that do not go together.
    #[error("{at}: {problem}")]
    InvalidEntry {
        /// The entry or field.
        at: Location,
        /// What is wrong, e.g. `"give exactly one of exact, suffix, wildcard or regex"`.
        problem: &'static str,
    },
    /// Two rules (or a rule and a host entry) for the same name, matcher kind and view.
    #[error("{at}: duplicate {kind} rule for {name} in view {view:?} (first defined at {first})")]
    DuplicateRule {
        /// Where the second one is.
        at: Location,
        /// Where the first one is.
        first: Location,
        /// The name or pattern.
        name: String,
        /// `"exact"`, `"suffix"`, `"wildcard"`, `"regex"`, `"exception"`, `"host"`.
        kind: &'static str,
        /// The view.
        view: String,
    },
    /// Two zones with the same apex in one view, or two entries with the same id.
    #[error("{at}: duplicate {what} {name:?} (first defined at {first})")]
    Duplicate {
        /// Where the second one is.
        at: Location,
        /// Where the first one is.
        first: Location,
        /// `"zone"`, `"zone id"`, `"rule id"`, `"view"`, `"CIDR"`, `"listener"`, `"host table"`.
        what: &'static str,
        /// The duplicated name or id.
        name: String,
    },
    /// A rule or view names an upstream group that is not configured.
    #[error("{at}: unknown upstream group {group:?}")]
    UnknownGroup {
        /// Where the group is named.
        at: Location,
        /// The group.
        group: String,
    },
    /// Something names a view that is not configured.
    #[error("{at}: unknown view {view:?}")]
    UnknownView {
        /// Where the view is named.
        at: Location,
        /// The view.
        view: String,
    },
    /// A forwarding rule's targets mix IPv4 and IPv6 (Route 53 Resolver rejects this too).
    #[error("{at}: the targets of one rule must be all IPv4 or all IPv6")]
    MixedTargetFamilies {
        /// The rule's targets field.
        at: Location,
    },
    /// More nameservers than a resolv.conf consumer reads (glibc's MAXNS is 3).
    #[error("{at}: {count} nameservers given, but resolv.conf allows at most {limit}")]
    TooManyNameservers {
        /// Where the first one over the limit is.
        at: Location,
        /// How many were given.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A master-file entry that does not parse. The source's column, if it
    /// has one, counts bytes from the start of the entry, which is the line's
    /// column unless the entry spans lines in parentheses; `at` is exact.
    #[error("{at}: {source}")]
    ZoneSyntax {
        /// File, line and column of the offending field.
        at: Location,
        /// What the presentation-format parser found.
        #[source]
        source: signpost_wire::Error,
    },
    /// A master-file problem that is not about one record's syntax.
    #[error("{at}: {problem}")]
    ZoneFile {
        /// File, line and column.
        at: Location,
        /// What is wrong, e.g. `"unbalanced parenthesis"`.
        problem: &'static str,
    },
    /// `$INCLUDE` nested deeper than the limit (which also stops include loops).
    #[error("{at}: $INCLUDE nested more than {limit} deep")]
    IncludeDepth {
        /// The `$INCLUDE` that went too deep.
        at: Location,
        /// The limit.
        limit: usize,
    },
    /// A record whose owner is not in the zone.
    #[error("{at}: {name} is outside zone {zone}")]
    OutOfZone {
        /// Where the record is.
        at: Location,
        /// The record's owner.
        name: NameBuf,
        /// The zone's apex.
        zone: NameBuf,
    },
    /// A record of the wrong class for the zone.
    #[error("{at}: class {class} record in a class {zone_class} zone")]
    WrongClass {
        /// Where the record is.
        at: Location,
        /// The record's class.
        class: signpost_wire::Class,
        /// The zone's class.
        zone_class: signpost_wire::Class,
    },
    /// A zone's data breaks a rule of zone content (RFC 1034, RFC 2181).
    #[error("{at}: {name}: {problem}")]
    InvalidZoneData {
        /// Where the record is, or the zone.
        at: Location,
        /// The owner name concerned.
        name: NameBuf,
        /// The rule that was broken, e.g. `"a CNAME cannot coexist with other data"`.
        problem: &'static str,
    },
    /// A record type that cannot appear in a zone (OPT, or a query-only type).
    #[error("{at}: type {rtype} cannot appear in zone data")]
    MetaType {
        /// Where the record is.
        at: Location,
        /// The type.
        rtype: RecordType,
    },
    /// No zone with this id.
    #[error("{at}: no zone with id {id:?}; the zones are {known:?}")]
    NoSuchZone {
        /// Where the id was given.
        at: Location,
        /// The id.
        id: String,
        /// The ids that do exist, in order.
        known: Vec<String>,
    },
    /// An address range has no room for one more automatic address.
    #[error("{at}: the automatic address range {range} is full")]
    AllocationExhausted {
        /// The host table entry that did not get an address.
        at: Location,
        /// The range.
        range: ipnet::IpNet,
    },
    /// A line of an allocation state file that does not parse.
    #[error("{at}: invalid allocation state line")]
    InvalidAllocationState {
        /// File and line.
        at: Location,
    },
}

/// Both accessors match every variant's `at` field, listed once here.
macro_rules! location_of {
    ($error:expr) => {
        match $error {
            Error::Io { at, .. }
            | Error::NotUtf8 { at }
            | Error::Toml { at, .. }
            | Error::InvalidName { at, .. }
            | Error::InvalidRecord { at, .. }
            | Error::InvalidRegex { at, .. }
            | Error::InvalidAddress { at, .. }
            | Error::InvalidEntry { at, .. }
            | Error::DuplicateRule { at, .. }
            | Error::Duplicate { at, .. }
            | Error::UnknownGroup { at, .. }
            | Error::UnknownView { at, .. }
            | Error::MixedTargetFamilies { at }
            | Error::TooManyNameservers { at, .. }
            | Error::ZoneSyntax { at, .. }
            | Error::ZoneFile { at, .. }
            | Error::IncludeDepth { at, .. }
            | Error::OutOfZone { at, .. }
            | Error::WrongClass { at, .. }
            | Error::InvalidZoneData { at, .. }
            | Error::MetaType { at, .. }
            | Error::NoSuchZone { at, .. }
            | Error::AllocationExhausted { at, .. }
            | Error::InvalidAllocationState { at } => at,
        }
    };
}

impl Error {
    /// Where the error was found.
    pub fn location(&self) -> &Location {
        location_of!(self)
    }

    pub(crate) fn location_mut(&mut self) -> &mut Location {
        location_of!(self)
    }

    /// This error, found at `at` instead: for an error in something a
    /// configuration generated (a rule built from a forward zone, a zone
    /// from an API resource), `at` is where the configuration says it.
    pub fn relocated(mut self, at: Location) -> Self {
        *self.location_mut() = at;
        self
    }

    /// A file named at `at` that could not be read.
    pub fn io(at: Location, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { at, path: path.into(), source: Arc::new(source) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_print_what_is_known() {
        assert_eq!(Location::in_file("a.zone", 3, 7).to_string(), "a.zone:3:7");
        assert_eq!(Location::field("rules[2].suffix").to_string(), "field rules[2].suffix");
        let both = Location::in_file("rules.toml", 12, 1).with_field("views[0].cidrs[1]");
        assert_eq!(both.to_string(), "rules.toml:12:1, field views[0].cidrs[1]");
        assert_eq!(Location::default().to_string(), "<unknown location>");
        assert_eq!(Location::default().prefix(), "");
        assert_eq!(Location::field("a").prefix(), "field a: ");
    }

    #[test]
    fn offsets_become_lines_and_columns() {
        let text = "one\ntwo\n  thrée x";
        assert_eq!(line_and_column(text, 0), (1, 1));
        assert_eq!(line_and_column(text, 4), (2, 1));
        assert_eq!(line_and_column(text, 6), (2, 3));
        // Columns count characters, not bytes.
        let x = text.find('x').expect("x");
        assert_eq!(line_and_column(text, x), (3, 9));
        assert_eq!(line_and_column(text, 1000), line_and_column(text, text.len()));
    }
}
