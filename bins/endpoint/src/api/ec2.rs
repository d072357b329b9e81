//! The EC2 calls Route 53 and Route 53 Resolver need (query protocol:
//! `Action=...&Version=2016-11-15` form bodies, XML answers): VPCs and
//! their DNS attributes, subnets and security groups.
//!
//! VPC blocks in 127.0.0.0/8 are accepted (AWS refuses them) so that
//! everything runs on loopback; blocks of different VPCs may not overlap,
//! because Signpost places a client in a VPC by its source address. A VPC
//! whose `.2` address is not an address of this host gets its resolver on
//! a loopback stand-in, reported in the `signpost:resolver` tag.

use http::StatusCode;
use ipnet::IpNet;
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use super::error::ApiError;
use crate::control::{ControlPlane, Kind, Mutation, Runtime, dot_two, free_loopback, is_local_address, new_id};
use crate::model::{EndpointConfig, HostPort, SecurityGroupConfig, SubnetConfig, Tags, VpcConfig};

/// The XML namespace of EC2 answers.
pub const NAMESPACE: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

/// The actions this module answers.
pub const OPERATIONS: &[&str] = &[
    "CreateSecurityGroup",
    "CreateSubnet",
    "CreateTags",
    "CreateVpc",
    "DeleteSecurityGroup",
    "DeleteSubnet",
    "DeleteTags",
    "DeleteVpc",
    "DescribeSecurityGroups",
    "DescribeSubnets",
    "DescribeVpcAttribute",
    "DescribeVpcs",
    "ModifyVpcAttribute",
];

/// The tag DescribeVpcs adds to every VPC: where its resolver listens.
pub const RESOLVER_TAG: &str = "signpost:resolver";

/// The form fields of a query-protocol request.
pub struct Params(Vec<(String, String)>);

impl Params {
    /// From decoded form pairs.
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Self(pairs)
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn required(&self, key: &str) -> Result<&str, ApiError> {
        self.get(key).ok_or_else(|| {
            ApiError::bad_request("MissingParameter", format!("The request must contain the parameter {key}"))
        })
    }

    /// `Prefix.1`, `Prefix.2`, ... in order.
    fn list(&self, prefix: &str) -> Vec<String> {
        (1..).map_while(|index| self.get(&format!("{prefix}.{index}")).map(str::to_string)).collect()
    }

    /// `Filter.N.Name` with its `Filter.N.Value.M`.
    fn filters(&self) -> Vec<(String, Vec<String>)> {
        (1..)
            .map_while(|index| {
                let name = self.get(&format!("Filter.{index}.Name"))?;
                Some((name.to_string(), self.list(&format!("Filter.{index}.Value"))))
            })
            .collect()
    }

    /// Tags of `TagSpecification.N` for `resource_type`, and of `Tag.N` (CreateTags).
    fn tags(&self, resource_type: &str) -> Tags {
        let mut tags = Tags::new();
        for spec in 1.. {
            let Some(kind) = self.get(&format!("TagSpecification.{spec}.ResourceType")) else { break };
            if kind != resource_type {
                continue;
            }
            for index in 1.. {
                let Some(key) = self.get(&format!("TagSpecification.{spec}.Tag.{index}.Key")) else { break };
                let value = self.get(&format!("TagSpecification.{spec}.Tag.{index}.Value")).unwrap_or_default();
                tags.insert(key.to_string(), value.to_string());
            }
        }
        for index in 1.. {
            let Some(key) = self.get(&format!("Tag.{index}.Key")) else { break };
            tags.insert(key.to_string(), self.get(&format!("Tag.{index}.Value")).unwrap_or_default().to_string());
        }
        tags
    }
}

#[derive(Serialize)]
struct Items<T> {
    item: Vec<T>,
}

impl<T> Items<T> {
    fn of(item: Vec<T>) -> Self {
        Self { item }
    }
}

#[derive(Serialize)]
struct TagXml {
    key: String,
    value: String,
}

