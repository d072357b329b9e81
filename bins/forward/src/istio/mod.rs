//! The Istio mode (`signpost-forward istio`): what istio-agent's DNS proxy
//! does on 127.0.0.1:15053. A name table built from Kubernetes Services and
//! ServiceEntries ([`NameTable`]) answers A and AAAA for the mesh's hosts
//! with AA set and a TTL of 30 s, addresses shuffled; every other query goes
//! unchanged to the nameservers of a resolv.conf (one after the other, or
//! all at once with `DNS_FORWARD_PARALLEL`). docs/istio.md describes it.

mod manifests;
mod table;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use signpost_rules::{IstioAllocator, Transport};
use signpost_server::{Handled, HandlerQuery, ListenerConfig, QueryHandler};
use signpost_upstream::{Hedge, HedgeAfter, ResolvConf};
use signpost_wire::{
    Flags, MAX_MESSAGE_LEN, MessageBuilder, NameBuf, Opcode, RDataBuf, RecordBuf, RecordType, Section,
};

pub use manifests::{Defaults, MeshService, Registry, Resolution, parse_manifests, read_manifests};
pub use table::{Answer, NameTable, TTL, TableOptions};

use crate::build::BuildOptions;
use crate::config::ForwarderConfig;
use crate::error::{ConfigError, Warning};
use crate::runtime::Service;
use crate::{Forwarder, base_dir_of};

/// istio-agent's listening address (`DNS_PROXY_ADDR`).
pub const DEFAULT_PROXY_ADDRESS: &str = "localhost:15053";
/// The resolv.conf istio-agent reads.
pub const DEFAULT_RESOLV_CONF: &str = "/etc/resolv.conf";
/// The upstream group of the Istio mode.
pub const UPSTREAM_GROUP: &str = "istio-upstream";

/// The Istio mode's settings (istio-agent's environment variables).
#[derive(Clone, Debug)]
pub struct IstioSettings {
    /// `DNS_PROXY_ADDR`: `host:port`; `localhost` listens on 127.0.0.1 and,
    /// when resolv.conf has an IPv6 nameserver, on ::1 (as istio-agent).
    pub proxy_address: String,
    /// The resolv.conf whose nameservers get every query the table does not answer.
    pub resolv_conf: PathBuf,
    /// A ServiceEntry / Service manifest file, or a directory of them.
    pub manifests: Option<PathBuf>,
    /// `DNS_FORWARD_PARALLEL`: ask every nameserver at once, take the first answer.
    pub forward_parallel: bool,
    /// `POD_NAMESPACE`: the proxy's namespace (short names of its Services
    /// answer), and the namespace of resources that name none.
    pub namespace: String,
    /// The cluster domain.
    pub cluster_domain: String,
    /// `ISTIO_META_DNS_AUTO_ALLOCATE`: addresses for ServiceEntries without one.
    pub auto_allocate: bool,
    /// Which istiod allocator gives them.
    pub allocator: IstioAllocator,
    /// The proxy is dual stack: AAAA gets the hashed allocator's IPv6 addresses.
    pub dual_stack: bool,
}

impl Default for IstioSettings {
    fn default() -> Self {
        Self {
            proxy_address: DEFAULT_PROXY_ADDRESS.into(),
            resolv_conf: PathBuf::from(DEFAULT_RESOLV_CONF),
            manifests: None,
            forward_parallel: false,
            namespace: "default".into(),
            cluster_domain: "cluster.local".into(),
            auto_allocate: true,
            allocator: IstioAllocator::default(),
            dual_stack: false,
        }
    }
}

/// A built Istio mode: the forwarder for everything the table does not
/// answer, and the table.
#[derive(Debug)]
pub struct IstioProxy {
    /// Listeners and the upstream group for forwarded queries.
    pub forwarder: Forwarder,
    /// The name table.
    pub table: NameTable,
}

