//! dnstap output: queries and answers as `dnstap.proto` messages, sent over
//! Frame Streams to a collector on a unix socket or TCP.
//!
//! The pipeline only builds a [`Message`] and `try_send`s it to a bounded
//! queue ([`Tap`]); a writer task owns the connection: the bidirectional
//! Frame Streams handshake (READY → ACCEPT → START), one data frame per
//! message, STOP → FINISH on shutdown. When the collector goes away the
//! writer reconnects with backoff; messages that find the queue full, or
//! arrive while no collector is connected, are dropped and counted
//! (`signpost_dnstap_frames_total{outcome="dropped"}`) — a slow collector
//! never slows an answer.
//!
//! The protobuf messages are declared here by hand with `prost`'s derive
//! macros: the fields Signpost writes, with dnstap.proto's tags and types
//! (<https://github.com/dnstap/dnstap.pb/blob/master/dnstap.proto>), so no
//! `protoc` and no build script are needed. The Frame Streams codec is the
//! [`frame`] module (<https://farsightsec.github.io/fstrm/>).
//!
//! ```
//! use signpost_server::dnstap::{Dnstap, Message, MessageType, frame};
//! use prost::Message as _;
//!
//! let message = Message { r#type: MessageType::ClientQuery as i32, ..Message::default() };
//! let payload = Dnstap::wrap(message, None, None).encode_to_vec();
//! let mut stream = Vec::new();
//! frame::write_data(&mut stream, &payload);
//! assert_eq!(&stream[..4], &(payload.len() as u32).to_be_bytes());
//! ```

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prost::Message as _;
use rustls_pki_types::ServerName;
use signpost_rules::{Matched, Matcher, Transport};
use signpost_upstream::{Protocol, Resolved, UpstreamError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::config::DnstapConfig;
use crate::metrics::Metrics;

/// The outer message of every frame (`dnstap.Dnstap`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Dnstap {
    /// The server's identity (`dnstap-identity`), when sent.
    #[prost(bytes = "vec", optional, tag = "1")]
    pub identity: Option<Vec<u8>>,
    /// The server's version (`dnstap-version`), when sent.
    #[prost(bytes = "vec", optional, tag = "2")]
    pub version: Option<Vec<u8>>,
    /// Free-form data (Signpost sends none).
    #[prost(bytes = "vec", optional, tag = "3")]
    pub extra: Option<Vec<u8>>,
    /// What the frame holds: always [`DnstapType::Message`].
    #[prost(enumeration = "DnstapType", required, tag = "15")]
    pub r#type: i32,
    /// The DNS message.
    #[prost(message, optional, tag = "14")]
    pub message: Option<Message>,
}

impl Dnstap {
    /// `message` in a frame of type MESSAGE with the given identity and version.
    pub fn wrap(message: Message, identity: Option<Vec<u8>>, version: Option<Vec<u8>>) -> Self {
        Self { identity, version, extra: None, r#type: DnstapType::Message as i32, message: Some(message) }
    }
}

/// `Dnstap.Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum DnstapType {
    /// A DNS message.
    Message = 1,
}

/// `dnstap.SocketFamily`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum SocketFamily {
    /// IPv4.
    Inet = 1,
    /// IPv6.
    Inet6 = 2,
}

/// `dnstap.SocketProtocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum SocketProtocol {
    /// DNS over UDP.
    Udp = 1,
    /// DNS over TCP.
    Tcp = 2,
    /// DNS over TLS (RFC 7858).
    Dot = 3,
    /// DNS over HTTPS (RFC 8484).
    Doh = 4,
}

/// `dnstap.Message.Type`: who sent the message to whom. Signpost writes
/// the client and forwarder kinds; the others are here so a reader of
/// any server's stream can name what it got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MessageType {
    /// An authoritative server received a query.
    AuthQuery = 1,
    /// An authoritative server answered.
    AuthResponse = 2,
    /// A recursive resolver sent a query to an authoritative server.
    ResolverQuery = 3,
    /// A recursive resolver got an authoritative server's answer.
    ResolverResponse = 4,
    /// The server received a client's query.
    ClientQuery = 5,
    /// The server answered a client.
    ClientResponse = 6,
    /// The server forwarded a query upstream.
    ForwarderQuery = 7,
    /// The server got an upstream's answer.
    ForwarderResponse = 8,
    /// A stub resolver sent a query.
    StubQuery = 9,
    /// A stub resolver got an answer.
    StubResponse = 10,
    /// A tool sent a query.
    ToolQuery = 11,
    /// A tool got an answer.
    ToolResponse = 12,
    /// An UPDATE was received.
    UpdateQuery = 13,
    /// An UPDATE was answered.
    UpdateResponse = 14,
}

