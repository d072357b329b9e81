//! Zone transfers from a primary over TCP (RFC 5936, RFC 1995): the SOA
//! query first, then an AXFR or IXFR only when the primary's serial is
//! newer, every message checked by [`TransferReader`] and, with a key,
//! verified by [`TsigSession`]. The protocol lives in `signpost-wire`; this
//! module owns the socket and the clock.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use signpost_wire::{
    Class, Message, NameBuf, Opcode, Rcode, RecordBuf, RecordType, Transfer, TransferReader, TransferRequest, TsigKey,
    TsigSession, soa_serial, write_soa_query,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::Error;

/// How long a transfer may wait for the connection or for each message.
pub const DEFAULT_TRANSFER_TIMEOUT: Duration = Duration::from_secs(10);

/// Transfers zones from one primary.
///
/// ```no_run
/// # async fn run() -> Result<(), signpost_upstream::Error> {
/// use signpost_upstream::TransferClient;
/// use signpost_wire::Transfer;
///
/// let primary = TransferClient::new("127.0.0.1:5300".parse().unwrap());
/// let zone = "example.".parse().unwrap();
/// // No copy yet: the primary's SOA, then the whole zone.
/// if let Some(Transfer::Full { records, .. }) = primary.refresh(&zone, None).await? {
///     println!("{} records", records.len());
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct TransferClient {
    server: SocketAddr,
    key: Option<TsigKey>,
    timeout: Duration,
    max_records: usize,
}

impl TransferClient {
    /// A client for the primary at `server`, without TSIG.
    pub fn new(server: SocketAddr) -> Self {
        Self { server, key: None, timeout: DEFAULT_TRANSFER_TIMEOUT, max_records: signpost_wire::DEFAULT_MAX_RECORDS }
    }

    /// Sign every query with `key` and require every answer to verify.
    #[must_use]
    pub fn with_key(mut self, key: Option<TsigKey>) -> Self {
        self.key = key;
        self
    }

    /// Give up when connecting or waiting for any one message takes longer.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Refuse transfers of more records than this.
    #[must_use]
    pub fn with_max_records(mut self, limit: usize) -> Self {
        self.max_records = limit;
        self
    }

    /// The primary.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// Ask the primary for the zone's SOA (over TCP, signed if a key is set).
    pub async fn soa(&self, zone: &NameBuf) -> Result<RecordBuf, Error> {
        let id = rand::random::<u16>();
        let mut query = Vec::with_capacity(64);
        write_soa_query(&mut query, id, zone).map_err(|source| self.protocol(zone, source))?;
        let mut session = self.sign(zone, &mut query)?;
        let mut soa = None;
        self.exchange(zone, &query, |message| {
            if let Some(session) = session.as_mut() {
                session.verify_response(message, unix_now())?;
            }
            soa = Some(read_soa_answer(message, id, zone)?);
            Ok(true)
        })
        .await?;
        soa.ok_or_else(|| self.protocol(zone, missing_soa()))
    }

    /// Transfer the zone as `request` asks and check the stream.
    pub async fn transfer(&self, zone: &NameBuf, request: &TransferRequest) -> Result<Transfer, Error> {
        let id = rand::random::<u16>();
        let mut query = Vec::with_capacity(128);
        request.write_query(&mut query, id, zone).map_err(|source| self.protocol(zone, source))?;
        let mut session = self.sign(zone, &mut query)?;
        let mut reader = TransferReader::new(id, zone, request).with_max_records(self.max_records);
        self.exchange(zone, &query, |message| {
            if let Some(session) = session.as_mut() {
                session.verify_response(message, unix_now())?;
            }
            reader.handle_message(message)
        })
        .await?;
        if let Some(session) = &session {
            session.finish_response().map_err(|source| self.protocol(zone, source))?;
        }
        reader.finish().map_err(|source| self.protocol(zone, source))
    }

