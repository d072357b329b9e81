//! Entry points for the fuzz targets in `fuzz/` (not a stable API).
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, missing_docs)]

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use signpost_rules::RuleSet;
use signpost_rules::config::RulesConfig;
use signpost_upstream::Upstreams;
use signpost_wire::{
    Class, EdnsHeader, Flags, Message, MessageBuilder, NameBuf, RData, RecordType, Section, SliceBuffer,
};

use crate::cache::CacheKey;
use crate::config::{LimitAction, ServerConfig};
use crate::limits::RateLimiter;
use crate::metrics::Metrics;
use crate::pipeline::{Incoming, ListenerContext, Pipeline, Reply, State};
use crate::test_layer::TestLayer;

/// The fixed rules the fuzzed queries meet: a redirect, a zone with a
/// wildcard, CNAMEs and a delegation, blocks, and everything else forwarded
/// (to a group with no servers: forwards are made, never sent).
pub const RULES: &str = r#"
default_group = "upstream"

[[rules]]
suffix = "amazonaws.com"
action = "redirect"
ipv4 = "arrival"
ipv6 = "none"

[[rules]]
wildcard = "*.ads.example"
action = "block"
block = "sinkhole"
sinkhole_ipv4 = "0.0.0.0"

[[rules]]
suffix = "tracker.example"
action = "block"
block = "nxdomain"

[[zones]]
name = "corp.example"
ttl = 60
records = [
    "@ SOA ns hostmaster 1 3600 600 86400 30",
    "@ NS ns",
    "ns A 10.0.0.53",
    "www A 10.0.0.1",
    "www AAAA fd00::1",
    "alias CNAME www",
    "*.wild TXT \"wildcard\"",
    "sub NS ns.sub",
    "ns.sub A 10.0.1.53",
]
"#;

/// A pipeline with [`RULES`], the neutral defaults, a per-client limit that
/// refuses, and a test layer that records.
pub struct Harness {
    pipeline: Arc<Pipeline>,
    listener: ListenerContext,
    doh_listener: ListenerContext,
}

impl Harness {
    pub fn new() -> Self {
        let rules = RulesConfig::from_toml(RULES, "fuzz.toml").expect("fuzz rules parse");
        let rules = RuleSet::from_config(&rules, ".".as_ref(), &["upstream"]).expect("fuzz rules build");
        let mut config = ServerConfig::default();
        config.limits.per_client_qps = Some(1_000_000);
        config.limits.action = LimitAction::Refuse;
        let state = State::new(Arc::new(rules), Arc::new(Upstreams::default()));
        let pipeline = Pipeline::new(config, state, Arc::new(Metrics::default()), None, None);
        // One cached answer, so that a query for it is served from the cache.
        let key = CacheKey::a_question("default", b"\x06cached\x07example\x00");
        pipeline.cache.insert(key.as_bytes(), &cached_response(), Instant::now());
        let listener = ListenerContext {
            id: Arc::from("fuzz"),
            transport: signpost_rules::Transport::Udp,
            allow: crate::config::default_allow_list(),
            max_qps: Some(RateLimiter::single(1_000_000)),
            group_limit: None,
            bound: None,
            port: 0,
            client_rate_limit: true,
        };
        let doh_listener = ListenerContext {
            id: Arc::from("fuzz-doh"),
            transport: signpost_rules::Transport::Doh,
            allow: crate::config::default_allow_list(),
            max_qps: None,
            group_limit: None,
            bound: None,
            port: 0,
            client_rate_limit: true,
        };
        Self { pipeline: Arc::new(pipeline), listener, doh_listener }
    }

    /// Like [`Harness::new`], with a recording test layer.
    pub fn with_layer() -> Self {
        let mut harness = Self::new();
        if let Some(pipeline) = Arc::get_mut(&mut harness.pipeline) {
            pipeline.layer = Some(TestLayer::new().recording(true));
        }
        harness
    }

    /// Run `query` from `client` through the synchronous steps; check that an
    /// answer made now is a response to it that parses.
    pub fn answer(&self, query: &[u8], client: SocketAddr) -> usize {
        self.answer_in(query, client, &mut [0u8; 4096])
    }