/// `dnstap.Message`: one DNS message and where and when it went. The
/// "query" side is the initiator (the client; Signpost itself when
/// forwarding), the "response" side the responder.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Message {
    /// A [`MessageType`].
    #[prost(enumeration = "MessageType", required, tag = "1")]
    pub r#type: i32,
    /// A [`SocketFamily`].
    #[prost(enumeration = "SocketFamily", optional, tag = "2")]
    pub socket_family: Option<i32>,
    /// A [`SocketProtocol`].
    #[prost(enumeration = "SocketProtocol", optional, tag = "3")]
    pub socket_protocol: Option<i32>,
    /// The initiator's address: 4 or 16 bytes.
    #[prost(bytes = "vec", optional, tag = "4")]
    pub query_address: Option<Vec<u8>>,
    /// The responder's address: 4 or 16 bytes.
    #[prost(bytes = "vec", optional, tag = "5")]
    pub response_address: Option<Vec<u8>>,
    /// The initiator's port.
    #[prost(uint32, optional, tag = "6")]
    pub query_port: Option<u32>,
    /// The responder's port.
    #[prost(uint32, optional, tag = "7")]
    pub response_port: Option<u32>,
    /// When the query was sent or received: seconds since the Unix epoch.
    #[prost(uint64, optional, tag = "8")]
    pub query_time_sec: Option<u64>,
    /// ... and nanoseconds.
    #[prost(fixed32, optional, tag = "9")]
    pub query_time_nsec: Option<u32>,
    /// The query in wire format.
    #[prost(bytes = "vec", optional, tag = "10")]
    pub query_message: Option<Vec<u8>>,
    /// The zone a query was sent for, in wire format: on FORWARDER messages
    /// the forward zone (the matched rule's name; the root for the default
    /// group), as Unbound writes its forward-zone's name.
    #[prost(bytes = "vec", optional, tag = "11")]
    pub query_zone: Option<Vec<u8>>,
    /// When the response was sent or received: seconds since the Unix epoch.
    #[prost(uint64, optional, tag = "12")]
    pub response_time_sec: Option<u64>,
    /// ... and nanoseconds.
    #[prost(fixed32, optional, tag = "13")]
    pub response_time_nsec: Option<u32>,
    /// The response in wire format.
    #[prost(bytes = "vec", optional, tag = "14")]
    pub response_message: Option<Vec<u8>>,
}

/// The Frame Streams codec (fstrm): data frames and the control frames of
/// the bidirectional handshake. Writing is into a `Vec`; reading is from
/// any async reader.
pub mod frame {
    use tokio::io::{AsyncRead, AsyncReadExt};

    use crate::Error;

    /// The content type dnstap streams carry.
    pub const CONTENT_TYPE: &[u8] = b"protobuf:dnstap.Dnstap";
    /// The largest control frame fstrm accepts.
    pub const MAX_CONTROL_LEN: usize = 512;
    /// The largest data frame [`read_frame`] accepts (a DNS message is at
    /// most 64 KiB; a dnstap message holds two and some addresses).
    pub const MAX_DATA_LEN: usize = 256 << 10;
    /// The one control field fstrm defines.
    const FIELD_CONTENT_TYPE: u32 = 1;

    /// A control frame's type.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct ControlType(pub u32);

    impl ControlType {
        /// Reader → writer: the content type it accepts.
        pub const ACCEPT: Self = Self(1);
        /// Writer → reader: data frames of this content type follow.
        pub const START: Self = Self(2);
        /// Writer → reader: no more data frames.
        pub const STOP: Self = Self(3);
        /// Writer → reader: the content types it can send.
        pub const READY: Self = Self(4);
        /// Reader → writer: STOP received, the stream is over.
        pub const FINISH: Self = Self(5);
    }

