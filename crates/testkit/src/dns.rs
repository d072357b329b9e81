//! [`FakeDns`]: a real Signpost server set up as the DNS of a test — zone
//! data as text, forwarding to an address, recording on, cache off, faults
//! from the builder — on 127.0.0.1:0 in a few lines.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use signpost_rules::{
    Action, BlockAction, Matcher, RuleSet, RuleSetBuilder, RuleSpec, Source, Zone, ZoneChange, ZoneMode, ZoneSpec,
    parse_records_with_ttl,
};
use signpost_server::{
    FaultAction, FaultTarget, ListenerConfig, RecordedQuery, Reloader, Server, ServerConfig, ServerHandle, State,
    TestLayer, Trace,
};
use signpost_upstream::{GroupConfig, ServerConfig as UpstreamServer, Upstreams};
use signpost_wire::{NameBuf, RecordBuf, RecordType};

use crate::expect::{QueryExpectation, describe_queries};
use crate::{Error, Transport};

/// The upstream group [`FakeDnsBuilder::forward_to`] creates, the one
/// [`FakeDns::fault_upstream`] aims at.
pub const UPSTREAM_GROUP: &str = "upstream";

/// The TTL of records written without one.
pub const DEFAULT_TTL: u32 = 60;

/// A Signpost server standing in for DNS in a test: it answers from the
/// zones and records it was given, forwards the rest where told (or answers
/// NXDOMAIN), records every query with what it answered, and injects
/// faults on request. It listens for UDP and TCP on one port of 127.0.0.1
/// (a client retrying over TCP after a truncated answer finds it).
///
/// Test defaults, unlike a [`Server::builder`] server's: the cache is off
/// (so an upstream sees every query), recording is on from the first query,
/// one UDP worker. Dropping it (a test that panics, say) stops the server.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), signpost_testkit::Error> {
/// use signpost_testkit::{FakeDns, ResolverAnswer, lookup};
/// use signpost_wire::RecordType;
///
/// let dns = FakeDns::builder()
///     .zone("svc.test", "api 60 IN A 10.0.0.1\ndb IN A 10.0.0.2")
///     .record("cache.other.test. 30 IN A 10.0.0.3")
///     .start()
///     .await?;
/// let resolver = dns.resolver();
/// assert_eq!(lookup(&resolver, "api.svc.test.", RecordType::A).await, ResolverAnswer::data(["10.0.0.1"]));
/// dns.assert_queried("api.svc.test", RecordType::A);
/// dns.expect("db.svc.test").never();
/// # Ok(()) }
/// ```
pub struct FakeDns {
    server: ServerHandle,
    layer: TestLayer,
}

impl std::fmt::Debug for FakeDns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeDns").field("udp", &self.server.udp_addr()).field("layer", &self.layer).finish()
    }
}

/// A fault set on the builder, checked when the server starts.
enum PendingFault {
    Name(String),
    Group(String),
}

type RuleEdit = Box<dyn FnOnce(&mut RuleSetBuilder) + Send>;
type ConfigEdit = Box<dyn FnOnce(&mut ServerConfig) + Send>;

/// Builds a [`FakeDns`]. Nothing is checked until [`FakeDnsBuilder::start`],
/// which names the zone, record or name that is wrong.
#[must_use]
pub struct FakeDnsBuilder {
    address: IpAddr,
    zones: Vec<(String, String)>,
    records: Vec<String>,
    typed: Vec<RecordBuf>,
    forward_to: Vec<SocketAddr>,
    forward_zones: Vec<(String, Vec<SocketAddr>)>,
    cache: bool,
    recording: bool,
    faults: Vec<(PendingFault, FaultAction)>,
    rule_edits: Vec<RuleEdit>,
    config_edits: Vec<ConfigEdit>,
    upstream_timeout: Duration,
}

impl FakeDns {
    /// A builder: 127.0.0.1, no data, NXDOMAIN for every name, recording
    /// on, cache off.
    pub fn builder() -> FakeDnsBuilder {
        FakeDnsBuilder {
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            zones: Vec::new(),
            records: Vec::new(),
            typed: Vec::new(),
            forward_to: Vec::new(),
            forward_zones: Vec::new(),
            cache: false,
            recording: true,
            faults: Vec::new(),
            rule_edits: Vec::new(),
            config_edits: Vec::new(),
            upstream_timeout: Duration::from_secs(2),
        }
    }

