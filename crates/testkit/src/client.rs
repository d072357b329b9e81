//! A raw DNS client for tests that look at packets: build a query, send it
//! over UDP or TCP, read the answer's records as text.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use signpost_wire::{
    Class, EdnsHeader, EdnsOption, Flags, Message, MessageBuilder, NameBuf, OptionCode, Rcode, RecordBuf, RecordType,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use signpost_server::ServerHandle;

use crate::Transport;

/// How long [`ask`] and [`ask_from`] wait for an answer.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// A query to build: RD set and ID 0x04d2 unless changed, no EDNS unless given.
///
/// ```
/// use signpost_testkit::Query;
/// use signpost_wire::{EdnsHeader, Message, RecordType};
///
/// let bytes = Query::new("www.example", RecordType::AAAA).id(7).edns(EdnsHeader::default()).to_bytes();
/// let message = Message::parse(&bytes).unwrap();
/// assert_eq!(message.id(), 7);
/// assert!(message.edns().unwrap().is_some());
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct Query {
    name: String,
    qtype: RecordType,
    id: u16,
    recursion_desired: bool,
    edns: Option<EdnsHeader>,
    options: Vec<(OptionCode, Vec<u8>)>,
}

impl Query {
    /// A query for `name` (absolute or not; the final dot is implied) and `qtype`.
    pub fn new(name: &str, qtype: RecordType) -> Self {
        Self { name: name.to_owned(), qtype, id: 0x04d2, recursion_desired: true, edns: None, options: Vec::new() }
    }

    /// Set the ID.
    pub fn id(mut self, id: u16) -> Self {
        self.id = id;
        self
    }

    /// Set or clear RD.
    pub fn recursion_desired(mut self, desired: bool) -> Self {
        self.recursion_desired = desired;
        self
    }

    /// Add an OPT record.
    pub fn edns(mut self, edns: EdnsHeader) -> Self {
        self.edns = Some(edns);
        self
    }

    /// Add an EDNS option (an OPT record with default settings comes with it
    /// unless one was set).
    pub fn edns_option(mut self, code: OptionCode, data: impl Into<Vec<u8>>) -> Self {
        self.edns.get_or_insert_with(EdnsHeader::default);
        self.options.push((code, data.into()));
        self
    }

    /// The query on the wire.
    ///
    /// # Panics
    ///
    /// When the name is not a valid domain name.
    pub fn to_bytes(&self) -> Vec<u8> {
        let name: NameBuf = self.name.parse().unwrap_or_else(|error| panic!("query name {:?}: {error}", self.name));
        let mut buffer = Vec::new();
        // A fresh Vec holds any one question and OPT record.
        let written = (|| {
            let mut builder = MessageBuilder::new(&mut buffer)?;
            builder.set_id(self.id);
            builder.set_flags(Flags::default().with_rd(self.recursion_desired));
            builder.push_question(&name, self.qtype, Class::IN)?;
            if let Some(edns) = self.edns {
                builder.set_edns(edns);
                for (code, data) in &self.options {
                    builder.push_edns_option(&EdnsOption::Unknown { code: *code, data })?;
                }
            }
            builder.finish()
        })();
        if let Err(error) = written {
            panic!("query for {:?}: {error}", self.name);
        }
        buffer
    }
}

/// A query for `name` and `qtype` with RD, ID 0x04d2 and no EDNS.
pub fn query(name: &str, qtype: RecordType) -> Vec<u8> {
    Query::new(name, qtype).to_bytes()
}

/// Send `bytes` over UDP from 127.0.0.1 and wait up to `wait` for one datagram back.
pub async fn udp_exchange(server: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    udp_exchange_from(IpAddr::V4(Ipv4Addr::LOCALHOST), server, bytes, wait).await
}

