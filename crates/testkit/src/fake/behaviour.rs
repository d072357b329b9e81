//! Scripted behaviours, and the plan for one query: which packets go out,
//! when, from where, and what happens to the connection. Planning is pure
//! (no sockets, no clock), so it is tested here on its own.

use std::num::NonZeroU64;
use std::time::Duration;

use signpost_wire::{Message, Rcode};

use super::answer::{self, Answer};
use crate::Transport;

/// How long a spoof goes before the genuine answer, so that the client
/// reads the spoof first.
pub(crate) const SPOOF_LEAD: Duration = Duration::from_millis(20);

/// A way the fake upstream misbehaves, on top of its answers. Several may be
/// combined; each says which transports it applies to, and the others
/// answer as usual.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Behaviour {
    /// Wait this long before answering (all transports). Other queries are
    /// not held up, so answers on one TCP connection may overtake each other.
    Delay(Duration),
    /// Never answer (all transports; DoH requests stay open).
    Silence,
    /// Answer nothing to every `n`th query received (the `n`th, `2n`th...),
    /// counted over all transports.
    DropEvery(NonZeroU64),
    /// UDP: answer with TC set and no records, whatever the size; TCP, DoT
    /// and DoH get the full answer.
    Truncate,
    /// UDP, TCP and DoT: first send a spoof (an answer carrying
    /// [`FORGED_ADDRESS`](crate::FORGED_ADDRESS)) with another ID; then, when
    /// `then_genuine`, the real answer. DoH answers as usual.
    WrongId {
        /// Whether the real answer follows the spoof.
        then_genuine: bool,
    },
    /// First send an answer to another question ([`OTHER_QUESTION`](crate::OTHER_QUESTION))
    /// with the query's ID; then, when `then_genuine`, the real answer (not
    /// over DoH, where one request gets one response).
    OtherQuestion {
        /// Whether the real answer follows the spoof.
        then_genuine: bool,
    },
    /// UDP: first send a spoof from another port of the same address, then
    /// the real answer from the right one.
    FromOtherPort,
    /// Append two bytes of garbage after the last record (all transports).
    TrailingGarbage,
    /// TCP and DoT: answer, then close the connection.
    CloseAfterAnswer,
    /// TCP and DoT: send the first half of the answer, then close the
    /// connection.
    CloseMidAnswer,
    /// DoH: respond with this HTTP status and no body.
    HttpStatus(u16),
}

/// One packet to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Packet {
    /// How long to wait before sending it (after the previous one).
    pub(crate) after: Duration,
    /// The DNS message.
    pub(crate) bytes: Vec<u8>,
    /// UDP: send it from another socket.
    pub(crate) from_other_port: bool,
}

/// What happens to a TCP or DoT connection after the packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StreamEnd {
    /// Keep reading queries.
    KeepOpen,
    /// Close it.
    Close,
    /// Send only the first half of the last packet's frame, then close.
    CloseMidPacket,
}

/// Everything the fake does for one query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) packets: Vec<Packet>,
    pub(crate) stream_end: StreamEnd,
    /// DoH: respond with this status instead.
    pub(crate) http_status: Option<u16>,
}

impl Plan {
    fn nothing() -> Self {
        Self { packets: Vec::new(), stream_end: StreamEnd::KeepOpen, http_status: None }
    }

    /// Whether anything is sent.
    pub(crate) fn answers(&self) -> bool {
        !self.packets.is_empty() || self.http_status.is_some()
    }
}

