//! The answers the pipeline writes itself, straight into the caller's
//! buffer: error responses (FORMERR, NOTIMP, REFUSED, BADVERS), local
//! answers, blocks and truncated answers.

use std::net::IpAddr;

use signpost_rules::{Answer, Block, BlockAction, LocalAnswer, Matched, Transport};
use signpost_wire::{
    Buffer, Class, EdnsHeader, EdnsOption, ExtendedError, ExtendedErrorCode, Message, MessageBuilder, Name, RData,
    Rcode, RecordBuf, RecordType, Section, Unknown,
};

use super::{Incoming, Pipeline, Purpose, QueryFacts, Step};
use crate::config::LimitAction;
use crate::metrics::{DecisionIndex, DropIndex};

impl Pipeline {
    /// The largest response this client takes: its EDNS payload size (at
    /// least 512, at most ours) over UDP, 512 without EDNS, 65535 otherwise.
    pub(super) fn response_limit(&self, incoming: &Incoming<'_>, facts: &QueryFacts<'_>) -> usize {
        match incoming.max_response {
            Some(limit) => limit,
            None => match incoming.listener.transport {
                Transport::Udp => facts.client_edns.map_or(512, |edns| {
                    usize::from(edns.udp_payload_size().min(self.config.edns.udp_payload_size.max(512)))
                }),
                _ => usize::from(u16::MAX),
            },
        }
    }

    pub(super) fn over_limit(
        &self,
        message: &Message<'_>,
        reason: DropIndex,
        out: &mut impl Buffer,
        purpose: Purpose,
    ) -> Step {
        self.counters(purpose).dropped(reason);
        match self.config.limits.action {
            LimitAction::Drop => Step::Drop,
            LimitAction::Refuse => self.error_response(message, Rcode::REFUSED, out, purpose),
        }
    }

    /// REFUSED for a client the listener does not serve: the header and the
    /// question (when they can be read), and, to a client that sent a valid
    /// EDNS record, extended error 18 (Prohibited). It is never more than a
    /// few dozen bytes larger than the query, so a spoofed query reflects
    /// no amplification worth having.
    pub(super) fn refuse(&self, message: &Message<'_>, out: &mut impl Buffer, purpose: Purpose) -> Step {
        match super::inspect(message) {
            Some((question, client_edns)) => self.simple_response(
                &QueryFacts { message: *message, question, client_edns },
                Rcode::REFUSED,
                Some((ExtendedErrorCode::PROHIBITED, "client not allowed")),
                out,
                purpose,
            ),
            None => self.error_response(message, Rcode::REFUSED, out, purpose),
        }
    }

    /// FORMERR, NOTIMP and the like: echo what could be read of the query.
    pub(super) fn error_response(
        &self,
        message: &Message<'_>,
        rcode: Rcode,
        out: &mut impl Buffer,
        purpose: Purpose,
    ) -> Step {
        let start = out.len();
        let result = (|| {
            // The question is echoed only when there is exactly one: a query
            // of many questions (which no server answers) must not turn an
            // error into an answer larger than the query allows, nor into an
            // amplifier (found by the `pipeline` fuzz target: 34 questions
            // echoed under NOTIMP came to 1,277 bytes over UDP).
            let echoed = match message.header().qdcount {
                1 => MessageBuilder::response_to(out, message),
                _ => MessageBuilder::response_header_to(out, message.header()),
            };
            let mut builder = match echoed {
                Ok(builder) => builder,
                Err(_) => {
                    out.truncate(start);
                    MessageBuilder::response_header_to(out, message.header())?
                }
            };
            builder.set_rcode(rcode);
            builder.header_mut().flags = builder.header_mut().flags.with_ra(true);
            builder.finish()
        })();
        if result.is_ok() && rcode == Rcode::FORMERR {
            self.counters(purpose).decision(DecisionIndex::Error);
        }
        self.written(result, start, out, Some(rcode), purpose)
    }

    pub(super) fn respond_badvers(&self, facts: &QueryFacts<'_>, out: &mut impl Buffer, purpose: Purpose) -> Step {
        let start = out.len();
        let result = (|| {
            let mut builder = MessageBuilder::response_to_question(out, facts.message.header(), &facts.question)?;
            builder.set_rcode(Rcode::BADVERS);
            builder.set_edns(EdnsHeader {
                udp_payload_size: self.config.edns.udp_payload_size,
                version: 0,
                dnssec_ok: false,
            });
            builder.finish()
        })();
        self.written(result, start, out, Some(Rcode::BADVERS), purpose)
    }