fn tag_set(tags: &Tags) -> Items<TagXml> {
    Items::of(tags.iter().map(|(key, value)| TagXml { key: key.clone(), value: value.clone() }).collect())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CidrAssociationXml {
    cidr_block: String,
    association_id: String,
    cidr_block_state: StateXml,
}

#[derive(Serialize)]
struct StateXml {
    state: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Ipv6AssociationXml {
    ipv6_cidr_block: String,
    association_id: String,
    ipv6_cidr_block_state: StateXml,
}

/// The `ipv6CidrBlockAssociationSet` of a VPC's or subnet's IPv6 blocks.
fn ipv6_associations<'a>(owner: &str, blocks: impl Iterator<Item = &'a IpNet>) -> Items<Ipv6AssociationXml> {
    Items::of(
        blocks
            .filter(|cidr| matches!(cidr, IpNet::V6(_)))
            .map(|cidr| Ipv6AssociationXml {
                ipv6_cidr_block: cidr.to_string(),
                association_id: crate::control::derived_id(
                    if owner.starts_with("subnet-") { "subnet-cidr-assoc-" } else { "vpc-cidr-assoc-" },
                    &[owner, &cidr.to_string()],
                ),
                ipv6_cidr_block_state: StateXml { state: "associated" },
            })
            .collect(),
    )
}

/// An `Ipv6CidrBlock` parameter: an IPv6 block of /44 to /64 (AWS's
/// sizes; Signpost also accepts `::/64`, which holds the loopback ::1).
fn ipv6_block(params: &Params) -> Result<Option<IpNet>, ApiError> {
    let Some(text) = params.get("Ipv6CidrBlock") else { return Ok(None) };
    match text.parse::<IpNet>() {
        Ok(IpNet::V6(v6)) if (44..=64).contains(&v6.prefix_len()) => Ok(Some(IpNet::V6(v6.trunc()))),
        _ => Err(ApiError::bad_request(
            "InvalidParameterValue",
            format!(
                "Value ({text}) for parameter ipv6CidrBlock is invalid. This is not a valid IPv6 CIDR block of /44 to /64."
            ),
        )),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VpcXml {
    vpc_id: String,
    owner_id: String,
    state: &'static str,
    cidr_block: String,
    cidr_block_association_set: Items<CidrAssociationXml>,
    ipv6_cidr_block_association_set: Items<Ipv6AssociationXml>,
    dhcp_options_id: String,
    instance_tenancy: &'static str,
    is_default: bool,
    tag_set: Items<TagXml>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SubnetXml {
    subnet_id: String,
    subnet_arn: String,
    state: &'static str,
    vpc_id: String,
    owner_id: String,
    cidr_block: String,
    available_ip_address_count: u64,
    availability_zone: String,
    availability_zone_id: String,
    default_for_az: bool,
    map_public_ip_on_launch: bool,
    assign_ipv6_address_on_creation: bool,
    ipv6_cidr_block_association_set: Items<Ipv6AssociationXml>,
    tag_set: Items<TagXml>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SecurityGroupXml {
    owner_id: String,
    group_id: String,
    group_name: String,
    group_description: String,
    vpc_id: String,
    security_group_arn: String,
    ip_permissions: Items<()>,
    ip_permissions_egress: Items<()>,
    tag_set: Items<TagXml>,
}

#[derive(Serialize)]
struct BooleanValue {
    value: bool,
}

/// An answer: `<{Action}Response xmlns=...><requestId>..</requestId>{body}</...>`.
fn answer(action: &str, request_id: &str, body: impl Serialize) -> Result<String, ApiError> {
    #[derive(Serialize)]
    struct Envelope<'a, B> {
        #[serde(rename = "@xmlns")]
        xmlns: &'static str,
        #[serde(rename = "requestId")]
        request_id: &'a str,
        #[serde(flatten)]
        body: B,
    }
    let root = format!("{action}Response");
    let text = quick_xml::se::to_string_with_root(&root, &Envelope { xmlns: NAMESPACE, request_id, body })
        .map_err(|error| ApiError::internal(format!("cannot write the answer: {error}")))?;
    Ok(format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{text}"))
}

/// An EC2 error body.
pub fn error_body(error: &ApiError, request_id: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>",
        super::error::xml_escape(&error.code),
        super::error::xml_escape(&error.message)
    )
}

fn vpc_not_found(id: &str) -> ApiError {
    ApiError::bad_request("InvalidVpcID.NotFound", format!("The vpc ID '{id}' does not exist"))
}

/// One EC2 call: the control plane, the request's form fields and its id.
struct Call<'a, R: Runtime> {
    control: &'a ControlPlane<R>,
    params: &'a Params,
    request_id: &'a str,
}

impl<R: Runtime> Clone for Call<'_, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R: Runtime> Copy for Call<'_, R> {}

/// Answer one EC2 action.
pub async fn handle<R: Runtime>(
    control: &ControlPlane<R>,
    params: &Params,
    request_id: &str,
) -> Result<String, ApiError> {
    let action = params.required("Action")?;
    let call = Call { control, params, request_id };
    match action {
        "CreateVpc" => create_vpc(call).await,
        "DescribeVpcs" => describe_vpcs(call).await,
        "DeleteVpc" => delete_vpc(call).await,
        "ModifyVpcAttribute" => modify_vpc_attribute(call).await,
        "DescribeVpcAttribute" => describe_vpc_attribute(call),
        "CreateSubnet" => create_subnet(call).await,
        "DescribeSubnets" => describe_subnets(call),
        "DeleteSubnet" => delete_subnet(call).await,
        "CreateSecurityGroup" => create_security_group(call).await,
        "DescribeSecurityGroups" => describe_security_groups(call),
        "DeleteSecurityGroup" => delete_security_group(call).await,
        "CreateTags" | "DeleteTags" => change_tags(call, action == "CreateTags").await,
        other => Err(ApiError::new(
            "InvalidAction",
            StatusCode::BAD_REQUEST,
            format!(
                "The action {other} is not valid for this web service (signpost-endpoint answers: {}).",
                OPERATIONS.join(", ")
            ),
        )),
    }
}

fn vpc_xml(config: &EndpointConfig, vpc: &VpcConfig, resolver: Option<String>) -> VpcXml {
    let mut tags = vpc.tags.clone();
    if let Some(resolver) = resolver {
        tags.insert(RESOLVER_TAG.to_string(), resolver);
    }
    let first = vpc.cidrs.iter().find(|cidr| matches!(cidr, IpNet::V4(_))).or(vpc.cidrs.first());
    VpcXml {
        vpc_id: vpc.id.clone(),
        owner_id: config.account_id.clone(),
        state: "available",
        cidr_block: first.map(ToString::to_string).unwrap_or_default(),
        cidr_block_association_set: Items::of(
            vpc.cidrs
                .iter()
                .filter(|cidr| matches!(cidr, IpNet::V4(_)))
                .map(|cidr| CidrAssociationXml {
                    cidr_block: cidr.to_string(),
                    association_id: crate::control::derived_id("vpc-cidr-assoc-", &[&vpc.id, &cidr.to_string()]),
                    cidr_block_state: StateXml { state: "associated" },
                })
                .collect(),
        ),
        ipv6_cidr_block_association_set: ipv6_associations(&vpc.id, vpc.cidrs.iter()),
        dhcp_options_id: "default".to_string(),
        instance_tenancy: "default",
        is_default: false,
        tag_set: tag_set(&tags),
    }
}

/// Where `vpc`'s resolver listens, as the runtime bound it (or as configured).
async fn resolver_of<R: Runtime>(
    control: &ControlPlane<R>,
    config: &EndpointConfig,
    vpc: &VpcConfig,
) -> Option<String> {
    if let Some(bound) = control.with_runtime(|runtime| runtime.resolver_address(&vpc.id)).await {
        return Some(bound.to_string());
    }
    let ip = vpc.resolver.map(|resolver| resolver.ip).or_else(|| dot_two(vpc))?;
    let port = vpc.resolver.and_then(|resolver| resolver.port).unwrap_or(config.resolver_port);
    Some(std::net::SocketAddr::new(ip, port).to_string())
}

/// The `CidrBlock` parameter of CreateVpc and CreateSubnet.
fn cidr_block(params: &Params) -> Result<IpNet, ApiError> {
    let text = params.required("CidrBlock")?;
    text.parse().map_err(|_| {
        ApiError::bad_request(
            "InvalidParameterValue",
            format!("Value ({text}) for parameter cidrBlock is invalid. This is not a valid CIDR block."),
        )
    })
}

/// `code` (`VpcLimitExceeded`...) with `message` when quotas apply and
/// `used` has reached `limit`.
fn within_quota(
    config: &EndpointConfig,
    used: usize,
    limit: u32,
    code: &'static str,
    message: &'static str,
) -> Result<(), ApiError> {
    if config.quotas.enabled && used >= limit as usize {
        return Err(ApiError::bad_request(code, message));
    }
    Ok(())
}

/// Put the new `item` into the model; its id.
fn add<T: Resource>(m: &mut Mutation<'_>, item: T) -> String {
    let id = item.id().to_string();
    T::list(m.config).push(item);
    m.touch(T::KIND, &id);
    id
}

/// The answer of a Create call: the new item under `element` (`vpc`...).
fn created(action: &str, request_id: &str, element: &'static str, item: impl Serialize) -> Result<String, ApiError> {
    struct Body<T> {
        element: &'static str,
        item: T,
    }
    impl<T: Serialize> Serialize for Body<T> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut body = serializer.serialize_struct("Body", 1)?;
            body.serialize_field(self.element, &self.item)?;
            body.end()
        }
    }
    answer(action, request_id, Body { element, item })
}

/// A Delete call for a `T` named by its id parameter: `check` (dependents,
/// what goes with it) runs in the change that then removes it.
async fn delete<R: Runtime, T: Resource>(
    call: Call<'_, R>,
    action: &str,
    check: impl FnOnce(&mut Mutation<'_>, &str) -> Result<(), ApiError>,
) -> Result<String, ApiError> {
    let Call { control, params, request_id } = call;
    let id = params.required(T::ID_PARAMETER)?.to_string();
    control
        .mutate(|m| {
            find_by_id(T::list(m.config), &id)?;
            check(m, &id)?;
            T::list(m.config).retain(|item| item.id() != id);
            m.touch(T::KIND, &id);
            Ok(())
        })
        .await?;
    done(action, request_id)
}

async fn create_vpc<R: Runtime>(call: Call<'_, R>) -> Result<String, ApiError> {
    let Call { control, params, request_id } = call;
    let cidr = cidr_block(params)?;
    let IpNet::V4(v4) = cidr else {
        return Err(ApiError::bad_request(
            "InvalidParameterValue",
            "CidrBlock is an IPv4 block; IPv6 blocks are not supported by signpost-endpoint yet.",
        ));
    };
    if !(16..=28).contains(&v4.prefix_len()) {
        return Err(ApiError::bad_request("InvalidVpc.Range", format!("The CIDR '{cidr}' is invalid.")));
    }
    let cidr = IpNet::V4(v4.trunc());
    let ipv6 = ipv6_block(params)?;
    let amazon_ipv6 = params.get("AmazonProvidedIpv6CidrBlock") == Some("true");
    let tags = params.tags("vpc");
    let id = control
        .mutate(|m| {
            let config = &*m.config;
            let limit = config.quotas.vpcs_per_region;
            within_quota(
                config,
                config.vpcs.len(),
                limit,
                "VpcLimitExceeded",
                "The maximum number of VPCs has been reached.",
            )?;
            let id = new_id("vpc-");
            let mut blocks = vec![cidr];
            // An Amazon-provided block: a /56 of fd00:ec2::/32 (unique local
            // space) no other VPC holds, where AWS would give a public one.
            let provided = if amazon_ipv6 {
                (0..=u16::MAX)
                    .filter_map(|n| {
                        ipnet::Ipv6Net::new(std::net::Ipv6Addr::new(0xfd00, 0xec2, n, 0, 0, 0, 0, 0), 56).ok()
                    })
                    .map(IpNet::V6)
                    .find(|block| !overlaps_any(config, block))
            } else {
                None
            };
            for block in ipv6.into_iter().chain(provided) {
                if overlaps_any(config, &block) {
                    return Err(ApiError::bad_request(
                        "InvalidVpc.Range",
                        format!("The CIDR '{block}' overlaps the block of another VPC."),
                    ));
                }
                blocks.push(block);
            }
            let mut vpc = VpcConfig::new(&id, blocks);
            vpc.dns_support = Some(true);
            vpc.dns_hostnames = Some(false);
            vpc.tags = tags.clone();
            if let Some(address) = dot_two(&vpc)
                && !is_local_address(address)
            {
                vpc.resolver = free_loopback(config).map(|ip| HostPort { ip, port: None });
            }
            m.config.vpcs.push(vpc);
            // Every VPC comes with its default security group.
            let group = new_id("sg-");
            m.config.security_groups.push(SecurityGroupConfig {
                id: group.clone(),
                vpc: id.clone(),
                name: "default".to_string(),
                description: "default VPC security group".to_string(),
                tags: Tags::new(),
            });
            m.touch(Kind::Vpc, &id);
            m.touch(Kind::SecurityGroup, &group);
            Ok(id)
        })
        .await?;
    let config = control.snapshot();
    let vpc = find_by_id(&config.vpcs, &id)?;
    let resolver = resolver_of(control, &config, vpc).await;
    created("CreateVpc", request_id, "vpc", vpc_xml(&config, vpc, resolver))
}

/// Whether `block` overlaps a block of any VPC (clients are placed in
/// VPCs by source address).
fn overlaps_any(config: &EndpointConfig, block: &IpNet) -> bool {
    config
        .vpcs
        .iter()
        .flat_map(|vpc| &vpc.cidrs)
        .any(|other| other.contains(&block.network()) || block.contains(&other.network()))
}

fn tag_filter(tags: &Tags, name: &str, values: &[String]) -> Option<bool> {
    if let Some(key) = name.strip_prefix("tag:") {
        return Some(tags.get(key).is_some_and(|value| values.contains(value)));
    }
    if name == "tag-key" {
        return Some(tags.keys().any(|key| values.contains(key)));
    }
    if name == "tag-value" {
        return Some(tags.values().any(|value| values.contains(value)));
    }
    None
}

/// A VPC, subnet or security group: what Describe calls select by.
trait Resource: Sized {
    /// The parameter that names them by id (`VpcId.N`...).
    const ID_PARAMETER: &'static str;
    /// Their kind in the state store.
    const KIND: Kind;
    /// Where the model keeps them.
    fn list(config: &mut EndpointConfig) -> &mut Vec<Self>;
    /// The same, to read.
    fn list_of(config: &EndpointConfig) -> &[Self];
    fn id(&self) -> &str;
    fn tags(&self) -> &Tags;
    /// The error for an id that names none.
    fn not_found(id: &str) -> ApiError;
}

macro_rules! resource {
    ($type:ty, $parameter:literal, $kind:expr, $list:ident, $not_found:ident) => {
        impl Resource for $type {
            const ID_PARAMETER: &'static str = $parameter;
            const KIND: Kind = $kind;
            fn list(config: &mut EndpointConfig) -> &mut Vec<Self> {
                &mut config.$list
            }
            fn list_of(config: &EndpointConfig) -> &[Self] {
                &config.$list
            }
            fn id(&self) -> &str {
                &self.id
            }
            fn tags(&self) -> &Tags {
                &self.tags
            }
            fn not_found(id: &str) -> ApiError {
                $not_found(id)
            }
        }
    };
}

resource!(VpcConfig, "VpcId", Kind::Vpc, vpcs, vpc_not_found);
resource!(SubnetConfig, "SubnetId", Kind::Subnet, subnets, subnet_not_found);
resource!(SecurityGroupConfig, "GroupId", Kind::SecurityGroup, security_groups, group_not_found);

/// The item with id `id`, or the call's NotFound error.
fn find_by_id<'c, T: Resource>(items: &'c [T], id: &str) -> Result<&'c T, ApiError> {
    items.iter().find(|item| item.id() == id).ok_or_else(|| T::not_found(id))
}