    /// One frame read from a stream.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum Frame {
        /// A data frame's payload.
        Data(Vec<u8>),
        /// A control frame.
        Control {
            /// Its type.
            kind: ControlType,
            /// Its CONTENT_TYPE fields.
            content_types: Vec<Vec<u8>>,
        },
    }

    /// Append a data frame: the payload's length (big-endian, never 0)
    /// and the payload.
    pub fn write_data(out: &mut Vec<u8>, payload: &[u8]) {
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
    }

    /// Append a control frame: the escape (a zero length), the control
    /// frame's length, its type and a CONTENT_TYPE field per content type.
    pub fn write_control(out: &mut Vec<u8>, kind: ControlType, content_types: &[&[u8]]) {
        let length = 4 + content_types.iter().map(|content_type| 8 + content_type.len()).sum::<usize>();
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&(length as u32).to_be_bytes());
        out.extend_from_slice(&kind.0.to_be_bytes());
        for content_type in content_types {
            out.extend_from_slice(&FIELD_CONTENT_TYPE.to_be_bytes());
            out.extend_from_slice(&(content_type.len() as u32).to_be_bytes());
            out.extend_from_slice(content_type);
        }
    }

    /// A control frame's body (after its length): type and fields.
    pub fn parse_control(body: &[u8]) -> Result<Frame, Error> {
        let (kind, mut rest) = split_u32(body).ok_or(Error::Frame { problem: "control frame without a type" })?;
        let mut content_types = Vec::new();
        while !rest.is_empty() {
            let (field, after) =
                split_u32(rest).ok_or(Error::Frame { problem: "control frame ends inside a field" })?;
            let (length, after) = split_u32(after).ok_or(Error::Frame { problem: "control field without a length" })?;
            let value =
                after.get(..length as usize).ok_or(Error::Frame { problem: "control field overruns its frame" })?;
            if field != FIELD_CONTENT_TYPE {
                return Err(Error::Frame { problem: "unknown control field" });
            }
            content_types.push(value.to_vec());
            rest = after.get(length as usize..).ok_or(Error::Frame { problem: "control field overruns its frame" })?;
        }
        Ok(Frame::Control { kind: ControlType(kind), content_types })
    }

    fn split_u32(bytes: &[u8]) -> Option<(u32, &[u8])> {
        let (head, rest) = bytes.split_first_chunk::<4>()?;
        Some((u32::from_be_bytes(*head), rest))
    }

    /// Read one frame; `None` at a clean end of stream (between frames).
    pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Option<Frame>, Error> {
        let io = |source| Error::Io { what: "reading a Frame Streams frame", source };
        let mut length = [0u8; 4];
        match reader.read_exact(&mut length).await {
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(error) => return Err(io(error)),
        }
        let length = u32::from_be_bytes(length) as usize;
        if length > 0 {
            if length > MAX_DATA_LEN {
                return Err(Error::Frame { problem: "data frame longer than 256 KiB" });
            }
            let mut payload = vec![0u8; length];
            reader.read_exact(&mut payload).await.map_err(io)?;
            return Ok(Some(Frame::Data(payload)));
        }
        let mut control_length = [0u8; 4];
        reader.read_exact(&mut control_length).await.map_err(io)?;
        let control_length = u32::from_be_bytes(control_length) as usize;
        if control_length > MAX_CONTROL_LEN {
            return Err(Error::Frame { problem: "control frame longer than 512 bytes" });
        }
        let mut body = vec![0u8; control_length];
        reader.read_exact(&mut body).await.map_err(io)?;
        parse_control(&body).map(Some)
    }
}

/// Where a client's query arrived: what CLIENT_QUERY and CLIENT_RESPONSE
/// messages say about the sockets.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClientSide {
    pub(crate) peer: SocketAddr,
    pub(crate) local: Option<SocketAddr>,
    pub(crate) transport: Transport,
    pub(crate) arrived: SystemTime,
}

/// Which message types are sent.
#[derive(Clone, Copy, Debug)]
struct Kinds {
    client_query: bool,
    client_response: bool,
    forwarder_query: bool,
    forwarder_response: bool,
}

/// The pipeline's side of dnstap: builds messages and queues them for the
/// writer without waiting.
pub(crate) struct Tap {
    queue: mpsc::Sender<Message>,
    kinds: Kinds,
    metrics: Arc<Metrics>,
}

/// Where the writer connects.
#[derive(Clone, Debug)]
enum Destination {
    Unix(PathBuf),
    Tcp(SocketAddr),
    /// TCP with TLS: the certificate must be valid for `name`.
    Tls {
        address: SocketAddr,
        name: ServerName<'static>,
        config: Arc<rustls::ClientConfig>,
    },
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
            Self::Tcp(address) => write!(f, "tcp:{address}"),
            Self::Tls { address, .. } => write!(f, "tls:{address}"),
        }
    }
}

/// What every frame carries besides its message.
struct Envelope {
    identity: Option<Vec<u8>>,
    version: Option<Vec<u8>>,
}

/// The first wait after a failed connection; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long a connection attempt, the handshake's answer and FINISH may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// Messages written with one `write_all` at most.
const BATCH: u64 = 64;

impl Tap {
    /// Check `config` and start its writer task (inside a tokio runtime);
    /// `None` when dnstap is off. The writer stops, after STOP/FINISH,
    /// when `stop` is cancelled.
    pub(crate) fn start(
        config: &DnstapConfig,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) -> Result<Option<(Self, tokio::task::JoinHandle<()>)>, Error> {
        if !config.enable {
            return Ok(None);
        }
        let destination = match (&config.address, &config.socket_path) {
            (Some(address), _) if config.tls => Destination::Tls {
                address: *address,
                name: tls_server_name(config, *address)?,
                config: tls_client_config(config)?,
            },
            (None, _) if config.tls => {
                return Err(Error::DnstapConfig {
                    problem: "tls needs the collector's TCP address (address / dnstap-ip), not a unix socket",
                });
            }
            (Some(address), _) => Destination::Tcp(*address),
            (None, Some(path)) => Destination::Unix(path.clone()),
            (None, None) => {
                return Err(Error::DnstapConfig {
                    problem: "enabled without a collector: give socket_path (dnstap-socket-path) or address (dnstap-ip)",
                });
            }
        };
        if config.queue == 0 {
            return Err(Error::DnstapConfig { problem: "queue must hold at least one message" });
        }
        let envelope = Envelope {
            identity: config.send_identity.then(|| config.identity.clone().unwrap_or_else(host_name).into_bytes()),
            version: config.send_version.then(|| {
                config.version.clone().unwrap_or_else(|| format!("signpost {}", env!("CARGO_PKG_VERSION"))).into_bytes()
            }),
        };
        let kinds = Kinds {
            client_query: config.log_client_query_messages,
            client_response: config.log_client_response_messages,
            forwarder_query: config.log_forwarder_query_messages,
            forwarder_response: config.log_forwarder_response_messages,
        };
        let (sender, receiver) = mpsc::channel(config.queue);
        let writer = Writer { queue: receiver, destination, envelope, metrics: metrics.clone(), stop };
        let task = tokio::spawn(writer.run());
        Ok(Some((Self { queue: sender, kinds, metrics }, task)))
    }

