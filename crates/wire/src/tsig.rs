//! Transaction signatures (TSIG, RFC 8945): HMAC over a message and the
//! TSIG variables, appended as the last additional record.
//!
//! A [`TsigSession`] carries one exchange: the client signs its request and
//! verifies every message of the response (a zone transfer is many); the
//! server verifies the request and signs its responses. Each later message of
//! a stream chains on the MAC before it (RFC 8945 §5.3.1), so the session
//! keeps that MAC. Time is passed in as seconds since the Unix epoch; the
//! crate reads no clock.
//!
//! ```
//! use signpost_wire::{Class, MessageBuilder, NameBuf, RecordType, TsigAlgorithm, TsigKey, TsigSession};
//!
//! let key = TsigKey::new("transfer.example.".parse()?, TsigAlgorithm::HmacSha256, b"0123456789abcdef");
//! let mut query = Vec::new();
//! let mut builder = MessageBuilder::new(&mut query)?;
//! builder.set_id(99);
//! builder.push_question(&"example.".parse::<NameBuf>()?, RecordType::AXFR, Class::IN)?;
//! builder.finish()?;
//! let mut client = TsigSession::sign_request(&key, &mut query, 1_700_000_000)?;
//!
//! // The server finds the key, checks the MAC and signs its answer with the same session.
//! let mut server = TsigSession::verify_request(&[key.clone()], &query, 1_700_000_010)?.expect("signed");
//! let mut answer = query.clone();
//! answer[2] |= 0x80; // QR
//! let tsig_start = signpost_wire::strip_tsig_len(&answer)?;
//! answer.truncate(tsig_start);
//! answer[11] -= 1; // ARCOUNT without the request's TSIG
//! server.sign_response(&mut answer, 1_700_000_010)?;
//! assert!(client.verify_response(&answer, 1_700_000_011)?);
//! # Ok::<(), signpost_wire::Error>(())
//! ```

use core::fmt;

use ring::hmac;

use crate::Error;
use crate::build::Buffer;
use crate::iana::{Class, Rcode, RecordType};
use crate::message::{HEADER_LEN, Message, Section};
use crate::name::{Name, NameBuf, ToName};
use crate::reader::Reader;

/// The fudge (allowed clock skew, seconds) Signpost signs with; RFC 8945 §10 recommends 300.
pub const DEFAULT_FUDGE: u16 = 300;

/// RFC 8945 §5.3.1: at most 99 unsigned messages may follow a signed one.
const MAX_UNSIGNED_RUN: usize = 99;

/// TSIG error codes (RFC 8945 §3, the "error" field of the TSIG record).
pub mod tsig_error {
    /// The MAC does not verify.
    pub const BADSIG: u16 = 16;
    /// The key is not known.
    pub const BADKEY: u16 = 17;
    /// The signature is outside the fudge window.
    pub const BADTIME: u16 = 18;
    /// The MAC is truncated below what policy accepts.
    pub const BADTRUNC: u16 = 22;
}

/// What went wrong with a TSIG record: carried by [`Error::Tsig`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum TsigProblem {
    /// The message carries no TSIG record where one is required.
    Missing,
    /// A TSIG record that is not the last record of the additional section.
    NotLast {
        /// Where the record starts.
        offset: usize,
    },
    /// The record's key name is not one of the keys given.
    UnknownKey,
    /// The record's key name is known, but with another algorithm.
    WrongAlgorithm,
    /// The algorithm is not one Signpost implements.
    UnsupportedAlgorithm,
    /// The MAC does not verify.
    BadSignature,
    /// The MAC is shorter than the algorithm's full length (truncation is not accepted).
    TruncatedMac {
        /// Its length.
        len: usize,
    },
    /// The signing time is outside the fudge window.
    BadTime {
        /// When the peer signed (seconds since the Unix epoch).
        signed: u64,
        /// When we checked.
        now: u64,
        /// The allowed skew.
        fudge: u16,
    },
    /// The peer answered with a TSIG error (BADSIG, BADKEY, an unsigned BADTIME, ...).
    PeerError {
        /// The TSIG error code.
        code: u16,
    },
    /// The peer answered BADTIME, signed with the key (RFC 8945 §5.2.3):
    /// our clock and the peer's differ by more than the fudge.
    PeerBadTime {
        /// The peer's clock when it answered (seconds since the Unix epoch), from Other Data.
        server_time: u64,
    },
    /// More than 99 unsigned messages in a row, or a stream that ended on an unsigned one.
    UnsignedMessages,
    /// The message cannot be signed: the TSIG record would not fit, or ARCOUNT is full.
    MessageFull,
}