/// What a Describe call answers: the items with the ids asked for (an
/// error for an id that names none) that `wanted` keeps and that pass
/// every `Filter.N`, one page of them. `matches` answers a filter by its
/// name, `None` for a name it does not know, which is then a tag filter
/// (`tag:KEY`, `tag-key`, `tag-value`) or an error.
fn select<'c, T: Resource>(
    items: &'c [T],
    params: &Params,
    wanted: impl Fn(&T) -> bool,
    matches: impl Fn(&T, &str, &[String]) -> Option<bool>,
) -> Result<(Vec<&'c T>, Option<String>), ApiError> {
    let ids = params.list(T::ID_PARAMETER);
    if let Some(unknown) = ids.iter().find(|id| !items.iter().any(|item| item.id() == id.as_str())) {
        return Err(T::not_found(unknown));
    }
    let filters = params.filters();
    let mut selected = Vec::new();
    for item in items.iter().filter(|item| (ids.is_empty() || ids.iter().any(|id| id == item.id())) && wanted(item)) {
        let mut keep = true;
        for (name, values) in &filters {
            keep &= match matches(item, name, values) {
                Some(matched) => matched,
                None => tag_filter(item.tags(), name, values).ok_or_else(|| unknown_filter(name))?,
            };
        }
        if keep {
            selected.push(item);
        }
    }
    page(selected, params)
}