impl IstioSettings {
    /// Read resolv.conf and the manifests and build.
    pub fn build(&self) -> Result<IstioProxy, ConfigError> {
        let resolv = ResolvConf::load(&self.resolv_conf).map_err(|source| ConfigError::Upstream {
            at: signpost_rules::Location { file: Some(self.resolv_conf.clone()), ..Default::default() },
            source,
        })?;
        let listeners = self.listeners(&resolv)?;
        let own: Vec<SocketAddr> = listeners.iter().map(ListenerConfig::socket_address).collect();
        let mut group = resolv.to_group(UPSTREAM_GROUP, &own);
        if group.servers.is_empty() {
            return Err(ConfigError::NoServers {
                at: signpost_rules::Location { file: Some(self.resolv_conf.clone()), ..Default::default() },
                zone: ".".into(),
            });
        }
        if self.forward_parallel && group.servers.len() > 1 {
            group.hedge = Some(Hedge { after: HedgeAfter::Fixed(Duration::ZERO), max_parallel: group.servers.len() });
        }
        let config = ForwarderConfig {
            listeners,
            upstreams: vec![group],
            default_group: Some(UPSTREAM_GROUP.into()),
            ..ForwarderConfig::default()
        };
        let options = BuildOptions { base_dir: base_dir_of(&self.resolv_conf), ..BuildOptions::default() };
        let mut forwarder = config.build(&options)?;
        for warning in &resolv.warnings {
            forwarder
                .warnings
                .push(Warning::ResolvConf { path: self.resolv_conf.clone(), message: warning.to_string() });
        }
        let table = self.table(&resolv.search)?;
        Ok(IstioProxy { forwarder, table })
    }

    /// Read the manifests again and build the name table.
    pub fn table(&self, search: &[String]) -> Result<NameTable, ConfigError> {
        let defaults = Defaults { namespace: &self.namespace, cluster_domain: &self.cluster_domain };
        let services = match &self.manifests {
            Some(path) => read_manifests(path, defaults)?,
            None => Vec::new(),
        };
        let options = TableOptions {
            namespace: self.namespace.clone(),
            cluster_domain: self.cluster_domain.clone(),
            search: search.to_vec(),
            auto_allocate: self.auto_allocate,
            allocator: self.allocator,
            dual_stack: self.dual_stack,
        };
        Ok(NameTable::build(&services, &options))
    }

    /// UDP and TCP on `DNS_PROXY_ADDR`.
    fn listeners(&self, resolv: &ResolvConf) -> Result<Vec<ListenerConfig>, ConfigError> {
        let invalid = || ConfigError::InvalidValue {
            at: signpost_rules::Location::field("DNS_PROXY_ADDR"),
            what: "proxy address",
            text: self.proxy_address.clone(),
            expected: "host:port, the host localhost or an IP address",
        };
        let (host, port) = self.proxy_address.rsplit_once(':').ok_or_else(invalid)?;
        let port: u16 = port.parse().map_err(|_| invalid())?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addresses: Vec<IpAddr> = if host == "localhost" {
            let v6 = resolv.nameservers.iter().any(SocketAddr::is_ipv6);
            let mut out = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
            if v6 {
                out.push(IpAddr::V6(Ipv6Addr::LOCALHOST));
            }
            out
        } else {
            vec![host.parse().map_err(|_| invalid())?]
        };
        let mut out = Vec::new();
        for address in addresses {
            let socket = SocketAddr::new(address, port);
            out.push(ListenerConfig::new(Transport::Udp, socket));
            out.push(ListenerConfig::new(Transport::Tcp, socket));
        }
        Ok(out)
    }
}

impl IstioProxy {
    /// What [`runtime::run`](crate::runtime::run) serves: the table's handler
    /// in front of the pipeline, and a reload (SIGHUP, or a change of the
    /// manifests with `watch`) that reads resolv.conf and the manifests again.
    pub fn into_service(self, settings: IstioSettings, watch: bool) -> Service {
        let handler = Arc::new(IstioHandler::new(self.table));
        let source = settings.manifests.clone().unwrap_or_else(|| settings.resolv_conf.clone());
        let watch = watch.then(|| source.clone());
        let reload_handler = Arc::clone(&handler);
        let reloader: signpost_server::Reloader = Arc::new(move || {
            let proxy = settings.build()?;
            tracing::info!(hosts = proxy.table.entries().len(), "Istio name table rebuilt");
            reload_handler.replace(proxy.table);
            Ok(proxy.forwarder.into_state())
        });
        Service { forwarder: self.forwarder, reloader, source, watch, query_handler: Some(handler), user: None }
    }
}