    /// The UDP address to ask.
    pub fn udp_addr(&self) -> SocketAddr {
        self.server.udp_addr().unwrap_or_else(|| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0))
    }

    /// The TCP address to ask: the same port as [`FakeDns::udp_addr`].
    pub fn tcp_addr(&self) -> SocketAddr {
        self.server.tcp_addr().unwrap_or_else(|| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0))
    }

    /// The address of `transport`'s listener (UDP or TCP).
    pub fn addr(&self, transport: Transport) -> SocketAddr {
        match transport {
            Transport::Tcp => self.tcp_addr(),
            _ => self.udp_addr(),
        }
    }

    /// The running server, for everything else the embedding API offers
    /// (metrics, listeners added at run time, `reload`...).
    pub fn server(&self) -> &ServerHandle {
        &self.server
    }

    /// The test layer: faults and recording, shared with the server.
    pub fn layer(&self) -> &TestLayer {
        &self.layer
    }

    /// A hickory resolver asking this server only, from an explicit
    /// configuration ([`crate::resolver_config`]): UDP, then TCP when an
    /// answer is truncated; no cache, no hosts file, one attempt, 3 s.
    #[cfg(feature = "hickory")]
    pub fn resolver(&self) -> hickory_resolver::TokioResolver {
        crate::resolver::udp_and_tcp_resolver(self.udp_addr())
    }

    // --- recording and assertions ---

    /// Every query recorded so far, in the order they arrived.
    pub fn queries(&self) -> Vec<RecordedQuery> {
        self.layer.recorded_queries()
    }

    /// Every query recorded so far, clearing the record.
    pub fn take_queries(&self) -> Vec<RecordedQuery> {
        self.layer.take_recorded_queries()
    }

    /// An expectation on the queries for `name` (any case, final dot or
    /// not), to narrow by type, transport, rcode... and check.
    pub fn expect(&self, name: &str) -> QueryExpectation<'_> {
        QueryExpectation::new(&self.layer).name(name)
    }

    /// An expectation on every query, to narrow and check.
    pub fn expect_any(&self) -> QueryExpectation<'_> {
        QueryExpectation::new(&self.layer)
    }

    /// Assert that `name` `qtype` was asked at least once.
    ///
    /// # Panics
    ///
    /// When it was not, listing what was asked.
    #[track_caller]
    pub fn assert_queried(&self, name: &str, qtype: RecordType) {
        self.expect(name).qtype(qtype).at_least(1);
    }

    /// Assert that `name` was never asked, whatever the type.
    ///
    /// # Panics
    ///
    /// When it was, listing what was asked.
    #[track_caller]
    pub fn assert_not_queried(&self, name: &str) {
        self.expect(name).never();
    }

    /// Wait until a query for `name` `qtype` has been answered (or
    /// dropped), at most `timeout`; that query.
    pub async fn wait_for(&self, name: &str, qtype: RecordType, timeout: Duration) -> Result<RecordedQuery, Error> {
        self.expect(name).qtype(qtype).finished().wait(timeout).await
    }

    /// Wait until at least `count` queries have been recorded and every one
    /// is finished, at most `timeout`; every query recorded.
    pub async fn wait_for_queries(&self, count: usize, timeout: Duration) -> Result<Vec<RecordedQuery>, Error> {
        match self.layer.wait_for_queries(count, timeout).await {
            Some(queries) => Ok(queries),
            None => Err(Error::Timeout {
                what: format!("{count} finished queries at the fake DNS server"),
                waited: timeout,
                seen: describe_queries(&self.layer.recorded_queries()),
            }),
        }
    }

    // --- faults ---

    /// Make questions for `name` and the names below it fail as `action`
    /// says (replacing a fault on the same name).
    pub fn fault(&self, name: &str, action: FaultAction) -> Result<(), Error> {
        self.layer.inject_fault(name_target(name)?, action);
        Ok(())
    }

    /// Make queries forwarded to [`UPSTREAM_GROUP`] (the
    /// [`FakeDnsBuilder::forward_to`] servers) fail as `action` says.
    pub fn fault_upstream(&self, action: FaultAction) {
        self.layer.inject_fault(FaultTarget::upstream_group(UPSTREAM_GROUP), action);
    }

    /// Remove the fault on `name`; whether there was one.
    pub fn remove_fault(&self, name: &str) -> Result<bool, Error> {
        Ok(self.layer.remove_fault(&name_target(name)?))
    }

    /// Remove the fault on the upstream group; whether there was one.
    pub fn remove_upstream_fault(&self) -> bool {
        self.layer.remove_fault(&FaultTarget::upstream_group(UPSTREAM_GROUP))
    }

    /// The faults in force, oldest first.
    pub fn faults(&self) -> Vec<(FaultTarget, FaultAction)> {
        self.layer.faults()
    }

    /// Remove every fault.
    pub fn clear_faults(&self) {
        self.layer.clear_faults();
    }

    // --- data at run time ---

    /// Add a record (presentation format, absolute owner; TTL
    /// [`DEFAULT_TTL`] when left out) while the server runs: into the zone
    /// holding its name, else as a record of its own as
    /// [`FakeDnsBuilder::record`] adds it. Queries already running finish
    /// with the old data.
    pub fn add_record(&self, text: &str) -> Result<(), Error> {
        let record = parse_record(text)?;
        let mut builder = self.server.rules().to_builder();
        add_loose(&mut builder, record).map_err(|source| Error::Rules { what: format!("record {text:?}"), source })?;
        self.swap_rules(&builder, "the records")
    }

    /// Remove every record of `name` (in every zone holding it) while the
    /// server runs; whether there was one.
    pub fn remove_records(&self, name: &str) -> Result<bool, Error> {
        let name = parse_name(name)?;
        let mut builder = self.server.rules().to_builder();
        let holders: Vec<String> = builder
            .zones()
            .filter(|spec| spec.zone.records().any(|record| record.name == name && record.rtype() != RecordType::SOA))
            .map(|spec| spec.id.clone())
            .collect();
        // A record's own zone (see `FakeDnsBuilder::record`) goes with its
        // name: its apex would otherwise still answer NODATA.
        let own_zones: Vec<String> = builder
            .zones()
            .filter(|spec| spec.mode == ZoneMode::Transparent && *spec.zone.apex() == name)
            .map(|spec| spec.id.clone())
            .collect();
        for id in &holders {
            if own_zones.contains(id) {
                builder.remove_zone(id);
                continue;
            }
            builder
                .change_zone(id, [ZoneChange::DeleteName(name.clone())])
                .map_err(|source| Error::Rules { what: format!("zone {id}"), source: Box::new(source) })?;
        }
        self.swap_rules(&builder, "the records")?;
        Ok(!holders.is_empty())
    }

    /// Add, change or delete records of the zone `id` (its apex, with or
    /// without the final dot, for zones given to [`FakeDnsBuilder::zone`]),
    /// all or nothing. An unknown id's error lists the ids there are.
    pub fn change_zone(&self, id: &str, changes: impl IntoIterator<Item = ZoneChange>) -> Result<(), Error> {
        let mut builder = self.server.rules().to_builder();
        builder
            .change_zone(id, changes)
            .map_err(|source| Error::Rules { what: format!("zone {id}"), source: Box::new(source) })?;
        self.swap_rules(&builder, "the zones")
    }

    /// Put the zone `apex` with the records of `text` (master-file format,
    /// names relative to the apex) in place of the zone of that apex, or
    /// beside the others when there is none.
    pub fn set_zone(&self, apex: &str, text: &str) -> Result<(), Error> {
        let spec = zone_spec(apex, text)?;
        let mut builder = self.server.rules().to_builder();
        builder.remove_zone(&spec.id);
        builder.zone(spec);
        self.swap_rules(&builder, "the zones")
    }

    /// Swap in a whole rule set (the upstreams stay).
    pub fn set_rules(&self, rules: RuleSet) {
        self.server.set_rules(rules);
    }

    /// Give the running server a reload source and reload from it, as
    /// SIGHUP or the admin `/reload` route would: an error keeps the old
    /// rules and upstreams serving.
    pub async fn reload_with(&self, reloader: Reloader) -> Result<(), Error> {
        self.server.set_reloader(reloader);
        self.server.reload_from_source().await.map(|_| ()).map_err(|source| Error::Server { source: Box::new(source) })
    }

    /// "Why this answer?": run `name` `qtype` through the server as a
    /// client on 127.0.0.1 asking over UDP would, without answering anyone
    /// or recording it (faults apply). The trace names the view, what
    /// matched, the decision, the upstream attempts and the answers.
    pub async fn explain(&self, name: &str, qtype: RecordType) -> Result<Trace, Error> {
        let name = parse_name(name)?;
        let client = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53_000);
        Ok(self.server.explain(&name, qtype, client, Transport::Udp).await)
    }

    /// Stop accepting queries, let those in flight finish, and stop.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }

    fn swap_rules(&self, builder: &RuleSetBuilder, what: &str) -> Result<(), Error> {
        let rules =
            builder.build().map_err(|source| Error::Rules { what: what.to_owned(), source: Box::new(source) })?;
        self.server.set_rules(rules);
        Ok(())
    }
}