    /// What a secondary does at each refresh: ask for the SOA and, only if
    /// the primary's serial is newer than `current`'s (RFC 1982), transfer:
    /// IXFR from `current`, or AXFR without a copy. `Ok(None)` when the copy
    /// is current. If the changes of an IXFR cannot be applied, fall back to
    /// [`TransferClient::transfer`] with [`TransferRequest::Axfr`].
    pub async fn refresh(&self, zone: &NameBuf, current: Option<&RecordBuf>) -> Result<Option<Transfer>, Error> {
        let primary = self.soa(zone).await?;
        let request = match current {
            Some(current) => {
                let (Some(theirs), Some(ours)) = (soa_serial(&primary), soa_serial(current)) else {
                    return Err(self.protocol(zone, missing_soa()));
                };
                if !theirs.is_newer_than(ours) {
                    return Ok(None);
                }
                TransferRequest::Ixfr { soa: current.clone() }
            }
            None => TransferRequest::Axfr,
        };
        self.transfer(zone, &request).await.map(Some)
    }

    fn sign(&self, zone: &NameBuf, query: &mut Vec<u8>) -> Result<Option<TsigSession>, Error> {
        self.key
            .as_ref()
            .map(|key| TsigSession::sign_request(key, query, unix_now()))
            .transpose()
            .map_err(|source| self.protocol(zone, source))
    }

    /// Send `query` on a new connection and hand each answer message to
    /// `handle` until it says the exchange is complete.
    async fn exchange(
        &self,
        zone: &NameBuf,
        query: &[u8],
        mut handle: impl FnMut(&[u8]) -> Result<bool, signpost_wire::Error>,
    ) -> Result<(), Error> {
        let io = |source| Error::TransferIo { server: self.server, zone: zone.to_string(), source };
        let timed_out =
            || Error::TransferTimeout { server: self.server, zone: zone.to_string(), timeout: self.timeout };
        let mut stream = tokio::time::timeout(self.timeout, TcpStream::connect(self.server))
            .await
            .map_err(|_| timed_out())?
            .map_err(io)?;
        let len = u16::try_from(query.len()).map_err(|_| self.protocol(zone, missing_soa()))?;
        let mut framed = Vec::with_capacity(query.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(query);
        stream.write_all(&framed).await.map_err(io)?;
        let mut message = Vec::with_capacity(65_535);
        loop {
            let mut prefix = [0u8; 2];
            tokio::time::timeout(self.timeout, stream.read_exact(&mut prefix))
                .await
                .map_err(|_| timed_out())?
                .map_err(io)?;
            message.resize(usize::from(u16::from_be_bytes(prefix)), 0);
            tokio::time::timeout(self.timeout, stream.read_exact(&mut message))
                .await
                .map_err(|_| timed_out())?
                .map_err(io)?;
            if handle(&message).map_err(|source| self.protocol(zone, source))? {
                return Ok(());
            }
        }
    }

    fn protocol(&self, zone: &NameBuf, source: signpost_wire::Error) -> Error {
        Error::TransferProtocol { server: self.server, zone: zone.to_string(), source }
    }
}

fn missing_soa() -> signpost_wire::Error {
    signpost_wire::Error::Transfer { message: 0, problem: signpost_wire::TransferProblem::FirstNotSoa }
}

/// The SOA from the answer to an SOA query: same ID, a NOERROR response
/// with the zone's SOA in the answer section.
fn read_soa_answer(bytes: &[u8], id: u16, zone: &NameBuf) -> Result<RecordBuf, signpost_wire::Error> {
    use signpost_wire::{Error as WireError, TransferProblem};
    let fail = |problem| WireError::Transfer { message: 0, problem };
    let message = Message::parse(bytes)?;
    if message.id() != id {
        return Err(fail(TransferProblem::IdMismatch { expected: id, found: message.id() }));
    }
    if !message.flags().qr() || message.opcode() != Opcode::QUERY {
        return Err(fail(TransferProblem::NotAResponse));
    }
    let rcode = message.rcode()?;
    if rcode != Rcode::NOERROR {
        return Err(fail(TransferProblem::Rcode { rcode }));
    }
    for record in message.answers()? {
        let record = record?;
        if record.rtype() == RecordType::SOA && record.class() == Class::IN && record.name() == *zone {
            return RecordBuf::from_record(&record);
        }
    }
    Err(missing_soa())
}

/// Seconds since the Unix epoch, for TSIG (0 if the clock is before 1970).
fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
}
