//! Endpoint protocols and the combinations Route 53 Resolver allows.
//!
//! Inbound endpoints take Do53, DoH, DoH-FIPS, Do53+DoH or Do53+DoH-FIPS;
//! outbound endpoints take Do53, DoH or Do53+DoH. None given means Do53.
//! An endpoint cannot change from Do53 alone straight to DoH (or DoH-FIPS)
//! alone, or back: the change must pass through a set holding both.

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One protocol an endpoint speaks, spelled as the Route 53 API does.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum EndpointProtocol {
    /// Plain DNS over UDP and TCP, port 53.
    Do53,
    /// DNS over HTTPS (RFC 8484), port 443.
    DoH,
    /// DNS over HTTPS restricted to FIPS-approved TLS choices (an emulated
    /// policy, not a validated module); inbound endpoints only.
    DohFips,
}

impl EndpointProtocol {
    /// The name as the Route 53 API spells it: `Do53`, `DoH`, `DoH-FIPS`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Do53 => "Do53",
            Self::DoH => "DoH",
            Self::DohFips => "DoH-FIPS",
        }
    }
}

impl fmt::Display for EndpointProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A protocol name that is none of Do53, DoH, DoH-FIPS.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("unknown endpoint protocol {0:?} (expected Do53, DoH or DoH-FIPS)")]
pub struct UnknownEndpointProtocol(pub String);

impl FromStr for EndpointProtocol {
    type Err = UnknownEndpointProtocol;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "do53" => Ok(Self::Do53),
            "doh" => Ok(Self::DoH),
            "doh-fips" | "dohfips" | "doh_fips" => Ok(Self::DohFips),
            _ => Err(UnknownEndpointProtocol(text.to_string())),
        }
    }
}

impl Serialize for EndpointProtocol {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EndpointProtocol {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Which side of the VPC an endpoint serves.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Direction {
    /// Queries from the network into the VPC.
    Inbound,
    /// Queries from the VPC out to the network.
    Outbound,
}

impl Direction {
    /// `inbound` or `outbound`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The set of protocols of one endpoint.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Protocols {
    /// Do53.
    pub do53: bool,
    /// DoH.
    pub doh: bool,
    /// DoH-FIPS.
    pub doh_fips: bool,
}

/// Why a set of endpoint protocols is not allowed.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolProblem {
    /// A protocol is listed twice.
    #[error("{0} is listed twice")]
    Repeated(EndpointProtocol),
    /// DoH and DoH-FIPS on one endpoint.
    #[error(
        "DoH and DoH-FIPS cannot be used together on one endpoint (allowed: Do53, DoH, DoH-FIPS, Do53+DoH, Do53+DoH-FIPS)"
    )]
    DohWithDohFips,
    /// DoH-FIPS on an outbound endpoint.
    #[error("DoH-FIPS is for inbound endpoints only (outbound endpoints allow Do53, DoH, Do53+DoH)")]
    FipsOutbound,
}

impl Protocols {
    /// Do53 alone, what an endpoint with no protocols given speaks.
    pub const DO53: Self = Self { do53: true, doh: false, doh_fips: false };

    /// Check a list as given in configuration for an endpoint of `direction`.
    pub fn from_list(list: &[EndpointProtocol], direction: Direction) -> Result<Self, ProtocolProblem> {
        if list.is_empty() {
            return Ok(Self::DO53);
        }
        let mut set = Self::default();
        for &protocol in list {
            let slot = match protocol {
                EndpointProtocol::Do53 => &mut set.do53,
                EndpointProtocol::DoH => &mut set.doh,
                EndpointProtocol::DohFips => &mut set.doh_fips,
            };
            if *slot {
                return Err(ProtocolProblem::Repeated(protocol));
            }
            *slot = true;
        }
        if set.doh && set.doh_fips {
            return Err(ProtocolProblem::DohWithDohFips);
        }
        if set.doh_fips && direction == Direction::Outbound {
            return Err(ProtocolProblem::FipsOutbound);
        }
        Ok(set)
    }

    /// Whether the set holds `protocol`.
    pub fn contains(self, protocol: EndpointProtocol) -> bool {
        match protocol {
            EndpointProtocol::Do53 => self.do53,
            EndpointProtocol::DoH => self.doh,
            EndpointProtocol::DohFips => self.doh_fips,
        }
    }

    /// Whether DoH or DoH-FIPS is in the set.
    pub fn has_https(self) -> bool {
        self.doh || self.doh_fips
    }

