//! Zero-copy DNS wire codec.
//!
//! Reading is done through views over the caller's bytes: [`Message`] checks
//! the header when it is made, and everything after it is read lazily and
//! checked as it is reached, so a proxy can route on the first question
//! without touching the rest, and nothing is allocated. Writing goes through
//! [`MessageBuilder`] into a [`bytes::BytesMut`], a `Vec<u8>` or a caller's
//! slice, with name compression and RFC 2181 truncation.
//!
//! ```
//! use bytes::BytesMut;
//! use signpost_wire::{Class, Message, MessageBuilder, RData, RecordType, Section};
//!
//! // A query for example.com A, as a client would send it.
//! let mut query = BytesMut::new();
//! let mut builder = MessageBuilder::new(&mut query)?;
//! builder.set_id(7);
//! builder.push_question(&"example.com".parse::<signpost_wire::NameBuf>()?, RecordType::A, Class::IN)?;
//! builder.finish()?;
//!
//! // Route on the first question, then answer it.
//! let query = Message::parse(&query)?;
//! let question = query.first_question()?.expect("a question");
//! assert_eq!(question.name().to_string(), "example.com.");
//!
//! let mut response = BytesMut::with_capacity(512);
//! let mut builder = MessageBuilder::response_to(&mut response, &query)?;
//! builder.push(Section::Answer, &question.name(), Class::IN, 60, &RData::A([192, 0, 2, 1].into()))?;
//! builder.finish()?;
//!
//! let response = Message::parse(&response)?;
//! for record in response.answers()? {
//!     let record = record?;
//!     assert_eq!(record.data()?.to_string(), "192.0.2.1");
//! }
//! # Ok::<(), signpost_wire::Error>(())
//! ```
//!
//! Parsing never panics: every read is bounds-checked, names are limited to
//! 255 octets, labels to 63, and compression pointers must point strictly
//! backwards (which rules out loops) with a bound on hops.
#![forbid(unsafe_code)]
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod build;
mod compress;
mod edns;
mod error;
mod iana;
mod message;
mod name;
mod present;
mod rdata;
mod reader;
mod record;
pub mod relay;
mod serial;
mod svcb;
#[cfg(test)]
mod test_support;
mod transfer;
mod tsig;

#[doc(hidden)]
pub mod fuzzing;

pub use build::{Buffer, MAX_MESSAGE_LEN, MessageBuilder, SliceBuffer, write_query};
pub use edns::{ClientSubnet, Cookie, Edns, EdnsHeader, EdnsOption, EdnsOptions, ExtendedError};
pub use error::Error;
pub use iana::{Class, ExtendedErrorCode, Opcode, OptionCode, Rcode, RecordType, SvcParamKey};
pub use message::{Flags, HEADER_LEN, Header, Message, Question, Questions, Record, Records, Section};
pub use name::{
    FlatLabels, Labels, LabelsRev, MAX_LABEL_LEN, MAX_LABELS, MAX_NAME_LEN, Name, NameBuf, ToName, canonical_cmp,
    flat_is_subdomain,
};
pub use present::{
    Token, base64_decode, base64_encode, decode_text, is_ttl, parse_name, parse_ttl, tokenize, write_character_string,
    write_hex,
};
pub use rdata::{Caa, CharacterStrings, Mx, Naptr, Opt, RData, RDataBuf, RecordData, Soa, Srv, Svcb, Txt, Unknown};
pub use record::{DEFAULT_TTL, RecordBuf, TtlClassType, parse_ttl_class_type};
pub use serial::{MAX_SERIAL_INCREMENT, Serial};
pub use svcb::{SvcParam, SvcParams};
pub use transfer::{
    DEFAULT_MAX_RECORDS, IxfrDiff, Transfer, TransferProblem, TransferReader, TransferRequest, TransferWriter,
    soa_serial, write_soa_query,
};
pub use tsig::{
    DEFAULT_FUDGE, TSIG_FAILURE_RCODE, TsigAlgorithm, TsigKey, TsigProblem, TsigRecord, TsigSession, strip_tsig_len,
    tsig_error,
};
