//! Route 53 (`route53`, REST-XML under `/2013-04-01/`): hosted zones,
//! their records and VPC associations, changes and tags.
//!
//! A reusable piece: [`router`] serves any [`ControlPlane`], whatever its
//! runtime does with the zones (the endpoint serves private zones to their
//! VPCs; a front end without VPCs may serve every zone to everyone).
//! Records are kept in the model as presentation-format strings, one per
//! record, names absolute; a zone read from a master file is written out
//! as such strings the first time the API changes it.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use signpost_wire::{NameBuf, RecordBuf, RecordType};

use super::error::{ApiError, xml_escape};
use crate::control::{ChangeRecord, ControlPlane, Kind, Mutation, Runtime};
use crate::model::{EndpointConfig, HostedZoneConfig, Tags, VpcAssociation};

/// The XML namespace of Route 53.
pub const NAMESPACE: &str = "https://route53.amazonaws.com/doc/2013-04-01/";

/// The operations this module answers.
pub const OPERATIONS: &[&str] = &[
    "AssociateVPCWithHostedZone",
    "ChangeResourceRecordSets",
    "ChangeTagsForResource",
    "CreateHostedZone",
    "DeleteHostedZone",
    "DisassociateVPCFromHostedZone",
    "GetChange",
    "GetHostedZone",
    "GetHostedZoneCount",
    "ListHostedZones",
    "ListHostedZonesByName",
    "ListHostedZonesByVPC",
    "ListResourceRecordSets",
    "ListTagsForResource",
    "ListTagsForResources",
    "UpdateHostedZoneComment",
];

/// The name servers Route 53 gives private zones (and, here, public ones).
const NAME_SERVERS: [&str; 4] =
    ["ns-1536.awsdns-00.co.uk.", "ns-0.awsdns-00.com.", "ns-1024.awsdns-00.org.", "ns-512.awsdns-00.net."];

/// The Route 53 routes, to mount under `/2013-04-01`.
pub fn router<R: Runtime>(control: Arc<ControlPlane<R>>) -> Router {
    Router::new()
        .route("/hostedzone", post(create_hosted_zone::<R>).get(list_hosted_zones::<R>))
        .route("/hostedzonesbyname", get(list_hosted_zones_by_name::<R>))
        .route("/hostedzonesbyvpc", get(list_hosted_zones_by_vpc::<R>))
        .route("/hostedzonecount", get(hosted_zone_count::<R>))
        .route("/hostedzone/{id}", get(get_hosted_zone::<R>).delete(delete_hosted_zone::<R>).post(update_comment::<R>))
        .route("/hostedzone/{id}/rrset", get(list_record_sets::<R>).post(change_record_sets::<R>))
        .route("/hostedzone/{id}/rrset/", get(list_record_sets::<R>).post(change_record_sets::<R>))
        .route("/hostedzone/{id}/associatevpc", post(associate_vpc::<R>))
        .route("/hostedzone/{id}/disassociatevpc", post(disassociate_vpc::<R>))
        .route("/change/{id}", get(get_change::<R>))
        .route("/tags/{kind}/{id}", post(change_tags::<R>).get(list_tags::<R>))
        .route("/tags/{kind}", post(list_tags_for_resources::<R>))
        .fallback(unknown)
        .with_state(control)
}

type Control<R> = State<Arc<ControlPlane<R>>>;

/// A Route 53 answer or error, as XML.
struct Xml(Result<(StatusCode, String), ApiError>, Option<String>);

impl Xml {
    /// 200 with what `build` writes, or its error.
    fn answer(build: impl FnOnce() -> Result<String, ApiError>) -> Self {
        Self(build().map(|text| (StatusCode::OK, text)), None)
    }
}

impl IntoResponse for Xml {
    fn into_response(self) -> Response {
        let request_id = super::request_id();
        let (status, body) = match self.0 {
            Ok(answer) => answer,
            Err(error) => (error.status, error_body(&error, &request_id)),
        };
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert("content-type", HeaderValue::from_static("text/xml"));
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            headers.insert("x-amzn-requestid", value);
        }
        if let Some(location) = self.1.and_then(|location| HeaderValue::from_str(&location).ok()) {
            headers.insert("location", location);
        }
        response
    }
}

/// A Route 53 error body.
pub fn error_body(error: &ApiError, request_id: &str) -> String {
    let kind = if error.status.is_server_error() { "Receiver" } else { "Sender" };
    format!(
        "<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"{NAMESPACE}\"><Error><Type>{kind}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>",
        xml_escape(&error.code),
        xml_escape(&error.message)
    )
}

async fn unknown() -> Xml {
    Xml(
        Err(ApiError::new(
            "UnknownOperation",
            StatusCode::NOT_FOUND,
            "signpost-endpoint does not answer this Route 53 path (docs/endpoint-api.md lists what it answers).",
        )),
        None,
    )
}

fn xml<T: Serialize>(root: &str, body: &T) -> Result<String, ApiError> {
    #[derive(Serialize)]
    struct Envelope<'a, B> {
        #[serde(rename = "@xmlns")]
        xmlns: &'static str,
        #[serde(flatten)]
        body: &'a B,
    }
    let text = quick_xml::se::to_string_with_root(root, &Envelope { xmlns: NAMESPACE, body })
        .map_err(|error| ApiError::internal(format!("cannot write the answer: {error}")))?;
    Ok(format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{text}"))
}

fn ok<T: Serialize>(root: &str, body: &T) -> Xml {
    Xml(xml(root, body).map(|text| (StatusCode::OK, text)), None)
}

fn parse_body<'de, T: Deserialize<'de>>(body: &'de str) -> Result<T, ApiError> {
    quick_xml::de::from_str(body)
        .map_err(|error| ApiError::bad_request("InvalidInput", format!("The XML document is not valid: {error}")))
}

fn no_such_zone(id: &str) -> ApiError {
    ApiError::new("NoSuchHostedZone", StatusCode::NOT_FOUND, format!("No hosted zone found with ID: {id}"))
}

/// `/hostedzone/Z123` or `Z123` to `Z123`.
fn bare_id(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

fn find_zone<'c>(config: &'c EndpointConfig, id: &str) -> Result<(&'c HostedZoneConfig, bool), ApiError> {
    let id = bare_id(id);
    config
        .private_hosted_zones
        .iter()
        .find(|zone| zone.zone_id() == id)
        .map(|zone| (zone, true))
        .or_else(|| config.public_hosted_zones.iter().find(|zone| zone.zone_id() == id).map(|zone| (zone, false)))
        .ok_or_else(|| no_such_zone(id))
}

fn zone_mut<'c>(config: &'c mut EndpointConfig, id: &str) -> Option<(&'c mut HostedZoneConfig, Kind)> {
    if let Some(zone) = config.private_hosted_zones.iter_mut().find(|zone| zone.zone_id() == id) {
        return Some((zone, Kind::PrivateHostedZone));
    }
    config.public_hosted_zones.iter_mut().find(|zone| zone.zone_id() == id).map(|zone| (zone, Kind::PublicHostedZone))
}

