//! The crate's one error type.

use crate::iana::RecordType;
use crate::message::Section;
use crate::transfer::TransferProblem;
use crate::tsig::TsigProblem;

/// What went wrong while reading, writing or presenting DNS data, and where.
///
/// Offsets in wire-format variants are byte offsets from the start of the
/// message (or of the buffer handed to the parser). Columns in
/// presentation-format variants are byte offsets into the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Fewer than the 12 bytes a DNS header needs.
    #[error("message of {len} bytes is shorter than a 12-byte DNS header")]
    ShortHeader {
        /// Length of the input.
        len: usize,
    },
    /// The data ended before a field was complete.
    #[error("unexpected end of data at byte {offset}: {needed} more bytes needed")]
    UnexpectedEnd {
        /// Where the missing field starts.
        offset: usize,
        /// How many bytes were missing.
        needed: usize,
    },
    /// A section count promised more entries than the message holds.
    #[error("{section} section announces {expected} entries but the message ends after {found} (byte {offset})")]
    MissingRecords {
        /// The section whose count was too large.
        section: Section,
        /// The count from the header.
        expected: u16,
        /// How many entries were read before the end.
        found: u16,
        /// The message length.
        offset: usize,
    },
    /// Bytes left after the last record the header announced.
    #[error("{len} bytes of trailing data after the last record at byte {offset}")]
    TrailingData {
        /// Where the extra bytes start.
        offset: usize,
        /// How many extra bytes there are.
        len: usize,
    },
    /// A label longer than 63 octets.
    #[error("label of {len} octets at byte {offset} (labels hold at most 63)")]
    LabelTooLong {
        /// Where the label starts.
        offset: usize,
        /// Its length.
        len: usize,
    },
    /// A name longer than 255 octets in wire form.
    #[error("name starting at byte {offset} is longer than 255 octets")]
    NameTooLong {
        /// Where the name starts.
        offset: usize,
    },
    /// A compression pointer that does not point strictly backwards.
    #[error("compression pointer at byte {offset} points to byte {target}, which is not before the name being read")]
    ForwardPointer {
        /// Where the pointer is.
        offset: usize,
        /// Where it points.
        target: usize,
    },
    /// More compression pointers in one name than any legal name needs.
    #[error("name starting at byte {offset} follows too many compression pointers")]
    TooManyPointers {
        /// Where the name starts.
        offset: usize,
    },
    /// A label type other than a normal label or a pointer (0x40 and 0x80 are reserved).
    #[error("reserved label type {label_type:#04x} at byte {offset}")]
    ReservedLabelType {
        /// Where the label starts.
        offset: usize,
        /// The label-type bits of the label's first octet (`first & 0xc0`).
        label_type: u8,
    },
    /// A compression pointer inside a context where names must not be compressed.
    #[error("compression pointer at byte {offset} where names must be uncompressed")]
    CompressedNameNotAllowed {
        /// Where the pointer is.
        offset: usize,
    },
    /// RDATA whose content did not fill exactly its RDLENGTH.
    #[error("{rtype} record data at byte {offset}: RDLENGTH {rdlength} but the content uses {used}")]
    RdataLength {
        /// Record type.
        rtype: RecordType,
        /// Where the RDATA starts.
        offset: usize,
        /// The announced RDLENGTH.
        rdlength: usize,
        /// How many bytes the fields actually took.
        used: usize,
    },
    /// RDATA that breaks a rule of its type.
    #[error("invalid {rtype} record data at byte {offset}: {rule}")]
    InvalidRdata {
        /// Record type.
        rtype: RecordType,
        /// Where the offending field starts.
        offset: usize,
        /// The rule that was broken.
        rule: &'static str,
    },
    /// A second OPT record in one message (RFC 6891 §6.1.1).
    #[error("second OPT record at byte {offset}")]
    DuplicateOpt {
        /// Where the second OPT starts.
        offset: usize,
    },
    /// An OPT record outside the additional section or with a non-root owner.
    #[error("misplaced OPT record at byte {offset}")]
    MisplacedOpt {
        /// Where the record starts.
        offset: usize,
    },
    /// The builder was asked to add to a section after a later one was started.
    #[error("cannot add to the {section} section after a later section was started")]
    SectionOrder {
        /// The section that was asked for.
        section: Section,
    },
    /// A section would hold more than 65535 entries.
    #[error("the {section} section would hold more than 65535 entries")]
    CountOverflow {
        /// The full section.
        section: Section,
    },
    /// The record did not fit in the size limit; the builder truncated the message.
    #[error("message truncated at the {limit}-byte size limit")]
    Truncated {
        /// The size limit in force.
        limit: usize,
    },
    /// The target buffer has no room left (caller-supplied fixed buffers).
    #[error("output buffer full at {capacity} bytes")]
    BufferFull {
        /// The buffer's capacity.
        capacity: usize,
    },
    /// An EDNS option or OPT record larger than 65535 bytes.
    #[error("EDNS data longer than 65535 bytes")]
    EdnsTooLong,
    /// A backslash escape that is not `\X` or `\DDD` with DDD at most 255.
    #[error("invalid escape at column {column}")]
    InvalidEscape {
        /// Where the escape starts.
        column: usize,
    },
    /// An empty label (`..` or a leading dot) in a name.
    #[error("empty label at column {column}")]
    EmptyLabel {
        /// Where the name starts.
        column: usize,
    },
    /// A relative name where no origin is known.
    #[error("relative name at column {column} with no origin to complete it")]
    RelativeName {
        /// Where the name starts.
        column: usize,
    },
    /// A quoted string without its closing quote.
    #[error("unterminated quoted string starting at column {column}")]
    UnterminatedQuote {
        /// Where the string starts.
        column: usize,
    },
    /// A field that should be a number is not, or is out of range.
    #[error("invalid {field} at column {column}")]
    InvalidNumber {
        /// Where the field starts.
        column: usize,
        /// Which field.
        field: &'static str,
    },
    /// A field that should be an IP address is not.
    #[error("invalid IP address at column {column}")]
    InvalidAddress {
        /// Where the field starts.
        column: usize,
    },
    /// Hex or base64 text that does not decode.
    #[error("invalid {encoding} at column {column}")]
    InvalidEncoding {
        /// Where the text starts.
        column: usize,
        /// `"hex"` or `"base64"`.
        encoding: &'static str,
    },
    /// A field the record type requires is missing.
    #[error("missing {field} at column {column}")]
    MissingField {
        /// Where the field should start (end of input when missing at the end).
        column: usize,
        /// Which field.
        field: &'static str,
    },
    /// More fields than the record type takes.
    #[error("unexpected extra field at column {column}")]
    UnexpectedField {
        /// Where the extra field starts.
        column: usize,
    },
    /// An unknown record type or class mnemonic.
    #[error("unknown {what} mnemonic at column {column}")]
    UnknownMnemonic {
        /// Where the mnemonic starts.
        column: usize,
        /// `"type"`, `"class"` or `"SvcParamKey"`.
        what: &'static str,
    },
    /// A string longer than the 255 octets a character-string holds.
    #[error("character-string longer than 255 octets at column {column}")]
    StringTooLong {
        /// Where the string starts.
        column: usize,
    },
    /// A presentation-format value that breaks a rule of its type.
    #[error("invalid {rtype} value at column {column}: {rule}")]
    InvalidValue {
        /// Record type being parsed.
        rtype: RecordType,
        /// Where the offending field starts.
        column: usize,
        /// The rule that was broken.
        rule: &'static str,
    },
    /// A TSIG record is missing, malformed or does not verify (RFC 8945).
    #[error("TSIG: {problem}")]
    Tsig {
        /// What is wrong.
        problem: TsigProblem,
    },
    /// A zone transfer stream breaks RFC 5936 or RFC 1995.
    #[error("zone transfer message {message}: {problem}")]
    Transfer {
        /// Which message of the stream (from 0).
        message: usize,
        /// What is wrong.
        problem: TransferProblem,
    },
}