impl fmt::Display for TsigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("no TSIG record"),
            Self::NotLast { offset } => write!(f, "TSIG record at byte {offset} is not the last record"),
            Self::UnknownKey => f.write_str("unknown key (BADKEY)"),
            Self::WrongAlgorithm => f.write_str("key known with another algorithm (BADKEY)"),
            Self::UnsupportedAlgorithm => f.write_str("unsupported algorithm"),
            Self::BadSignature => f.write_str("MAC does not verify (BADSIG)"),
            Self::TruncatedMac { len } => write!(f, "truncated MAC of {len} bytes (BADTRUNC)"),
            Self::BadTime { signed, now, fudge } => {
                write!(f, "signed at {signed}, now {now}: outside the {fudge}-second fudge (BADTIME)")
            }
            Self::PeerError { code } => write!(f, "peer reported TSIG error {code}"),
            Self::PeerBadTime { server_time } => {
                write!(f, "peer reported BADTIME, signed: its clock reads {server_time}")
            }
            Self::UnsignedMessages => f.write_str("too many unsigned messages, or an unsigned last message"),
            Self::MessageFull => f.write_str("no room for the TSIG record"),
        }
    }
}

impl TsigProblem {
    /// The TSIG error code a server sends back for this problem (RFC 8945 §5.2), if any.
    pub fn error_code(self) -> Option<u16> {
        match self {
            Self::UnknownKey | Self::WrongAlgorithm | Self::UnsupportedAlgorithm => Some(tsig_error::BADKEY),
            Self::BadSignature => Some(tsig_error::BADSIG),
            Self::TruncatedMac { .. } => Some(tsig_error::BADTRUNC),
            Self::BadTime { .. } => Some(tsig_error::BADTIME),
            _ => None,
        }
    }
}

/// The HMAC algorithms Signpost implements (RFC 8945 §6).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum TsigAlgorithm {
    /// `hmac-sha256.`, the one RFC 8945 says every implementation must have.
    HmacSha256,
    /// `hmac-sha384.`
    HmacSha384,
    /// `hmac-sha512.`
    HmacSha512,
}

impl TsigAlgorithm {
    /// The algorithm's name in wire form.
    fn wire_name(self) -> &'static [u8] {
        match self {
            Self::HmacSha256 => b"\x0bhmac-sha256\x00",
            Self::HmacSha384 => b"\x0bhmac-sha384\x00",
            Self::HmacSha512 => b"\x0bhmac-sha512\x00",
        }
    }

    /// The mnemonic used in configuration files (`hmac-sha256`), as BIND, Knot and Unbound write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HmacSha256 => "hmac-sha256",
            Self::HmacSha384 => "hmac-sha384",
            Self::HmacSha512 => "hmac-sha512",
        }
    }

    /// The algorithm named `text` (`hmac-sha256`, with or without the trailing dot, any case).
    pub fn from_name(text: &str) -> Option<Self> {
        let text = text.strip_suffix('.').unwrap_or(text);
        [Self::HmacSha256, Self::HmacSha384, Self::HmacSha512]
            .into_iter()
            .find(|algorithm| algorithm.as_str().eq_ignore_ascii_case(text))
    }

    fn from_wire(name: &[u8]) -> Option<Self> {
        [Self::HmacSha256, Self::HmacSha384, Self::HmacSha512]
            .into_iter()
            .find(|algorithm| algorithm.wire_name().eq_ignore_ascii_case(name))
    }

    fn ring(self) -> hmac::Algorithm {
        match self {
            Self::HmacSha256 => hmac::HMAC_SHA256,
            Self::HmacSha384 => hmac::HMAC_SHA384,
            Self::HmacSha512 => hmac::HMAC_SHA512,
        }
    }

    /// Length of a full MAC.
    pub fn mac_len(self) -> usize {
        match self {
            Self::HmacSha256 => 32,
            Self::HmacSha384 => 48,
            Self::HmacSha512 => 64,
        }
    }
}

impl fmt::Display for TsigAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A shared secret with its name and algorithm. The secret never appears in
/// `Debug` output.
#[derive(Clone)]
pub struct TsigKey {
    /// Lowercased, as the MAC covers the canonical form.
    name: NameBuf,
    algorithm: TsigAlgorithm,
    key: hmac::Key,
}

impl TsigKey {
    /// A key from its name, algorithm and secret bytes.
    pub fn new(name: NameBuf, algorithm: TsigAlgorithm, secret: &[u8]) -> Self {
        Self { name: name.to_lowercase(), algorithm, key: hmac::Key::new(algorithm.ring(), secret) }
    }