fn all_zones(config: &EndpointConfig) -> impl Iterator<Item = (&HostedZoneConfig, bool)> {
    config
        .private_hosted_zones
        .iter()
        .map(|zone| (zone, true))
        .chain(config.public_hosted_zones.iter().map(|zone| (zone, false)))
}

/// A zone's apex name.
fn apex(zone: &HostedZoneConfig) -> Result<NameBuf, ApiError> {
    zone.name.parse().map_err(|error| {
        ApiError::bad_request("InvalidDomainName", format!("{} is not a valid domain name: {error}", zone.name))
    })
}

/// Every record of a zone (its master file's and its inline records, with
/// an SOA), as the model builds it.
fn zone_records(config: &EndpointConfig, zone: &HostedZoneConfig) -> Result<Vec<RecordBuf>, ApiError> {
    let built = config
        .hosted_zone(zone)
        .map_err(|error| ApiError::internal(format!("the zone {} cannot be read: {error}", zone.zone_id())))?;
    Ok(built.records().cloned().collect())
}

/// One resource record set: a name and type with its TTL and records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RecordSet {
    name: NameBuf,
    rtype: RecordType,
    ttl: u32,
    records: Vec<RecordBuf>,
}

pub(crate) type RecordSets = BTreeMap<(NameBuf, String), RecordSet>;

pub(crate) fn record_sets(records: Vec<RecordBuf>) -> RecordSets {
    let mut sets = RecordSets::new();
    for record in records {
        let key = (record.name.to_lowercase(), record.rtype().to_string());
        let set = sets.entry(key).or_insert_with(|| RecordSet {
            name: record.name.to_lowercase(),
            rtype: record.rtype(),
            ttl: record.ttl,
            records: Vec::new(),
        });
        set.ttl = set.ttl.min(record.ttl);
        if !set.records.iter().any(|known| known.data == record.data) {
            set.records.push(record);
        }
    }
    sets
}