/// The [`QueryHandler`] answering from the name table; everything it
/// declines goes through the pipeline to the upstream group.
#[derive(Debug, Default)]
pub struct IstioHandler {
    table: RwLock<Arc<NameTable>>,
    /// Varies the shuffle from answer to answer.
    turn: AtomicU32,
}

impl IstioHandler {
    /// A handler answering from `table`.
    pub fn new(table: NameTable) -> Self {
        Self { table: RwLock::new(Arc::new(table)), turn: AtomicU32::new(0) }
    }

    /// Answer from `table` from now on.
    pub fn replace(&self, table: NameTable) {
        if let Ok(mut slot) = self.table.write() {
            *slot = Arc::new(table);
        }
    }

    /// The table in use.
    pub fn table(&self) -> Arc<NameTable> {
        self.table.read().map(|table| Arc::clone(&table)).unwrap_or_default()
    }
}

impl QueryHandler for IstioHandler {
    fn handle(&self, query: &HandlerQuery<'_>) -> Option<Handled> {
        let message = query.message;
        let flags = message.header().flags;
        if flags.qr() || flags.opcode() != Opcode::QUERY {
            return None;
        }
        let question = message.first_question().ok().flatten()?;
        let want_v6 = match question.qtype() {
            RecordType::A => false,
            RecordType::AAAA => true,
            _ => return None,
        };
        let name = question.name().to_name_buf().to_lowercase();
        let text = name.to_string();
        let mut answers = self.table().lookup(&text, want_v6)?;
        shuffle(&mut answers, message.header().id, self.turn.fetch_add(1, Ordering::Relaxed));
        let limit = match query.transport {
            Transport::Udp => {
                message.edns().ok().flatten().map_or(512, |edns| usize::from(edns.udp_payload_size()).max(512))
            }
            _ => MAX_MESSAGE_LEN,
        };
        let mut out = Vec::with_capacity(512);
        let mut builder = MessageBuilder::response_header_to(&mut out, message.header()).ok()?;
        builder.push_question(&question.name(), question.qtype(), question.qclass()).ok()?;
        // istio-agent: "we are the authority here, since we control DNS for known hostnames".
        let flags = builder.header_mut().flags.with_aa(true);
        builder.set_flags(flags);
        builder.set_limit(limit);
        let mut truncated = false;
        for answer in &answers {
            let Some(record) = record_of(answer) else { continue };
            if builder.push_record_buf(Section::Answer, &record).is_err() {
                truncated = true;
                break;
            }
        }
        if truncated || builder.is_truncated() {
            let flags: Flags = builder.header_mut().flags.with_tc(true);
            builder.set_flags(flags);
        }
        builder.finish().ok()?;
        Some(Handled::Message(out))
    }
}

fn record_of(answer: &Answer) -> Option<RecordBuf> {
    let name = |text: &str| text.parse::<NameBuf>().ok();
    Some(match answer {
        Answer::A(owner, address) => RecordBuf::new(name(owner)?, TTL, RDataBuf::A(*address)),
        Answer::Aaaa(owner, address) => RecordBuf::new(name(owner)?, TTL, RDataBuf::Aaaa(*address)),
        Answer::Cname(owner, target) => RecordBuf::new(name(owner)?, TTL, RDataBuf::Cname(name(target)?)),
    })
}