impl FakeDnsBuilder {
    /// Listen on this loopback address (port 0 always) instead of
    /// 127.0.0.1: `::1`, or another 127.0.0.0/8 address.
    pub fn address(mut self, address: IpAddr) -> Self {
        self.address = address;
        self
    }

    /// A zone: the records of `text` in master-file format, names relative
    /// to `apex` (`@` is the apex; `$TTL` and `$ORIGIN` work), TTL
    /// [`DEFAULT_TTL`] when left out. The zone is authoritative: names under
    /// `apex` it does not hold get NXDOMAIN, types a name lacks get NODATA,
    /// both with the zone's SOA (synthesised when `text` has none).
    pub fn zone(mut self, apex: &str, text: &str) -> Self {
        self.zones.push((apex.to_owned(), text.to_owned()));
        self
    }

    /// A record in presentation format with an absolute owner name
    /// (`"api.svc.test. 60 IN A 10.0.0.1"`; TTL and class may be left
    /// out). Inside a [`FakeDnsBuilder::zone`] it joins the zone; outside,
    /// its name answers it, NODATA for other types, and names below it are
    /// not affected.
    pub fn record(mut self, text: &str) -> Self {
        self.records.push(text.to_owned());
        self
    }

    /// Several records, as [`FakeDnsBuilder::record`].
    pub fn records<'t>(mut self, texts: impl IntoIterator<Item = &'t str>) -> Self {
        self.records.extend(texts.into_iter().map(str::to_owned));
        self
    }

    /// A typed record, as [`FakeDnsBuilder::record`].
    pub fn typed_record(mut self, record: RecordBuf) -> Self {
        self.typed.push(record);
        self
    }

    /// Forward every name the data does not answer to these servers (Do53,
    /// UDP with TCP after a truncated answer), as the upstream group
    /// [`UPSTREAM_GROUP`]; without it such names get NXDOMAIN. Give it a
    /// [`crate::FakeUpstream`]'s or another `FakeDns`'s address.
    pub fn forward_to(mut self, server: SocketAddr) -> Self {
        self.forward_to.push(server);
        self
    }

    /// Forward `suffix` and every name below it to `servers` (a conditional
    /// forward; the data given for names below it still answers first).
    pub fn forward_zone(mut self, suffix: &str, servers: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.forward_zones.push((suffix.to_owned(), servers.into_iter().collect()));
        self
    }

    /// How long a forwarded query may take in all (default 2 s; each
    /// server gets half).
    pub fn upstream_timeout(mut self, timeout: Duration) -> Self {
        self.upstream_timeout = timeout;
        self
    }

    /// Cache forwarded answers (off by default, so that an upstream sees
    /// every query).
    pub fn cache(mut self, enabled: bool) -> Self {
        self.cache = enabled;
        self
    }

    /// Record queries (on by default).
    pub fn recording(mut self, enabled: bool) -> Self {
        self.recording = enabled;
        self
    }

    /// A fault on `name` and the names below it from the first query.
    pub fn fault(mut self, name: &str, action: FaultAction) -> Self {
        self.faults.push((PendingFault::Name(name.to_owned()), action));
        self
    }

    /// A fault on the [`FakeDnsBuilder::forward_to`] servers from the first query.
    pub fn fault_upstream(mut self, action: FaultAction) -> Self {
        self.faults.push((PendingFault::Group(UPSTREAM_GROUP.to_owned()), action));
        self
    }

    /// Anything else the rule engine offers (rules, views, host tables,
    /// exceptions), added after the data: `edit` gets the builder. Groups
    /// named by rules must be [`UPSTREAM_GROUP`] or one a
    /// [`FakeDnsBuilder::forward_zone`] made (`forward-1`, `forward-2`...).
    pub fn rules(mut self, edit: impl FnOnce(&mut RuleSetBuilder) + Send + 'static) -> Self {
        self.rule_edits.push(Box::new(edit));
        self
    }

    /// Change the server settings (limits, query log, more listeners...)
    /// after the test defaults are set.
    pub fn server_config(mut self, edit: impl FnOnce(&mut ServerConfig) + Send + 'static) -> Self {
        self.config_edits.push(Box::new(edit));
        self
    }

    /// Check everything, bind 127.0.0.1:0 (UDP and TCP on one port) and
    /// start serving. Must run inside a tokio runtime.
    pub async fn start(mut self) -> Result<FakeDns, Error> {
        let (rules, upstreams) = self.state()?;
        let layer = TestLayer::new().recording(self.recording);
        for (target, action) in self.faults {
            let target = match target {
                PendingFault::Name(name) => name_target(&name)?,
                PendingFault::Group(group) => FaultTarget::upstream_group(group),
            };
            layer.inject_fault(target, action);
        }
        let mut config = ServerConfig::default();
        let mut udp = ListenerConfig::new(Transport::Udp, SocketAddr::new(self.address, 0));
        udp.workers = Some(1);
        config.listeners = vec![udp, ListenerConfig::new(Transport::Tcp, SocketAddr::new(self.address, 0))];
        config.cache.enabled = self.cache;
        for edit in self.config_edits {
            edit(&mut config);
        }
        let server = Server::builder()
            .config(config)
            .state(State::new(Arc::new(rules), Arc::new(upstreams)))
            .test_layer(layer.clone())
            .start()
            .await
            .map_err(|source| Error::Server { source: Box::new(source) })?;
        Ok(FakeDns { server, layer })
    }

    /// The rule set and upstream groups this builder describes.
    fn state(&mut self) -> Result<(RuleSet, Upstreams), Error> {
        let mut builder = RuleSet::builder();
        for (apex, text) in &self.zones {
            builder.zone(zone_spec(apex, text)?);
        }
        let mut records = Vec::with_capacity(self.records.len() + self.typed.len());
        for text in &self.records {
            records.push(parse_record(text)?);
        }
        records.extend(self.typed.iter().cloned());
        for record in records {
            let text = record.to_string();
            add_loose(&mut builder, record)
                .map_err(|source| Error::Rules { what: format!("record {text:?}"), source })?;
        }
        let per_try = self.upstream_timeout / 2;
        let group = |name: String, servers: &[SocketAddr]| {
            let mut group = GroupConfig::new(name, servers.iter().map(|server| UpstreamServer::udp(*server)).collect());
            group.per_try_timeout = per_try;
            group.total_timeout = self.upstream_timeout;
            group
        };
        let mut groups = Vec::new();
        if self.forward_to.is_empty() {
            // Nothing to forward to: the names the data does not answer do not exist.
            builder.rule(RuleSpec::new(
                "fake-dns-otherwise-nxdomain",
                Matcher::Suffix(NameBuf::root()),
                Action::Block(BlockAction::NxDomain),
            ));
        } else {
            builder.default_group(UPSTREAM_GROUP);
            groups.push(group(UPSTREAM_GROUP.to_owned(), &self.forward_to));
        }
        for (index, (suffix, servers)) in self.forward_zones.iter().enumerate() {
            let name = format!("forward-{}", index + 1);
            let matcher = Matcher::Suffix(parse_name(suffix)?);
            builder.rule(RuleSpec::new(
                name.clone(),
                matcher,
                Action::Forward { group: name.clone(), forward_first: false },
            ));
            groups.push(group(name, servers));
        }
        let known: Vec<String> = groups.iter().map(|group| group.name.clone()).collect();
        builder.known_groups(known);
        for edit in std::mem::take(&mut self.rule_edits) {
            edit(&mut builder);
        }
        let rules = builder
            .build()
            .map_err(|source| Error::Rules { what: "the rules".to_owned(), source: Box::new(source) })?;
        Ok((rules, Upstreams::new(groups).map_err(|source| Error::Upstreams { source: Box::new(source) })?))
    }
}

