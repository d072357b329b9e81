//! The crate's error type: malformed DNSSEC record data and trust anchors.

use signpost_wire::RecordType;

/// Why DNSSEC data or a trust anchor could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// RDATA of a DNSSEC type is shorter than its fixed fields or otherwise malformed.
    #[error("malformed {rtype} RDATA: {rule}")]
    MalformedRdata {
        /// The record type.
        rtype: RecordType,
        /// What was wrong.
        rule: &'static str,
    },
    /// A DNS message or name could not be parsed.
    #[error(transparent)]
    Wire(#[from] signpost_wire::Error),
    /// A trust anchor line could not be read.
    #[error("{file}:{line}: {rule}")]
    TrustAnchor {
        /// The file (or `trust-anchor` for inline anchors).
        file: String,
        /// The line, counted from 1.
        line: usize,
        /// What was wrong.
        rule: &'static str,
    },
    /// A trust anchor file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::sync::Arc<std::io::Error>,
    },
    /// A trust anchor line's record could not be parsed.
    #[error("{file}:{line}: {source}")]
    TrustAnchorRecord {
        /// The file (or `trust-anchor` for inline anchors).
        file: String,
        /// The line, counted from 1.
        line: usize,
        /// The codec's complaint.
        source: signpost_wire::Error,
    },
}

/// A DNSSEC [`Error`] with the place in an application's configuration that
/// names the data it is about (the setting of a trust anchor file or record).
///
/// Each application has its own location type; this keeps the pairing, the
/// text (`{at}: {source}`) and the error chain the same for all of them.
#[derive(Debug, thiserror::Error)]
#[error("{at}: {source}")]
pub struct LocatedError<At> {
    /// The setting that names the data.
    pub at: At,
    /// What is wrong, with the anchor file's own line.
    #[source]
    pub source: Error,
}