/// A Describe call's answer: one page of items under `set` (`vpcSet`...),
/// and `nextToken` when more follow.
fn describe_answer<T: Serialize>(
    action: &str,
    request_id: &str,
    set: &'static str,
    items: Vec<T>,
    next_token: Option<String>,
) -> Result<String, ApiError> {
    struct Page<T> {
        set: &'static str,
        items: Items<T>,
        next_token: Option<String>,
    }
    // By hand because the set's element name differs per call; what
    // derive(Serialize) with `skip_serializing_if` would write.
    impl<T: Serialize> Serialize for Page<T> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut page = serializer.serialize_struct("Page", 2)?;
            page.serialize_field(self.set, &self.items)?;
            match &self.next_token {
                Some(token) => page.serialize_field("nextToken", token)?,
                None => page.skip_field("nextToken")?,
            }
            page.end()
        }
    }
    answer(action, request_id, Page { set, items: Items::of(items), next_token })
}

/// DescribeSubnets and DescribeSecurityGroups: the items [`select`] keeps
/// (with `wanted` and `matches`), each as `xml` writes it, under `set`.
fn describe<R: Runtime, T: Resource, X: Serialize>(
    call: Call<'_, R>,
    (action, set): (&str, &'static str),
    wanted: impl Fn(&T) -> bool,
    matches: impl Fn(&EndpointConfig, &T, &str, &[String]) -> Option<bool>,
    xml: impl Fn(&EndpointConfig, &T) -> X,
) -> Result<String, ApiError> {
    let Call { control, params, request_id } = call;
    let config = control.snapshot();
    let (selected, next) =
        select(T::list_of(&config), params, wanted, |item, name, values| matches(&config, item, name, values))?;
    let selected: Vec<X> = selected.into_iter().map(|item| xml(&config, item)).collect();
    describe_answer(action, request_id, set, selected, next)
}

fn unknown_filter(name: &str) -> ApiError {
    ApiError::bad_request("InvalidParameterValue", format!("The filter '{name}' is invalid"))
}

fn page<T>(items: Vec<T>, params: &Params) -> Result<(Vec<T>, Option<String>), ApiError> {
    let max = match params.get("MaxResults") {
        Some(text) => text.parse::<usize>().ok().filter(|max| (5..=1000).contains(max)).ok_or_else(|| {
            ApiError::bad_request(
                "InvalidParameterValue",
                format!("Value ( {text} ) for parameter maxResults is invalid. Expecting a value between 5 and 1000."),
            )
        })?,
        None => usize::MAX,
    };
    let start = match params.get("NextToken") {
        Some(token) => token
            .strip_prefix("signpost-")
            .and_then(|offset| offset.parse::<usize>().ok())
            .filter(|offset| *offset <= items.len())
            .ok_or_else(|| {
                ApiError::bad_request("InvalidPaginationToken", format!("Invalid pagination token: {token}"))
            })?,
        None => 0,
    };
    let end = start.saturating_add(max).min(items.len());
    let next = (end < items.len()).then(|| format!("signpost-{end}"));
    Ok((items.into_iter().skip(start).take(end - start).collect(), next))
}

async fn describe_vpcs<R: Runtime>(call: Call<'_, R>) -> Result<String, ApiError> {
    let Call { control, params, request_id } = call;
    let config = control.snapshot();
    let (selected, next) = select(
        &config.vpcs,
        params,
        |_| true,
        |vpc, name, values| {
            Some(match name {
                "vpc-id" => values.contains(&vpc.id),
                "cidr" | "cidr-block" | "cidrBlock" | "cidr-block-association.cidr-block" => {
                    vpc.cidrs.iter().any(|cidr| values.contains(&cidr.to_string()))
                }
                "ipv6-cidr-block-association.ipv6-cidr-block" => {
                    vpc.cidrs.iter().any(|cidr| cidr.addr().is_ipv6() && values.contains(&cidr.to_string()))
                }
                "state" => values.iter().any(|value| value == "available"),
                "is-default" => values.iter().any(|value| value == "false"),
                "owner-id" => values.contains(&config.account_id),
                "dhcp-options-id" => values.iter().any(|value| value == "default"),
                _ => return None,
            })
        },
    )?;
    let mut vpcs = Vec::with_capacity(selected.len());
    for vpc in selected {
        let resolver = resolver_of(control, &config, vpc).await;
        vpcs.push(vpc_xml(&config, vpc, resolver));
    }
    describe_answer("DescribeVpcs", request_id, "vpcSet", vpcs, next)
}

/// DependencyViolation, with `message` of the list, when anything depends on what is being deleted.
fn no_dependents(dependents: &[String], message: impl FnOnce(String) -> String) -> Result<(), ApiError> {
    if dependents.is_empty() {
        return Ok(());
    }
    Err(ApiError::bad_request("DependencyViolation", message(dependents.join(", "))))
}

/// The answer of a call that returns only `<return>true</return>`.
fn done(action: &str, request_id: &str) -> Result<String, ApiError> {
    answer(action, request_id, ReturnTrue { value: true })
}

#[derive(Serialize)]
struct ReturnTrue {
    #[serde(rename = "return")]
    value: bool,
}

async fn delete_vpc<R: Runtime>(call: Call<'_, R>) -> Result<String, ApiError> {
    delete::<R, VpcConfig>(call, "DeleteVpc", |m, id| {
        let config = &*m.config;
        let mut dependents: Vec<String> = Vec::new();
        dependents.extend(config.subnets.iter().filter(|s| s.vpc == id).map(|s| s.id.clone()));
        dependents
            .extend(config.security_groups.iter().filter(|g| g.vpc == id && g.name != "default").map(|g| g.id.clone()));
        dependents.extend(config.inbound_endpoints.iter().filter(|e| e.vpc == id).map(|e| e.id.clone()));
        dependents.extend(config.outbound_endpoints.iter().filter(|e| e.vpc == id).map(|e| e.id.clone()));
        dependents
            .extend(config.private_hosted_zones.iter().filter(|z| z.has_vpc(id)).map(|z| z.zone_id().to_string()));
        dependents.extend(config.resolver_rules.iter().filter(|r| r.has_vpc(id)).map(|r| r.id.clone()));
        dependents
            .extend(config.query_logging.iter().filter(|l| l.vpcs.iter().any(|a| a.vpc == id)).map(|l| l.id.clone()));
        no_dependents(&dependents, |list| format!("The vpc '{id}' has dependencies and cannot be deleted ({list})."))?;
        // Its default security group goes with it.
        let groups: Vec<String> =
            m.config.security_groups.iter().filter(|g| g.vpc == id).map(|g| g.id.clone()).collect();
        m.config.security_groups.retain(|g| g.vpc != id);
        for group in groups {
            m.touch(Kind::SecurityGroup, group);
        }
        Ok(())
    })
    .await
}

fn attribute_value(params: &Params, name: &str) -> Result<Option<bool>, ApiError> {
    match params.get(&format!("{name}.Value")) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(other) => Err(ApiError::bad_request(
            "InvalidParameterValue",
            format!("Value ({other}) for parameter {name} is invalid. Expected true or false."),
        )),
    }
}