    /// Queue a message, or count it dropped when the queue is full.
    fn push(&self, message: Message) {
        if self.queue.try_send(message).is_err() {
            self.metrics.dnstap_frames_add(false, 1);
        }
    }

    /// Whether FORWARDER_QUERY or FORWARDER_RESPONSE messages are sent
    /// (a forward job keeps its zone's name only then).
    pub(crate) fn logs_forwarder_messages(&self) -> bool {
        self.kinds.forwarder_query || self.kinds.forwarder_response
    }

    /// Whether client responses are sent (a forward job keeps its client's
    /// side only then).
    pub(crate) fn logs_client_responses(&self) -> bool {
        self.kinds.client_response
    }

    /// A client's query arrived.
    pub(crate) fn client_query(&self, client: &ClientSide, query: &[u8]) {
        if !self.kinds.client_query {
            return;
        }
        let mut message = client_message(MessageType::ClientQuery, client);
        message.query_message = Some(query.to_vec());
        self.push(message);
    }

    /// A client is being answered.
    pub(crate) fn client_response(&self, client: &ClientSide, response: &[u8]) {
        if !self.kinds.client_response {
            return;
        }
        let mut message = client_message(MessageType::ClientResponse, client);
        (message.response_time_sec, message.response_time_nsec) = split_time(SystemTime::now());
        message.response_message = Some(response.to_vec());
        self.push(message);
    }

    /// An upstream resolution ended: a FORWARDER_QUERY per try (each when
    /// it started, to its server, with the message ID it went out with) and
    /// a FORWARDER_RESPONSE for the answer, as Unbound logs a forward
    /// zone's queries. They are sent when the resolution ends; the times
    /// say when each happened. A try whose ID is unknown (a TCP or TLS try
    /// that got no answer) shows ID 0. `zone` is the forward zone that sent
    /// the query ([`forward_zone`]), in wire format.
    pub(crate) fn forwarded(&self, query: &[u8], zone: Option<&[u8]>, outcome: &Result<Resolved, UpstreamError>) {
        if !self.kinds.forwarder_query && !self.kinds.forwarder_response {
            return;
        }
        let attempts = match outcome {
            Ok(resolved) => resolved.attempts.as_slice(),
            Err(error) => error.attempts(),
        };
        if self.kinds.forwarder_query {
            for attempt in attempts {
                let mut message = forwarder_message(MessageType::ForwarderQuery, attempt.server, attempt.protocol);
                (message.query_time_sec, message.query_time_nsec) = split_time(attempt.started);
                message.query_message = Some(with_id(query, attempt.id));
                message.query_zone = zone.map(<[u8]>::to_vec);
                self.push(message);
            }
        }
        if self.kinds.forwarder_response
            && let Ok(resolved) = outcome
        {
            let mut message = forwarder_message(MessageType::ForwarderResponse, resolved.server, resolved.protocol);
            // The try that was answered: its server, protocol and the answer's ID.
            let answer_id = signpost_wire::Header::parse(&resolved.response).map(|header| header.id).ok();
            let answered = attempts.iter().rev().find(|attempt| {
                attempt.server == resolved.server
                    && attempt.protocol == resolved.protocol
                    && (attempt.id.is_none() || attempt.id == answer_id)
            });
            if let Some(attempt) = answered {
                (message.query_time_sec, message.query_time_nsec) = split_time(attempt.started);
            }
            (message.response_time_sec, message.response_time_nsec) = split_time(SystemTime::now());
            message.query_message = Some(with_id(query, answer_id));
            message.response_message = Some(resolved.response.to_vec());
            message.query_zone = zone.map(<[u8]>::to_vec);
            self.push(message);
        }
    }
}