    /// A key whose secret is given in base64, as in `key "name" { secret "..."; }`.
    pub fn from_base64(name: NameBuf, algorithm: TsigAlgorithm, secret: &str) -> Result<Self, Error> {
        let secret = crate::present::base64_decode(secret.trim(), 0)?;
        Ok(Self::new(name, algorithm, &secret))
    }

    /// The key's name (lowercased).
    pub fn name(&self) -> &NameBuf {
        &self.name
    }

    /// The algorithm.
    pub fn algorithm(&self) -> TsigAlgorithm {
        self.algorithm
    }
}

impl fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TsigKey").field("name", &self.name).field("algorithm", &self.algorithm).finish()
    }
}

/// A TSIG record read from a message.
#[derive(Clone, Copy, Debug)]
pub struct TsigRecord<'a> {
    /// The key name (the record's owner).
    pub key_name: Name<'a>,
    /// The algorithm name.
    pub algorithm: Name<'a>,
    /// Seconds since the Unix epoch when the message was signed (48 bits).
    pub time_signed: u64,
    /// Allowed clock skew in seconds.
    pub fudge: u16,
    /// The MAC.
    pub mac: &'a [u8],
    /// The message ID when it was signed.
    pub original_id: u16,
    /// TSIG error code (0 for none).
    pub error: u16,
    /// Other data (the server's time for BADTIME).
    pub other: &'a [u8],
    /// Where the record starts: the signed part of the message ends here.
    pub offset: usize,
}

impl<'a> TsigRecord<'a> {
    /// Find the message's TSIG record. It must be the last record of the
    /// additional section (RFC 8945 §5.1); `Ok(None)` when there is none.
    pub fn find(message: &Message<'a>) -> Result<Option<Self>, Error> {
        let mut found = None;
        let mut records = message.records()?;
        for record in &mut records {
            let record = record?;
            if let Some(earlier) = found.take() {
                let earlier: Self = earlier;
                return Err(Error::Tsig { problem: TsigProblem::NotLast { offset: earlier.offset } });
            }
            if record.rtype() != RecordType::TSIG {
                continue;
            }
            if record.section() != Section::Additional {
                return Err(Error::Tsig { problem: TsigProblem::NotLast { offset: record.offset() } });
            }
            found = Some(Self::parse(
                message.as_bytes(),
                record.name(),
                record.offset(),
                record.data_offset(),
                record.end(),
            )?);
        }
        Ok(found)
    }

    fn parse(message: &'a [u8], key_name: Name<'a>, offset: usize, start: usize, end: usize) -> Result<Self, Error> {
        let (algorithm, after_name) = Name::from_message(message, start)?;
        let mut reader = Reader::at(message.get(..end).unwrap_or(message), after_name);
        let [t0, t1, t2, t3, t4, t5] = reader.array::<6>()?;
        let time_signed = u64::from_be_bytes([0, 0, t0, t1, t2, t3, t4, t5]);
        let fudge = reader.u16()?;
        let mac_len = reader.u16()?;
        let mac = reader.bytes(usize::from(mac_len))?;
        let original_id = reader.u16()?;
        let error = reader.u16()?;
        let other_len = reader.u16()?;
        let other = reader.bytes(usize::from(other_len))?;
        if reader.position() != end {
            return Err(Error::RdataLength {
                rtype: RecordType::TSIG,
                offset: start,
                rdlength: end - start,
                used: reader.position() - start,
            });
        }
        Ok(Self { key_name, algorithm, time_signed, fudge, mac, original_id, error, other, offset })
    }
}

/// The length of the message without its TSIG record (the whole length if it
/// has none). The header's ARCOUNT still counts the record.
pub fn strip_tsig_len(message: &[u8]) -> Result<usize, Error> {
    let parsed = Message::parse(message)?;
    Ok(TsigRecord::find(&parsed)?.map_or(message.len(), |record| record.offset))
}

/// One TSIG-signed exchange, on either side: the key and the last MAC, which
/// the next message's MAC covers.
#[derive(Clone, Debug)]
pub struct TsigSession {
    key: TsigKey,
    fudge: u16,
    /// The MAC of the last signed message (the request's, until a response is signed or verified).
    previous_mac: Vec<u8>,
    /// Whether a response has been signed or verified yet (later ones use the short TSIG timers form).
    responded: bool,
    /// Unsigned response messages since the last signed one, in order: the next MAC covers them.
    unsigned: Vec<u8>,
    unsigned_count: usize,
}