async fn modify_vpc_attribute<R: Runtime>(call: Call<'_, R>) -> Result<String, ApiError> {
    let Call { control, params, request_id } = call;
    let id = params.required("VpcId")?.to_string();
    let support = attribute_value(params, "EnableDnsSupport")?;
    let hostnames = attribute_value(params, "EnableDnsHostnames")?;
    if support.is_some() == hostnames.is_some() {
        return Err(ApiError::bad_request(
            "InvalidParameterCombination",
            "Exactly one attribute can be modified at a time: EnableDnsSupport or EnableDnsHostnames.",
        ));
    }
    control
        .mutate(|m| {
            let vpc = m.config.vpcs.iter_mut().find(|vpc| vpc.id == id).ok_or_else(|| vpc_not_found(&id))?;
            if let Some(support) = support {
                vpc.dns_support = Some(support);
            }
            if let Some(hostnames) = hostnames {
                if hostnames && vpc.dns_support == Some(false) {
                    return Err(ApiError::bad_request(
                        "InvalidParameterValue",
                        "enableDnsHostnames cannot be true while enableDnsSupport is false.",
                    ));
                }
                vpc.dns_hostnames = Some(hostnames);
            }
            m.touch(Kind::Vpc, &id);
            Ok(())
        })
        .await?;
    done("ModifyVpcAttribute", request_id)
}