/// A name as Route 53 prints it: lowercase, with the final dot, and every
/// character other than a-z, 0-9, `-`, `_` and `.` as a three-digit
/// octal escape (`*.example.com.` is `\052.example.com.`).
fn route53_name(name: &NameBuf) -> String {
    let text = name.to_lowercase().to_string();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c) {
            out.push(c);
        } else if c.is_ascii() {
            out.push_str(&format!("\\{:03o}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// A name as Route 53 takes it: octal escapes (`\052`) made characters,
/// so the DNS name parser (whose `\DDD` is decimal) sees `*`.
fn parse_route53_name(text: &str) -> Result<NameBuf, signpost_wire::Error> {
    let mut plain = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('\\') {
        plain.push_str(rest.get(..at).unwrap_or_default());
        let digits = rest.get(at + 1..at + 4).filter(|d| d.len() == 3 && d.bytes().all(|b| (b'0'..=b'7').contains(&b)));
        match digits.and_then(|d| u8::from_str_radix(d, 8).ok()).map(char::from) {
            Some(c) if c.is_ascii_graphic() && c != '\\' && c != '.' => {
                plain.push(c);
                rest = rest.get(at + 4..).unwrap_or_default();
            }
            _ => {
                plain.push('\\');
                rest = rest.get(at + 1..).unwrap_or_default();
            }
        }
    }
    plain.push_str(rest);
    plain.parse()
}

// --- XML shapes ----------------------------------------------------------

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct HostedZoneXml {
    id: String,
    name: String,
    caller_reference: String,
    config: ZoneConfigXml,
    resource_record_set_count: usize,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ZoneConfigXml {
    #[serde(skip_serializing_if = "Option::is_none")]
    comment: Option<String>,
    #[serde(default)]
    private_zone: bool,
}

#[derive(Serialize, Deserialize, Clone)]
struct VpcXml {
    #[serde(rename = "VPCRegion", default, skip_serializing_if = "Option::is_none")]
    region: Option<String>,
    #[serde(rename = "VPCId", default)]
    id: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ChangeInfoXml {
    id: String,
    status: &'static str,
    submitted_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment: Option<String>,
}

#[derive(Serialize)]
struct NameServersXml {
    #[serde(rename = "NameServer")]
    servers: Vec<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DelegationSetXml {
    name_servers: NameServersXml,
}

fn delegation_set() -> DelegationSetXml {
    DelegationSetXml {
        name_servers: NameServersXml { servers: NAME_SERVERS.iter().map(|s| s.trim_end_matches('.')).collect() },
    }
}

fn zone_xml(config: &EndpointConfig, zone: &HostedZoneConfig, private: bool) -> HostedZoneXml {
    let count = zone_records(config, zone).map(|records| record_sets(records).len()).unwrap_or(0);
    HostedZoneXml {
        id: format!("/hostedzone/{}", zone.zone_id()),
        name: apex(zone).map(|name| route53_name(&name)).unwrap_or_else(|_| zone.name.clone()),
        caller_reference: zone.caller_reference.clone().unwrap_or_else(|| zone.zone_id().to_string()),
        config: ZoneConfigXml { comment: zone.comment.clone(), private_zone: private },
        resource_record_set_count: count,
    }
}

fn vpcs_xml(config: &EndpointConfig, zone: &HostedZoneConfig) -> Vec<VpcXml> {
    zone.vpcs
        .iter()
        .map(|association| VpcXml { region: Some(config.region.clone()), id: Some(association.vpc.clone()) })
        .collect()
}

impl<R: Runtime> ControlPlane<R> {
    fn change_info(&self, id: &str) -> Option<ChangeInfoXml> {
        let record = self.change(id)?;
        Some(ChangeInfoXml {
            id: format!("/change/{id}"),
            status: if self.settled(id) { "INSYNC" } else { "PENDING" },
            submitted_at: record.submitted,
            comment: record.comment,
        })
    }
}

/// A new change id, shaped like Route 53's (`C` and 20 characters).
pub(crate) fn change_id() -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut id = String::from("C");
    for _ in 0..20 {
        id.push(char::from(alphabet[usize::from(rand::random::<u8>()) % alphabet.len()]));
    }
    id
}

/// A new hosted zone id (`Z` and 20 characters).
fn zone_id() -> String {
    let mut id = change_id();
    id.replace_range(0..1, "Z");
    id
}

// --- hosted zones ---------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateHostedZoneRequest {
    name: String,
    #[serde(rename = "VPC")]
    vpc: Option<VpcXml>,
    caller_reference: String,
    hosted_zone_config: Option<ZoneConfigXml>,
    delegation_set_id: Option<String>,
}

async fn create_hosted_zone<R: Runtime>(State(control): Control<R>, body: String) -> Xml {
    match create_hosted_zone_inner(&control, &body).await {
        Ok((id, text)) => Xml(
            Ok((StatusCode::CREATED, text)),
            Some(format!("https://route53.amazonaws.com/2013-04-01/hostedzone/{id}")),
        ),
        Err(error) => Xml(Err(error), None),
    }
}

async fn create_hosted_zone_inner<R: Runtime>(
    control: &ControlPlane<R>,
    body: &str,
) -> Result<(String, String), ApiError> {
    let request: CreateHostedZoneRequest = parse_body(body)?;
    if request.delegation_set_id.is_some() {
        return Err(ApiError::bad_request(
            "InvalidInput",
            "Reusable delegation sets are not supported by signpost-endpoint.",
        ));
    }
    let name: NameBuf = request.name.parse().map_err(|error| {
        ApiError::bad_request("InvalidDomainName", format!("{} is not a valid domain name: {error}", request.name))
    })?;
    let config_request = request.hosted_zone_config.unwrap_or_default();
    let vpc = request.vpc.as_ref().and_then(|vpc| vpc.id.clone());
    let private = vpc.is_some() || config_request.private_zone;
    if private && vpc.is_none() {
        return Err(ApiError::bad_request(
            "InvalidInput",
            "When you're creating a private hosted zone (when you specify true for PrivateZone), you must also specify values for VPCId and VPCRegion.",
        ));
    }
    let comment = config_request.comment.clone();
    let id = control
        .mutate(|m| {
            let config = &*m.config;
            if all_zones(config)
                .any(|(zone, _)| zone.caller_reference.as_deref() == Some(request.caller_reference.as_str()))
            {
                return Err(ApiError::new(
                    "HostedZoneAlreadyExists",
                    StatusCode::CONFLICT,
                    "A hosted zone has already been created with the specified caller reference.",
                ));
            }
            let count = config.private_hosted_zones.len() + config.public_hosted_zones.len();
            if config.quotas.enabled && count >= config.quotas.hosted_zones as usize {
                return Err(ApiError::bad_request(
                    "TooManyHostedZones",
                    format!(
                        "This operation would exceed the quota of {} hosted zones (quotas.hosted_zones).",
                        config.quotas.hosted_zones
                    ),
                ));
            }
            if let Some(vpc) = &vpc
                && !config.vpcs.iter().any(|known| known.id == *vpc)
            {
                return Err(ApiError::bad_request("InvalidVPCId", "The VPC ID is invalid."));
            }
            let id = zone_id();
            let apex = name.to_lowercase().to_string();
            let mut records = vec![format!(
                "{apex} 900 IN SOA {} awsdns-hostmaster.amazon.com. 1 7200 900 1209600 86400",
                NAME_SERVERS[0]
            )];
            records.extend(NAME_SERVERS.iter().map(|server| format!("{apex} 172800 IN NS {server}")));
            let zone = HostedZoneConfig {
                name: apex,
                id: Some(id.clone()),
                vpcs: vpc.iter().map(|vpc| VpcAssociation::new(vpc.as_str())).collect(),
                file: None,
                records: Arc::new(records),
                ttl: None,
                caller_reference: Some(request.caller_reference.clone()),
                comment: comment.clone(),
                tags: Tags::new(),
                secondary: None,
                transfer: None,
            };
            let kind = if private {
                m.config.private_hosted_zones.push(zone);
                Kind::PrivateHostedZone
            } else {
                m.config.public_hosted_zones.push(zone);
                Kind::PublicHostedZone
            };
            m.touch(kind, &id);
            let change = new_change(m, None);
            Ok((id, change))
        })
        .await
        .map_err(route53_error)?;
    let (id, change) = id;
    let config = control.snapshot();
    let (zone, private) = find_zone(&config, &id)?;
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Body {
        hosted_zone: HostedZoneXml,
        change_info: ChangeInfoXml,
        delegation_set: DelegationSetXml,
        #[serde(rename = "VPC", skip_serializing_if = "Option::is_none")]
        vpc: Option<VpcXml>,
    }
    let change_info = control.change_info(&change).ok_or_else(|| ApiError::internal("the change was not recorded"))?;
    let text = xml(
        "CreateHostedZoneResponse",
        &Body {
            hosted_zone: zone_xml(&config, zone, private),
            change_info,
            delegation_set: delegation_set(),
            vpc: vpcs_xml(&config, zone).into_iter().next(),
        },
    )?;
    Ok((id, text))
}

/// Errors of the model, in Route 53's words.
fn route53_error(error: ApiError) -> ApiError {
    match error.code.as_ref() {
        "InvalidRequestException" | "InvalidParameterException" => ApiError::bad_request("InvalidInput", error.message),
        _ => error,
    }
}

async fn get_hosted_zone<R: Runtime>(State(control): Control<R>, Path(id): Path<String>) -> Xml {
    let config = control.snapshot();
    let (zone, private) = match find_zone(&config, &id) {
        Ok(found) => found,
        Err(error) => return Xml(Err(error), None),
    };
    #[derive(Serialize)]
    struct VpcList {
        #[serde(rename = "VPC")]
        vpcs: Vec<VpcXml>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Body {
        hosted_zone: HostedZoneXml,
        #[serde(skip_serializing_if = "Option::is_none")]
        delegation_set: Option<DelegationSetXml>,
        #[serde(rename = "VPCs", skip_serializing_if = "Option::is_none")]
        vpcs: Option<VpcList>,
    }
    ok(
        "GetHostedZoneResponse",
        &Body {
            hosted_zone: zone_xml(&config, zone, private),
            delegation_set: (!private).then(delegation_set),
            vpcs: private.then(|| VpcList { vpcs: vpcs_xml(&config, zone) }),
        },
    )
}

#[derive(Deserialize)]
struct ListQuery {
    marker: Option<String>,
    maxitems: Option<String>,
    hostedzonetype: Option<String>,
    dnsname: Option<String>,
    hostedzoneid: Option<String>,
    vpcid: Option<String>,
    nexttoken: Option<String>,
    name: Option<String>,
    #[serde(rename = "type")]
    record_type: Option<String>,
    identifier: Option<String>,
}

fn max_items(query: &ListQuery, default: usize) -> Result<usize, ApiError> {
    match &query.maxitems {
        None => Ok(default),
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|max| *max > 0)
            .ok_or_else(|| ApiError::bad_request("InvalidInput", format!("1 validation error detected: Value '{text}' at 'maxItems' failed to satisfy constraint: Member must be a positive number"))),
    }
}

#[derive(Serialize)]
struct HostedZonesXml {
    #[serde(rename = "HostedZone")]
    zones: Vec<HostedZoneXml>,
}

async fn list_hosted_zones<R: Runtime>(State(control): Control<R>, Query(query): Query<ListQuery>) -> Xml {
    Xml::answer(|| {
        let config = control.snapshot();
        let max = max_items(&query, 100)?;
        let only_private = query.hostedzonetype.as_deref() == Some("PrivateHostedZone");
        let zones: Vec<(&HostedZoneConfig, bool)> =
            all_zones(&config).filter(|(_, private)| !only_private || *private).collect();
        let start = match &query.marker {
            Some(marker) => zones.iter().position(|(zone, _)| zone.zone_id() == bare_id(marker)).ok_or_else(|| {
                ApiError::bad_request("InvalidInput", format!("The marker {marker} is not a hosted zone id."))
            })?,
            None => 0,
        };
        let page: Vec<HostedZoneXml> =
            zones.iter().skip(start).take(max).map(|(zone, private)| zone_xml(&config, zone, *private)).collect();
        let next = zones.get(start + max).map(|(zone, _)| zone.zone_id().to_string());
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Body {
            hosted_zones: HostedZonesXml,
            marker: String,
            is_truncated: bool,
            #[serde(skip_serializing_if = "Option::is_none")]
            next_marker: Option<String>,
            max_items: String,
        }
        xml(
            "ListHostedZonesResponse",
            &Body {
                hosted_zones: HostedZonesXml { zones: page },
                marker: query.marker.clone().unwrap_or_default(),
                is_truncated: next.is_some(),
                next_marker: next,
                max_items: max.to_string(),
            },
        )
    })
}

async fn list_hosted_zones_by_name<R: Runtime>(State(control): Control<R>, Query(query): Query<ListQuery>) -> Xml {
    Xml::answer(|| {
        let config = control.snapshot();
        let max = max_items(&query, 100)?;
        let mut zones: Vec<(NameBuf, &HostedZoneConfig, bool)> =
            all_zones(&config).filter_map(|(zone, private)| Some((apex(zone).ok()?, zone, private))).collect();
        zones.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.zone_id().cmp(b.1.zone_id())));
        let start = match &query.dnsname {
            Some(text) => {
                let name: NameBuf = text.parse().map_err(|error| {
                    ApiError::bad_request("InvalidDomainName", format!("{text} is not a valid domain name: {error}"))
                })?;
                zones
                    .iter()
                    .position(|(apex, zone, _)| {
                        *apex > name
                            || (*apex == name
                                && query.hostedzoneid.as_deref().is_none_or(|id| zone.zone_id() >= bare_id(id)))
                    })
                    .unwrap_or(zones.len())
            }
            None => 0,
        };
        let page: Vec<HostedZoneXml> =
            zones.iter().skip(start).take(max).map(|(_, zone, private)| zone_xml(&config, zone, *private)).collect();
        let next = zones.get(start + max);
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Body {
            hosted_zones: HostedZonesXml,
            #[serde(rename = "DNSName", skip_serializing_if = "Option::is_none")]
            dns_name: Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            hosted_zone_id: Option<String>,
            is_truncated: bool,
            #[serde(rename = "NextDNSName", skip_serializing_if = "Option::is_none")]
            next_dns_name: Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            next_hosted_zone_id: Option<String>,
            max_items: String,
        }
        xml(
            "ListHostedZonesByNameResponse",
            &Body {
                hosted_zones: HostedZonesXml { zones: page },
                dns_name: query.dnsname.clone(),
                hosted_zone_id: query.hostedzoneid.clone(),
                is_truncated: next.is_some(),
                next_dns_name: next.map(|(name, _, _)| route53_name(name)),
                next_hosted_zone_id: next.map(|(_, zone, _)| zone.zone_id().to_string()),
                max_items: max.to_string(),
            },
        )
    })
}

async fn list_hosted_zones_by_vpc<R: Runtime>(State(control): Control<R>, Query(query): Query<ListQuery>) -> Xml {
    Xml::answer(|| {
        let config = control.snapshot();
        let max = max_items(&query, 100)?;
        let Some(vpc) = &query.vpcid else {
            return Err(ApiError::bad_request("InvalidInput", "VPCId is required."));
        };
        let zones: Vec<&HostedZoneConfig> =
            config.private_hosted_zones.iter().filter(|zone| zone.has_vpc(vpc)).collect();
        let start = match &query.nexttoken {
            Some(token) => token
                .strip_prefix("signpost-")
                .and_then(|offset| offset.parse::<usize>().ok())
                .filter(|offset| *offset <= zones.len())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "InvalidPaginationToken",
                        "The value that you specified for NextToken is invalid.",
                    )
                })?,
            None => 0,
        };
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Owner {
            owning_account: String,
        }
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Summary {
            hosted_zone_id: String,
            name: String,
            owner: Owner,
        }
        #[derive(Serialize)]
        struct Summaries {
            #[serde(rename = "HostedZoneSummary")]
            summaries: Vec<Summary>,
        }
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Body {
            hosted_zone_summaries: Summaries,
            max_items: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            next_token: Option<String>,
        }
        let summaries = zones
            .iter()
            .skip(start)
            .take(max)
            .map(|zone| Summary {
                hosted_zone_id: zone.zone_id().to_string(),
                name: apex(zone).map(|name| route53_name(&name)).unwrap_or_else(|_| zone.name.clone()),
                owner: Owner { owning_account: config.account_id.clone() },
            })
            .collect();
        xml(
            "ListHostedZonesByVPCResponse",
            &Body {
                hosted_zone_summaries: Summaries { summaries },
                max_items: max.to_string(),
                next_token: (start + max < zones.len()).then(|| format!("signpost-{}", start + max)),
            },
        )
    })
}

