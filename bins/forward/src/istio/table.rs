//! Istio's DNS name table as istio-agent builds and consults it
//! (`pkg/dns/server/name_table.go`, `pkg/dns/client/dns.go`): hosts with
//! their addresses, the Kubernetes short forms of a Service, the
//! search-domain shortcut, and wildcard hosts matched label by label.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use signpost_rules::{IstioAllocator, IstioService};

use super::manifests::{MeshService, Registry, Resolution};

/// The TTL of every local answer (istio-agent's `defaultTTLInSeconds`).
pub const TTL: u32 = 30;

/// What the table is built with besides the services.
#[derive(Clone, Debug)]
pub struct TableOptions {
    /// The proxy's namespace: its Services answer to their short name.
    pub namespace: String,
    /// The cluster domain (`cluster.local`).
    pub cluster_domain: String,
    /// The resolv.conf search list; its first entry gets the CNAME shortcut.
    pub search: Vec<String>,
    /// Give ServiceEntry hosts without addresses one (`ISTIO_META_DNS_AUTO_ALLOCATE`).
    pub auto_allocate: bool,
    /// Which istiod allocator.
    pub allocator: IstioAllocator,
    /// Answer AAAA with the hashed allocator's IPv6 addresses too (a dual-stack proxy).
    pub dual_stack: bool,
}

/// A record of a local answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// `owner A address`.
    A(String, Ipv4Addr),
    /// `owner AAAA address`.
    Aaaa(String, Ipv6Addr),
    /// `owner CNAME target`.
    Cname(String, String),
}

/// The lookup table (names end with a dot and are lowercase).
#[derive(Clone, Debug, Default)]
pub struct NameTable {
    all_hosts: HashSet<String>,
    v4: HashMap<String, Vec<Ipv4Addr>>,
    v6: HashMap<String, Vec<Ipv6Addr>>,
    cname: HashMap<String, String>,
    /// Each host with its addresses, for the start-up report.
    entries: Vec<(String, Vec<IpAddr>)>,
}

/// One host of the name table before its alternative names are made.
struct NameInfo {
    addresses: Vec<IpAddr>,
    /// Set for Kubernetes Services: (short name, namespace).
    kubernetes: Option<(String, String)>,
}

impl NameTable {
    /// Build the table from the services in manifest order.
    pub fn build(services: &[MeshService], options: &TableOptions) -> Self {
        let allocated = if options.auto_allocate {
            let candidates: Vec<IstioService> = services
                .iter()
                .map(|service| IstioService {
                    namespace: service.namespace.clone(),
                    hostname: service.hostname.clone(),
                    allocatable: service.registry == Registry::ServiceEntry
                        && !service.has_addresses
                        && !service.hostname.starts_with('*')
                        && service.resolution != Resolution::None,
                })
                .collect();
            options.allocator.allocate(&candidates)
        } else {
            vec![None; services.len()]
        };
        // istiod's BuildNameTable: the first Kubernetes entry of a host wins
        // over ServiceEntries; ServiceEntries for one host merge their addresses.
        let mut order: Vec<String> = Vec::new();
        let mut table: HashMap<String, NameInfo> = HashMap::new();
        for (service, automatic) in services.iter().zip(allocated) {
            let mut addresses = service.addresses.clone();
            if let Some(automatic) = automatic {
                addresses.push(IpAddr::V4(automatic.v4));
                if options.dual_stack {
                    addresses.extend(automatic.v6.map(IpAddr::V6));
                }
            }
            if addresses.is_empty() {
                continue;
            }
            let kubernetes = match &service.registry {
                Registry::Kubernetes { name } => Some((name.clone(), service.namespace.clone())),
                Registry::ServiceEntry => None,
            };
            match table.get_mut(&service.hostname) {
                None => {
                    order.push(service.hostname.clone());
                    table.insert(service.hostname.clone(), NameInfo { addresses, kubernetes });
                }
                Some(existing) if existing.kubernetes.is_none() => {
                    if kubernetes.is_some() {
                        *existing = NameInfo { addresses, kubernetes };
                    } else {
                        existing.addresses.extend(addresses);
                    }
                }
                Some(_) => {}
            }
        }
        let proxy_domain = format!("svc.{}", options.cluster_domain.trim_matches('.'));
        let mut out = Self::default();
        for hostname in order {
            let Some(info) = table.get(&hostname) else { continue };
            let alternatives = alternative_hosts(&hostname, info, &options.namespace, &proxy_domain);
            out.add(&alternatives, &info.addresses, &options.search);
            out.entries.push((hostname, info.addresses.clone()));
        }
        out
    }