fn describe_vpc_attribute<R: Runtime>(call: Call<'_, R>) -> Result<String, ApiError> {
    let Call { control, params, request_id } = call;
    let id = params.required("VpcId")?;
    let attribute = params.required("Attribute")?;
    let config = control.snapshot();
    let vpc = find_by_id(&config.vpcs, id)?;
    let value = match attribute {
        "enableDnsSupport" => vpc.dns_support.unwrap_or(true),
        "enableDnsHostnames" => vpc.dns_hostnames.unwrap_or(false),
        "enableNetworkAddressUsageMetrics" => false,
        other => {
            return Err(ApiError::bad_request(
                "InvalidParameterValue",
                format!("Value ({other}) for parameter attribute is invalid. Unknown attribute."),
            ));
        }
    };
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Body<'a> {
        vpc_id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        enable_dns_support: Option<BooleanValue>,
        #[serde(skip_serializing_if = "Option::is_none")]
        enable_dns_hostnames: Option<BooleanValue>,
        #[serde(skip_serializing_if = "Option::is_none")]
        enable_network_address_usage_metrics: Option<BooleanValue>,
    }
    answer(
        "DescribeVpcAttribute",
        request_id,
        Body {
            vpc_id: id,
            enable_dns_support: (attribute == "enableDnsSupport").then_some(BooleanValue { value }),
            enable_dns_hostnames: (attribute == "enableDnsHostnames").then_some(BooleanValue { value }),
            enable_network_address_usage_metrics: (attribute == "enableNetworkAddressUsageMetrics")
                .then_some(BooleanValue { value }),
        },
    )
}

fn subnet_xml(config: &EndpointConfig, subnet: &SubnetConfig) -> SubnetXml {
    let size = match subnet.cidr {
        IpNet::V4(v4) => 1u64 << (32 - u32::from(v4.prefix_len())),
        IpNet::V6(_) => u64::MAX,
    };
    let used = config
        .inbound_endpoints
        .iter()
        .flat_map(|e| &e.addresses)
        .chain(config.outbound_endpoints.iter().flat_map(|e| &e.addresses))
        .filter(|address| address.subnet.as_deref() == Some(subnet.id.as_str()))
        .count() as u64;
    let zone = availability_zone(config, subnet);
    SubnetXml {
        subnet_id: subnet.id.clone(),
        subnet_arn: format!("arn:aws:ec2:{}:{}:subnet/{}", config.region, config.account_id, subnet.id),
        state: "available",
        vpc_id: subnet.vpc.clone(),
        owner_id: config.account_id.clone(),
        cidr_block: subnet.cidr.to_string(),
        available_ip_address_count: size.saturating_sub(5).saturating_sub(used),
        availability_zone_id: format!("use1-az{}", zone.bytes().last().map_or(1, |b| b.saturating_sub(b'a') + 1)),
        availability_zone: zone,
        default_for_az: false,
        map_public_ip_on_launch: false,
        assign_ipv6_address_on_creation: false,
        ipv6_cidr_block_association_set: ipv6_associations(&subnet.id, subnet.ipv6_cidr.iter()),
        tag_set: tag_set(&subnet.tags),
    }
}

fn availability_zone(config: &EndpointConfig, subnet: &SubnetConfig) -> String {
    subnet.availability_zone.clone().unwrap_or_else(|| format!("{}a", config.region))
}

fn subnet_not_found(id: &str) -> ApiError {
    ApiError::bad_request("InvalidSubnetID.NotFound", format!("The subnet ID '{id}' does not exist"))
}

async fn create_subnet<R: Runtime>(call: Call<'_, R>) -> Result<String, ApiError> {
    let Call { control, params, request_id } = call;
    let vpc_id = params.required("VpcId")?.to_string();
    let cidr = cidr_block(params)?;
    let cidr = cidr.trunc();
    let ipv6 = ipv6_block(params)?;
    let zone = params.get("AvailabilityZone").map(str::to_string);
    let tags = params.tags("subnet");
    let id = control
        .mutate(|m| {
            let config = &*m.config;
            let vpc = find_by_id(&config.vpcs, &vpc_id)?;
            let inside = vpc.cidrs.iter().any(|block| block.contains(&cidr));
            let size_ok = matches!(cidr, IpNet::V4(v4) if (16..=28).contains(&v4.prefix_len()));
            if !inside || !size_ok {
                return Err(ApiError::bad_request("InvalidSubnet.Range", format!("The CIDR '{cidr}' is invalid.")));
            }
            if config
                .subnets
                .iter()
                .any(|other| other.vpc == vpc_id && (other.cidr.contains(&cidr) || cidr.contains(&other.cidr)))
            {
                return Err(ApiError::bad_request(
                    "InvalidSubnet.Conflict",
                    format!("The CIDR '{cidr}' conflicts with another subnet"),
                ));
            }
            if let Some(block) = ipv6 {
                if !vpc.cidrs.iter().any(|own| own.contains(&block)) {
                    return Err(ApiError::bad_request(
                        "InvalidSubnet.Range",
                        format!("The IPv6 CIDR '{block}' is not within the IPv6 blocks of {vpc_id}."),
                    ));
                }
                let mut taken =
                    config.subnets.iter().filter(|other| other.vpc == vpc_id).filter_map(|other| other.ipv6_cidr);
                if let Some(other) = taken.find(|other| other.contains(&block) || block.contains(other)) {
                    return Err(ApiError::bad_request(
                        "InvalidSubnet.Conflict",
                        format!("The IPv6 CIDR '{block}' conflicts with another subnet's ({other})"),
                    ));
                }
            }
            let count = config.subnets.iter().filter(|subnet| subnet.vpc == vpc_id).count();
            let limit = config.quotas.subnets_per_vpc;
            within_quota(
                config,
                count,
                limit,
                "SubnetLimitExceeded",
                "The maximum number of subnets has been reached.",
            )?;
            let subnet = SubnetConfig {
                id: new_id("subnet-"),
                vpc: vpc_id.clone(),
                cidr,
                ipv6_cidr: ipv6,
                availability_zone: zone.clone(),
                tags: tags.clone(),
            };
            Ok(add(m, subnet))
        })
        .await?;
    let config = control.snapshot();
    created("CreateSubnet", request_id, "subnet", subnet_xml(&config, find_by_id(&config.subnets, &id)?))
}