async fn hosted_zone_count<R: Runtime>(State(control): Control<R>) -> Xml {
    let config = control.snapshot();
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Body {
        hosted_zone_count: usize,
    }
    ok(
        "GetHostedZoneCountResponse",
        &Body { hosted_zone_count: config.private_hosted_zones.len() + config.public_hosted_zones.len() },
    )
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ChangeInfoBody {
    change_info: ChangeInfoXml,
}

/// A change recorded now under a new id, its clock started: the id.
fn new_change(m: &mut Mutation<'_>, comment: Option<String>) -> String {
    let change = change_id();
    m.record_change(&change, ChangeRecord { submitted: m.now.clone(), comment });
    m.start_clock(&change);
    change
}

/// The change's ChangeInfo under `root`, or the mutation's error.
fn change_result<R: Runtime>(control: &ControlPlane<R>, root: &str, result: Result<String, ApiError>) -> Xml {
    match result {
        Ok(change) => change_answer(control, root, &change),
        Err(error) => Xml(Err(route53_error(error)), None),
    }
}

fn change_answer<R: Runtime>(control: &ControlPlane<R>, root: &str, change: &str) -> Xml {
    match control.change_info(change) {
        Some(change_info) => ok(root, &ChangeInfoBody { change_info }),
        None => Xml(Err(ApiError::internal("the change was not recorded")), None),
    }
}

async fn delete_hosted_zone<R: Runtime>(State(control): Control<R>, Path(id): Path<String>) -> Xml {
    let id = bare_id(&id).to_string();
    let result = control
        .mutate(|m| {
            let (zone, _) = find_zone(m.config, &id)?;
            let origin = apex(zone)?;
            let records = zone_records(m.config, zone)?;
            let extra = records.iter().any(|record| {
                !(record.rtype() == RecordType::SOA || (record.rtype() == RecordType::NS && record.name == origin))
            });
            if extra {
                return Err(ApiError::bad_request(
                    "HostedZoneNotEmpty",
                    "The specified hosted zone contains non-required resource record sets and so cannot be deleted.",
                ));
            }
            m.config.private_hosted_zones.retain(|zone| zone.zone_id() != id);
            m.config.public_hosted_zones.retain(|zone| zone.zone_id() != id);
            m.touch(Kind::PrivateHostedZone, &id);
            m.touch(Kind::PublicHostedZone, &id);
            Ok(new_change(m, None))
        })
        .await;
    change_result(&control, "DeleteHostedZoneResponse", result)
}

async fn update_comment<R: Runtime>(State(control): Control<R>, Path(id): Path<String>, body: String) -> Xml {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Request {
        comment: Option<String>,
    }
    let id = bare_id(&id).to_string();
    let request: Request = match parse_body(&body) {
        Ok(request) => request,
        Err(error) => return Xml(Err(error), None),
    };
    let result = control
        .mutate(|m| {
            find_zone(m.config, &id)?;
            if let Some((zone, kind)) = zone_mut(m.config, &id) {
                zone.comment = request.comment.clone();
                m.touch(kind, &id);
            }
            Ok(())
        })
        .await;
    if let Err(error) = result {
        return Xml(Err(route53_error(error)), None);
    }
    let config = control.snapshot();
    match find_zone(&config, &id) {
        Ok((zone, private)) => {
            #[derive(Serialize)]
            #[serde(rename_all = "PascalCase")]
            struct Body {
                hosted_zone: HostedZoneXml,
            }
            ok("UpdateHostedZoneCommentResponse", &Body { hosted_zone: zone_xml(&config, zone, private) })
        }
        Err(error) => Xml(Err(error), None),
    }
}

// --- VPC associations -------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct VpcRequest {
    #[serde(rename = "VPC")]
    vpc: VpcXml,
    comment: Option<String>,
}