    /// `buildDNSAnswers`: each name with its records, and the first search
    /// domain appended to it as a CNAME back to it.
    fn add(&mut self, alternatives: &[String], addresses: &[IpAddr], search: &[String]) {
        let v4: Vec<Ipv4Addr> = addresses
            .iter()
            .filter_map(|address| if let IpAddr::V4(v4) = address { Some(*v4) } else { None })
            .collect();
        let v6: Vec<Ipv6Addr> = addresses
            .iter()
            .filter_map(|address| if let IpAddr::V6(v6) = address { Some(*v6) } else { None })
            .collect();
        for host in alternatives {
            self.all_hosts.insert(host.clone());
            if !v4.is_empty() {
                self.v4.insert(host.clone(), v4.clone());
            }
            if !v6.is_empty() {
                self.v6.insert(host.clone(), v6.clone());
            }
            if let Some(first) = search.first() {
                let expanded = format!("{host}{}.", first.trim_end_matches('.')).to_ascii_lowercase();
                if !alternatives.contains(&expanded) {
                    self.cname.insert(expanded.clone(), host.clone());
                    self.all_hosts.insert(expanded);
                }
            }
        }
    }

    /// The hosts of the table with their addresses, in manifest order.
    pub fn entries(&self) -> &[(String, Vec<IpAddr>)] {
        &self.entries
    }

    /// How many names answer (alternatives and shortcuts included).
    pub fn len(&self) -> usize {
        self.all_hosts.len()
    }

    /// Whether no name answers.
    pub fn is_empty(&self) -> bool {
        self.all_hosts.is_empty()
    }

    /// `lookupHost`: `None` when the name is not the table's or the type is
    /// neither A nor AAAA (the query is forwarded); otherwise the answer,
    /// which may be empty (NOERROR without records). `question` is lowercase
    /// and ends with a dot.
    pub fn lookup(&self, question: &str, want_v6: bool) -> Option<Vec<Answer>> {
        let mut hostname = question.to_owned();
        let mut wildcard = false;
        if !self.all_hosts.contains(&hostname) {
            let labels: Vec<&str> = question.trim_end_matches('.').split('.').collect();
            let found = (1..labels.len())
                .map(|index| format!("*.{}.", labels[index..].join(".")))
                .find(|candidate| self.all_hosts.contains(candidate));
            hostname = found?;
            wildcard = true;
        }
        let mut out = Vec::new();
        if let Some(target) = self.cname.get(&hostname) {
            out.push(Answer::Cname(question.to_owned(), target.clone()));
            hostname = target.clone();
        }
        // A wildcard's records take the question's name unless a CNAME leads to them.
        let owner = if wildcard && out.is_empty() { question.to_owned() } else { hostname.clone() };
        let records: Vec<Answer> = if want_v6 {
            self.v6.get(&hostname).into_iter().flatten().map(|address| Answer::Aaaa(owner.clone(), *address)).collect()
        } else {
            self.v4.get(&hostname).into_iter().flatten().map(|address| Answer::A(owner.clone(), *address)).collect()
        };
        if records.is_empty() {
            // istio-agent sends the CNAME only together with addresses.
            return Some(Vec::new());
        }
        out.extend(records);
        Some(out)
    }
}