/// The plan for query number `number` (counted from 1) over `transport`.
pub(crate) fn plan(query: &[u8], transport: Transport, number: u64, answer: &Answer, behaviours: &[Behaviour]) -> Plan {
    let has = |wanted: &Behaviour| behaviours.contains(wanted);
    let dropped = behaviours.iter().any(|behaviour| match behaviour {
        Behaviour::DropEvery(every) => number.is_multiple_of(every.get()),
        _ => false,
    });
    if has(&Behaviour::Silence) || dropped {
        return Plan::nothing();
    }
    let http_status = behaviours.iter().find_map(|behaviour| match behaviour {
        Behaviour::HttpStatus(status) if transport == Transport::Doh => Some(*status),
        _ => None,
    });
    let delay: Duration = behaviours
        .iter()
        .map(|behaviour| match behaviour {
            Behaviour::Delay(delay) => *delay,
            _ => Duration::ZERO,
        })
        .sum();
    if let Some(status) = http_status {
        return Plan { packets: Vec::new(), stream_end: StreamEnd::KeepOpen, http_status: Some(status) };
    }
    let Ok(message) = Message::parse(query) else { return Plan::nothing() };
    let Some(mut genuine) = answer.respond(&message, transport) else { return Plan::nothing() };
    if has(&Behaviour::TrailingGarbage) {
        genuine.extend_from_slice(&[0xde, 0xad]);
    }
    if transport == Transport::Udp && !answer.is_raw() {
        let too_big = genuine.len() > answer::udp_limit(&message);
        if too_big || has(&Behaviour::Truncate) {
            let rcode = Message::parse(&genuine).ok().and_then(|m| m.rcode().ok()).unwrap_or(Rcode::NOERROR);
            genuine = answer::truncated(&message, rcode).unwrap_or(genuine);
        }
    }
    let mut packets = Vec::new();
    let mut send_genuine = true;
    let spoof = |bytes: Option<Vec<u8>>, from_other_port: bool| {
        bytes.map(|bytes| Packet { after: Duration::ZERO, bytes, from_other_port })
    };
    for behaviour in behaviours {
        let (packet, then_genuine) = match behaviour {
            Behaviour::WrongId { then_genuine } if transport != Transport::Doh => {
                let mut forged = answer::forged(&message);
                if let Some(id) = forged.as_mut().and_then(|bytes| bytes.get_mut(..2)) {
                    id.copy_from_slice(&message.id().wrapping_add(1).to_be_bytes());
                }
                (spoof(forged, false), *then_genuine)
            }
            Behaviour::OtherQuestion { then_genuine } => {
                (spoof(answer::other_question(&message), false), *then_genuine && transport != Transport::Doh)
            }
            Behaviour::FromOtherPort if transport == Transport::Udp => (spoof(answer::forged(&message), true), true),
            _ => continue,
        };
        packets.extend(packet);
        send_genuine &= then_genuine;
    }
    if send_genuine {
        let after = if packets.is_empty() { Duration::ZERO } else { SPOOF_LEAD };
        packets.push(Packet { after, bytes: genuine, from_other_port: false });
    }
    if let Some(first) = packets.first_mut() {
        first.after += delay;
    }
    let stream = matches!(transport, Transport::Tcp | Transport::Dot);
    let stream_end = if stream && has(&Behaviour::CloseMidAnswer) {
        StreamEnd::CloseMidPacket
    } else if stream && has(&Behaviour::CloseAfterAnswer) {
        StreamEnd::Close
    } else {
        StreamEnd::KeepOpen
    };
    Plan { packets, stream_end, http_status: None }
}

#[cfg(test)]
mod tests {
    use signpost_wire::{EdnsHeader, RecordType};

    use super::*;
    use crate::Query;

    /// `q.example A` without RD, with an OPT record offering `edns` bytes if given.
    fn query(edns: Option<u16>) -> Vec<u8> {
        let query = Query::new("q.example", RecordType::A).id(100).recursion_desired(false);
        let query = match edns {
            Some(size) => query.edns(EdnsHeader { udp_payload_size: size, ..EdnsHeader::default() }),
            None => query,
        };
        query.to_bytes()
    }

    fn plan_for(transport: Transport, behaviours: &[Behaviour]) -> Plan {
        plan(&query(None), transport, 1, &Answer::address("192.0.2.1".parse().unwrap()), behaviours)
    }