/// (Dis)AssociateVPC: `change` the model for the VPC `body` names, as a
/// change with the body's comment, answered under `root`.
async fn vpc_change<R: Runtime>(
    control: &ControlPlane<R>,
    body: &str,
    root: &str,
    change: impl FnOnce(&mut Mutation<'_>, &str) -> Result<(), ApiError>,
) -> Xml {
    let request: VpcRequest = match parse_body(body) {
        Ok(request) => request,
        Err(error) => return Xml(Err(error), None),
    };
    let Some(vpc) = request.vpc.id.clone() else {
        return Xml(Err(ApiError::bad_request("InvalidVPCId", "The VPC ID is invalid.")), None);
    };
    let result = control
        .mutate(|m| {
            change(m, &vpc)?;
            Ok(new_change(m, request.comment.clone()))
        })
        .await;
    change_result(control, root, result)
}

async fn associate_vpc<R: Runtime>(State(control): Control<R>, Path(id): Path<String>, body: String) -> Xml {
    let id = bare_id(&id).to_string();
    vpc_change(&control, &body, "AssociateVPCWithHostedZoneResponse", |m, vpc| {
        let config = &*m.config;
        let (zone, private) = find_zone(config, &id)?;
        if !private {
            return Err(ApiError::bad_request(
                "PublicZoneVPCAssociation",
                "You're trying to associate a VPC with a public hosted zone. Amazon Route 53 doesn't support associating a VPC with a public hosted zone.",
            ));
        }
        if !config.vpcs.iter().any(|known| known.id == vpc) {
            return Err(ApiError::bad_request("InvalidVPCId", "The VPC ID is invalid."));
        }
        if zone.has_vpc(vpc) {
            return Err(ApiError::bad_request(
                "ConflictingDomainExists",
                format!("The VPC {vpc} in {} region has already been associated with the hosted zone {id} with the same domain name.", config.region),
            ));
        }
        if config.quotas.enabled && zone.vpcs.len() >= config.quotas.vpcs_per_hosted_zone as usize {
            return Err(ApiError::bad_request(
                "LimitsExceeded",
                format!("The hosted zone {id} is associated with the maximum of {} VPCs (quotas.vpcs_per_hosted_zone).", config.quotas.vpcs_per_hosted_zone),
            ));
        }
        if let Some((zone, kind)) = zone_mut(m.config, &id) {
            zone.vpcs.push(VpcAssociation::new(vpc));
            m.touch(kind, &id);
        }
        Ok(())
    })
    .await
}

async fn disassociate_vpc<R: Runtime>(State(control): Control<R>, Path(id): Path<String>, body: String) -> Xml {
    let id = bare_id(&id).to_string();
    vpc_change(&control, &body, "DisassociateVPCFromHostedZoneResponse", |m, vpc| {
        let (zone, _) = find_zone(m.config, &id)?;
        if !zone.has_vpc(vpc) {
            return Err(ApiError::new(
                "VPCAssociationNotFound",
                StatusCode::NOT_FOUND,
                format!("The specified VPC {vpc} and hosted zone {id} are not currently associated."),
            ));
        }
        if zone.vpcs.len() == 1 {
            return Err(ApiError::bad_request(
                "LastVPCAssociation",
                "The VPC that you're trying to disassociate from the private hosted zone is the last VPC that is associated with the hosted zone. Amazon Route 53 doesn't support disassociating the last VPC from a hosted zone.",
            ));
        }
        if let Some((zone, kind)) = zone_mut(m.config, &id) {
            zone.vpcs.retain(|association| association.vpc != vpc);
            m.touch(kind, &id);
        }
        Ok(())
    })
    .await
}

async fn get_change<R: Runtime>(State(control): Control<R>, Path(id): Path<String>) -> Xml {
    let id = bare_id(&id);
    if control.change(id).is_none() {
        return Xml(
            Err(ApiError::new(
                "NoSuchChange",
                StatusCode::NOT_FOUND,
                format!("A change with the specified change ID {id} does not exist."),
            )),
            None,
        );
    }
    change_answer(&control, "GetChangeResponse", id)
}

// --- records ----------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ResourceRecordXml {
    value: String,
}