impl Error {
    /// The byte offset (wire errors) or column (presentation errors) the error points at, if any.
    pub fn position(&self) -> Option<usize> {
        match *self {
            Self::ShortHeader { .. }
            | Self::SectionOrder { .. }
            | Self::CountOverflow { .. }
            | Self::Truncated { .. }
            | Self::BufferFull { .. }
            | Self::EdnsTooLong
            | Self::Tsig { .. }
            | Self::Transfer { .. } => None,
            Self::UnexpectedEnd { offset, .. }
            | Self::MissingRecords { offset, .. }
            | Self::TrailingData { offset, .. }
            | Self::LabelTooLong { offset, .. }
            | Self::NameTooLong { offset }
            | Self::ForwardPointer { offset, .. }
            | Self::TooManyPointers { offset }
            | Self::ReservedLabelType { offset, .. }
            | Self::CompressedNameNotAllowed { offset }
            | Self::RdataLength { offset, .. }
            | Self::InvalidRdata { offset, .. }
            | Self::DuplicateOpt { offset }
            | Self::MisplacedOpt { offset } => Some(offset),
            Self::InvalidEscape { column }
            | Self::EmptyLabel { column }
            | Self::RelativeName { column }
            | Self::UnterminatedQuote { column }
            | Self::InvalidNumber { column, .. }
            | Self::InvalidAddress { column }
            | Self::InvalidEncoding { column, .. }
            | Self::MissingField { column, .. }
            | Self::UnexpectedField { column }
            | Self::UnknownMnemonic { column, .. }
            | Self::StringTooLong { column }
            | Self::InvalidValue { column, .. } => Some(column),
        }
    }

    /// Shift a column-based error by `delta` (used when a token is parsed on its own).
    pub(crate) fn shifted(self, delta: usize) -> Self {
        match self {
            Self::InvalidEscape { column } => Self::InvalidEscape { column: column + delta },
            Self::EmptyLabel { column } => Self::EmptyLabel { column: column + delta },
            Self::RelativeName { column } => Self::RelativeName { column: column + delta },
            Self::LabelTooLong { offset, len } => Self::LabelTooLong { offset: offset + delta, len },
            Self::NameTooLong { offset } => Self::NameTooLong { offset: offset + delta },
            Self::UnterminatedQuote { column } => Self::UnterminatedQuote { column: column + delta },
            Self::InvalidNumber { column, field } => Self::InvalidNumber { column: column + delta, field },
            Self::InvalidAddress { column } => Self::InvalidAddress { column: column + delta },
            Self::InvalidEncoding { column, encoding } => Self::InvalidEncoding { column: column + delta, encoding },
            Self::MissingField { column, field } => Self::MissingField { column: column + delta, field },
            Self::UnexpectedField { column } => Self::UnexpectedField { column: column + delta },
            Self::UnknownMnemonic { column, what } => Self::UnknownMnemonic { column: column + delta, what },
            Self::StringTooLong { column } => Self::StringTooLong { column: column + delta },
            Self::InvalidValue { rtype, column, rule } => Self::InvalidValue { rtype, column: column + delta, rule },
            other => other,
        }
    }
}