    /// The protocols in API order.
    pub fn iter(self) -> impl Iterator<Item = EndpointProtocol> {
        [EndpointProtocol::Do53, EndpointProtocol::DoH, EndpointProtocol::DohFips]
            .into_iter()
            .filter(move |protocol| self.contains(*protocol))
    }

    /// Whether an endpoint may change from `self` to `next` in place. Do53
    /// alone and a set without Do53 are not one step apart: the change must
    /// pass through a set holding Do53 and the new protocol, as Route 53
    /// requires so that clients can move over before Do53 goes away.
    pub fn can_change_to(self, next: Self) -> bool {
        let do53_to_encrypted_only = self == Self::DO53 && !next.do53;
        let encrypted_only_to_do53 = next == Self::DO53 && !self.do53;
        !do53_to_encrypted_only && !encrypted_only_to_do53
    }
}

impl fmt::Display for Protocols {
    /// `Do53`, `DoH`, `Do53+DoH`, `Do53+DoH-FIPS`...
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for protocol in self.iter() {
            if !first {
                f.write_str("+")?;
            }
            f.write_str(protocol.as_str())?;
            first = false;
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::EndpointProtocol::{Do53, DoH, DohFips};
    use super::*;

    #[test]
    fn inbound_combinations_follow_the_service() {
        let check = |list: &[EndpointProtocol]| Protocols::from_list(list, Direction::Inbound);
        assert_eq!(check(&[]), Ok(Protocols::DO53));
        assert_eq!(check(&[Do53]).map(|p| p.to_string()), Ok("Do53".into()));
        assert_eq!(check(&[DoH]).map(|p| p.to_string()), Ok("DoH".into()));
        assert_eq!(check(&[DohFips]).map(|p| p.to_string()), Ok("DoH-FIPS".into()));
        assert_eq!(check(&[DoH, Do53]).map(|p| p.to_string()), Ok("Do53+DoH".into()));
        assert_eq!(check(&[Do53, DohFips]).map(|p| p.to_string()), Ok("Do53+DoH-FIPS".into()));
        assert_eq!(check(&[DoH, DohFips]), Err(ProtocolProblem::DohWithDohFips));
        assert_eq!(check(&[Do53, DoH, DohFips]), Err(ProtocolProblem::DohWithDohFips));
        assert_eq!(check(&[Do53, Do53]), Err(ProtocolProblem::Repeated(Do53)));
    }

    #[test]
    fn outbound_combinations_follow_the_service() {
        let check = |list: &[EndpointProtocol]| Protocols::from_list(list, Direction::Outbound);
        assert_eq!(check(&[]), Ok(Protocols::DO53));
        assert!(check(&[Do53]).is_ok());
        assert!(check(&[DoH]).is_ok());
        assert!(check(&[Do53, DoH]).is_ok());
        assert_eq!(check(&[DohFips]), Err(ProtocolProblem::FipsOutbound));
        assert_eq!(check(&[Do53, DohFips]), Err(ProtocolProblem::FipsOutbound));
        assert_eq!(check(&[DoH, DohFips]), Err(ProtocolProblem::DohWithDohFips));
    }

    #[test]
    fn do53_and_doh_only_are_two_steps_apart() {
        let set = |list: &[EndpointProtocol]| Protocols::from_list(list, Direction::Inbound).expect("valid");
        let (do53, doh, fips, both, both_fips) =
            (set(&[Do53]), set(&[DoH]), set(&[DohFips]), set(&[Do53, DoH]), set(&[Do53, DohFips]));
        assert!(!do53.can_change_to(doh));
        assert!(!doh.can_change_to(do53));
        assert!(!do53.can_change_to(fips));
        assert!(!fips.can_change_to(do53));
        for (from, to) in [(do53, both), (both, doh), (doh, both), (both, do53), (do53, both_fips), (both_fips, fips)] {
            assert!(from.can_change_to(to), "{from} -> {to}");
        }
        assert!(doh.can_change_to(fips), "no Do53 involved");
        assert!(do53.can_change_to(do53));
    }

    #[test]
    fn names_parse_case_insensitively() {
        assert_eq!("doh-fips".parse::<EndpointProtocol>(), Ok(DohFips));
        assert_eq!("DO53".parse::<EndpointProtocol>(), Ok(Do53));
        assert!("DoT".parse::<EndpointProtocol>().is_err());
    }
}