impl TsigSession {
    /// Sign a request: append a TSIG record to `message` (a whole message,
    /// no TCP length prefix) and return the session that verifies the response.
    pub fn sign_request(key: &TsigKey, message: &mut impl Buffer, now: u64) -> Result<Self, Error> {
        let mut session = Self::new(key.clone(), Vec::new());
        let mut context = hmac::Context::with_key(&key.key);
        context.update(message.as_slice());
        update_variables(&mut context, key, now, DEFAULT_FUDGE, 0, &[]);
        let mac = context.sign();
        append_tsig(message, key, now, DEFAULT_FUDGE, mac.as_ref(), 0, &[])?;
        session.previous_mac = mac.as_ref().to_vec();
        Ok(session)
    }

    fn new(key: TsigKey, previous_mac: Vec<u8>) -> Self {
        Self { key, fudge: DEFAULT_FUDGE, previous_mac, responded: false, unsigned: Vec::new(), unsigned_count: 0 }
    }

    /// The key in use.
    pub fn key(&self) -> &TsigKey {
        &self.key
    }

    /// Verify one response message (the first, or any later one of a stream).
    /// Returns whether it was signed: after the first, up to 99 messages in a
    /// row may be unsigned (RFC 8945 §5.3.1); they are covered by the next
    /// signed one. Call [`TsigSession::finish_response`] after the last.
    pub fn verify_response(&mut self, message: &[u8], now: u64) -> Result<bool, Error> {
        let parsed = Message::parse(message)?;
        let Some(record) = TsigRecord::find(&parsed)? else {
            if !self.responded || self.unsigned_count >= MAX_UNSIGNED_RUN {
                return Err(Error::Tsig {
                    problem: if self.responded { TsigProblem::UnsignedMessages } else { TsigProblem::Missing },
                });
            }
            self.unsigned.extend_from_slice(message);
            self.unsigned_count += 1;
            return Ok(false);
        };
        if record.error != 0 {
            return Err(Error::Tsig { problem: self.peer_error(message, &record)? });
        }
        check_key(&self.key, &record)?;
        let mut context = hmac::Context::with_key(&self.key.key);
        update_prior_mac(&mut context, &self.previous_mac)?;
        context.update(&self.unsigned);
        update_stripped(&mut context, message, &record)?;
        if self.responded {
            update_timers(&mut context, record.time_signed, record.fudge);
        } else {
            update_variables(&mut context, &self.key, record.time_signed, record.fudge, record.error, record.other);
        }
        check_mac(&self.key, context, record.mac)?;
        check_time(record.time_signed, record.fudge, now)?;
        self.previous_mac = record.mac.to_vec();
        self.unsigned.clear();
        self.unsigned_count = 0;
        self.responded = true;
        Ok(true)
    }

    /// What a response carrying a TSIG error says. Only a BADTIME answer
    /// is signed (RFC 8945 §5.2.3); its MAC is checked like a first
    /// response's, with the error and the server's time among the
    /// variables, and its time is not (it is the request's own).
    fn peer_error(&self, message: &[u8], record: &TsigRecord<'_>) -> Result<TsigProblem, Error> {
        if record.error != tsig_error::BADTIME || record.mac.is_empty() || self.responded {
            return Ok(TsigProblem::PeerError { code: record.error });
        }
        check_key(&self.key, record)?;
        let mut context = hmac::Context::with_key(&self.key.key);
        update_prior_mac(&mut context, &self.previous_mac)?;
        update_stripped(&mut context, message, record)?;
        update_variables(&mut context, &self.key, record.time_signed, record.fudge, record.error, record.other);
        check_mac(&self.key, context, record.mac)?;
        let server_time = match *record.other {
            [t0, t1, t2, t3, t4, t5] => u64::from_be_bytes([0, 0, t0, t1, t2, t3, t4, t5]),
            _ => return Ok(TsigProblem::PeerError { code: record.error }),
        };
        Ok(TsigProblem::PeerBadTime { server_time })
    }

    /// Check that the response stream ended on a signed message.
    pub fn finish_response(&self) -> Result<(), Error> {
        if self.responded && self.unsigned_count == 0 {
            Ok(())
        } else {
            Err(Error::Tsig { problem: TsigProblem::UnsignedMessages })
        }
    }