/// A zone from master-file text, authoritative, with its apex as id.
fn zone_spec(apex: &str, text: &str) -> Result<ZoneSpec, Error> {
    let apex_name = parse_name(apex)?;
    let what = || format!("zone {apex}");
    let records = parse_records_with_ttl(text, &apex_name, Source::memory(), Some(DEFAULT_TTL))
        .map_err(|source| Error::Rules { what: what(), source: Box::new(source) })?;
    let zone = Zone::from_records(apex_name, records.into_iter().map(|(record, _)| record))
        .map_err(|source| Error::Rules { what: what(), source: Box::new(source) })?;
    Ok(ZoneSpec::new(zone))
}

/// Put `record` in the most specific zone holding its name; outside every
/// zone, in a zone of its own at its name that answers only what it holds
/// (other types: NODATA; names below: as if it were not there).
fn add_loose(builder: &mut RuleSetBuilder, record: RecordBuf) -> Result<(), Box<signpost_rules::Error>> {
    let holder = builder
        .zones()
        .filter(|spec| record.name.is_subdomain_of(spec.zone.apex()))
        .filter(|spec| spec.mode != ZoneMode::Transparent || *spec.zone.apex() == record.name)
        .max_by_key(|spec| spec.zone.apex().wire_len())
        .map(|spec| spec.id.clone());
    match holder {
        Some(id) => Ok(builder.change_zone(&id, [ZoneChange::Add(record)])?),
        None => {
            let zone = Zone::loose(record.name.clone(), [record])?;
            builder.zone(ZoneSpec { mode: ZoneMode::Transparent, ..ZoneSpec::new(zone) });
            Ok(())
        }
    }
}