#[derive(Deserialize, Default)]
struct ResourceRecordsXml {
    #[serde(rename = "ResourceRecord", default)]
    records: Vec<ResourceRecordXml>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ResourceRecordSetRequest {
    name: String,
    #[serde(rename = "Type")]
    rtype: String,
    #[serde(rename = "TTL")]
    ttl: Option<u32>,
    #[serde(default)]
    resource_records: Option<ResourceRecordsXml>,
    set_identifier: Option<String>,
    alias_target: Option<serde::de::IgnoredAny>,
    weight: Option<serde::de::IgnoredAny>,
    region: Option<serde::de::IgnoredAny>,
    failover: Option<serde::de::IgnoredAny>,
    geo_location: Option<serde::de::IgnoredAny>,
    multi_value_answer: Option<serde::de::IgnoredAny>,
    health_check_id: Option<serde::de::IgnoredAny>,
    cidr_routing_config: Option<serde::de::IgnoredAny>,
    geo_proximity_location: Option<serde::de::IgnoredAny>,
    traffic_policy_instance_id: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ChangeXml {
    action: String,
    resource_record_set: ResourceRecordSetRequest,
}

#[derive(Deserialize)]
struct ChangesXml {
    #[serde(rename = "Change", default)]
    changes: Vec<ChangeXml>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ChangeBatchXml {
    comment: Option<String>,
    changes: ChangesXml,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ChangeRecordSetsRequest {
    change_batch: ChangeBatchXml,
}

fn invalid_batch(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("InvalidChangeBatch", format!("[{}]", message.into()))
}

/// The record set a change names, parsed and checked against the zone.
fn requested_set(request: &ResourceRecordSetRequest, origin: &NameBuf, action: &str) -> Result<RecordSet, ApiError> {
    let unsupported = [
        ("SetIdentifier", request.set_identifier.is_some()),
        ("AliasTarget", request.alias_target.is_some()),
        ("Weight", request.weight.is_some()),
        ("Region", request.region.is_some()),
        ("Failover", request.failover.is_some()),
        ("GeoLocation", request.geo_location.is_some()),
        ("MultiValueAnswer", request.multi_value_answer.is_some()),
        ("HealthCheckId", request.health_check_id.is_some()),
        ("CidrRoutingConfig", request.cidr_routing_config.is_some()),
        ("GeoProximityLocation", request.geo_proximity_location.is_some()),
        ("TrafficPolicyInstanceId", request.traffic_policy_instance_id.is_some()),
    ];
    if let Some((field, _)) = unsupported.iter().find(|(_, given)| *given) {
        return Err(ApiError::bad_request(
            "InvalidInput",
            format!(
                "{field} is not supported by signpost-endpoint yet: record sets are simple (Name, Type, TTL, ResourceRecords)."
            ),
        ));
    }
    let name = parse_route53_name(&request.name)
        .map_err(|error| invalid_batch(format!("Invalid Resource Record name {}: {error}", request.name)))?;
    let name = name.to_lowercase();
    if !name.is_subdomain_of(origin) {
        return Err(invalid_batch(format!(
            "RRSet with DNS name {} is not permitted in zone {}",
            route53_name(&name),
            route53_name(origin)
        )));
    }
    let rtype: RecordType = request
        .rtype
        .parse()
        .map_err(|_| ApiError::bad_request("InvalidInput", format!("Invalid XML ; cvc-enumeration-valid: Value '{}' is not facet-valid with respect to enumeration of record types.", request.rtype)))?;
    let values: Vec<&str> = request
        .resource_records
        .as_ref()
        .map(|list| list.records.iter().map(|record| record.value.as_str()).collect())
        .unwrap_or_default();
    let Some(ttl) = request.ttl else {
        if action == "DELETE" && values.is_empty() {
            return Ok(RecordSet { name, rtype, ttl: 0, records: Vec::new() });
        }
        return Err(invalid_batch(
            "Invalid request: Expected exactly one of [AliasTarget, all of [TTL, and ResourceRecords], or TrafficPolicyInstanceId], but found none in Change",
        ));
    };
    if values.is_empty() {
        return Err(invalid_batch(
            "Invalid request: Expected exactly one of [AliasTarget, all of [TTL, and ResourceRecords], or TrafficPolicyInstanceId], but found none in Change",
        ));
    }
    let mut records = Vec::with_capacity(values.len());
    for value in values {
        // Names in values are absolute, with or without the final dot.
        let record =
            RecordBuf::from_presentation(&format!("{name} {ttl} IN {rtype} {value}"), Some(&NameBuf::root()), None)
                .map_err(|error| {
                    invalid_batch(format!(
                        "Invalid Resource Record: FATAL problem: {rtype} record value {value:?} is not valid: {error}"
                    ))
                })?;
        if !records.iter().any(|known: &RecordBuf| known.data == record.data) {
            records.push(record);
        }
    }
    if rtype == RecordType::CNAME && records.len() > 1 {
        return Err(invalid_batch(format!(
            "RRSet of type CNAME with DNS name {} is not permitted as it has more than one record.",
            route53_name(&name)
        )));
    }
    Ok(RecordSet { name, rtype, ttl, records })
}

pub(crate) fn same_records(a: &RecordSet, b: &RecordSet) -> bool {
    a.ttl == b.ttl
        && a.records.len() == b.records.len()
        && a.records.iter().all(|record| b.records.iter().any(|other| other.data == record.data))
}

/// Apply a batch to a zone's record sets, all or nothing.
fn apply_batch(sets: &mut RecordSets, origin: &NameBuf, batch: &[ChangeXml]) -> Result<(), ApiError> {
    for change in batch {
        let set = requested_set(&change.resource_record_set, origin, &change.action)?;
        let key = (set.name.clone(), set.rtype.to_string());
        let label = format!("[name='{}', type='{}']", route53_name(&set.name), set.rtype);
        let at_apex = set.name == *origin;
        match change.action.as_str() {
            "CREATE" | "UPSERT" => {
                if change.action == "CREATE" && sets.contains_key(&key) {
                    return Err(invalid_batch(format!(
                        "Tried to create resource record set {label} but it already exists"
                    )));
                }
                if set.rtype == RecordType::SOA && !at_apex {
                    return Err(invalid_batch(format!(
                        "RRSet of type SOA with DNS name {} is not permitted: the SOA is at the zone apex.",
                        route53_name(&set.name)
                    )));
                }
                let conflict = sets.values().any(|other| {
                    other.name == set.name
                        && other.rtype != set.rtype
                        && (set.rtype == RecordType::CNAME || other.rtype == RecordType::CNAME)
                });
                if conflict {
                    return Err(invalid_batch(format!(
                        "RRSet of type CNAME with DNS name {} is not permitted as it conflicts with other records with the same DNS name in zone {}",
                        route53_name(&set.name),
                        route53_name(origin)
                    )));
                }
                if at_apex && set.rtype == RecordType::CNAME {
                    return Err(invalid_batch(format!(
                        "RRSet of type CNAME with DNS name {} is not permitted at apex in zone {}",
                        route53_name(&set.name),
                        route53_name(origin)
                    )));
                }
                sets.insert(key, set);
            }
            "DELETE" => {
                let Some(existing) = sets.get(&key) else {
                    return Err(invalid_batch(format!(
                        "Tried to delete resource record set {label} but it was not found"
                    )));
                };
                if !set.records.is_empty() && !same_records(existing, &set) {
                    return Err(invalid_batch(format!(
                        "Tried to delete resource record set {label} but the values provided do not match the current values"
                    )));
                }
                if set.rtype == RecordType::SOA {
                    return Err(invalid_batch("A HostedZone must contain exactly one SOA record."));
                }
                if set.rtype == RecordType::NS && at_apex {
                    return Err(invalid_batch("A HostedZone must contain at least one NS record for the zone itself."));
                }
                sets.remove(&key);
            }
            other => {
                return Err(ApiError::bad_request(
                    "InvalidInput",
                    format!(
                        "Invalid XML ; cvc-enumeration-valid: Value '{other}' is not facet-valid with respect to enumeration '[CREATE, DELETE, UPSERT]'. It must be a value from the enumeration."
                    ),
                ));
            }
        }
    }
    Ok(())
}

async fn change_record_sets<R: Runtime>(State(control): Control<R>, Path(id): Path<String>, body: String) -> Xml {
    let id = bare_id(&id).to_string();
    let request: ChangeRecordSetsRequest = match parse_body(&body) {
        Ok(request) => request,
        Err(error) => return Xml(Err(error), None),
    };
    let batch = request.change_batch.changes.changes;
    if batch.is_empty() {
        return Xml(
            Err(ApiError::bad_request(
                "InvalidInput",
                "1 validation error detected: Value null at 'changeBatch.changes' failed to satisfy constraint: Member must have length greater than or equal to 1",
            )),
            None,
        );
    }
    let values: usize = batch
        .iter()
        .map(|change| change.resource_record_set.resource_records.as_ref().map_or(1, |list| list.records.len().max(1)))
        .sum();
    if values > 1000 {
        return Xml(Err(invalid_batch("Number of records limit of 1000 exceeded.")), None);
    }
    let comment = request.change_batch.comment;
    let result = control
        .mutate(|m| {
            let (zone, _) = find_zone(m.config, &id)?;
            let origin = apex(zone)?;
            let mut sets = record_sets(zone_records(m.config, zone)?);
            apply_batch(&mut sets, &origin, &batch)?;
            let count: usize = sets.values().map(|set| set.records.len()).sum();
            if m.config.quotas.enabled && count > m.config.quotas.records_per_hosted_zone as usize {
                return Err(invalid_batch(format!(
                    "This change would put {count} records in the hosted zone; the quota is {} (quotas.records_per_hosted_zone).",
                    m.config.quotas.records_per_hosted_zone
                )));
            }
            let records: Vec<String> = sets
                .values()
                .flat_map(|set| set.records.iter().map(move |record| RecordBuf { ttl: set.ttl, ..record.clone() }.to_string()))
                .collect();
            if let Some((zone, kind)) = zone_mut(m.config, &id) {
                zone.records = Arc::new(records);
                zone.file = None;
                zone.ttl = None;
                m.touch(kind, &id);
            }
            Ok(new_change(m, comment.clone()))
        })
        .await;
    change_result(&control, "ChangeResourceRecordSetsResponse", result)
}

#[derive(Serialize)]
struct ValueXml {
    #[serde(rename = "Value")]
    value: String,
}

#[derive(Serialize)]
struct ValuesXml {
    #[serde(rename = "ResourceRecord")]
    records: Vec<ValueXml>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RecordSetXml {
    name: String,
    #[serde(rename = "Type")]
    rtype: String,
    #[serde(rename = "TTL")]
    ttl: u32,
    resource_records: ValuesXml,
}

async fn list_record_sets<R: Runtime>(
    State(control): Control<R>,
    Path(id): Path<String>,
    Query(query): Query<ListQuery>,
) -> Xml {
    Xml::answer(|| {
        let config = control.snapshot();
        let (zone, _) = find_zone(&config, &id)?;
        let max = max_items(&query, 300)?;
        if query.identifier.is_some() {
            return Err(ApiError::bad_request(
                "InvalidInput",
                "StartRecordIdentifier is for record sets with a SetIdentifier, which signpost-endpoint does not keep yet.",
            ));
        }
        let sets: Vec<RecordSet> = record_sets(zone_records(&config, zone)?).into_values().collect();
        let start_name: Option<NameBuf> = query
            .name
            .as_deref()
            .map(|text| parse_route53_name(text).map(|name| name.to_lowercase()))
            .transpose()
            .map_err(|error| {
                ApiError::bad_request("InvalidInput", format!("The StartRecordName is not a valid name: {error}"))
            })?;
        if query.record_type.is_some() && start_name.is_none() {
            return Err(ApiError::bad_request(
                "InvalidInput",
                "The input is not valid: StartRecordType needs StartRecordName.",
            ));
        }
        let start = match &start_name {
            Some(name) => sets
                .iter()
                .position(|set| {
                    set.name > *name
                        || (set.name == *name
                            && query.record_type.as_deref().is_none_or(|rtype| set.rtype.to_string().as_str() >= rtype))
                })
                .unwrap_or(sets.len()),
            None => 0,
        };
        let page: Vec<RecordSetXml> = sets
            .iter()
            .skip(start)
            .take(max)
            .map(|set| RecordSetXml {
                name: route53_name(&set.name),
                rtype: set.rtype.to_string(),
                ttl: set.ttl,
                resource_records: ValuesXml {
                    records: set.records.iter().map(|record| ValueXml { value: record.data.to_string() }).collect(),
                },
            })
            .collect();
        let next = sets.get(start + max);
        #[derive(Serialize)]
        struct SetsXml {
            #[serde(rename = "ResourceRecordSet")]
            sets: Vec<RecordSetXml>,
        }
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Body {
            resource_record_sets: SetsXml,
            is_truncated: bool,
            #[serde(skip_serializing_if = "Option::is_none")]
            next_record_name: Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            next_record_type: Option<String>,
            max_items: String,
        }
        xml(
            "ListResourceRecordSetsResponse",
            &Body {
                resource_record_sets: SetsXml { sets: page },
                is_truncated: next.is_some(),
                next_record_name: next.map(|set| route53_name(&set.name)),
                next_record_type: next.map(|set| set.rtype.to_string()),
                max_items: max.to_string(),
            },
        )
    })
}

// --- tags ----------------------------------------------------------------------

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagXml {
    key: String,
    #[serde(default)]
    value: String,
}

#[derive(Serialize, Deserialize, Default)]
struct TagListXml {
    #[serde(rename = "Tag", default)]
    tags: Vec<TagXml>,
}

fn check_kind(kind: &str) -> Result<(), ApiError> {
    if kind == "hostedzone" {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "InvalidInput",
            format!("Tags on {kind} resources are not supported by signpost-endpoint (hosted zones only)."),
        ))
    }
}

async fn change_tags<R: Runtime>(
    State(control): Control<R>,
    Path((kind, id)): Path<(String, String)>,
    body: String,
) -> Xml {
    #[derive(Deserialize)]
    struct KeysXml {
        #[serde(rename = "Key", default)]
        keys: Vec<String>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Request {
        add_tags: Option<TagListXml>,
        remove_tag_keys: Option<KeysXml>,
    }
    if let Err(error) = check_kind(&kind) {
        return Xml(Err(error), None);
    }
    let request: Request = match parse_body(&body) {
        Ok(request) => request,
        Err(error) => return Xml(Err(error), None),
    };
    let id = bare_id(&id).to_string();
    let result = control
        .mutate(|m| {
            find_zone(m.config, &id)?;
            if let Some((zone, kind)) = zone_mut(m.config, &id) {
                for tag in request.add_tags.iter().flat_map(|list| &list.tags) {
                    zone.tags.insert(tag.key.clone(), tag.value.clone());
                }
                for key in request.remove_tag_keys.iter().flat_map(|list| &list.keys) {
                    zone.tags.remove(key);
                }
                if zone.tags.len() > 50 {
                    return Err(ApiError::bad_request("InvalidInput", "A hosted zone can have at most 50 tags."));
                }
                m.touch(kind, &id);
            }
            Ok(())
        })
        .await;
    match result {
        Ok(()) => ok("ChangeTagsForResourceResponse", &()),
        Err(error) => Xml(Err(route53_error(error)), None),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ResourceTagSetXml {
    resource_type: String,
    resource_id: String,
    tags: TagListXml,
}

fn tag_set(config: &EndpointConfig, id: &str) -> Result<ResourceTagSetXml, ApiError> {
    let (zone, _) = find_zone(config, id)?;
    Ok(ResourceTagSetXml {
        resource_type: "hostedzone".to_string(),
        resource_id: zone.zone_id().to_string(),
        tags: TagListXml {
            tags: zone.tags.iter().map(|(key, value)| TagXml { key: key.clone(), value: value.clone() }).collect(),
        },
    })
}

async fn list_tags<R: Runtime>(State(control): Control<R>, Path((kind, id)): Path<(String, String)>) -> Xml {
    if let Err(error) = check_kind(&kind) {
        return Xml(Err(error), None);
    }
    let config = control.snapshot();
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Body {
        resource_tag_set: ResourceTagSetXml,
    }
    match tag_set(&config, bare_id(&id)) {
        Ok(resource_tag_set) => ok("ListTagsForResourceResponse", &Body { resource_tag_set }),
        Err(error) => Xml(Err(error), None),
    }
}

async fn list_tags_for_resources<R: Runtime>(
    State(control): Control<R>,
    Path(kind): Path<String>,
    body: String,
) -> Xml {
    #[derive(Deserialize)]
    struct IdsXml {
        #[serde(rename = "ResourceId", default)]
        ids: Vec<String>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Request {
        resource_ids: IdsXml,
    }
    if let Err(error) = check_kind(&kind) {
        return Xml(Err(error), None);
    }
    let request: Request = match parse_body(&body) {
        Ok(request) => request,
        Err(error) => return Xml(Err(error), None),
    };
    let config = control.snapshot();
    let sets: Result<Vec<ResourceTagSetXml>, ApiError> =
        request.resource_ids.ids.iter().map(|id| tag_set(&config, bare_id(id))).collect();
    #[derive(Serialize)]
    struct SetsXml {
        #[serde(rename = "ResourceTagSet")]
        sets: Vec<ResourceTagSetXml>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Body {
        resource_tag_sets: SetsXml,
    }
    match sets {
        Ok(sets) => ok("ListTagsForResourcesResponse", &Body { resource_tag_sets: SetsXml { sets } }),
        Err(error) => Xml(Err(error), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sets(records: &[&str]) -> RecordSets {
        record_sets(records.iter().map(|text| text.parse().unwrap()).collect())
    }

    /// Apply the one change [`change`] makes of these.
    fn apply(
        zone: &mut RecordSets,
        action: &str,
        name: &str,
        rtype: &str,
        ttl: Option<u32>,
        values: &[&str],
    ) -> Result<(), ApiError> {
        apply_batch(zone, &origin(), &[change(action, name, rtype, ttl, values)])
    }

    fn change(action: &str, name: &str, rtype: &str, ttl: Option<u32>, values: &[&str]) -> ChangeXml {
        ChangeXml {
            action: action.to_string(),
            resource_record_set: ResourceRecordSetRequest {
                name: name.to_string(),
                rtype: rtype.to_string(),
                ttl,
                resource_records: Some(ResourceRecordsXml {
                    records: values.iter().map(|value| ResourceRecordXml { value: value.to_string() }).collect(),
                }),
                set_identifier: None,
                alias_target: None,
                weight: None,
                region: None,
                failover: None,
                geo_location: None,
                multi_value_answer: None,
                health_check_id: None,
                cidr_routing_config: None,
                geo_proximity_location: None,
                traffic_policy_instance_id: None,
            },
        }
    }

    fn origin() -> NameBuf {
        "corp.example.".parse().unwrap()
    }

    #[test]
    fn create_upsert_and_delete_follow_route53() {
        let mut zone = sets(&[
            "corp.example. 900 IN SOA ns. host. 1 7200 900 1209600 86400",
            "corp.example. 172800 IN NS ns-0.awsdns-00.com.",
        ]);
        apply(&mut zone, "CREATE", "www.corp.example", "A", Some(60), &["10.0.0.1"]).unwrap();
        let error = apply(&mut zone, "CREATE", "WWW.corp.example.", "A", Some(60), &["10.0.0.2"]).unwrap_err();
        assert_eq!(error.code, "InvalidChangeBatch");
        assert_eq!(
            error.message,
            "[Tried to create resource record set [name='www.corp.example.', type='A'] but it already exists]"
        );
        apply(&mut zone, "UPSERT", "www.corp.example", "A", Some(30), &["10.0.0.2", "10.0.0.3"]).unwrap();
        let error = apply(&mut zone, "DELETE", "www.corp.example", "A", Some(30), &["10.0.0.2"]).unwrap_err();
        assert!(error.message.contains("the values provided do not match the current values"), "{error}");
        apply(&mut zone, "DELETE", "www.corp.example", "A", Some(30), &["10.0.0.3", "10.0.0.2"]).unwrap();
        let error = apply(&mut zone, "DELETE", "www.corp.example", "A", Some(30), &["10.0.0.3"]).unwrap_err();
        assert!(error.message.contains("but it was not found"), "{error}");
    }

    #[test]
    fn a_batch_is_all_or_nothing_at_the_caller() {
        let mut zone = sets(&[]);
        let before = zone.clone();
        let mut working = zone.clone();
        let result = apply_batch(
            &mut working,
            &origin(),
            &[
                change("CREATE", "a.corp.example", "A", Some(60), &["10.0.0.1"]),
                change("DELETE", "b.corp.example", "A", Some(60), &["10.0.0.1"]),
            ],
        );
        assert!(result.is_err());
        // The caller applies to a copy and keeps it only on success.
        zone = if result.is_ok() { working } else { zone };
        assert_eq!(zone, before);
    }

    #[test]
    fn names_outside_the_zone_cname_conflicts_and_the_soa_are_refused() {
        let mut zone = sets(&[
            "corp.example. 900 IN SOA ns. host. 1 7200 900 1209600 86400",
            "corp.example. 172800 IN NS ns-0.awsdns-00.com.",
        ]);
        let error = apply(&mut zone, "CREATE", "www.other.example", "A", Some(60), &["10.0.0.1"]).unwrap_err();
        assert!(error.message.contains("is not permitted in zone corp.example."), "{error}");
        apply(&mut zone, "CREATE", "app.corp.example", "A", Some(60), &["10.0.0.1"]).unwrap();
        let error =
            apply(&mut zone, "CREATE", "app.corp.example", "CNAME", Some(60), &["www.corp.example"]).unwrap_err();
        assert!(error.message.contains("conflicts with other records"), "{error}");
        let error = apply(&mut zone, "DELETE", "corp.example", "SOA", None, &[]).unwrap_err();
        assert!(error.message.contains("exactly one SOA"), "{error}");
        let error = apply(&mut zone, "CREATE", "x.corp.example", "A", Some(60), &["not-an-address"]).unwrap_err();
        assert_eq!(error.code, "InvalidChangeBatch");
    }

    #[test]
    fn wildcard_names_are_printed_as_route53_does() {
        let name: NameBuf = "*.corp.example.".parse().unwrap();
        assert_eq!(route53_name(&name), "\\052.corp.example.");
        assert_eq!(parse_route53_name("\\052.corp.example.").unwrap(), name);
        assert_eq!(parse_route53_name("plain.corp.example").unwrap().to_string(), "plain.corp.example.");
    }
}