/// The forward zone a decision sends its query for, in wire format, as
/// Unbound names a forward-zone in dnstap's `query_zone`: the matched rule's
/// name (a suffix or exact rule's name, a wildcard rule's parent); the root
/// when nothing matched (the default group serves the root, Unbound's
/// `forward-zone: name: "."`); none for a regex rule, which has no zone.
pub(crate) fn forward_zone(matched: &Matched<'_>) -> Option<Box<[u8]>> {
    match matched {
        Matched::Rule { pattern, .. } => match Matcher::parse(pattern).ok()? {
            Matcher::Suffix(name) | Matcher::Exact(name) | Matcher::Wildcard(name) => Some(name.as_wire().into()),
            Matcher::Regex { .. } => None,
        },
        _ => Some(ROOT_ZONE.into()),
    }
}

/// The root's name in wire format: the zone of a query sent to the default group.
pub(crate) const ROOT_ZONE: &[u8] = &[0];

/// The query's bytes with message ID `id` (as they are when it is unknown).
fn with_id(query: &[u8], id: Option<u16>) -> Vec<u8> {
    let mut bytes = query.to_vec();
    if let Some(id) = id {
        signpost_wire::relay::set_id(&mut bytes, id);
    }
    bytes
}

/// A client message's sockets and query time.
fn client_message(kind: MessageType, client: &ClientSide) -> Message {
    let mut message = Message {
        r#type: kind as i32,
        socket_family: Some(family(client.peer.ip()) as i32),
        socket_protocol: Some(client_protocol(client.transport) as i32),
        query_address: Some(address_bytes(client.peer.ip())),
        query_port: Some(u32::from(client.peer.port())),
        ..Message::default()
    };
    if let Some(local) = client.local {
        message.response_address = Some(address_bytes(local.ip()));
        message.response_port = Some(u32::from(local.port()));
    }
    (message.query_time_sec, message.query_time_nsec) = split_time(client.arrived);
    message
}

/// A forwarder message's sockets: the upstream server is the responder.
fn forwarder_message(kind: MessageType, server: SocketAddr, protocol: Protocol) -> Message {
    Message {
        r#type: kind as i32,
        socket_family: Some(family(server.ip()) as i32),
        socket_protocol: Some(upstream_protocol(protocol) as i32),
        response_address: Some(address_bytes(server.ip())),
        response_port: Some(u32::from(server.port())),
        ..Message::default()
    }
}

fn family(address: IpAddr) -> SocketFamily {
    match address {
        IpAddr::V4(_) => SocketFamily::Inet,
        IpAddr::V6(_) => SocketFamily::Inet6,
    }
}