    /// [`Harness::answer`] writing into `slot` (as a UDP worker writes into
    /// its batch, with no buffer to clear per query).
    pub fn answer_in(&self, query: &[u8], client: SocketAddr, slot: &mut [u8; 4096]) -> usize {
        self.answer_on(query, client, &self.listener, slot)
    }

    fn answer_on(&self, query: &[u8], client: SocketAddr, listener: &ListenerContext, slot: &mut [u8]) -> usize {
        let udp = listener.transport == signpost_rules::Transport::Udp;
        let incoming = Incoming {
            bytes: query,
            peer: client,
            local: None,
            listener,
            max_response: (!udp).then_some(usize::from(u16::MAX)),
            now: Instant::now(),
            state: None,
        };
        let mut out = SliceBuffer::new(slot);
        match self.pipeline.handle(&incoming, &mut out) {
            Reply::Now { len } => {
                let response = Message::parse(out.written().get(..len).expect("length within the buffer"))
                    .expect("an answer made now has a header");
                assert!(response.flags().qr(), "an answer is a response");
                assert_eq!(Some(response.id()), query.get(..2).map(|id| u16::from_be_bytes([id[0], id[1]])));
                // Over UDP no answer is larger than our EDNS payload size.
                assert!(!udp || len <= 1232, "{len} bytes over UDP");
                len
            }
            Reply::Later(_) | Reply::Silent | Reply::Close | Reply::Stream { .. } => 0,
        }
    }
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

/// Read fuzz bytes as an HTTP request — a request line (`METHOD TARGET`),
/// header lines (`name: value`), a blank line, a body — for the targets of
/// HTTP handlers (here and in the applications): the request so far and
/// the body, or `None` without a request line.
pub fn http_request(data: &[u8]) -> Option<(http::request::Builder, &[u8])> {
    let split = data.windows(2).position(|pair| pair == b"\n\n");
    let (head, body) = match split {
        Some(at) => (data.get(..at).unwrap_or_default(), data.get(at + 2..).unwrap_or_default()),
        None => (data, &[][..]),
    };
    let head = String::from_utf8_lossy(head);
    let mut lines = head.lines();
    let request_line = lines.next()?;
    let (method, target) = request_line.split_once(' ').unwrap_or((request_line, "/"));
    let mut builder = http::Request::builder().method(method).uri(target);
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            builder = builder.header(name.trim(), value.trim());
        }
    }
    Some((builder, body))
}

/// Feed arbitrary bytes to the DoH request handling: a request line
/// (`METHOD TARGET`), header lines (`name: value`), a blank line and a
/// body, checked as the DoH listener checks them (path, method, `?dns=`
/// base64url, content type, size), and a query that comes out of it run
/// through the pipeline as a DoH query. A rejected request must be the
/// client's fault (a 4xx status).
pub fn doh_request(data: &[u8]) {
    static HARNESS: LazyLock<Harness> = LazyLock::new(Harness::new);
    let Some((builder, body)) = http_request(data) else { return };
    // What the HTTP layer would have rejected before the handler saw it.
    let Ok(request) = builder.body(()) else { return };
    let (parts, ()) = request.into_parts();
    let mut inline = [0u8; crate::doh::INLINE_QUERY];
    let mut spill = Vec::new();
    let checked = crate::doh::check_request("/dns-query", &parts).and_then(|shape| match shape {
        crate::doh::Shape::Get(encoded) => crate::doh::decode_get(encoded, &mut inline, &mut spill).map(Some),
        crate::doh::Shape::Post => Ok(None),
    });
    let query = match checked {
        Ok(Some(query)) => query.to_vec(),
        Ok(None) if body.len() <= usize::from(u16::MAX) => body.to_vec(),
        Ok(None) => return,
        Err((status, _)) => {
            assert!(status.is_client_error(), "{status} for a request");
            return;
        }
    };
    let client: SocketAddr = "127.0.0.1:443".parse().expect("address");
    HARNESS.answer_on(&query, client, &HARNESS.doh_listener, &mut vec![0u8; 65_535]);
}

