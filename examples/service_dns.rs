//! A service that finds its database through DNS, and its test suite with
//! Signpost as the DNS: a fake zone, a second fake standing in for the
//! internet, faults, changes while running, and assertions on what the
//! service asked.
//!
//! ```sh
//! cargo test -p signpost-examples --example service_dns   # the suite
//! cargo run -p signpost-examples --example service_dns    # one run, printed
//! ```
//!
//! Everything is on 127.0.0.1: the service's resolver is built from an
//! explicit configuration naming the fake server, never from
//! /etc/resolv.conf or the hosts file.
#![allow(clippy::print_stdout)]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::ResolveHosts;
use hickory_resolver::net::runtime::TokioRuntimeProvider;

/// The code under test: finds the database's addresses, the primary's or,
/// when the primary's name does not resolve, the replica's.
pub struct Discovery {
    resolver: TokioResolver,
}

impl Discovery {
    /// A resolver asking only `dns` (UDP, then TCP after a truncated answer).
    pub fn new(dns: SocketAddr) -> Result<Self, String> {
        let config = signpost_testkit::resolver_config(dns);
        let mut builder = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
        let options = builder.options_mut();
        options.use_hosts_file = ResolveHosts::Never;
        options.cache_size = 0;
        options.attempts = 1;
        options.timeout = Duration::from_millis(500);
        Ok(Self { resolver: builder.build().map_err(|error| error.to_string())? })
    }

    /// The database's addresses.
    pub async fn database(&self) -> Result<Vec<IpAddr>, String> {
        match self.addresses("db-primary.svc.test.").await {
            Ok(addresses) => Ok(addresses),
            Err(_) => self.addresses("db-replica.svc.test.").await,
        }
    }

    /// Where telemetry goes: a public name.
    pub async fn telemetry(&self) -> Result<Vec<IpAddr>, String> {
        self.addresses("telemetry.example.com.").await
    }

    async fn addresses(&self, name: &str) -> Result<Vec<IpAddr>, String> {
        let lookup = self.resolver.lookup_ip(name).await.map_err(|error| format!("{name}: {error}"))?;
        Ok(lookup.iter().collect())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dns = signpost_testkit::FakeDns::builder()
        .zone("svc.test", "db-primary IN A 10.0.0.5\ndb-replica IN A 10.0.0.6")
        .start()
        .await?;
    let discovery = Discovery::new(dns.udp_addr())?;
    println!("fake DNS on {}; the database is at {:?}", dns.udp_addr(), discovery.database().await?);
    for query in dns.queries() {
        println!("  asked: {}", signpost_testkit::describe_query(&query));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use signpost_testkit::{FakeDns, FaultAction, Transport};
    use signpost_wire::{Rcode, RecordType};

    use super::*;

    const ZONE: &str = "db-primary IN A 10.0.0.5\ndb-replica IN A 10.0.0.6";

    fn ip(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    #[tokio::test]
    async fn the_primary_is_found() -> Result<(), Box<dyn std::error::Error>> {
        let dns = FakeDns::builder().zone("svc.test", ZONE).start().await?;
        let discovery = Discovery::new(dns.udp_addr())?;
        assert_eq!(discovery.database().await?, [ip(10, 0, 0, 5)]);
        dns.expect("db-primary.svc.test").qtype(RecordType::A).rcode(Rcode::NOERROR).once();
        dns.assert_not_queried("db-replica.svc.test");
        Ok(())
    }

    #[tokio::test]
    async fn a_failing_primary_sends_the_service_to_the_replica() -> Result<(), Box<dyn std::error::Error>> {
        let dns = FakeDns::builder()
            .zone("svc.test", ZONE)
            .fault("db-primary.svc.test", FaultAction::ServFail)
            .start()
            .await?;
        let discovery = Discovery::new(dns.udp_addr())?;
        assert_eq!(discovery.database().await?, [ip(10, 0, 0, 6)]);
        dns.expect("db-primary.svc.test").qtype(RecordType::A).rcode(Rcode::SERVFAIL).at_least(1);
        dns.assert_queried("db-replica.svc.test", RecordType::A);
        Ok(())
    }

    #[tokio::test]
    async fn a_silent_primary_costs_one_timeout() -> Result<(), Box<dyn std::error::Error>> {
        let dns =
            FakeDns::builder().zone("svc.test", ZONE).fault("db-primary.svc.test", FaultAction::Drop).start().await?;
        let discovery = Discovery::new(dns.udp_addr())?;
        assert_eq!(discovery.database().await?, [ip(10, 0, 0, 6)]);
        let dropped = dns.wait_for("db-primary.svc.test", RecordType::A, Duration::from_secs(5)).await?;
        assert_eq!((dropped.rcode, dropped.decision.as_str()), (None, "drop"));
        Ok(())
    }

    #[tokio::test]
    async fn big_answers_come_over_tcp() -> Result<(), Box<dyn std::error::Error>> {
        let dns = FakeDns::builder().zone("svc.test", ZONE).fault("svc.test", FaultAction::Truncate).start().await?;
        let discovery = Discovery::new(dns.udp_addr())?;
        assert_eq!(discovery.database().await?, [ip(10, 0, 0, 5)]);
        dns.expect("db-primary.svc.test").qtype(RecordType::A).transport(Transport::Udp).once();
        dns.expect("db-primary.svc.test").qtype(RecordType::A).transport(Transport::Tcp).once();
        Ok(())
    }

    #[tokio::test]
    async fn public_names_go_to_the_upstream() -> Result<(), Box<dyn std::error::Error>> {
        // A second Signpost stands in for the internet.
        let internet = FakeDns::builder().record("telemetry.example.com. 300 IN A 192.0.2.10").start().await?;
        let dns = FakeDns::builder().zone("svc.test", ZONE).forward_to(internet.udp_addr()).start().await?;
        let discovery = Discovery::new(dns.udp_addr())?;
        assert_eq!(discovery.telemetry().await?, [ip(192, 0, 2, 10)]);
        assert_eq!(discovery.database().await?, [ip(10, 0, 0, 5)]);
        dns.expect("telemetry.example.com").decision("forward").at_least(1);
        internet.assert_queried("telemetry.example.com", RecordType::A);
        internet.assert_not_queried("db-primary.svc.test");
        Ok(())
    }

    #[tokio::test]
    async fn a_moved_database_is_followed() -> Result<(), Box<dyn std::error::Error>> {
        let dns = FakeDns::builder().zone("svc.test", ZONE).start().await?;
        let discovery = Discovery::new(dns.udp_addr())?;
        assert_eq!(discovery.database().await?, [ip(10, 0, 0, 5)]);
        dns.set_zone("svc.test", "db-primary IN A 10.0.1.5")?;
        assert_eq!(discovery.database().await?, [ip(10, 0, 1, 5)]);
        let why = dns.explain("db-primary.svc.test", RecordType::A).await?;
        assert_eq!(why.matched, "zone svc.test.");
        Ok(())
    }
}
