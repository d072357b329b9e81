//! Errors as the AWS services give them: a code, a message and an HTTP
//! status, rendered per protocol (JSON 1.1, REST-XML, EC2 query).

use std::borrow::Cow;

use http::StatusCode;

use crate::error::EndpointError;
use crate::protocols::ProtocolProblem;

/// An error answer of an AWS API call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// The error code (`ResourceNotFoundException`, `NoSuchHostedZone`, `InvalidVpcID.NotFound`...).
    pub code: Cow<'static, str>,
    /// The message.
    pub message: String,
    /// The HTTP status.
    pub status: StatusCode,
}

impl ApiError {
    /// An error with this code, status and message.
    pub fn new(code: impl Into<Cow<'static, str>>, status: StatusCode, message: impl Into<String>) -> Self {
        Self { code: code.into(), message: message.into(), status }
    }

    /// A 400 error with this code.
    pub fn bad_request(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(code, StatusCode::BAD_REQUEST, message)
    }

    /// Route 53 Resolver's `InvalidParameterException`.
    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::bad_request("InvalidParameterException", message)
    }

    /// Route 53 Resolver's `InvalidRequestException`.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::bad_request("InvalidRequestException", message)
    }

    /// Route 53 Resolver's `ResourceNotFoundException`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::bad_request("ResourceNotFoundException", message)
    }

    /// Route 53 Resolver's `ResourceExistsException`.
    pub fn exists(message: impl Into<String>) -> Self {
        Self::bad_request("ResourceExistsException", message)
    }

    /// Route 53 Resolver's `LimitExceededException`.
    pub fn limit_exceeded(message: impl Into<String>) -> Self {
        Self::bad_request("LimitExceededException", message)
    }

    /// A request this emulator does not implement.
    pub fn unsupported(operation: &str) -> Self {
        Self::bad_request(
            "UnsupportedOperation",
            format!("{operation} is not supported by signpost-endpoint (docs/endpoint-api.md lists what is)"),
        )
    }

    /// A failure on our side (the state could not be stored, a listener could not start).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new("InternalServiceErrorException", StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// The error a Route 53 Resolver call gets when the model rejects the
    /// change it would make (the same checks a TOML file goes through).
    pub fn from_model(error: &EndpointError) -> Self {
        match error {
            EndpointError::TooFewAddresses { .. } => {
                Self::invalid_request("[RSLVR-00400] Resolver endpoint need to have at least 2 IP addresses.")
            }
            EndpointError::Conflict { what: "resolver rule", other, .. } => Self::invalid_request(format!(
                "[RSLVR-00802] Cannot associate rules with same domain name with same VPC. Conflict with resolver rule \"{other}\""
            )),
            EndpointError::Conflict { domain, vpc, .. } => Self::bad_request(
                "ConflictingDomainExists",
                format!("The VPC {vpc} already has a private hosted zone named {domain} associated with it."),
            ),
            EndpointError::Protocols { problem: ProtocolProblem::FipsOutbound, .. } => {
                Self::invalid_parameter("DoH-FIPS is supported only for inbound resolver endpoints.")
            }
            EndpointError::Protocols { problem, .. } => Self::invalid_parameter(problem.to_string()),
            EndpointError::TargetProtocol { protocol, endpoint, offered, .. } => Self::invalid_request(format!(
                "The target protocol {protocol} is not supported by resolver endpoint {endpoint}, which supports {offered}."
            )),
            EndpointError::MixedTargetFamilies { .. } => {
                Self::invalid_parameter("The target IP addresses of a rule must all be IPv4 or all be IPv6.")
            }
            EndpointError::Transition { from, to, through, .. } => Self::invalid_request(format!(
                "Cannot change the endpoint protocols from {from} straight to {to}; change them to {through} first, then to {to}."
            )),
            EndpointError::Duplicate { what, id, .. } => Self::exists(format!("The {what} {id} is already in use.")),
            EndpointError::OverlappingCidrs { cidr, other_vpc, other_cidr, .. } => Self::bad_request(
                "InvalidVpc.Range",
                format!(
                    "The CIDR '{cidr}' overlaps {other_cidr} of {other_vpc}; Signpost places clients in VPCs by source address, so VPC blocks cannot overlap."
                ),
            ),
            EndpointError::Server(error) => Self::internal(format!("the change could not be made live: {error}")),
            other => Self::invalid_request(without_location(&other.to_string())),
        }
    }
}

/// A model error's message without the `field x: ` prefix a TOML location adds.
fn without_location(text: &str) -> String {
    match text.split_once(": ") {
        Some((head, rest)) if head.starts_with("field ") || head.contains(".toml") || head == "<unknown location>" => {
            rest.to_string()
        }
        _ => text.to_string(),
    }
}

/// `<`, `>` and `&` escaped for XML text.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_text_is_escaped() {
        assert_eq!(xml_escape(r#"a<b>&"c'"#), "a&lt;b&gt;&amp;\"c'");
    }

    #[test]
    fn locations_are_left_out_of_api_messages() {
        assert_eq!(
            without_location("field resolver_rules[0].targets: a FORWARD rule needs targets"),
            "a FORWARD rule needs targets"
        );
        assert_eq!(without_location("no colon here"), "no colon here");
    }
}