fn parse_name(text: &str) -> Result<NameBuf, Error> {
    text.parse().map_err(|source| Error::Name { text: text.to_owned(), source })
}

fn name_target(text: &str) -> Result<FaultTarget, Error> {
    FaultTarget::name(text).map_err(|source| Error::Name { text: text.to_owned(), source })
}

fn parse_record(text: &str) -> Result<RecordBuf, Error> {
    RecordBuf::from_presentation(text, None, Some(DEFAULT_TTL))
        .map_err(|source| Error::Record { text: text.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use signpost_wire::Rcode;

    use super::*;
    use crate::{Answer, FakeUpstream, ResolverAnswer, ask, lookup, query, tcp_exchange, udp_exchange};

    const PATIENCE: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn zones_and_records_answer_and_the_rest_does_not_exist() {
        let dns = FakeDns::builder()
            .zone("svc.test", "api IN A 10.0.0.1\n@ 30 IN TXT \"hello\"\nalias IN CNAME api")
            .record("solo.other.test. 20 IN AAAA 2001:db8::1")
            .records(["mx.other.test. IN MX 10 mail.other.test."])
            .typed_record(RecordBuf::from_presentation("typed.other.test. 5 IN A 10.9.9.9", None, None).unwrap())
            .start()
            .await
            .unwrap();
        let resolver = dns.resolver();
        assert_eq!(lookup(&resolver, "api.svc.test.", RecordType::A).await, ResolverAnswer::data(["10.0.0.1"]));
        assert_eq!(lookup(&resolver, "svc.test.", RecordType::TXT).await, ResolverAnswer::data(["hello"]));
        assert_eq!(
            lookup(&resolver, "solo.other.test.", RecordType::AAAA).await,
            ResolverAnswer::data(["2001:db8::1"])
        );
        assert_eq!(lookup(&resolver, "typed.other.test.", RecordType::A).await, ResolverAnswer::data(["10.9.9.9"]));
        // In the zone: NXDOMAIN for what it lacks, NODATA for a missing type; outside: NXDOMAIN.
        assert_eq!(ask(dns.udp_addr(), "nope.svc.test", RecordType::A).await.unwrap().0, Rcode::NXDOMAIN);
        assert_eq!(lookup(&resolver, "api.svc.test.", RecordType::AAAA).await, ResolverAnswer::NoData { soa: true });
        assert_eq!(lookup(&resolver, "solo.other.test.", RecordType::A).await, ResolverAnswer::NoData { soa: true });
        assert_eq!(ask(dns.udp_addr(), "example.com", RecordType::A).await.unwrap().0, Rcode::NXDOMAIN);
        assert_eq!(ask(dns.udp_addr(), "below.solo.other.test", RecordType::A).await.unwrap().0, Rcode::NXDOMAIN);
        // The default TTL, and a CNAME followed inside the zone.
        let (_, lines) = ask(dns.udp_addr(), "alias.svc.test", RecordType::A).await.unwrap();
        assert_eq!(lines, ["alias.svc.test. 60 IN CNAME api.svc.test.", "api.svc.test. 60 IN A 10.0.0.1"]);
        assert_eq!(dns.udp_addr().port(), dns.tcp_addr().port());
        assert_eq!(dns.addr(Transport::Tcp), dns.tcp_addr());
        let over_tcp = tcp_exchange(dns.tcp_addr(), &query("api.svc.test", RecordType::A), PATIENCE).await.unwrap();
        assert_eq!(crate::answers(&over_tcp), ["api.svc.test. 60 IN A 10.0.0.1"]);
        dns.expect("api.svc.test").qtype(RecordType::A).transport(Transport::Tcp).once();
    }

    #[tokio::test]
    async fn a_second_fake_as_upstream_sees_only_what_is_forwarded() {
        let internet = FakeDns::builder().record("example.com. 300 IN A 192.0.2.80").start().await.unwrap();
        let corp = FakeUpstream::builder()
            .otherwise(Answer::addresses([IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1))], 60))
            .start()
            .await
            .unwrap();
        let dns = FakeDns::builder()
            .zone("svc.test", "api IN A 10.0.0.1")
            .forward_to(internet.udp_addr())
            .forward_zone("corp.example", [corp.address()])
            .start()
            .await
            .unwrap();
        let resolver = dns.resolver();
        assert_eq!(lookup(&resolver, "example.com.", RecordType::A).await, ResolverAnswer::data(["192.0.2.80"]));
        assert_eq!(lookup(&resolver, "db.corp.example.", RecordType::A).await, ResolverAnswer::data(["10.1.0.1"]));
        assert_eq!(lookup(&resolver, "api.svc.test.", RecordType::A).await, ResolverAnswer::data(["10.0.0.1"]));
        // The cache is off: a second ask reaches the upstream again.
        assert_eq!(lookup(&resolver, "example.com.", RecordType::A).await, ResolverAnswer::data(["192.0.2.80"]));
        internet.expect("example.com").qtype(RecordType::A).times(2);
        internet.assert_not_queried("api.svc.test");
        assert!(corp.was_asked("db.corp.example"));
        let forwarded = dns.expect("example.com").finished().queries();
        assert_eq!(forwarded[0].group.as_deref(), Some(UPSTREAM_GROUP));
        assert_eq!((forwarded[0].decision.as_str(), forwarded[0].cache_hit), ("forward", false));
        assert_eq!(dns.expect("db.corp.example").finished().queries()[0].group.as_deref(), Some("forward-1"));
        assert_eq!(dns.expect("api.svc.test").finished().queries()[0].matched, "zone svc.test.");
    }

    #[tokio::test]
    async fn with_the_cache_on_the_second_answer_is_a_recorded_cache_hit() {
        let internet = FakeDns::builder().record("example.com. 300 IN A 192.0.2.80").start().await.unwrap();
        let dns = FakeDns::builder().forward_to(internet.udp_addr()).cache(true).start().await.unwrap();
        for _ in 0..2 {
            assert_eq!(ask(dns.udp_addr(), "example.com", RecordType::A).await.unwrap().0, Rcode::NOERROR);
        }
        dns.expect("example.com").cache_hit(true).once();
        dns.expect("example.com").cache_hit(false).once();
        internet.expect("example.com").once();
    }

    #[tokio::test]
    async fn faults_from_the_builder_and_at_run_time() {
        let internet = FakeDns::builder().record("example.com. 300 IN A 192.0.2.80").start().await.unwrap();
        let dns = FakeDns::builder()
            .record("api.svc.test. IN A 10.0.0.1")
            .forward_to(internet.udp_addr())
            .fault("svc.test", FaultAction::ServFail)
            .fault_upstream(FaultAction::Drop)
            .start()
            .await
            .unwrap();
        assert_eq!(dns.faults().len(), 2);
        assert_eq!(ask(dns.udp_addr(), "api.svc.test", RecordType::A).await.unwrap().0, Rcode::SERVFAIL);
        // Drop on the upstream group: no answer at all, and the upstream is not asked.
        let example = query("example.com", RecordType::A);
        assert!(udp_exchange(dns.udp_addr(), &example, Duration::from_millis(500)).await.is_none());
        internet.assert_not_queried("example.com");
        let dropped = dns.wait_for("example.com", RecordType::A, PATIENCE).await.unwrap();
        assert_eq!((dropped.rcode, dropped.decision.as_str()), (None, "drop"));

        assert!(dns.remove_upstream_fault());
        assert!(dns.remove_fault("SVC.test.").unwrap());
        assert!(!dns.remove_fault("svc.test").unwrap());
        assert_eq!(ask(dns.udp_addr(), "api.svc.test", RecordType::A).await.unwrap().0, Rcode::NOERROR);
        assert_eq!(ask(dns.udp_addr(), "example.com", RecordType::A).await.unwrap().0, Rcode::NOERROR);

        dns.fault("api.svc.test", FaultAction::Drop).unwrap();
        assert!(
            udp_exchange(dns.udp_addr(), &query("api.svc.test", RecordType::A), Duration::from_millis(300))
                .await
                .is_none()
        );
        dns.fault("api.svc.test", FaultAction::Truncate).unwrap();
        let (_, lines) = ask(dns.udp_addr(), "api.svc.test", RecordType::A).await.unwrap();
        assert!(lines.is_empty(), "truncated over UDP");
        // hickory retries over TCP, where a Truncate fault does not apply.
        assert_eq!(lookup(&dns.resolver(), "api.svc.test.", RecordType::A).await, ResolverAnswer::data(["10.0.0.1"]));
        dns.expect("api.svc.test").transport(Transport::Tcp).rcode(Rcode::NOERROR).once();
        dns.fault("api.svc.test", FaultAction::TcpReset).unwrap();
        assert!(tcp_exchange(dns.tcp_addr(), &query("api.svc.test", RecordType::A), PATIENCE).await.is_none());
        dns.fault("api.svc.test", FaultAction::Delay(Duration::from_millis(200))).unwrap();
        let started = std::time::Instant::now();
        assert_eq!(ask(dns.udp_addr(), "api.svc.test", RecordType::A).await.unwrap().0, Rcode::NOERROR);
        assert!(started.elapsed() >= Duration::from_millis(190));
        dns.clear_faults();
        assert!(dns.faults().is_empty());
        assert!(matches!(dns.fault("a..b", FaultAction::Drop), Err(Error::Name { .. })));
    }

    #[tokio::test]
    async fn data_changes_while_the_server_runs() {
        let dns = FakeDns::builder().zone("svc.test.", "api IN A 10.0.0.1").start().await.unwrap();
        dns.add_record("new.svc.test. IN A 10.0.0.2").unwrap();
        dns.add_record("other.test. IN A 10.0.0.3").unwrap();
        dns.add_record("other.test. IN TXT \"second\"").unwrap();
        assert_eq!(
            ask(dns.udp_addr(), "new.svc.test", RecordType::A).await.unwrap().1,
            ["new.svc.test. 60 IN A 10.0.0.2"]
        );
        assert_eq!(
            ask(dns.udp_addr(), "other.test", RecordType::TXT).await.unwrap().1,
            ["other.test. 60 IN TXT \"second\""]
        );
        assert!(dns.remove_records("other.test").unwrap());
        assert!(!dns.remove_records("never.test").unwrap());
        assert_eq!(ask(dns.udp_addr(), "other.test", RecordType::A).await.unwrap().0, Rcode::NXDOMAIN);
        // Zone ids as written: with or without the final dot.
        dns.change_zone("svc.test", [ZoneChange::DeleteName("api.svc.test".parse().unwrap())]).unwrap();
        assert_eq!(ask(dns.udp_addr(), "api.svc.test", RecordType::A).await.unwrap().0, Rcode::NXDOMAIN);
        let unknown = dns.change_zone("nope.test", []).unwrap_err();
        assert!(unknown.to_string().contains("\"svc.test.\""), "the ids there are: {unknown}");
        dns.set_zone("svc.test", "api IN A 10.0.0.7").unwrap();
        assert_eq!(
            ask(dns.udp_addr(), "api.svc.test", RecordType::A).await.unwrap().1,
            ["api.svc.test. 60 IN A 10.0.0.7"]
        );
        assert_eq!(ask(dns.udp_addr(), "new.svc.test", RecordType::A).await.unwrap().0, Rcode::NXDOMAIN, "replaced");
        assert!(matches!(dns.add_record("not a record"), Err(Error::Record { .. })));
    }

    #[tokio::test]
    async fn reload_and_explain_are_reachable() {
        let dns = FakeDns::builder().zone("svc.test", "api IN A 10.0.0.1").start().await.unwrap();
        let trace = dns.explain("api.svc.test", RecordType::A).await.unwrap();
        assert_eq!((trace.decision.as_str(), trace.matched.as_str()), ("local", "zone svc.test."));
        assert!(trace.notes.iter().any(|note| note.contains("10.0.0.1")), "{trace:?}");
        assert!(dns.queries().is_empty(), "explain runs are not recorded");

        let next = FakeDns::builder().zone("svc.test", "api IN A 10.0.0.9");
        let rules = {
            let mut builder = RuleSet::builder();
            builder.zone(zone_spec("svc.test", "api IN A 10.0.0.9").unwrap());
            builder.build().unwrap()
        };
        drop(next);
        let rules = Arc::new(std::sync::Mutex::new(Some(rules)));
        let reloader: Reloader = Arc::new(move || {
            let rules = rules.lock().map_err(|_| "poisoned")?.take().ok_or("only one reload is ready")?;
            Ok(State::new(Arc::new(rules), Arc::new(Upstreams::default())))
        });
        dns.reload_with(reloader).await.unwrap();
        assert_eq!(
            ask(dns.udp_addr(), "api.svc.test", RecordType::A).await.unwrap().1,
            ["api.svc.test. 60 IN A 10.0.0.9"]
        );
        // A failed reload keeps what is serving.
        assert!(matches!(dns.server().reload_from_source().await, Err(signpost_server::Error::Reload { .. })));
        assert_eq!(
            ask(dns.udp_addr(), "api.svc.test", RecordType::A).await.unwrap().1,
            ["api.svc.test. 60 IN A 10.0.0.9"]
        );
    }

    #[tokio::test]
    async fn bad_data_is_named_with_its_line() {
        let zone = FakeDns::builder().zone("svc.test", "api IN A 10.0.0.1\nbad IN A not-an-address").start().await;
        let error = zone.unwrap_err().to_string();
        assert!(error.contains("zone svc.test") && error.contains("line 2"), "{error}");
        let record = FakeDns::builder().record("api.svc.test. IN A").start().await.unwrap_err();
        assert!(matches!(record, Error::Record { ref text, .. } if text == "api.svc.test. IN A"), "{record}");
        let name = FakeDns::builder().fault("a..b", FaultAction::Drop).start().await.unwrap_err();
        assert!(matches!(name, Error::Name { .. }), "{name}");
        let group = FakeDns::builder()
            .rules(|builder| {
                builder.rule(RuleSpec::new(
                    "to-nowhere",
                    Matcher::Suffix("x.test".parse().unwrap()),
                    Action::Forward { group: "missing".into(), forward_first: false },
                ));
            })
            .start()
            .await
            .unwrap_err();
        assert!(group.to_string().contains("missing"), "{group}");
    }

    #[tokio::test]
    async fn waiting_is_bounded_and_says_what_was_seen() {
        let dns = FakeDns::builder().record("api.svc.test. IN A 10.0.0.1").start().await.unwrap();
        ask(dns.udp_addr(), "api.svc.test", RecordType::A).await;
        let started = std::time::Instant::now();
        let error = dns.wait_for("other.svc.test", RecordType::A, Duration::from_millis(100)).await.unwrap_err();
        assert!(started.elapsed() < PATIENCE);
        let text = error.to_string();
        assert!(text.contains("other.svc.test") && text.contains("api.svc.test. A over UDP"), "{text}");
        assert_eq!(dns.wait_for_queries(1, PATIENCE).await.unwrap().len(), 1);
        assert!(dns.wait_for_queries(2, Duration::from_millis(50)).await.is_err());
        assert_eq!(dns.take_queries().len(), 1);
        assert!(dns.queries().is_empty());
    }

    #[tokio::test]
    async fn settings_and_recording_can_be_changed() {
        let dns = FakeDns::builder()
            .address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
            .record("api.svc.test. IN A 10.0.0.1")
            .recording(false)
            .upstream_timeout(Duration::from_millis(500))
            .server_config(|config| config.limits.per_client_qps = Some(1000))
            .start()
            .await
            .unwrap();
        assert_eq!(dns.udp_addr().ip(), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(dns.server().listeners().len(), 2);
        ask(dns.udp_addr(), "api.svc.test", RecordType::A).await;
        assert!(dns.queries().is_empty(), "not recording");
        dns.layer().record_queries(true);
        ask(dns.udp_addr(), "api.svc.test", RecordType::A).await;
        dns.expect_any().once();
        assert!(format!("{dns:?}").contains("FakeDns"));
        dns.shutdown().await;
    }

    /// A parallel suite starts many fakes at once in one process: each gets
    /// a port of its own, the same for UDP and TCP, and answers from its
    /// own data only.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fakes_started_at_once_never_share_a_port() {
        let mut starts = tokio::task::JoinSet::new();
        for index in 0..300u16 {
            starts.spawn(async move {
                let [high, low] = index.to_be_bytes();
                let record = format!("fake.test. IN A 10.0.{high}.{low}");
                (
                    FakeDns::builder().record(&record).start().await.unwrap(),
                    format!("fake.test. 60 IN A 10.0.{high}.{low}"),
                )
            });
        }
        let mut ports = std::collections::HashSet::new();
        let mut fakes = Vec::new();
        while let Some(started) = starts.join_next().await {
            let (fake, expected) = started.unwrap();
            assert_eq!(fake.udp_addr().port(), fake.tcp_addr().port());
            assert!(ports.insert(fake.udp_addr().port()), "port {} given twice", fake.udp_addr().port());
            fakes.push((fake, expected));
        }
        for (fake, expected) in &fakes {
            for _ in 0..3 {
                let (_, lines) = ask(fake.udp_addr(), "fake.test", RecordType::A).await.unwrap();
                assert_eq!(lines, [expected.as_str()], "answered by another fake");
            }
        }
    }

    #[tokio::test]
    async fn dropping_it_stops_the_server() {
        let dns = FakeDns::builder().record("api.svc.test. IN A 10.0.0.1").start().await.unwrap();
        let address = dns.udp_addr();
        assert!(ask(address, "api.svc.test", RecordType::A).await.is_some());
        drop(dns);
        let stopped = crate::eventually(PATIENCE, || async move {
            udp_exchange(address, &query("api.svc.test", RecordType::A), Duration::from_millis(100)).await.is_none()
        })
        .await;
        assert!(stopped, "still answering after the FakeDns was dropped");
    }
}
