//! [`NotifiedSecondary`]: a stand-in for a zone's secondary that answers
//! every NOTIFY (RFC 1996) and reports the zone and serial each one names.

use std::net::SocketAddr;
use std::time::Duration;

use signpost_wire::{Message, Opcode, RecordBuf, RecordType, soa_serial};
use tokio::net::UdpSocket;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

/// How long [`NotifiedSecondary::next`] waits for a NOTIFY.
const NOTIFY_PATIENCE: Duration = Duration::from_secs(10);

/// A UDP "secondary" on 127.0.0.1:0 that answers each NOTIFY NOERROR (the
/// query echoed with QR set) and records `(zone, serial)`: the zone asked
/// about and the serial of the SOA it carries (RFC 1996 §3.7's hint; 0
/// without one). A message that is not a NOTIFY fails the test.
#[derive(Debug)]
pub struct NotifiedSecondary {
    address: SocketAddr,
    notified: UnboundedReceiver<(String, u32)>,
}

impl NotifiedSecondary {
    /// Bind and start answering.
    pub async fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind the NOTIFY secondary on loopback");
        let address = socket.local_addr().expect("its address");
        let (sender, notified) = unbounded_channel();
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 4096];
            while let Ok((len, peer)) = socket.recv_from(&mut buffer).await {
                let received = &buffer[..len];
                let message = Message::parse(received).expect("a NOTIFY that parses");
                assert_eq!(message.opcode(), Opcode::NOTIFY, "the secondary got something other than NOTIFY");
                let zone = message.first_question().expect("a question").expect("that parses").name().to_string();
                let soa =
                    message.answers().expect("answers").flatten().find(|record| record.rtype() == RecordType::SOA);
                let serial = soa.and_then(|soa| soa_serial(&RecordBuf::from_record(&soa).expect("an SOA that parses")));
                let _ = sender.send((zone, serial.map_or(0, |serial| serial.0)));
                let mut answer = received.to_vec();
                answer[2] |= 0x80;
                let _ = socket.send_to(&answer, peer).await;
            }
        });
        Self { address, notified }
    }

    /// Where NOTIFY goes.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The next NOTIFY's `(zone, serial)`; fails the test with `log()` (the
    /// sender's log) when none comes within ten seconds.
    pub async fn next(&mut self, log: impl FnOnce() -> String) -> (String, u32) {
        match tokio::time::timeout(NOTIFY_PATIENCE, self.notified.recv()).await {
            Ok(Some(seen)) => seen,
            _ => panic!("no NOTIFY; log:\n{}", log()),
        }
    }

    /// A NOTIFY already received and not yet taken, if any (no waiting).
    pub fn try_next(&mut self) -> Option<(String, u32)> {
        self.notified.try_recv().ok()
    }
}
