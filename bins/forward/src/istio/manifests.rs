//! Kubernetes manifests the Istio mode reads: `ServiceEntry`
//! (networking.istio.io) and `Service` (v1), from YAML or JSON files, with
//! several documents per file and `List` objects (`kubectl get -o yaml`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Deserialize;
use signpost_rules::Location;

use crate::error::ConfigError;

/// How a ServiceEntry's endpoints are found (`spec.resolution`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Resolution {
    /// Passthrough: no address is allocated.
    None,
    /// Endpoints listed in the entry.
    #[default]
    Static,
    /// Endpoints resolved by DNS.
    Dns,
    /// DNS, round robin.
    #[serde(rename = "DNS_ROUND_ROBIN")]
    DnsRoundRobin,
}

/// One host of the mesh's registry, in the order the manifests give it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeshService {
    /// The host, lowercased, without a trailing dot (`reviews.bookinfo.svc.cluster.local`, `*.example.com`).
    pub hostname: String,
    /// The namespace of the resource.
    pub namespace: String,
    /// Where it came from.
    pub registry: Registry,
    /// The addresses the resource gives (a ServiceEntry's `addresses`, a Service's cluster IPs).
    pub addresses: Vec<IpAddr>,
    /// Whether the resource gave addresses at all (CIDRs and unparsable ones included):
    /// such a host never gets an automatic one.
    pub has_addresses: bool,
    /// A ServiceEntry's resolution.
    pub resolution: Resolution,
    /// The file it was read from.
    pub file: PathBuf,
}

/// Which registry a host comes from (Istio's `provider.ID`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Registry {
    /// A Kubernetes Service: its short name answers inside its namespace.
    Kubernetes {
        /// `metadata.name`.
        name: String,
    },
    /// A ServiceEntry.
    ServiceEntry,
}

#[derive(Deserialize)]
struct Object {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    spec: serde_json::Value,
    #[serde(default)]
    items: Vec<serde_json::Value>,
}

#[derive(Default, Deserialize)]
struct Metadata {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Default, Deserialize)]
struct ServiceEntrySpec {
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    addresses: Vec<String>,
    #[serde(default)]
    resolution: Option<Resolution>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceSpec {
    /// Kubernetes spells it `clusterIP`, which camelCase would not give.
    #[serde(default, rename = "clusterIP")]
    cluster_ip: Option<String>,
    #[serde(default, rename = "clusterIPs")]
    cluster_ips: Vec<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

/// Where resources without a namespace go, and the cluster's DNS domain.
#[derive(Clone, Copy, Debug)]
pub struct Defaults<'a> {
    /// The namespace of resources that name none (`kubectl apply`'s current namespace).
    pub namespace: &'a str,
    /// The cluster domain (`cluster.local`): a Service is `name.namespace.svc.<domain>`.
    pub cluster_domain: &'a str,
}

/// Read every `.yaml`, `.yml` and `.json` file of `path` (a directory,
/// in name order, hidden files and ConfigMap `..data` links skipped) or
/// the file itself.
pub fn read_manifests(path: &Path, defaults: Defaults<'_>) -> Result<Vec<MeshService>, ConfigError> {
    let io = |error| ConfigError::from(signpost_rules::Error::io(Location::default(), path, error));
    let files = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(io)?
            .filter_map(Result::ok)
            .filter(|entry| !entry.file_name().to_string_lossy().starts_with('.'))
            .map(|entry| entry.path())
            .filter(|file| {
                file.extension().and_then(|extension| extension.to_str()).is_some_and(|extension| {
                    ["yaml", "yml", "json"].iter().any(|known| extension.eq_ignore_ascii_case(known))
                }) && file.is_file()
            })
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut services = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .map_err(|error| ConfigError::from(signpost_rules::Error::io(Location::default(), &file, error)))?;
        parse_manifests(&text, &file, defaults, &mut services)?;
    }
    Ok(services)
}

/// Read the documents of one file into `out`. Other kinds are skipped.
pub fn parse_manifests(
    text: &str,
    file: &Path,
    defaults: Defaults<'_>,
    out: &mut Vec<MeshService>,
) -> Result<(), ConfigError> {
    for (index, document) in serde_norway::Deserializer::from_str(text).enumerate() {
        let value = serde_json::Value::deserialize(document).map_err(|source| ConfigError::Manifest {
            at: Location {
                file: Some(file.to_path_buf()),
                line: source.location().map(|at| at.line()),
                ..Location::default()
            },
            source: Box::new(source),
        })?;
        if value.is_null() {
            continue;
        }
        add_object(value, file, &format!("documents[{index}]"), defaults, out)?;
    }
    Ok(())
}