/// [`udp_exchange`] from a socket on `source` (another loopback address, a
/// "client network").
///
/// # Panics
///
/// When no socket can be bound on `source` or the datagram cannot be sent.
pub async fn udp_exchange_from(source: IpAddr, server: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind(SocketAddr::new(source, 0))
        .await
        .unwrap_or_else(|error| panic!("cannot bind a UDP client on {source}: {error}"));
    if let Err(error) = socket.send_to(bytes, server).await {
        panic!("cannot send to {server}: {error}");
    }
    let mut buffer = vec![0u8; 65535];
    let (len, _) = tokio::time::timeout(wait, socket.recv_from(&mut buffer)).await.ok()?.ok()?;
    buffer.truncate(len);
    Some(buffer)
}

/// Send `bytes` framed over a new TCP connection and read one framed reply,
/// within `wait`; `None` when the connection fails or nothing comes.
pub async fn tcp_exchange(server: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    tokio::time::timeout(wait, async {
        let mut stream = TcpStream::connect(server).await.ok()?;
        write_frame(&mut stream, bytes).await.ok()?;
        read_frame(&mut stream).await
    })
    .await
    .ok()?
}

/// [`udp_exchange`] or [`tcp_exchange`], as `transport` says.
///
/// # Panics
///
/// For DoT and DoH, which want a TLS client: use a [`ResolverBuilder`](crate::ResolverBuilder).
pub async fn exchange(transport: Transport, server: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    match transport {
        Transport::Udp => udp_exchange(server, bytes, wait).await,
        Transport::Tcp => tcp_exchange(server, bytes, wait).await,
        Transport::Dot | Transport::Doh => panic!("exchange speaks Do53 only, not {transport:?}"),
    }
}

/// A DNS message with its two-octet length in front, for TCP (RFC 1035 4.2.2).
///
/// # Panics
///
/// When the message is longer than 65,535 octets.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let len = u16::try_from(message.len()).unwrap_or_else(|_| panic!("{} octets do not fit a frame", message.len()));
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(message);
    framed
}

/// Write one framed message.
pub async fn write_frame<S: AsyncWrite + Unpin>(stream: &mut S, message: &[u8]) -> std::io::Result<()> {
    stream.write_all(&frame(message)).await
}

/// Read one framed message; `None` when the stream ends or fails first.
pub async fn read_frame<S: AsyncRead + Unpin>(stream: &mut S) -> Option<Vec<u8>> {
    let len = stream.read_u16().await.ok()?;
    let mut message = vec![0u8; usize::from(len)];
    stream.read_exact(&mut message).await.ok()?;
    Some(message)
}

/// The answer section as presentation lines (`www.example. 60 IN A 192.0.2.1`).
///
/// # Panics
///
/// When `response` is not a readable DNS message.
pub fn answers(response: &[u8]) -> Vec<String> {
    section_lines(response, signpost_wire::Section::Answer)
}

/// The types of the authority section's records.
///
/// # Panics
///
/// When `response` is not a readable DNS message.
pub fn authority_types(response: &[u8]) -> Vec<RecordType> {
    let message = Message::parse(response).unwrap_or_else(|error| panic!("unreadable response: {error}"));
    let records = message.authority().unwrap_or_else(|error| panic!("unreadable authority section: {error}"));
    records.map(|record| record.unwrap_or_else(|error| panic!("unreadable record: {error}")).rtype()).collect()
}

fn section_lines(response: &[u8], section: signpost_wire::Section) -> Vec<String> {
    let message = Message::parse(response).unwrap_or_else(|error| panic!("unreadable response: {error}"));
    let records = message.section(section).unwrap_or_else(|error| panic!("unreadable {section:?} section: {error}"));
    records
        .map(|record| {
            let record = record.unwrap_or_else(|error| panic!("unreadable record: {error}"));
            RecordBuf::from_record(&record).unwrap_or_else(|error| panic!("unreadable record: {error}")).to_string()
        })
        .collect()
}