    /// Verify a request's TSIG against `keys`. `Ok(None)` when the request is
    /// unsigned; `Err(Error::Tsig { problem })` when it is signed and does not
    /// verify: answer NOTAUTH with [`TsigSession::error_response`] (RFC 8945 §5.2).
    pub fn verify_request(keys: &[TsigKey], message: &[u8], now: u64) -> Result<Option<Self>, Error> {
        let parsed = Message::parse(message)?;
        let Some(record) = TsigRecord::find(&parsed)? else { return Ok(None) };
        let mut scratch = [0u8; crate::MAX_NAME_LEN];
        let owner = record.key_name.flat(&mut scratch);
        let key = keys
            .iter()
            .find(|key| key.name.as_wire().eq_ignore_ascii_case(owner))
            .ok_or(Error::Tsig { problem: TsigProblem::UnknownKey })?;
        check_key(key, &record)?;
        let mut context = hmac::Context::with_key(&key.key);
        update_stripped(&mut context, message, &record)?;
        update_variables(&mut context, key, record.time_signed, record.fudge, record.error, record.other);
        check_mac(key, context, record.mac)?;
        check_time(record.time_signed, record.fudge, now)?;
        Ok(Some(Self::new(key.clone(), record.mac.to_vec())))
    }

    /// Sign one response message (append the TSIG record). The first
    /// response covers the request's MAC and the full TSIG variables; later
    /// ones of a stream cover the previous MAC and the timers only.
    pub fn sign_response(&mut self, message: &mut impl Buffer, now: u64) -> Result<(), Error> {
        let mut context = hmac::Context::with_key(&self.key.key);
        update_prior_mac(&mut context, &self.previous_mac)?;
        context.update(&self.unsigned);
        context.update(message.as_slice());
        if self.responded {
            update_timers(&mut context, now, self.fudge);
        } else {
            update_variables(&mut context, &self.key, now, self.fudge, 0, &[]);
        }
        let mac = context.sign();
        append_tsig(message, &self.key, now, self.fudge, mac.as_ref(), 0, &[])?;
        self.previous_mac = mac.as_ref().to_vec();
        self.responded = true;
        self.unsigned.clear();
        self.unsigned_count = 0;
        Ok(())
    }

    /// Send a response message of a stream unsigned (server side): the next
    /// signed message covers it. Fails after 99 in a row or before the first
    /// signed one (RFC 8945 §5.3.1).
    pub fn pass_unsigned_response(&mut self, message: &[u8]) -> Result<(), Error> {
        if !self.responded || self.unsigned_count >= MAX_UNSIGNED_RUN {
            return Err(Error::Tsig { problem: TsigProblem::UnsignedMessages });
        }
        self.unsigned.extend_from_slice(message);
        self.unsigned_count += 1;
        Ok(())
    }

    /// Append a TSIG record carrying `problem`'s error code to a NOTAUTH
    /// answer (RFC 8945 §5.2). BADKEY and BADSIG answers carry no MAC (the
    /// request could not be verified). A BADTIME answer is signed with the
    /// request's key, which is among `keys` since its MAC verified: the MAC
    /// covers the request's MAC, the answer and the error; Time Signed is
    /// the request's and Other Data the server's clock (RFC 8945 §5.2.3),
    /// so the client can see by how much the clocks differ.
    /// `request` is the request that failed, for its key and algorithm names.
    pub fn error_response(
        keys: &[TsigKey],
        request: &[u8],
        problem: TsigProblem,
        message: &mut impl Buffer,
        now: u64,
    ) -> Result<(), Error> {
        let parsed = Message::parse(request)?;
        let Some(record) = TsigRecord::find(&parsed)? else {
            return Err(Error::Tsig { problem: TsigProblem::Missing });
        };
        let code = problem.error_code().unwrap_or(tsig_error::BADSIG);
        let mut key_scratch = [0u8; crate::MAX_NAME_LEN];
        let mut algorithm_scratch = [0u8; crate::MAX_NAME_LEN];
        let key_name = record.key_name.flat(&mut key_scratch);
        let algorithm = record.algorithm.flat(&mut algorithm_scratch);
        let server_time = now.to_be_bytes();
        let server_time = server_time.get(2..).unwrap_or(&[]);
        if code == tsig_error::BADTIME
            && let Some(key) = keys.iter().find(|key| key.name.as_wire().eq_ignore_ascii_case(key_name))
            && check_key(key, &record).is_ok()
        {
            let mut context = hmac::Context::with_key(&key.key);
            update_prior_mac(&mut context, record.mac)?;
            context.update(message.as_slice());
            update_variables(&mut context, key, record.time_signed, record.fudge, code, server_time);
            let mac = context.sign();
            return append_tsig(message, key, record.time_signed, record.fudge, mac.as_ref(), code, server_time);
        }
        let other: &[u8] = if code == tsig_error::BADTIME { server_time } else { &[] };
        append_record(message, key_name, algorithm, now, record.fudge, &[], record.original_id, code, other)
    }
}

/// `Rcode` a server answers a request that failed TSIG verification with (RFC 8945 §5.2).
pub const TSIG_FAILURE_RCODE: Rcode = Rcode::NOTAUTH;