/// Feed arbitrary bytes through the pipeline's synchronous steps, as a UDP
/// query from a client that is allowed (or, when the first byte is odd,
/// one that is not).
pub fn pipeline(data: &[u8]) {
    static HARNESS: LazyLock<Harness> = LazyLock::new(Harness::with_layer);
    let allowed = data.first().is_none_or(|byte| byte % 2 == 0);
    let client: SocketAddr = if allowed { "127.0.0.1:5353" } else { "192.0.2.1:5353" }.parse().expect("address");
    HARNESS.answer(data, client);
}

/// An upstream's answer to `cached.example. A`, with one record (TTL a day).
pub fn cached_response() -> Vec<u8> {
    let name: NameBuf = "cached.example".parse().expect("name");
    let mut query = Vec::new();
    let mut builder = MessageBuilder::new(&mut query).expect("builder");
    builder.set_flags(Flags::default().with_rd(true));
    builder.push_question(&name, RecordType::A, Class::IN).expect("question");
    builder.finish().expect("query");
    let query = Message::parse(&query).expect("query parses");
    let mut response = Vec::new();
    let mut builder = MessageBuilder::response_to(&mut response, &query).expect("builder");
    builder.push(Section::Answer, &name, Class::IN, 86_400, &RData::A([192, 0, 2, 80].into())).expect("record");
    builder.finish().expect("response");
    response
}

/// A query for `name` and `qtype`, with EDNS when asked.
pub fn query(name: &str, qtype: RecordType, edns: bool) -> Vec<u8> {
    let mut query = Vec::new();
    let mut builder = MessageBuilder::new(&mut query).expect("builder");
    builder.set_id(0x5150);
    builder.set_flags(Flags::default().with_rd(true));
    builder.push_question(&name.parse::<NameBuf>().expect("name"), qtype, Class::IN).expect("question");
    if edns {
        builder.set_edns(EdnsHeader::default());
    }
    builder.finish().expect("query");
    query
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzz_bytes_read_as_an_http_request() {
        let (builder, body) = http_request(b"POST /x?y\ncontent-type: a/b\nbad line\n\nbody\n\nmore").unwrap();
        let request = builder.body(()).unwrap();
        assert_eq!((request.method().as_str(), request.uri().to_string().as_str()), ("POST", "/x?y"));
        assert_eq!(request.headers().len(), 1);
        assert_eq!(request.headers()["content-type"], "a/b");
        assert_eq!(body, b"body\n\nmore");
        let (builder, body) = http_request(b"GET").unwrap();
        assert_eq!(builder.body(()).unwrap().uri(), "/");
        assert!(body.is_empty());
        assert!(http_request(b"").is_none());
    }

    #[test]
    fn doh_seeds_do_not_panic() {
        use base64::Engine;
        let encoded =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(query("s3.amazonaws.com", RecordType::A, true));
        doh_request(format!("GET /dns-query?dns={encoded}\naccept: application/dns-message").as_bytes());
        doh_request(format!("GET /dns-query?ct&dns={encoded}==").as_bytes());
        let mut post = b"POST /dns-query\ncontent-type: application/dns-message\n\n".to_vec();
        post.extend_from_slice(&query("www.example.org", RecordType::A, false));
        doh_request(&post);
        doh_request(b"POST /dns-query\ncontent-type: text/plain\n\nhello");
        doh_request(b"GET /dns-query?dns=!!!");
        doh_request(b"GET /elsewhere");
        doh_request(b"DELETE /dns-query");
        doh_request(b"G\xffT /\xff");
        doh_request(b"");
    }

    #[test]
    fn seeds_do_not_panic() {
        pipeline(&[]);
        pipeline(&[0; 12]);
        pipeline(&[1; 3]);
        pipeline(&cached_response());
        let harness = Harness::new();
        let client = "127.0.0.1:5353".parse().expect("address");
        assert!(harness.answer(&query("cached.example", RecordType::A, false), client) > 0, "a cache hit");
        assert!(harness.answer(&query("s3.amazonaws.com", RecordType::A, true), client) > 0, "a local answer");
        assert_eq!(harness.answer(&query("www.example.org", RecordType::A, false), client), 0, "a forward");
    }

    /// Found by the `pipeline` target: an answer made now over UDP was larger
    /// than the 1,232 bytes of our EDNS payload size.
    #[test]
    fn crashers_found_by_fuzzing_do_not_panic() {
        pipeline(include_bytes!("../tests/vectors/pipeline-oversized-udp-answer.bin"));
    }
}