/// `generateAltHosts`: a Kubernetes Service in the proxy's cluster domain
/// also answers as `name.namespace`, `name.namespace.svc` and, in the
/// proxy's own namespace, `name`.
fn alternative_hosts(hostname: &str, info: &NameInfo, proxy_namespace: &str, proxy_domain: &str) -> Vec<String> {
    let mut out = vec![format!("{hostname}.")];
    let Some((name, namespace)) = &info.kubernetes else { return out };
    if !hostname.ends_with(proxy_domain) {
        return out;
    }
    out.push(format!("{name}.{namespace}."));
    if namespace == proxy_namespace {
        out.push(format!("{name}."));
    }
    let first_part = proxy_domain.split('.').next().unwrap_or("svc");
    out.push(format!("{name}.{namespace}.{first_part}."));
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn entry(hostname: &str, namespace: &str, addresses: &[&str]) -> MeshService {
        MeshService {
            hostname: hostname.into(),
            namespace: namespace.into(),
            registry: Registry::ServiceEntry,
            addresses: addresses.iter().map(|text| text.parse().unwrap()).collect(),
            has_addresses: !addresses.is_empty(),
            resolution: Resolution::Static,
            file: PathBuf::from("se.yaml"),
        }
    }

    fn options() -> TableOptions {
        TableOptions {
            namespace: "bookinfo".into(),
            cluster_domain: "cluster.local".into(),
            search: vec!["bookinfo.svc.cluster.local".into(), "svc.cluster.local".into()],
            auto_allocate: true,
            allocator: IstioAllocator::Sequential,
            dual_stack: false,
        }
    }

    fn text(answers: Option<Vec<Answer>>) -> Option<Vec<String>> {
        answers.map(|answers| {
            answers
                .iter()
                .map(|answer| match answer {
                    Answer::A(owner, address) => format!("{owner} A {address}"),
                    Answer::Aaaa(owner, address) => format!("{owner} AAAA {address}"),
                    Answer::Cname(owner, target) => format!("{owner} CNAME {target}"),
                })
                .collect()
        })
    }

    #[test]
    fn the_documents_two_service_entries() {
        let services =
            [entry("address.internal", "default", &["198.51.100.0"]), entry("auto.internal", "default", &[])];
        let table = NameTable::build(&services, &options());
        assert_eq!(
            text(table.lookup("address.internal.", false)),
            Some(vec!["address.internal. A 198.51.100.0".into()])
        );
        assert_eq!(text(table.lookup("auto.internal.", false)), Some(vec!["auto.internal. A 240.240.0.1".into()]));
        // No IPv6 address: NOERROR, empty.
        assert_eq!(table.lookup("auto.internal.", true), Some(Vec::new()));
        // The search-domain shortcut: two queries instead of a walk down the search list.
        assert_eq!(
            text(table.lookup("auto.internal.bookinfo.svc.cluster.local.", false)),
            Some(vec![
                "auto.internal.bookinfo.svc.cluster.local. CNAME auto.internal.".into(),
                "auto.internal. A 240.240.0.1".into()
            ])
        );
        // Only the first search domain.
        assert_eq!(table.lookup("auto.internal.svc.cluster.local.", false), None);
        assert_eq!(table.lookup("www.example.com.", false), None);
    }

    #[test]
    fn kubernetes_short_names_follow_the_proxys_namespace() {
        let mut reviews = entry("reviews.bookinfo.svc.cluster.local", "bookinfo", &["10.96.0.10"]);
        reviews.registry = Registry::Kubernetes { name: "reviews".into() };
        let mut db = entry("db.data.svc.cluster.local", "data", &["10.96.0.20"]);
        db.registry = Registry::Kubernetes { name: "db".into() };
        let table = NameTable::build(&[reviews, db], &options());
        for name in ["reviews.", "reviews.bookinfo.", "reviews.bookinfo.svc.", "reviews.bookinfo.svc.cluster.local."] {
            assert_eq!(text(table.lookup(name, false)), Some(vec![format!("{name} A 10.96.0.10")]), "{name}");
        }
        assert_eq!(text(table.lookup("db.data.", false)), Some(vec!["db.data. A 10.96.0.20".into()]));
        assert_eq!(table.lookup("db.", false), None, "another namespace's short name");
        // reviews.bookinfo.svc.cluster.local is itself an alternative: no CNAME to itself.
        assert_eq!(
            text(table.lookup("reviews.bookinfo.svc.cluster.local.", false)),
            Some(vec!["reviews.bookinfo.svc.cluster.local. A 10.96.0.10".into()])
        );
    }

    #[test]
    fn wildcards_merging_and_what_gets_no_address() {
        let mut none = entry("passthrough.internal", "default", &[]);
        none.resolution = Resolution::None;
        let services = [
            entry("*.wild.example", "default", &["192.0.2.7"]),
            entry("multi.example", "default", &["192.0.2.1"]),
            entry("multi.example", "default", &["192.0.2.2", "2001:db8::2"]),
            entry("*.auto.example", "default", &[]),
            none,
        ];
        let table = NameTable::build(&services, &options());
        assert_eq!(text(table.lookup("a.b.wild.example.", false)), Some(vec!["a.b.wild.example. A 192.0.2.7".into()]));
        assert_eq!(table.lookup("wild.example.", false), None);
        assert_eq!(table.lookup("multi.example.", false).map(|answers| answers.len()), Some(2));
        assert_eq!(text(table.lookup("multi.example.", true)), Some(vec!["multi.example. AAAA 2001:db8::2".into()]));
        assert_eq!(table.lookup("x.auto.example.", false), None, "wildcards get no automatic address");
        assert_eq!(table.lookup("passthrough.internal.", false), None, "resolution NONE gets none");
        let without = TableOptions { auto_allocate: false, ..options() };
        assert_eq!(
            NameTable::build(&[entry("auto.internal", "default", &[])], &without).lookup("auto.internal.", false),
            None
        );
    }

    #[test]
    fn the_hashed_allocator_gives_ipv6_to_dual_stack_proxies() {
        let services = [entry("auto.internal", "default", &[])];
        let hashed = TableOptions { allocator: IstioAllocator::Hashed, dual_stack: true, ..options() };
        let table = NameTable::build(&services, &hashed);
        let expected = IstioAllocator::Hashed.allocate(&[IstioService {
            namespace: "default".into(),
            hostname: "auto.internal".into(),
            allocatable: true,
        }]);
        let expected = expected[0].unwrap();
        assert_eq!(
            text(table.lookup("auto.internal.", false)),
            Some(vec![format!("auto.internal. A {}", expected.v4)])
        );
        assert_eq!(
            text(table.lookup("auto.internal.", true)),
            Some(vec![format!("auto.internal. AAAA {}", expected.v6.unwrap())])
        );
    }
}