fn check_key(key: &TsigKey, record: &TsigRecord<'_>) -> Result<(), Error> {
    let mut scratch = [0u8; crate::MAX_NAME_LEN];
    if !key.name.as_wire().eq_ignore_ascii_case(record.key_name.flat(&mut scratch)) {
        return Err(Error::Tsig { problem: TsigProblem::UnknownKey });
    }
    let mut scratch = [0u8; crate::MAX_NAME_LEN];
    match TsigAlgorithm::from_wire(record.algorithm.flat(&mut scratch)) {
        Some(algorithm) if algorithm == key.algorithm => Ok(()),
        Some(_) => Err(Error::Tsig { problem: TsigProblem::WrongAlgorithm }),
        None => Err(Error::Tsig { problem: TsigProblem::UnsupportedAlgorithm }),
    }
}

fn check_mac(key: &TsigKey, context: hmac::Context, mac: &[u8]) -> Result<(), Error> {
    if mac.len() != key.algorithm.mac_len() {
        return Err(Error::Tsig { problem: TsigProblem::TruncatedMac { len: mac.len() } });
    }
    if constant_time_eq(context.sign().as_ref(), mac) {
        Ok(())
    } else {
        Err(Error::Tsig { problem: TsigProblem::BadSignature })
    }
}

/// Compare without an early exit, so the time taken does not tell how much of a forged MAC was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn check_time(signed: u64, fudge: u16, now: u64) -> Result<(), Error> {
    if signed.abs_diff(now) > u64::from(fudge) {
        return Err(Error::Tsig { problem: TsigProblem::BadTime { signed, now, fudge } });
    }
    Ok(())
}

fn update_prior_mac(context: &mut hmac::Context, mac: &[u8]) -> Result<(), Error> {
    let len = u16::try_from(mac.len()).map_err(|_| Error::Tsig { problem: TsigProblem::MessageFull })?;
    context.update(&len.to_be_bytes());
    context.update(mac);
    Ok(())
}

/// Feed the message as it was before the TSIG record was added: original
/// ID, ARCOUNT one less, and no TSIG record.
fn update_stripped(context: &mut hmac::Context, message: &[u8], record: &TsigRecord<'_>) -> Result<(), Error> {
    let header = message.get(..HEADER_LEN).ok_or(Error::ShortHeader { len: message.len() })?;
    let body =
        message.get(HEADER_LEN..record.offset).ok_or(Error::UnexpectedEnd { offset: record.offset, needed: 0 })?;
    let mut fixed = [0u8; HEADER_LEN];
    fixed.copy_from_slice(header);
    fixed[..2].copy_from_slice(&record.original_id.to_be_bytes());
    let arcount = u16::from_be_bytes([fixed[10], fixed[11]]).saturating_sub(1);
    fixed[10..].copy_from_slice(&arcount.to_be_bytes());
    context.update(&fixed);
    context.update(body);
    Ok(())
}

/// The TSIG variables of RFC 8945 §4.3.3, names in canonical (lowercase) form.
fn update_variables(context: &mut hmac::Context, key: &TsigKey, time: u64, fudge: u16, error: u16, other: &[u8]) {
    context.update(key.name.as_wire());
    context.update(&Class::ANY.0.to_be_bytes());
    context.update(&0u32.to_be_bytes());
    context.update(key.algorithm.wire_name());
    update_timers(context, time, fudge);
    context.update(&error.to_be_bytes());
    context.update(&u16::try_from(other.len()).unwrap_or(u16::MAX).to_be_bytes());
    context.update(other);
}

fn update_timers(context: &mut hmac::Context, time: u64, fudge: u16) {
    let time = time.to_be_bytes();
    context.update(time.get(2..).unwrap_or(&[]));
    context.update(&fudge.to_be_bytes());
}

fn append_tsig(
    message: &mut impl Buffer,
    key: &TsigKey,
    time: u64,
    fudge: u16,
    mac: &[u8],
    error: u16,
    other: &[u8],
) -> Result<(), Error> {
    let id = crate::Header::parse(message.as_slice())?.id;
    append_record(message, key.name.as_wire(), key.algorithm.wire_name(), time, fudge, mac, id, error, other)
}