    /// What a response written from `start` comes to: answered (and counted
    /// under `rcode`), or, when it could not be written, no answer and the
    /// partial bytes taken back.
    fn written(
        &self,
        result: Result<usize, signpost_wire::Error>,
        start: usize,
        out: &mut impl Buffer,
        rcode: Option<Rcode>,
        purpose: Purpose,
    ) -> Step {
        match result {
            Ok(len) => {
                if let Some(rcode) = rcode {
                    self.counters(purpose).rcode(rcode.0);
                }
                Step::Answered { len }
            }
            Err(_) => {
                out.truncate(start);
                Step::Drop
            }
        }
    }

    fn our_edns(&self, facts: &QueryFacts<'_>) -> Option<EdnsHeader> {
        facts.client_edns.map(|edns| EdnsHeader {
            udp_payload_size: self.config.edns.udp_payload_size,
            version: 0,
            dnssec_ok: edns.dnssec_ok(),
        })
    }

    /// The steps every response to a readable query shares: the question
    /// echoed, `rcode`, RA set, at most `limit` bytes, and our EDNS record
    /// to a client that sent one; `fill` adds the rest.
    fn response<B: Buffer>(
        &self,
        facts: &QueryFacts<'_>,
        rcode: Rcode,
        limit: Option<usize>,
        out: &mut B,
        fill: impl FnOnce(&mut MessageBuilder<'_, B>) -> Result<(), signpost_wire::Error>,
    ) -> Result<usize, signpost_wire::Error> {
        let mut builder = MessageBuilder::response_to_question(out, facts.message.header(), &facts.question)?;
        if let Some(limit) = limit {
            builder.set_limit(limit);
        }
        builder.set_rcode(rcode);
        builder.header_mut().flags = builder.header_mut().flags.with_ra(true);
        if let Some(edns) = self.our_edns(facts) {
            builder.set_edns(edns);
        }
        fill(&mut builder)?;
        builder.finish()
    }

    /// A response with no records and an optional extended error.
    pub(super) fn simple_response(
        &self,
        facts: &QueryFacts<'_>,
        rcode: Rcode,
        extended: Option<(ExtendedErrorCode, &str)>,
        out: &mut impl Buffer,
        purpose: Purpose,
    ) -> Step {
        let start = out.len();
        let result = self.response(facts, rcode, None, out, |builder| {
            if let Some((info_code, text)) = extended.filter(|_| facts.client_edns.is_some()) {
                let extended = ExtendedError { info_code, extra_text: text.as_bytes() };
                let _ = builder.push_edns_option(&EdnsOption::ExtendedError(extended));
            }
            Ok(())
        });
        self.written(result, start, out, Some(rcode), purpose)
    }

    /// What response rate limiting lets out in place of a dropped answer:
    /// the header and question with TC set, no EDNS, nothing else — no
    /// larger than the query, and a real client asks again over TCP.
    pub(super) fn slip_response(&self, message: &Message<'_>, out: &mut impl Buffer, purpose: Purpose) -> Step {
        let start = out.len();
        let result = (|| {
            let mut builder = MessageBuilder::response_to(out, message)?;
            builder.header_mut().flags = builder.header_mut().flags.with_tc(true).with_ra(true);
            builder.finish()
        })();
        let step = self.written(result, start, out, None, purpose);
        match step {
            Step::Answered { .. } => self.counters(purpose).decision(DecisionIndex::Slipped),
            _ => self.counters(purpose).dropped(DropIndex::ResponseRateLimit),
        }
        step
    }

    /// `ANY` over UDP (RFC 8482 §4.2): one HINFO record, CPU "RFC8482" and
    /// OS empty, with the TTL the RFC suggests; no amplification.
    pub(super) fn minimal_any_response(
        &self,
        facts: &QueryFacts<'_>,
        name: &Name<'_>,
        limit: usize,
        out: &mut impl Buffer,
        purpose: Purpose,
    ) -> Step {
        let start = out.len();
        let result = self.response(facts, Rcode::NOERROR, Some(limit), out, |builder| {
            let hinfo: RData<'_> = RData::Unknown(Unknown { rtype: RecordType::HINFO, data: b"\x07RFC8482\x00" });
            builder.push(Section::Answer, name, Class::IN, 3_600, &hinfo)
        });
        self.written(result, start, out, Some(Rcode::NOERROR), purpose)
    }

    /// TC set and no records: the client asks again over TCP.
    pub(super) fn truncated_response(&self, facts: &QueryFacts<'_>, out: &mut impl Buffer, purpose: Purpose) -> Step {
        let start = out.len();
        let result = self.response(facts, Rcode::NOERROR, None, out, |builder| {
            builder.header_mut().flags = builder.header_mut().flags.with_tc(true);
            Ok(())
        });
        self.written(result, start, out, None, purpose)
    }

    pub(super) fn local_response(
        &self,
        facts: &QueryFacts<'_>,
        name: &Name<'_>,
        answer: &LocalAnswer<'_>,
        limit: usize,
        out: &mut impl Buffer,
        purpose: Purpose,
    ) -> Step {
        let start = out.len();
        let result = self.response(facts, answer.rcode, Some(limit), out, |builder| {
            builder.header_mut().flags = builder.header_mut().flags.with_aa(answer.authoritative);
            // Records that do not fit are dropped whole and TC is set by the builder.
            let answers: &[RecordBuf] = match &answer.answer {
                Answer::Records(records) => records,
                Answer::AddressOfQuestion { address, ttl } => {
                    let _ = builder.push(Section::Answer, name, Class::IN, *ttl, &address_data(*address));
                    &[]
                }
            };
            let sections = [
                (Section::Answer, answers),
                (Section::Authority, &*answer.authority),
                (Section::Additional, &*answer.additional),
            ];
            for (section, records) in sections {
                for record in records.iter() {
                    if builder.push_record_buf(section, record).is_err() {
                        break;
                    }
                }
            }
            Ok(())
        });
        match result {
            Ok(len) => {
                self.counters(purpose).rcode(answer.rcode.0);
                Step::Answered { len }
            }
            Err(_) => {
                out.truncate(start);
                self.simple_response(
                    facts,
                    Rcode::SERVFAIL,
                    Some((ExtendedErrorCode::OTHER, "local answer could not be written")),
                    out,
                    purpose,
                )
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn block_response(
        &self,
        facts: &QueryFacts<'_>,
        name: &Name<'_>,
        qtype: RecordType,
        block: &Block<'_>,
        limit: usize,
        out: &mut impl Buffer,
        purpose: Purpose,
    ) -> Step {
        let action = &block.action;
        let (rcode, sink) = match action {
            BlockAction::Refused => (Rcode::REFUSED, None),
            BlockAction::NxDomain => (Rcode::NXDOMAIN, None),
            BlockAction::ServFail => (Rcode::SERVFAIL, None),
            // Unbound's deny: the client gets nothing and times out.
            BlockAction::Drop => return Step::Drop,
            BlockAction::Sinkhole { v4, v6 } => {
                let address = match qtype {
                    RecordType::A => v4.map(IpAddr::V4),
                    RecordType::AAAA => v6.map(IpAddr::V6),
                    _ => None,
                };
                (Rcode::NOERROR, address)
            }
        };
        let start = out.len();
        let result = self.response(facts, rcode, Some(limit), out, |builder| {
            if facts.client_edns.is_some() {
                // A SERVFAIL "block" is either a DNS Firewall that fails
                // closed or a zone with no server to ask (every target left
                // out, a secondary past its expiry).
                let (info_code, extra_text): (_, &[u8]) = match (action, &block.reason.matched) {
                    (BlockAction::ServFail, Matched::Firewall { .. }) => {
                        (ExtendedErrorCode::BLOCKED, b"the policy cannot be evaluated (fail closed)")
                    }
                    (BlockAction::ServFail, _) => {
                        (ExtendedErrorCode::NO_REACHABLE_AUTHORITY, b"no usable server for this zone")
                    }
                    _ => (ExtendedErrorCode::BLOCKED, b"blocked by policy"),
                };
                let _ = builder.push_edns_option(&EdnsOption::ExtendedError(ExtendedError { info_code, extra_text }));
            }
            if let Some(address) = sink {
                let _ = builder.push(Section::Answer, name, Class::IN, 60, &address_data(address));
            }
            Ok(())
        });
        self.written(result, start, out, Some(rcode), purpose)
    }
}

/// An address as the RDATA of an A or AAAA record.
fn address_data(address: IpAddr) -> RData<'static> {
    match address {
        IpAddr::V4(v4) => RData::A(v4),
        IpAddr::V6(v6) => RData::Aaaa(v6),
    }
}