    fn message(packet: &Packet) -> Message<'_> {
        Message::parse(&packet.bytes).unwrap()
    }

    #[test]
    fn a_plain_answer_is_one_packet_at_once() {
        let plan = plan_for(Transport::Udp, &[]);
        assert_eq!(plan.packets.len(), 1);
        assert_eq!(plan.packets[0].after, Duration::ZERO);
        assert_eq!(plan.stream_end, StreamEnd::KeepOpen);
        assert!(plan.answers());
    }

    #[test]
    fn silence_and_every_nth_drop_answer_nothing() {
        assert!(!plan_for(Transport::Tcp, &[Behaviour::Silence]).answers());
        let every_third = [Behaviour::DropEvery(NonZeroU64::new(3).unwrap())];
        let answer = Answer::address("192.0.2.1".parse().unwrap());
        let answered: Vec<bool> =
            (1..=6).map(|number| plan(&query(None), Transport::Udp, number, &answer, &every_third).answers()).collect();
        assert_eq!(answered, [true, true, false, true, true, false]);
    }

    #[test]
    fn truncation_is_for_udp_only() {
        let udp = plan_for(Transport::Udp, &[Behaviour::Truncate]);
        assert!(message(&udp.packets[0]).flags().tc());
        assert_eq!(message(&udp.packets[0]).header().ancount, 0);
        let tcp = plan_for(Transport::Tcp, &[Behaviour::Truncate]);
        assert!(!message(&tcp.packets[0]).flags().tc());
        assert_eq!(message(&tcp.packets[0]).header().ancount, 1);
    }

    #[test]
    fn udp_answers_larger_than_the_client_takes_are_cut_with_tc() {
        let many = Answer::addresses((1..=60).map(|last| std::net::IpAddr::from([192, 0, 2, last])), 60);
        let small = plan(&query(None), Transport::Udp, 1, &many, &[]);
        assert!(message(&small.packets[0]).flags().tc());
        let large = plan(&query(Some(4096)), Transport::Udp, 1, &many, &[]);
        assert_eq!(message(&large.packets[0]).header().ancount, 60);
        let tcp = plan(&query(None), Transport::Tcp, 1, &many, &[]);
        assert_eq!(message(&tcp.packets[0]).header().ancount, 60);
    }

    #[test]
    fn spoofs_come_first_and_the_genuine_answer_after_a_moment() {
        let plan = plan_for(Transport::Udp, &[Behaviour::WrongId { then_genuine: true }]);
        assert_eq!(plan.packets.len(), 2);
        assert_eq!(message(&plan.packets[0]).id(), 101);
        assert_eq!(message(&plan.packets[1]).id(), 100);
        assert_eq!(plan.packets[1].after, SPOOF_LEAD);
        let only = plan_for(Transport::Udp, &[Behaviour::WrongId { then_genuine: false }]);
        assert_eq!(only.packets.len(), 1);
        let other = plan_for(Transport::Tcp, &[Behaviour::OtherQuestion { then_genuine: false }]);
        let name = message(&other.packets[0]).first_question().unwrap().unwrap().name().to_string();
        assert_eq!(name, answer::OTHER_QUESTION);
        let doh = plan_for(Transport::Doh, &[Behaviour::OtherQuestion { then_genuine: true }]);
        assert_eq!(doh.packets.len(), 1, "one DoH request, one response");
        let elsewhere = plan_for(Transport::Udp, &[Behaviour::FromOtherPort]);
        assert!(elsewhere.packets[0].from_other_port && !elsewhere.packets[1].from_other_port);
        assert_eq!(plan_for(Transport::Tcp, &[Behaviour::FromOtherPort]).packets.len(), 1);
    }

    #[test]
    fn delays_add_up_before_the_first_packet() {
        let plan = plan_for(
            Transport::Dot,
            &[Behaviour::Delay(Duration::from_millis(30)), Behaviour::Delay(Duration::from_millis(20))],
        );
        assert_eq!(plan.packets[0].after, Duration::from_millis(50));
    }

    #[test]
    fn connection_endings_and_http_status_apply_to_their_transports() {
        assert_eq!(plan_for(Transport::Tcp, &[Behaviour::CloseAfterAnswer]).stream_end, StreamEnd::Close);
        assert_eq!(plan_for(Transport::Dot, &[Behaviour::CloseMidAnswer]).stream_end, StreamEnd::CloseMidPacket);
        assert_eq!(plan_for(Transport::Udp, &[Behaviour::CloseAfterAnswer]).stream_end, StreamEnd::KeepOpen);
        let doh = plan_for(Transport::Doh, &[Behaviour::HttpStatus(500)]);
        assert_eq!(doh.http_status, Some(500));
        assert!(doh.answers());
        assert_eq!(plan_for(Transport::Udp, &[Behaviour::HttpStatus(500)]).http_status, None);
    }

    #[test]
    fn garbage_goes_after_the_last_record() {
        let plain = plan_for(Transport::Udp, &[]);
        let garbage = plan_for(Transport::Udp, &[Behaviour::TrailingGarbage]);
        assert_eq!(garbage.packets[0].bytes.len(), plain.packets[0].bytes.len() + 2);
    }

    #[test]
    fn unreadable_queries_get_nothing() {
        let answer = Answer::address("192.0.2.1".parse().unwrap());
        assert!(!plan(&[1, 2, 3], Transport::Udp, 1, &answer, &[]).answers());
    }
}