fn describe_subnets<R: Runtime>(call: Call<'_, R>) -> Result<String, ApiError> {
    let matches = |config: &EndpointConfig, subnet: &SubnetConfig, name: &str, values: &[String]| {
        Some(match name {
            "vpc-id" => values.contains(&subnet.vpc),
            "subnet-id" => values.contains(&subnet.id),
            "cidr" | "cidr-block" | "cidrBlock" => values.contains(&subnet.cidr.to_string()),
            "ipv6-cidr-block-association.ipv6-cidr-block" => {
                subnet.ipv6_cidr.is_some_and(|cidr| values.contains(&cidr.to_string()))
            }
            "availability-zone" | "availabilityZone" => values.contains(&availability_zone(config, subnet)),
            "state" => values.iter().any(|value| value == "available"),
            "owner-id" => values.contains(&config.account_id),
            "default-for-az" | "defaultForAz" => values.iter().any(|value| value == "false"),
            _ => return None,
        })
    };
    describe(call, ("DescribeSubnets", "subnetSet"), |_| true, matches, subnet_xml)
}

async fn delete_subnet<R: Runtime>(call: Call<'_, R>) -> Result<String, ApiError> {
    delete::<R, SubnetConfig>(call, "DeleteSubnet", |m, id| {
        let config = &*m.config;
        let in_subnet =
            |addresses: &[crate::model::EndpointAddress]| addresses.iter().any(|a| a.subnet.as_deref() == Some(id));
        let in_use = config
            .inbound_endpoints
            .iter()
            .filter(|e| in_subnet(&e.addresses))
            .map(|e| e.id.clone())
            .chain(config.outbound_endpoints.iter().filter(|e| in_subnet(&e.addresses)).map(|e| e.id.clone()))
            .collect::<Vec<_>>();
        no_dependents(&in_use, |list| format!("The subnet '{id}' has dependencies and cannot be deleted ({list})."))
    })
    .await
}

fn group_not_found(id: &str) -> ApiError {
    ApiError::bad_request("InvalidGroup.NotFound", format!("The security group '{id}' does not exist"))
}

fn security_group_xml(config: &EndpointConfig, group: &SecurityGroupConfig) -> SecurityGroupXml {
    SecurityGroupXml {
        owner_id: config.account_id.clone(),
        group_id: group.id.clone(),
        group_name: group.name.clone(),
        group_description: group.description.clone(),
        vpc_id: group.vpc.clone(),
        security_group_arn: format!("arn:aws:ec2:{}:{}:security-group/{}", config.region, config.account_id, group.id),
        ip_permissions: Items::of(Vec::new()),
        ip_permissions_egress: Items::of(Vec::new()),
        tag_set: tag_set(&group.tags),
    }
}

async fn create_security_group<R: Runtime>(call: Call<'_, R>) -> Result<String, ApiError> {
    let Call { control, params, request_id } = call;
    let name = params.required("GroupName")?.to_string();
    let description = params.required("GroupDescription")?.to_string();
    let Some(vpc_id) = params.get("VpcId").map(str::to_string) else {
        return Err(ApiError::bad_request("VPCIdNotSpecified", "No default VPC for this user"));
    };
    if name.starts_with("sg-") {
        return Err(ApiError::bad_request("InvalidParameterValue", "Group names may not be in the format sg-*"));
    }
    let tags = params.tags("security-group");
    let id = control
        .mutate(|m| {
            let config = &*m.config;
            find_by_id(&config.vpcs, &vpc_id)?;
            if config.security_groups.iter().any(|group| group.vpc == vpc_id && group.name == name) {
                return Err(ApiError::bad_request(
                    "InvalidGroup.Duplicate",
                    format!("The security group '{name}' already exists for VPC '{vpc_id}'"),
                ));
            }
            let (used, limit) = (config.security_groups.len(), config.quotas.security_groups_per_region);
            let message = "The maximum number of security groups has been reached.";
            within_quota(config, used, limit, "SecurityGroupLimitExceeded", message)?;
            let group = SecurityGroupConfig {
                id: new_id("sg-"),
                vpc: vpc_id.clone(),
                name: name.clone(),
                description: description.clone(),
                tags: tags.clone(),
            };
            Ok(add(m, group))
        })
        .await?;
    let config = control.snapshot();
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Body {
        #[serde(rename = "return")]
        value: bool,
        group_id: String,
        security_group_arn: String,
        tag_set: Items<TagXml>,
    }
    answer(
        "CreateSecurityGroup",
        request_id,
        Body {
            value: true,
            security_group_arn: format!("arn:aws:ec2:{}:{}:security-group/{id}", config.region, config.account_id),
            group_id: id,
            tag_set: tag_set(&tags),
        },
    )
}

