//! An emulator of Amazon Route 53 Resolver, as a configuration of the
//! server: VPCs, private hosted zones, resolver rules, inbound and outbound
//! endpoints, query logging and the service's rate limits.
//!
//! The model ([`EndpointConfig`], TOML) compiles into a [`Deployment`]: a
//! rule set with one view per VPC (clients are placed by source CIDR, and
//! queries arriving on an inbound endpoint use its VPC's view), upstream
//! groups (the recursive default and one per FORWARD rule) and a server
//! configuration (a VPC resolver listener per VPC, listeners per inbound
//! endpoint address and protocol, limits, query logs). [`Endpoint`] runs
//! it and reloads it with the service's transition checks. docs/endpoint.md
//! has the model, the file format and the precedence table.
//!
//! ```no_run
//! use signpost_endpoint::{Endpoint, EndpointConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = EndpointConfig::from_toml(r#"
//!     [recursive]
//!     servers = ["127.0.0.1:5300"]
//!
//!     [[vpcs]]
//!     id = "vpc-a"
//!     cidrs = ["127.0.1.0/24"]
//!     resolver = "127.0.1.2:5353"
//!
//!     [[private_hosted_zones]]
//!     name = "corp.example"
//!     vpcs = ["vpc-a"]
//!     records = ["www A 10.1.0.10"]
//! "#, "endpoint.toml")?;
//! println!("{}", config.compile()?.describe());
//! let endpoint = Endpoint::start(config).await?;
//! for listener in endpoint.listeners() {
//!     println!("{} {} {}", listener.id, listener.transport.as_str(), listener.address);
//! }
//! endpoint.shutdown().await;
//! # Ok(()) }
//! ```

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#![allow(
    clippy::result_large_err,
    reason = "errors carry file, line and field; they come from loading configuration, a cold path"
)]

pub mod api;
pub mod autodefined;
pub mod certificates;
mod compile;
pub mod control;
mod describe;
pub mod destinations;
mod error;
pub mod firewall;
pub mod live;
mod model;
mod protocols;
mod querylog;
mod quotas;
mod running;
pub mod runtime;
pub mod secondary;
pub mod service;
pub mod state;
pub mod transfer_out;

#[doc(hidden)]
pub mod fuzzing;

pub use compile::{
    AddressLimit, Deployment, ListenerRole, PlannedListener, PlannedSecondary, RECURSIVE_GROUP, RouteTarget, VpcRoutes,
    forward_group, inbound_listener_id, resolver_listener_id,
};
pub use error::EndpointError;
pub use model::{
    ApiSettings, AwsLimits, BlockResponse, EndpointAddress, EndpointConfig, EndpointType, FirewallAssociationConfig,
    FirewallDomainListConfig, FirewallRuleAction, FirewallRuleConfig, FirewallRuleGroupConfig, HostPort,
    HostedZoneConfig, InboundEndpointConfig, OutboundEndpointConfig, QueryLoggingConfig, Quotas, RecursiveConfig,
    ResolverRuleConfig, RuleType, SECONDARY_PRIMARIES_TAG, SECONDARY_TSIG_KEY_TAG, SecondaryConfig,
    SecurityGroupConfig, SubnetConfig, TRANSFER_ALLOW_TAG, TRANSFER_NOTIFY_TAG, TRANSFER_TSIG_KEY_TAG, Tags,
    TargetConfig, TlsFiles, TransferOutConfig, TsigKeyConfig, VpcAssociation, VpcConfig,
};
pub use protocols::{Direction, EndpointProtocol, ProtocolProblem, Protocols, UnknownEndpointProtocol};
pub use querylog::{LogAccount, Route53Format};
pub use running::{Endpoint, EndpointListener, Reloaded};