/// Ask `name` `qtype` over UDP from 127.0.0.1: the rcode and the answer
/// lines, or `None` when nothing came within [`ASK_TIMEOUT`].
pub async fn ask(server: SocketAddr, name: &str, qtype: RecordType) -> Option<(Rcode, Vec<String>)> {
    ask_from(IpAddr::V4(Ipv4Addr::LOCALHOST), server, name, qtype).await
}

/// [`ask`] from a socket on `source`.
///
/// # Panics
///
/// When the answer is not a readable DNS message.
pub async fn ask_from(
    source: IpAddr,
    server: SocketAddr,
    name: &str,
    qtype: RecordType,
) -> Option<(Rcode, Vec<String>)> {
    let response = udp_exchange_from(source, server, &query(name, qtype), ASK_TIMEOUT).await?;
    let rcode = Message::parse(&response).and_then(|message| message.rcode());
    let rcode = rcode.unwrap_or_else(|error| panic!("unreadable response: {error}"));
    Some((rcode, answers(&response)))
}

/// The first UDP address `server` listens on.
///
/// # Panics
///
/// When it has no UDP listener.
pub fn udp_address(server: &ServerHandle) -> SocketAddr {
    server.udp_addr().unwrap_or_else(|| panic!("the server has no UDP listener"))
}

/// The first TCP address `server` listens on.
///
/// # Panics
///
/// When it has no TCP listener.
pub fn tcp_address(server: &ServerHandle) -> SocketAddr {
    server.tcp_addr().unwrap_or_else(|| panic!("the server has no TCP listener"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Answer, FakeUpstream};

    #[tokio::test]
    async fn udp_and_tcp_exchanges_reach_the_fake() {
        let fake = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 9)).await;
        let bytes = query("www.example", RecordType::A);
        for transport in [Transport::Udp, Transport::Tcp] {
            let response = exchange(transport, fake.address(), &bytes, ASK_TIMEOUT).await.unwrap();
            assert_eq!(answers(&response), ["www.example. 300 IN A 192.0.2.9"]);
            assert_eq!(Message::parse(&response).unwrap().id(), 0x04d2);
        }
        let (rcode, lines) = ask(fake.address(), "other.example", RecordType::AAAA).await.unwrap();
        assert_eq!((rcode, lines.len()), (Rcode::NOERROR, 0));
    }

    #[tokio::test]
    async fn nothing_back_is_none_in_time() {
        let fake = FakeUpstream::silent().await;
        let wait = Duration::from_millis(100);
        assert!(udp_exchange(fake.address(), &query("x.example", RecordType::A), wait).await.is_none());
        assert!(tcp_exchange(fake.address(), &query("x.example", RecordType::A), wait).await.is_none());
    }

    #[tokio::test]
    async fn authority_types_and_options() {
        let fake = FakeUpstream::builder()
            .otherwise(Answer::nxdomain().authority(["example. 60 IN SOA ns.example. h.example. 1 2 3 4 5"]))
            .start()
            .await
            .unwrap();
        let bytes = Query::new("x.example", RecordType::A)
            .edns_option(OptionCode::CLIENT_SUBNET, [0, 1, 24, 0, 198, 51, 100])
            .to_bytes();
        let response = udp_exchange(fake.address(), &bytes, ASK_TIMEOUT).await.unwrap();
        assert_eq!(authority_types(&response), [RecordType::SOA]);
        assert!(fake.queries()[0].has_option(OptionCode::CLIENT_SUBNET));
    }

    #[test]
    fn frames_and_queries() {
        assert_eq!(frame(&[1, 2]), [0, 2, 1, 2]);
        let bytes = Query::new("x.example.", RecordType::MX).recursion_desired(false).to_bytes();
        let message = Message::parse(&bytes).unwrap();
        assert!(!message.flags().rd());
        assert_eq!(message.first_question().unwrap().unwrap().qtype(), RecordType::MX);
    }
}