fn describe_security_groups<R: Runtime>(call: Call<'_, R>) -> Result<String, ApiError> {
    let names = call.params.list("GroupName");
    let wanted = |group: &SecurityGroupConfig| names.is_empty() || names.contains(&group.name);
    let matches = |config: &EndpointConfig, group: &SecurityGroupConfig, name: &str, values: &[String]| {
        Some(match name {
            "group-id" => values.contains(&group.id),
            "group-name" => values.contains(&group.name),
            "vpc-id" => values.contains(&group.vpc),
            "description" => values.contains(&group.description),
            "owner-id" => values.contains(&config.account_id),
            _ => return None,
        })
    };
    describe(call, ("DescribeSecurityGroups", "securityGroupInfo"), wanted, matches, security_group_xml)
}

async fn delete_security_group<R: Runtime>(call: Call<'_, R>) -> Result<String, ApiError> {
    let Call { control, params, request_id } = call;
    let by_id = params.get("GroupId").map(str::to_string);
    let by_name = params.get("GroupName").map(str::to_string);
    control
        .mutate(|m| {
            let config = &*m.config;
            let group = match (&by_id, &by_name) {
                (Some(id), _) => find_by_id(&config.security_groups, id)?,
                (None, Some(name)) => config
                    .security_groups
                    .iter()
                    .find(|group| group.name == *name)
                    .ok_or_else(|| group_not_found(name))?,
                (None, None) => {
                    return Err(ApiError::bad_request(
                        "MissingParameter",
                        "The request must contain the parameter GroupId",
                    ));
                }
            };
            let id = group.id.clone();
            if group.name == "default" {
                return Err(ApiError::bad_request(
                    "CannotDelete",
                    format!("the specified group: \"{id}\" name: \"default\" cannot be deleted by a user"),
                ));
            }
            let used_by: Vec<String> = config
                .inbound_endpoints
                .iter()
                .filter(|e| e.security_groups.contains(&id))
                .map(|e| e.id.clone())
                .chain(
                    config.outbound_endpoints.iter().filter(|e| e.security_groups.contains(&id)).map(|e| e.id.clone()),
                )
                .collect();
            no_dependents(&used_by, |list| format!("resource {id} has a dependent object ({list})"))?;
            m.config.security_groups.retain(|group| group.id != id);
            m.touch(Kind::SecurityGroup, &id);
            Ok(())
        })
        .await?;
    done("DeleteSecurityGroup", request_id)
}

/// CreateTags / DeleteTags on VPCs, subnets and security groups.
async fn change_tags<R: Runtime>(call: Call<'_, R>, create: bool) -> Result<String, ApiError> {
    let Call { control, params, request_id } = call;
    let resources = params.list("ResourceId");
    let tags = params.tags("");
    let keys: Vec<String> =
        (1..).map_while(|index| params.get(&format!("Tag.{index}.Key")).map(str::to_string)).collect();
    control
        .mutate(|m| {
            for resource in &resources {
                let (kind, target) = if let Some(vpc) = m.config.vpcs.iter_mut().find(|vpc| vpc.id == *resource) {
                    (Kind::Vpc, &mut vpc.tags)
                } else if let Some(subnet) = m.config.subnets.iter_mut().find(|subnet| subnet.id == *resource) {
                    (Kind::Subnet, &mut subnet.tags)
                } else if let Some(group) = m.config.security_groups.iter_mut().find(|group| group.id == *resource) {
                    (Kind::SecurityGroup, &mut group.tags)
                } else {
                    return Err(ApiError::bad_request(
                        "InvalidID",
                        format!("The ID '{resource}' is not valid (signpost-endpoint tags VPCs, subnets and security groups)"),
                    ));
                };
                if create {
                    target.extend(tags.clone());
                } else {
                    for key in &keys {
                        target.remove(key);
                    }
                }
                m.touch(kind, resource.clone());
            }
            Ok(())
        })
        .await?;
    done(if create { "CreateTags" } else { "DeleteTags" }, request_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn query_lists_filters_and_tags_are_read_as_botocore_writes_them() {
        let p = params(&[
            ("VpcId.1", "vpc-1"),
            ("VpcId.2", "vpc-2"),
            ("Filter.1.Name", "tag:Name"),
            ("Filter.1.Value.1", "a"),
            ("Filter.1.Value.2", "b"),
            ("TagSpecification.1.ResourceType", "vpc"),
            ("TagSpecification.1.Tag.1.Key", "Name"),
            ("TagSpecification.1.Tag.1.Value", "main"),
        ]);
        assert_eq!(p.list("VpcId"), vec!["vpc-1", "vpc-2"]);
        assert_eq!(p.filters(), vec![("tag:Name".to_string(), vec!["a".to_string(), "b".to_string()])]);
        assert_eq!(p.tags("vpc").get("Name").map(String::as_str), Some("main"));
        assert!(p.tags("subnet").is_empty());
    }

    #[test]
    fn a_create_answer_puts_the_new_item_under_its_element() {
        #[derive(Serialize)]
        struct Item {
            #[serde(rename = "subnetId")]
            id: &'static str,
        }
        #[derive(Serialize)]
        struct Body {
            subnet: Item,
        }
        let derived = answer("CreateSubnet", "req-1", Body { subnet: Item { id: "subnet-1" } }).unwrap();
        assert!(
            derived.contains("<requestId>req-1</requestId><subnet><subnetId>subnet-1</subnetId></subnet>"),
            "{derived}"
        );
        assert_eq!(created("CreateSubnet", "req-1", "subnet", Item { id: "subnet-1" }).unwrap(), derived);
    }

    #[test]
    fn answers_are_wrapped_with_the_namespace_and_request_id() {
        let text = answer("DeleteVpc", "req-1", ReturnTrue { value: true }).unwrap();
        assert!(text.contains("<DeleteVpcResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">"), "{text}");
        assert!(text.contains("<requestId>req-1</requestId><return>true</return>"), "{text}");
        let error = error_body(&vpc_not_found("vpc-<x>"), "req-2");
        assert!(
            error.contains(
                "<Code>InvalidVpcID.NotFound</Code><Message>The vpc ID 'vpc-&lt;x&gt;' does not exist</Message>"
            ),
            "{error}"
        );
    }
}