#[allow(clippy::too_many_arguments, reason = "one argument per field of the TSIG record")]
fn append_record(
    message: &mut impl Buffer,
    key_name: &[u8],
    algorithm: &[u8],
    time: u64,
    fudge: u16,
    mac: &[u8],
    original_id: u16,
    error: u16,
    other: &[u8],
) -> Result<(), Error> {
    let full = Error::Tsig { problem: TsigProblem::MessageFull };
    let arcount = crate::Header::parse(message.as_slice())?.arcount.checked_add(1).ok_or(full)?;
    let rdlength = algorithm.len() + 6 + 2 + 2 + mac.len() + 2 + 2 + 2 + other.len();
    if message.len() + key_name.len() + 10 + rdlength > crate::MAX_MESSAGE_LEN {
        return Err(full);
    }
    let start = message.len();
    let time = time.to_be_bytes();
    let parts: [&[u8]; 14] = [
        key_name,
        &RecordType::TSIG.0.to_be_bytes(),
        &Class::ANY.0.to_be_bytes(),
        &0u32.to_be_bytes(),
        &u16::try_from(rdlength).map_err(|_| full)?.to_be_bytes(),
        algorithm,
        time.get(2..).unwrap_or(&[]),
        &fudge.to_be_bytes(),
        &u16::try_from(mac.len()).map_err(|_| full)?.to_be_bytes(),
        mac,
        &original_id.to_be_bytes(),
        &error.to_be_bytes(),
        &u16::try_from(other.len()).map_err(|_| full)?.to_be_bytes(),
        other,
    ];
    for part in parts {
        if let Err(error) = message.put(part) {
            message.truncate(start);
            return Err(error);
        }
    }
    if let Some(count) = message.as_mut_slice().get_mut(10..HEADER_LEN) {
        count.copy_from_slice(&arcount.to_be_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MessageBuilder, RecordBuf};

    fn key() -> TsigKey {
        TsigKey::from_base64(
            "transfer-key.".parse().unwrap(),
            TsigAlgorithm::HmacSha256,
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        )
        .unwrap()
    }

    fn query(id: u16) -> Vec<u8> {
        let mut query = Vec::new();
        let mut builder = MessageBuilder::new(&mut query).unwrap();
        builder.set_id(id);
        builder.push_question(&"example.".parse::<NameBuf>().unwrap(), RecordType::AXFR, Class::IN).unwrap();
        builder.finish().unwrap();
        query
    }

    fn response(id: u16, records: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut builder = MessageBuilder::new(&mut out).unwrap();
        builder.set_id(id);
        builder.set_flags(crate::Flags::default().with_qr(true));
        for record in records {
            builder.push_record_buf(Section::Answer, &record.parse::<RecordBuf>().unwrap()).unwrap();
        }
        builder.finish().unwrap();
        out
    }

    #[test]
    fn request_and_stream_round_trip_with_unsigned_messages_between() {
        let key = key();
        let mut request = query(7);
        let mut client = TsigSession::sign_request(&key, &mut request, 1000).unwrap();
        let mut server = TsigSession::verify_request(std::slice::from_ref(&key), &request, 1100).unwrap().unwrap();
        let mut messages = Vec::new();
        for (index, line) in
            ["a.example. 60 A 192.0.2.1", "b.example. 60 A 192.0.2.2", "c.example. 60 A 192.0.2.3"].iter().enumerate()
        {
            let mut message = response(7, &[line]);
            // The middle message goes unsigned, as RFC 8945 §5.3.1 allows.
            if index == 1 {
                server.pass_unsigned_response(&message).unwrap();
            } else {
                server.sign_response(&mut message, 1100 + index as u64).unwrap();
            }
            messages.push(message);
        }
        assert!(client.verify_response(&messages[0], 1101).unwrap());
        assert!(!client.verify_response(&messages[1], 1101).unwrap());
        assert!(client.finish_response().is_err());
        assert!(client.verify_response(&messages[2], 1102).unwrap());
        client.finish_response().unwrap();
    }

    #[test]
    fn tampering_wrong_keys_and_stale_times_are_rejected() {
        let key = key();
        let mut request = query(7);
        TsigSession::sign_request(&key, &mut request, 1000).unwrap();
        let other = TsigKey::new("transfer-key.".parse().unwrap(), TsigAlgorithm::HmacSha256, b"another secret");
        let problem = |result: Result<Option<TsigSession>, Error>| match result {
            Err(Error::Tsig { problem }) => problem,
            other => panic!("expected a TSIG error, got {other:?}"),
        };
        assert_eq!(problem(TsigSession::verify_request(&[other], &request, 1000)), TsigProblem::BadSignature);
        let stranger = TsigKey::new("stranger.".parse().unwrap(), TsigAlgorithm::HmacSha256, b"x");
        assert_eq!(problem(TsigSession::verify_request(&[stranger], &request, 1000)), TsigProblem::UnknownKey);
        let sha512 = TsigKey::new("transfer-key.".parse().unwrap(), TsigAlgorithm::HmacSha512, b"x");
        assert_eq!(problem(TsigSession::verify_request(&[sha512], &request, 1000)), TsigProblem::WrongAlgorithm);
        assert!(matches!(
            problem(TsigSession::verify_request(std::slice::from_ref(&key), &request, 2000)),
            TsigProblem::BadTime { signed: 1000, now: 2000, fudge: 300 }
        ));
        // A changed ID is fine (the original ID is signed); a changed question is not.
        let mut forwarded = request.clone();
        forwarded[0] ^= 0xff;
        assert!(TsigSession::verify_request(std::slice::from_ref(&key), &forwarded, 1000).unwrap().is_some());
        let mut tampered = request.clone();
        tampered[13] ^= 0x20;
        assert_eq!(
            problem(TsigSession::verify_request(std::slice::from_ref(&key), &tampered, 1000)),
            TsigProblem::BadSignature
        );
        assert!(TsigSession::verify_request(std::slice::from_ref(&key), &query(1), 1000).unwrap().is_none());
    }

    #[test]
    fn first_response_must_be_signed_and_errors_are_reported() {
        let key = key();
        let mut request = query(3);
        let mut client = TsigSession::sign_request(&key, &mut request, 1000).unwrap();
        assert!(matches!(
            client.clone().verify_response(&response(3, &[]), 1000),
            Err(Error::Tsig { problem: TsigProblem::Missing })
        ));
        let mut refusal = response(3, &[]);
        TsigSession::error_response(&[], &request, TsigProblem::BadSignature, &mut refusal, 1000).unwrap();
        assert!(matches!(
            client.verify_response(&refusal, 1000),
            Err(Error::Tsig { problem: TsigProblem::PeerError { code: tsig_error::BADSIG } })
        ));
    }

    #[test]
    fn badtime_answers_are_signed_with_the_servers_clock_and_verify() {
        let key = key();
        let mut request = query(5);
        let mut client = TsigSession::sign_request(&key, &mut request, 1000).unwrap();
        // The server's clock is an hour ahead: the MAC is good, the time is not.
        let problem = match TsigSession::verify_request(std::slice::from_ref(&key), &request, 4600) {
            Err(Error::Tsig { problem }) => problem,
            other => panic!("expected BADTIME, got {other:?}"),
        };
        assert_eq!(problem.error_code(), Some(tsig_error::BADTIME));
        let mut answer = response(5, &[]);
        TsigSession::error_response(std::slice::from_ref(&key), &request, problem, &mut answer, 4600).unwrap();
        let parsed = Message::parse(&answer).unwrap();
        let record = TsigRecord::find(&parsed).unwrap().unwrap();
        // RFC 8945 §5.2.3: the request's time, the server's clock in Other Data, a full MAC.
        assert_eq!((record.time_signed, record.error), (1000, tsig_error::BADTIME));
        assert_eq!(record.other, &4600u64.to_be_bytes()[2..]);
        assert_eq!(record.mac.len(), 32);
        assert_eq!(
            client.clone().verify_response(&answer, 1001).unwrap_err(),
            Error::Tsig { problem: TsigProblem::PeerBadTime { server_time: 4600 } }
        );
        // A changed server time (or anything else the MAC covers) does not verify.
        let mut forged = answer.clone();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert_eq!(
            client.clone().verify_response(&forged, 1001).unwrap_err(),
            Error::Tsig { problem: TsigProblem::BadSignature }
        );
        // Signed with another secret under the same name: not the client's key.
        let impostor = TsigKey::new(key.name().clone(), TsigAlgorithm::HmacSha256, b"not the secret");
        let mut other = response(5, &[]);
        TsigSession::error_response(&[impostor], &request, problem, &mut other, 4600).unwrap();
        assert_eq!(
            client.clone().verify_response(&other, 1001).unwrap_err(),
            Error::Tsig { problem: TsigProblem::BadSignature }
        );
        // Without the key the answer goes unsigned, and says only the code.
        let mut unsigned = response(5, &[]);
        TsigSession::error_response(&[], &request, problem, &mut unsigned, 4600).unwrap();
        assert_eq!(
            client.verify_response(&unsigned, 1001).unwrap_err(),
            Error::Tsig { problem: TsigProblem::PeerError { code: tsig_error::BADTIME } }
        );
    }

    #[test]
    fn algorithm_names() {
        assert_eq!(TsigAlgorithm::from_name("HMAC-SHA256."), Some(TsigAlgorithm::HmacSha256));
        assert_eq!(TsigAlgorithm::from_name("hmac-sha512"), Some(TsigAlgorithm::HmacSha512));
        assert_eq!(TsigAlgorithm::from_name("hmac-md5"), None);
        assert!(!format!("{:?}", key()).contains("MDEy"));
    }
}