fn address_bytes(address: IpAddr) -> Vec<u8> {
    match address {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

fn client_protocol(transport: Transport) -> SocketProtocol {
    match transport {
        Transport::Udp => SocketProtocol::Udp,
        Transport::Tcp => SocketProtocol::Tcp,
        Transport::Dot => SocketProtocol::Dot,
        Transport::Doh => SocketProtocol::Doh,
    }
}

fn upstream_protocol(protocol: Protocol) -> SocketProtocol {
    match protocol {
        Protocol::Udp => SocketProtocol::Udp,
        Protocol::Tcp => SocketProtocol::Tcp,
        Protocol::Tls => SocketProtocol::Dot,
        Protocol::Https => SocketProtocol::Doh,
    }
}

/// Seconds and nanoseconds since the Unix epoch (zero before it).
fn split_time(time: SystemTime) -> (Option<u64>, Option<u32>) {
    let since = time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    (Some(since.as_secs()), Some(since.subsec_nanos()))
}

/// The host name, as Unbound's default `dnstap-identity`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "signpost".to_string())
}

type Reader = Box<dyn AsyncRead + Unpin + Send>;
type Sink = Box<dyn AsyncWrite + Unpin + Send>;

/// The writer task: owns the queue's receiving end and the connection.
struct Writer {
    queue: mpsc::Receiver<Message>,
    destination: Destination,
    envelope: Envelope,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
}

/// How a session with the collector ended.
enum Ended {
    /// The server is stopping (STOP sent); the writer ends.
    Stopped,
    /// The connection failed; the writer reconnects.
    Lost(Error),
}

impl Writer {
    async fn run(mut self) {
        let mut backoff = MIN_BACKOFF;
        loop {
            let connected = tokio::select! {
                biased;
                () = self.stop.cancelled() => return,
                connected = tokio::time::timeout(HANDSHAKE_TIMEOUT, connect(&self.destination)) => connected,
            };
            match connected {
                Ok(Ok((reader, sink))) => match self.session(reader, sink).await {
                    Ended::Stopped => return,
                    Ended::Lost(error) => {
                        // A session that got going starts the backoff afresh.
                        backoff = MIN_BACKOFF;
                        tracing::warn!(collector = %self.destination, %error, "dnstap collector lost; reconnecting");
                    }
                },
                Ok(Err(error)) => {
                    tracing::debug!(collector = %self.destination, %error, "dnstap collector not reachable");
                }
                Err(_) => tracing::debug!(collector = %self.destination, "dnstap collector did not accept in time"),
            }
            // Wait before trying again, dropping (and counting) what arrives
            // meanwhile: once the collector is back, fresh messages matter
            // more than ones queued while it was away.
            let until = tokio::time::Instant::now() + backoff;
            loop {
                tokio::select! {
                    biased;
                    () = self.stop.cancelled() => return,
                    () = tokio::time::sleep_until(until) => break,
                    message = self.queue.recv() => match message {
                        Some(_) => self.metrics.dnstap_frames_add(false, 1),
                        None => return,
                    },
                }
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Handshake, then write messages until stopped or the connection fails.
    async fn session(&mut self, mut reader: Reader, mut sink: Sink) -> Ended {
        match handshake(&mut reader, &mut sink).await {
            Ok(()) => tracing::info!(collector = %self.destination, "dnstap collector connected"),
            Err(error) => return Ended::Lost(error),
        }
        let mut buffer = Vec::with_capacity(16 << 10);
        let mut probe = [0u8; 64];
        loop {
            let first = tokio::select! {
                biased;
                () = self.stop.cancelled() => return self.finish(reader, sink, buffer).await,
                // The collector sends nothing until FINISH: bytes or the
                // end of the stream now mean it went away.
                read = reader.read(&mut probe) => {
                    let problem = match read {
                        Ok(0) => Error::Frame { problem: "the collector closed the connection" },
                        Ok(_) => Error::Frame { problem: "the collector sent data in the middle of the stream" },
                        Err(source) => Error::Io { what: "reading from the dnstap collector", source },
                    };
                    return Ended::Lost(problem);
                }
                message = self.queue.recv() => match message {
                    Some(message) => message,
                    None => return self.finish(reader, sink, buffer).await,
                },
            };
            buffer.clear();
            let mut count: u64 = 1;
            self.encode(first, &mut buffer);
            while count < BATCH
                && let Ok(message) = self.queue.try_recv()
            {
                self.encode(message, &mut buffer);
                count += 1;
            }
            if let Err(source) = sink.write_all(&buffer).await {
                self.metrics.dnstap_frames_add(false, count);
                return Ended::Lost(Error::Io { what: "writing to the dnstap collector", source });
            }
            self.metrics.dnstap_frames_add(true, count);
        }
    }

    fn encode(&self, message: Message, buffer: &mut Vec<u8>) {
        let frame = Dnstap::wrap(message, self.envelope.identity.clone(), self.envelope.version.clone());
        buffer.extend_from_slice(&(frame.encoded_len() as u32).to_be_bytes());
        // A Vec grows as needed: encoding into it cannot fail.
        let _ = frame.encode(buffer);
    }

    /// Write what is still queued, STOP, and wait a moment for FINISH.
    async fn finish(&mut self, mut reader: Reader, mut sink: Sink, mut buffer: Vec<u8>) -> Ended {
        buffer.clear();
        let mut count: u64 = 0;
        while let Ok(message) = self.queue.try_recv() {
            self.encode(message, &mut buffer);
            count += 1;
        }
        frame::write_control(&mut buffer, frame::ControlType::STOP, &[]);
        let written = async {
            sink.write_all(&buffer).await?;
            sink.flush().await
        };
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, written).await {
            Ok(Ok(())) => self.metrics.dnstap_frames_add(true, count),
            _ => {
                self.metrics.dnstap_frames_add(false, count);
                return Ended::Stopped;
            }
        }
        let finished = tokio::time::timeout(HANDSHAKE_TIMEOUT, frame::read_frame(&mut reader)).await;
        if !matches!(finished, Ok(Ok(Some(frame::Frame::Control { kind: frame::ControlType::FINISH, .. })))) {
            tracing::debug!(collector = %self.destination, "dnstap collector did not FINISH");
        }
        let _ = sink.shutdown().await;
        Ended::Stopped
    }
}

/// Open the connection and split it.
async fn connect(destination: &Destination) -> Result<(Reader, Sink), Error> {
    let io = |source| Error::Io { what: "connecting to the dnstap collector", source };
    Ok(match destination {
        Destination::Unix(path) => {
            let (reader, sink) = tokio::net::UnixStream::connect(path).await.map_err(io)?.into_split();
            (Box::new(reader), Box::new(sink))
        }
        Destination::Tcp(address) => {
            let stream = tokio::net::TcpStream::connect(address).await.map_err(io)?;
            let _ = stream.set_nodelay(true);
            let (reader, sink) = stream.into_split();
            (Box::new(reader), Box::new(sink))
        }
        Destination::Tls { address, name, config } => {
            let stream = tokio::net::TcpStream::connect(address).await.map_err(io)?;
            let _ = stream.set_nodelay(true);
            let stream = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name.clone(), stream)
                .await
                .map_err(|source| Error::Io { what: "TLS handshake with the dnstap collector", source })?;
            let (reader, sink) = tokio::io::split(stream);
            (Box::new(reader), Box::new(sink))
        }
    })
}

/// The name the collector's certificate is checked against: the configured
/// one, or its IP address.
fn tls_server_name(config: &DnstapConfig, address: SocketAddr) -> Result<ServerName<'static>, Error> {
    match &config.tls_server_name {
        Some(name) => ServerName::try_from(name.clone()).map_err(|_| Error::DnstapConfig {
            problem: "tls_server_name (dnstap-tls-server-name) is not a DNS name or IP address",
        }),
        None => Ok(ServerName::IpAddress(address.ip().into())),
    }
}

/// TLS settings for the collector: its CAs (the bundle, or the system's
/// roots) and, when given, our client certificate.
fn tls_client_config(config: &DnstapConfig) -> Result<Arc<rustls::ClientConfig>, Error> {
    let file_error = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |reason: String| Error::DnstapTls { path, reason }
    };
    if config.tls_client_cert_file.is_some() != config.tls_client_key_file.is_some() {
        return Err(Error::DnstapConfig {
            problem: "tls_client_cert_file and tls_client_key_file (dnstap-tls-client-cert-file, -key-file) go together",
        });
    }
    let mut roots = rustls::RootCertStore::empty();
    match &config.tls_cert_bundle {
        Some(path) => {
            for certificate in crate::tls::read_certificates(path).map_err(file_error(path))? {
                roots.add(certificate).map_err(|error| file_error(path)(format!("certificate rejected: {error}")))?;
            }
        }
        None => {
            roots.add_parsable_certificates(signpost_upstream::system_roots().iter().cloned());
        }
    }
    if roots.is_empty() {
        return Err(Error::DnstapConfig {
            problem: "no CA to check the collector's certificate with: the system has no roots; give tls_cert_bundle (dnstap-tls-cert-bundle)",
        });
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(signpost_upstream::crypto_provider(false)))
        .with_safe_default_protocol_versions()
        .map_err(|error| Error::DnstapTls { path: PathBuf::new(), reason: error.to_string() })?
        .with_root_certificates(roots);
    let client = match (&config.tls_client_cert_file, &config.tls_client_key_file) {
        (Some(cert), Some(key)) => {
            let chain = crate::tls::read_certificates(cert).map_err(file_error(cert))?;
            let private_key = crate::tls::read_private_key(key).map_err(file_error(key))?;
            builder
                .with_client_auth_cert(chain, private_key)
                .map_err(|error| file_error(cert)(format!("certificate and key do not work together: {error}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(client))
}

/// READY → ACCEPT (with our content type) → START.
async fn handshake(reader: &mut Reader, sink: &mut Sink) -> Result<(), Error> {
    let io = |source| Error::Io { what: "writing to the dnstap collector", source };
    let mut buffer = Vec::with_capacity(64);
    frame::write_control(&mut buffer, frame::ControlType::READY, &[frame::CONTENT_TYPE]);
    sink.write_all(&buffer).await.map_err(io)?;
    let answer = tokio::time::timeout(HANDSHAKE_TIMEOUT, frame::read_frame(reader))
        .await
        .map_err(|_| Error::Frame { problem: "the collector did not answer READY in time" })??;
    match answer {
        Some(frame::Frame::Control { kind: frame::ControlType::ACCEPT, content_types })
            if content_types.iter().any(|content_type| content_type == frame::CONTENT_TYPE) => {}
        Some(frame::Frame::Control { kind: frame::ControlType::ACCEPT, .. }) => {
            return Err(Error::Frame { problem: "the collector does not accept protobuf:dnstap.Dnstap" });
        }
        _ => return Err(Error::Frame { problem: "the collector answered READY with something other than ACCEPT" }),
    }
    buffer.clear();
    frame::write_control(&mut buffer, frame::ControlType::START, &[frame::CONTENT_TYPE]);
    sink.write_all(&buffer).await.map_err(io)
}

#[cfg(test)]
mod tests {
    use super::frame::{self, ControlType, Frame};
    use super::*;

    #[rustfmt::skip]
    const READY: &[u8] = &[
        0, 0, 0, 0,    // escape: a control frame follows
        0, 0, 0, 34,   // its length: type 4 + field type 4 + field length 4 + 22
        0, 0, 0, 4,    // READY
        0, 0, 0, 1,    // field CONTENT_TYPE
        0, 0, 0, 22,   // its length
        b'p', b'r', b'o', b't', b'o', b'b', b'u', b'f', b':', b'd', b'n', b's', b't', b'a', b'p', b'.',
        b'D', b'n', b's', b't', b'a', b'p',
    ];

    #[test]
    fn ready_is_written_as_fstrm_spells_it() {
        let mut out = Vec::new();
        frame::write_control(&mut out, ControlType::READY, &[frame::CONTENT_TYPE]);
        assert_eq!(out, READY);
    }

    #[test]
    fn stop_has_no_fields() {
        let mut out = Vec::new();
        frame::write_control(&mut out, ControlType::STOP, &[]);
        assert_eq!(out, [0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 3]);
    }

    #[tokio::test]
    async fn frames_read_back_as_written() {
        let mut stream = Vec::new();
        frame::write_control(&mut stream, ControlType::ACCEPT, &[b"other", frame::CONTENT_TYPE]);
        frame::write_data(&mut stream, b"payload");
        frame::write_control(&mut stream, ControlType::FINISH, &[]);
        let mut reader = stream.as_slice();
        assert_eq!(
            frame::read_frame(&mut reader).await.unwrap(),
            Some(Frame::Control {
                kind: ControlType::ACCEPT,
                content_types: vec![b"other".to_vec(), frame::CONTENT_TYPE.to_vec()]
            })
        );
        assert_eq!(frame::read_frame(&mut reader).await.unwrap(), Some(Frame::Data(b"payload".to_vec())));
        assert_eq!(
            frame::read_frame(&mut reader).await.unwrap(),
            Some(Frame::Control { kind: ControlType::FINISH, content_types: vec![] })
        );
        assert_eq!(frame::read_frame(&mut reader).await.unwrap(), None);
    }

    #[tokio::test]
    async fn malformed_control_frames_are_errors_not_panics() {
        for stream in [
            // A field length past the frame's end.
            &[0, 0, 0, 0, 0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9][..],
            // A frame without its type.
            &[0, 0, 0, 0, 0, 0, 0, 2, 0, 0],
            // Longer than fstrm allows.
            &[0, 0, 0, 0, 0, 0, 2, 1],
            // An unknown field.
            &[0, 0, 0, 0, 0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 7, 0, 0, 0, 0],
        ] {
            let mut reader = stream;
            assert!(frame::read_frame(&mut reader).await.is_err(), "{stream:?}");
        }
        // A data frame cut short.
        let mut reader = &[0, 0, 0, 9, 1, 2][..];
        assert!(frame::read_frame(&mut reader).await.is_err());
    }

    #[test]
    fn a_client_query_round_trips_through_protobuf() {
        let client = ClientSide {
            peer: "192.0.2.7:5300".parse().unwrap(),
            local: Some("[::1]:53".parse().unwrap()),
            transport: Transport::Tcp,
            arrived: SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123),
        };
        let mut message = client_message(MessageType::ClientQuery, &client);
        message.query_message = Some(vec![1, 2, 3]);
        let bytes = Dnstap::wrap(message.clone(), Some(b"host".to_vec()), None).encode_to_vec();
        let decoded = Dnstap::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded.r#type(), DnstapType::Message);
        assert_eq!(decoded.identity.as_deref(), Some(&b"host"[..]));
        let decoded = decoded.message.unwrap();
        assert_eq!(decoded, message);
        assert_eq!(decoded.r#type(), MessageType::ClientQuery);
        assert_eq!(decoded.socket_family(), SocketFamily::Inet);
        assert_eq!(decoded.socket_protocol(), SocketProtocol::Tcp);
        assert_eq!(decoded.query_address(), [192, 0, 2, 7]);
        assert_eq!(decoded.query_port(), 5300);
        assert_eq!(decoded.response_address().len(), 16);
        assert_eq!((decoded.query_time_sec(), decoded.query_time_nsec()), (1_700_000_000, 123));
    }

    #[test]
    fn tls_without_an_address_and_a_missing_collector_are_refused() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let _guard = runtime.enter();
        let metrics = Arc::new(Metrics::default());
        let config = DnstapConfig { tls: true, socket_path: Some("/tmp/x".into()), ..DnstapConfig::default() };
        let error = Tap::start(&config, metrics.clone(), CancellationToken::new()).err().unwrap();
        assert!(error.to_string().contains("TCP address"), "{error}");
        let half = DnstapConfig {
            tls: true,
            address: Some("127.0.0.1:6000".parse().unwrap()),
            tls_client_cert_file: Some("/nonexistent/cert.pem".into()),
            ..DnstapConfig::default()
        };
        let error = Tap::start(&half, metrics.clone(), CancellationToken::new()).err().unwrap();
        assert!(error.to_string().contains("go together"), "{error}");
        let missing = DnstapConfig {
            tls: true,
            address: Some("127.0.0.1:6000".parse().unwrap()),
            tls_cert_bundle: Some("/nonexistent/ca.pem".into()),
            ..DnstapConfig::default()
        };
        let error = Tap::start(&missing, metrics.clone(), CancellationToken::new()).err().unwrap();
        assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
        let error = Tap::start(&DnstapConfig::default(), metrics.clone(), CancellationToken::new()).err().unwrap();
        assert!(error.to_string().contains("socket_path"), "{error}");
        let off = DnstapConfig { enable: false, ..DnstapConfig::default() };
        assert!(Tap::start(&off, metrics, CancellationToken::new()).unwrap().is_none());
    }
}