/// istio-agent's `roundRobinResponse`: CNAMEs first, then the addresses in
/// a varying order (as kube-dns does, for DNS load balancing of headless
/// services and multi-address hosts).
fn shuffle(answers: &mut [Answer], id: u16, turn: u32) {
    let first_address = answers.iter().position(|answer| !matches!(answer, Answer::Cname(..))).unwrap_or(answers.len());
    let Some(addresses) = answers.get_mut(first_address..) else { return };
    if addresses.len() < 2 {
        return;
    }
    // A small xorshift seeded per answer: no cryptographic need, only variety.
    let mut state = (u32::from(id) << 16 | (turn & 0xffff)) ^ 0x9e37_79b9;
    for index in (1..addresses.len()).rev() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let other = (state as usize) % (index + 1);
        addresses.swap(index, other);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffling_keeps_cnames_first_and_every_address() {
        let mut seen = std::collections::HashSet::new();
        for turn in 0..50 {
            let mut answers = vec![
                Answer::Cname("a.".into(), "b.".into()),
                Answer::A("b.".into(), Ipv4Addr::new(10, 0, 0, 1)),
                Answer::A("b.".into(), Ipv4Addr::new(10, 0, 0, 2)),
                Answer::A("b.".into(), Ipv4Addr::new(10, 0, 0, 3)),
            ];
            shuffle(&mut answers, 7, turn);
            assert!(matches!(answers[0], Answer::Cname(..)));
            let mut sorted = answers.clone();
            sorted.sort_by_key(|answer| format!("{answer:?}"));
            assert_eq!(sorted.len(), 4);
            seen.insert(format!("{:?}", answers[1]));
        }
        assert_eq!(seen.len(), 3, "every address comes first at some point");
    }

    fn handled(handler: &IstioHandler, bytes: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let message = signpost_wire::Message::parse(bytes).unwrap();
        let query = HandlerQuery { message, peer: "127.0.0.1:5000".parse().unwrap(), transport, listener: "test" };
        match handler.handle(&query)? {
            Handled::Message(bytes) => Some(bytes),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_handler_answers_queries_only_and_truncates_for_udp() {
        let addresses: Vec<IpAddr> = (1..=60).map(|last| IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))).collect();
        let services = [MeshService {
            hostname: "many.internal".into(),
            namespace: "default".into(),
            registry: Registry::ServiceEntry,
            addresses,
            has_addresses: true,
            resolution: Resolution::Static,
            file: PathBuf::from("se.yaml"),
        }];
        let options = TableOptions {
            namespace: "default".into(),
            cluster_domain: "cluster.local".into(),
            search: Vec::new(),
            auto_allocate: true,
            allocator: IstioAllocator::Sequential,
            dual_stack: false,
        };
        let handler = IstioHandler::new(NameTable::build(&services, &options));
        let query = signpost_testkit::query("many.internal.", RecordType::A);
        // 60 A records do not fit 512 bytes: TC, for the client to retry over TCP.
        let udp = handled(&handler, &query, Transport::Udp).unwrap();
        let udp = signpost_wire::Message::parse(&udp).unwrap();
        assert!(udp.header().flags.tc() && udp.header().flags.aa());
        let tcp = handled(&handler, &query, Transport::Tcp).unwrap();
        assert_eq!(signpost_testkit::answers(&tcp).len(), 60);
        // Not a query (NOTIFY), or not the table's: the pipeline decides.
        let mut notify = query.clone();
        notify[2] = (notify[2] & 0x87) | (4 << 3);
        assert!(handled(&handler, &notify, Transport::Udp).is_none());
        let other = signpost_testkit::query("www.example.org.", RecordType::A);
        assert!(handled(&handler, &other, Transport::Udp).is_none());
        let txt = signpost_testkit::query("many.internal.", RecordType::TXT);
        assert!(handled(&handler, &txt, Transport::Udp).is_none());
    }

    #[test]
    fn localhost_listens_on_both_families_when_resolv_conf_has_ipv6() {
        let settings = IstioSettings::default();
        let v4_only = signpost_upstream::parse_resolv_conf("nameserver 10.96.0.10\n");
        let listeners = settings.listeners(&v4_only).unwrap();
        assert_eq!(listeners.len(), 2);
        assert!(listeners.iter().all(|listener| listener.socket_address() == "127.0.0.1:15053".parse().unwrap()));
        let dual = signpost_upstream::parse_resolv_conf("nameserver 10.96.0.10\nnameserver fd00::10\n");
        assert_eq!(settings.listeners(&dual).unwrap().len(), 4);
        let bad = IstioSettings { proxy_address: "nowhere".into(), ..IstioSettings::default() };
        assert!(bad.listeners(&dual).unwrap_err().to_string().contains("DNS_PROXY_ADDR"));
    }
}