fn add_object(
    value: serde_json::Value,
    file: &Path,
    field: &str,
    defaults: Defaults<'_>,
    out: &mut Vec<MeshService>,
) -> Result<(), ConfigError> {
    let at = |field: String| Location { file: Some(file.to_path_buf()), field: Some(field), ..Location::default() };
    let shape =
        |source: serde_json::Error, field: String| ConfigError::Manifest { at: at(field), source: Box::new(source) };
    let object: Object = serde_json::from_value(value).map_err(|source| shape(source, field.to_owned()))?;
    let namespace = object.metadata.namespace.clone().unwrap_or_else(|| defaults.namespace.to_owned());
    match object.kind.as_str() {
        "List" | "ServiceEntryList" | "ServiceList" => {
            for (index, item) in object.items.into_iter().enumerate() {
                add_object(item, file, &format!("{field}.items[{index}]"), defaults, out)?;
            }
        }
        "ServiceEntry" => {
            let spec: ServiceEntrySpec =
                serde_json::from_value(object.spec).map_err(|source| shape(source, format!("{field}.spec")))?;
            let addresses: Vec<IpAddr> = spec.addresses.iter().filter_map(|text| single_address(text)).collect();
            for host in &spec.hosts {
                out.push(MeshService {
                    hostname: host.trim_end_matches('.').to_ascii_lowercase(),
                    namespace: namespace.clone(),
                    registry: Registry::ServiceEntry,
                    addresses: addresses.clone(),
                    has_addresses: !spec.addresses.is_empty(),
                    resolution: spec.resolution.unwrap_or_default(),
                    file: file.to_path_buf(),
                });
            }
        }
        "Service" => {
            let spec: ServiceSpec =
                serde_json::from_value(object.spec).map_err(|source| shape(source, format!("{field}.spec")))?;
            if spec.kind.as_deref() == Some("ExternalName") {
                // kube-dns answers those with a CNAME; Istio's table leaves them to it.
                return Ok(());
            }
            let mut texts = spec.cluster_ips;
            if texts.is_empty() {
                texts.extend(spec.cluster_ip);
            }
            // Headless services ("None") need their endpoints, which are not read here.
            let addresses: Vec<IpAddr> = texts.iter().filter_map(|text| text.parse().ok()).collect();
            if addresses.is_empty() || object.metadata.name.is_empty() {
                return Ok(());
            }
            let name = object.metadata.name.to_ascii_lowercase();
            out.push(MeshService {
                hostname: format!("{name}.{namespace}.svc.{}", defaults.cluster_domain),
                namespace,
                registry: Registry::Kubernetes { name },
                addresses,
                has_addresses: true,
                resolution: Resolution::Static,
                file: file.to_path_buf(),
            });
        }
        _ => {}
    }
    Ok(())
}

/// An address of a ServiceEntry's `addresses`: an IP, or a CIDR covering
/// one address. Wider CIDRs give no DNS answer (istiod skips them too).
fn single_address(text: &str) -> Option<IpAddr> {
    if let Ok(address) = text.parse::<IpAddr>() {
        return Some(address);
    }
    let network: IpNet = text.parse().ok()?;
    (network.prefix_len() == network.max_prefix_len()).then(|| network.addr())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: Defaults<'static> = Defaults { namespace: "default", cluster_domain: "cluster.local" };

    /// The entries of `text`, read as the file `file`, which must read.
    fn parsed(text: &str, file: &str) -> Vec<MeshService> {
        let mut out = Vec::new();
        parse_manifests(text, Path::new(file), DEFAULTS, &mut out).unwrap();
        out
    }

    #[test]
    fn the_documents_service_entries_and_a_service_list_are_read() {
        let text = "apiVersion: networking.istio.io/v1beta1\nkind: ServiceEntry\nmetadata:\n  name: external-address\nspec:\n  addresses:\n  - 198.51.100.0\n  hosts:\n  - address.internal\n  ports:\n  - name: http\n    number: 80\n    protocol: HTTP\n---\napiVersion: networking.istio.io/v1beta1\nkind: ServiceEntry\nmetadata:\n  name: external-auto\n  namespace: shop\nspec:\n  hosts:\n  - Auto.Internal\n  resolution: DNS\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: reviews, namespace: bookinfo}\n  spec: {clusterIP: 10.96.0.10, clusterIPs: [10.96.0.10, 'fd00::10']}\n- apiVersion: v1\n  kind: Service\n  metadata: {name: db, namespace: bookinfo}\n  spec: {clusterIP: None}\n- kind: ConfigMap\n  metadata: {name: other}\n";
        let out = parsed(text, "se.yaml");
        assert_eq!(out.len(), 3, "{out:?}");
        assert_eq!(out[0].hostname, "address.internal");
        assert_eq!(out[0].namespace, "default");
        assert_eq!(out[0].addresses, ["198.51.100.0".parse::<IpAddr>().unwrap()]);
        assert_eq!((out[1].hostname.as_str(), out[1].namespace.as_str()), ("auto.internal", "shop"));
        assert_eq!((out[1].resolution, out[1].has_addresses), (Resolution::Dns, false));
        assert_eq!(out[2].registry, Registry::Kubernetes { name: "reviews".into() });
        assert_eq!(out[2].hostname, "reviews.bookinfo.svc.cluster.local");
        assert_eq!(out[2].addresses.len(), 2);
    }

    /// A Service as `kubectl get -o yaml` writes it, with `clusterIP` alone
    /// (older clusters have no `clusterIPs`).
    #[test]
    fn a_service_with_cluster_ip_alone_is_read() {
        let text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: reviews\n  namespace: bookinfo\nspec:\n  clusterIP: 10.96.0.10\n  ports:\n  - port: 9080\n";
        let out = parsed(text, "reviews.yaml");
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].hostname, "reviews.bookinfo.svc.cluster.local");
        assert_eq!(out[0].addresses, ["10.96.0.10".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn json_files_and_bad_documents() {
        let json = r#"{"kind":"ServiceEntry","metadata":{"name":"a"},"spec":{"hosts":["a.example"],"addresses":["10.0.0.0/24","10.0.0.9/32"]}}"#;
        let mut out = parsed(json, "a.json");
        assert_eq!(out[0].addresses, ["10.0.0.9".parse::<IpAddr>().unwrap()]);
        assert!(out[0].has_addresses);
        let error = parse_manifests("kind: ServiceEntry\nspec:\n  hosts: 7\n", Path::new("b.yaml"), DEFAULTS, &mut out)
            .unwrap_err()
            .to_string();
        assert!(error.contains("b.yaml") && error.contains("documents[0].spec"), "{error}");
        let error = parse_manifests("kind: [\n", Path::new("c.yaml"), DEFAULTS, &mut out).unwrap_err().to_string();
        assert!(error.contains("c.yaml"), "{error}");
    }
}
