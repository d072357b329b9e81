//! IANA code points as newtypes with named constants, so unknown values round-trip.

use core::fmt;
use core::str::FromStr;

macro_rules! code_type {
    (
        $(#[$meta:meta])*
        $name:ident($int:ty), generic = $generic:literal, what = $what:literal;
        $( $(#[$cmeta:meta])* $konst:ident = $value:literal, $mnemonic:literal; )*
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub $int);

        impl $name {
            $( $(#[$cmeta])* pub const $konst: Self = Self($value); )*

            /// The registered mnemonic, if this value has one.
            pub fn mnemonic(self) -> Option<&'static str> {
                match self.0 {
                    $( $value => Some($mnemonic), )*
                    _ => None,
                }
            }

            /// Parse a mnemonic (case-insensitive) or the generic form.
            pub fn from_mnemonic(text: &str) -> Option<Self> {
                $( if text.eq_ignore_ascii_case($mnemonic) { return Some(Self::$konst); } )*
                let prefix = $generic;
                if text.len() > prefix.len()
                    && text.get(..prefix.len()).is_some_and(|p| p.eq_ignore_ascii_case(prefix))
                {
                    let digits = text.get(prefix.len()..)?;
                    if digits.bytes().all(|b| b.is_ascii_digit()) {
                        return digits.parse::<$int>().ok().map(Self);
                    }
                }
                None
            }
        }

        impl From<$int> for $name {
            fn from(value: $int) -> Self { Self(value) }
        }

        impl From<$name> for $int {
            fn from(value: $name) -> Self { value.0 }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.mnemonic() {
                    Some(m) => f.write_str(m),
                    None => write!(f, "{}{}", $generic, self.0),
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = crate::Error;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Self::from_mnemonic(text)
                    .ok_or(crate::Error::UnknownMnemonic { column: 0, what: $what })
            }
        }
    };
}

code_type! {
    /// A resource record type (RFC 1035 §3.2.2 and the IANA registry).
    RecordType(u16), generic = "TYPE", what = "type";
    /// IPv4 address.
    A = 1, "A";
    /// Authoritative name server.
    NS = 2, "NS";
    /// Canonical name.
    CNAME = 5, "CNAME";
    /// Start of authority.
    SOA = 6, "SOA";
    /// Null record.
    NULL = 10, "NULL";
    /// Well-known services.
    WKS = 11, "WKS";
    /// Domain name pointer.
    PTR = 12, "PTR";
    /// Host information.
    HINFO = 13, "HINFO";
    /// Mail exchange.
    MX = 15, "MX";
    /// Text strings.
    TXT = 16, "TXT";
    /// Responsible person.
    RP = 17, "RP";
    /// AFS database.
    AFSDB = 18, "AFSDB";
    /// Signature (obsolete).
    SIG = 24, "SIG";
    /// Key (obsolete).
    KEY = 25, "KEY";
    /// IPv6 address.
    AAAA = 28, "AAAA";
    /// Location.
    LOC = 29, "LOC";
    /// Server selection.
    SRV = 33, "SRV";
    /// Naming authority pointer.
    NAPTR = 35, "NAPTR";
    /// Key exchanger.
    KX = 36, "KX";
    /// Certificate.
    CERT = 37, "CERT";
    /// Delegation name.
    DNAME = 39, "DNAME";
    /// EDNS pseudo-record.
    OPT = 41, "OPT";
    /// Address prefix list.
    APL = 42, "APL";
    /// Delegation signer.
    DS = 43, "DS";
    /// SSH fingerprint.
    SSHFP = 44, "SSHFP";
    /// IPsec key.
    IPSECKEY = 45, "IPSECKEY";
    /// DNSSEC signature.
    RRSIG = 46, "RRSIG";
    /// Next secure.
    NSEC = 47, "NSEC";
    /// DNS key.
    DNSKEY = 48, "DNSKEY";
    /// DHCP identifier.
    DHCID = 49, "DHCID";
    /// Hashed next secure.
    NSEC3 = 50, "NSEC3";
    /// NSEC3 parameters.
    NSEC3PARAM = 51, "NSEC3PARAM";
    /// TLS association.
    TLSA = 52, "TLSA";
    /// S/MIME association.
    SMIMEA = 53, "SMIMEA";
    /// Host identity protocol.
    HIP = 55, "HIP";
    /// Child DS.
    CDS = 59, "CDS";
    /// Child DNSKEY.
    CDNSKEY = 60, "CDNSKEY";
    /// OpenPGP key.
    OPENPGPKEY = 61, "OPENPGPKEY";
    /// Child-to-parent synchronisation.
    CSYNC = 62, "CSYNC";
    /// Message digest for zones.
    ZONEMD = 63, "ZONEMD";
    /// Service binding.
    SVCB = 64, "SVCB";
    /// HTTPS service binding.
    HTTPS = 65, "HTTPS";
    /// Sender policy framework (obsolete).
    SPF = 99, "SPF";
    /// EUI-48 address.
    EUI48 = 108, "EUI48";
    /// EUI-64 address.
    EUI64 = 109, "EUI64";
    /// Transaction key.
    TKEY = 249, "TKEY";
    /// Transaction signature.
    TSIG = 250, "TSIG";
    /// Incremental zone transfer.
    IXFR = 251, "IXFR";
    /// Full zone transfer.
    AXFR = 252, "AXFR";
    /// Any type (query only).
    ANY = 255, "ANY";
    /// URI.
    URI = 256, "URI";
    /// Certification authority authorisation.
    CAA = 257, "CAA";
}

impl RecordType {
    /// Query-only and meta types that never appear as data in a zone.
    pub fn is_meta(self) -> bool {
        matches!(self.0, 41 | 128..=255)
    }
}

code_type! {
    /// A DNS class (RFC 1035 §3.2.4).
    Class(u16), generic = "CLASS", what = "class";
    /// The Internet.
    IN = 1, "IN";
    /// Chaos.
    CH = 3, "CH";
    /// Hesiod.
    HS = 4, "HS";
    /// None (dynamic update).
    NONE = 254, "NONE";
    /// Any class (query only).
    ANY = 255, "ANY";
}

code_type! {
    /// A header opcode (4 bits).
    Opcode(u8), generic = "OPCODE", what = "opcode";
    /// Standard query.
    QUERY = 0, "QUERY";
    /// Inverse query (obsolete).
    IQUERY = 1, "IQUERY";
    /// Server status.
    STATUS = 2, "STATUS";
    /// Zone change notification.
    NOTIFY = 4, "NOTIFY";
    /// Dynamic update.
    UPDATE = 5, "UPDATE";
    /// DNS stateful operations.
    DSO = 6, "DSO";
}

code_type! {
    /// A response code, including the EDNS extended bits (12 bits in all).
    Rcode(u16), generic = "RCODE", what = "rcode";
    /// No error.
    NOERROR = 0, "NOERROR";
    /// Format error.
    FORMERR = 1, "FORMERR";
    /// Server failure.
    SERVFAIL = 2, "SERVFAIL";
    /// Name does not exist.
    NXDOMAIN = 3, "NXDOMAIN";
    /// Not implemented.
    NOTIMP = 4, "NOTIMP";
    /// Refused.
    REFUSED = 5, "REFUSED";
    /// Name exists when it should not.
    YXDOMAIN = 6, "YXDOMAIN";
    /// RRset exists when it should not.
    YXRRSET = 7, "YXRRSET";
    /// RRset that should exist does not.
    NXRRSET = 8, "NXRRSET";
    /// Not authoritative.
    NOTAUTH = 9, "NOTAUTH";
    /// Name not in zone.
    NOTZONE = 10, "NOTZONE";
    /// Bad EDNS version.
    BADVERS = 16, "BADVERS";
    /// Bad or missing server cookie.
    BADCOOKIE = 23, "BADCOOKIE";
}

impl Rcode {
    /// The low four bits that go in the header.
    pub fn header_bits(self) -> u8 {
        (self.0 & 0x0f) as u8
    }

    /// The high eight bits that go in the OPT record's TTL field.
    pub fn extended_bits(self) -> u8 {
        ((self.0 >> 4) & 0xff) as u8
    }

    /// Combine header and OPT bits.
    pub fn from_parts(header_bits: u8, extended_bits: u8) -> Self {
        Self(u16::from(extended_bits) << 4 | u16::from(header_bits & 0x0f))
    }
}

code_type! {
    /// An EDNS option code (RFC 6891 and the IANA registry).
    OptionCode(u16), generic = "OPTION", what = "option";
    /// Name server identifier (RFC 5001).
    NSID = 3, "NSID";
    /// Client subnet (RFC 7871).
    CLIENT_SUBNET = 8, "ECS";
    /// Expire (RFC 7314).
    EXPIRE = 9, "EXPIRE";
    /// Cookie (RFC 7873).
    COOKIE = 10, "COOKIE";
    /// TCP keepalive (RFC 7828).
    TCP_KEEPALIVE = 11, "KEEPALIVE";
    /// Padding (RFC 7830).
    PADDING = 12, "PADDING";
    /// Chain query (RFC 7901).
    CHAIN = 13, "CHAIN";
    /// Extended DNS error (RFC 8914).
    EXTENDED_ERROR = 15, "EDE";
}

code_type! {
    /// An SVCB/HTTPS parameter key (RFC 9460 §14.3).
    SvcParamKey(u16), generic = "key", what = "SvcParamKey";
    /// Keys that must be understood.
    MANDATORY = 0, "mandatory";
    /// Application protocols.
    ALPN = 1, "alpn";
    /// No default ALPN.
    NO_DEFAULT_ALPN = 2, "no-default-alpn";
    /// Port.
    PORT = 3, "port";
    /// IPv4 address hints.
    IPV4HINT = 4, "ipv4hint";
    /// Encrypted ClientHello configuration.
    ECH = 5, "ech";
    /// IPv6 address hints.
    IPV6HINT = 6, "ipv6hint";
    /// DoH URI template path (RFC 9461).
    DOHPATH = 7, "dohpath";
    /// Oblivious DoH target (RFC 9540).
    OHTTP = 8, "ohttp";
}

/// Declares `ExtendedErrorCode`'s constants and its `Display` from one
/// table: constant, value, and the RFC 8914 §5.2 text.
macro_rules! extended_error_codes {
    ($( $(#[$meta:meta])* $konst:ident = $value:literal, $text:literal; )*) => {
        impl ExtendedErrorCode {
            $( $(#[$meta])* pub const $konst: Self = Self($value); )*
        }

        impl fmt::Display for ExtendedErrorCode {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let text = match self.0 {
                    $( $value => $text, )*
                    _ => return write!(f, "EDE{}", self.0),
                };
                f.write_str(text)
            }
        }
    };
}

/// Extended DNS error info codes (RFC 8914 §4).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct ExtendedErrorCode(pub u16);

extended_error_codes! {
    /// Other error.
    OTHER = 0, "Other Error";
    /// Unsupported DNSKEY algorithm.
    UNSUPPORTED_DNSKEY_ALGORITHM = 1, "Unsupported DNSKEY Algorithm";
    /// Unsupported DS digest type.
    UNSUPPORTED_DS_DIGEST_TYPE = 2, "Unsupported DS Digest Type";
    /// Stale answer.
    STALE_ANSWER = 3, "Stale Answer";
    /// Forged answer (used for policy-rewritten answers).
    FORGED_ANSWER = 4, "Forged Answer";
    /// DNSSEC indeterminate.
    DNSSEC_INDETERMINATE = 5, "DNSSEC Indeterminate";
    /// DNSSEC bogus.
    DNSSEC_BOGUS = 6, "DNSSEC Bogus";
    /// Signature expired.
    SIGNATURE_EXPIRED = 7, "Signature Expired";
    /// Signature not yet valid.
    SIGNATURE_NOT_YET_VALID = 8, "Signature Not Yet Valid";
    /// DNSKEY missing.
    DNSKEY_MISSING = 9, "DNSKEY Missing";
    /// RRSIGs missing.
    RRSIGS_MISSING = 10, "RRSIGs Missing";
    /// No zone key bit set.
    NO_ZONE_KEY_BIT_SET = 11, "No Zone Key Bit Set";
    /// NSEC missing.
    NSEC_MISSING = 12, "NSEC Missing";
    /// Cached error.
    CACHED_ERROR = 13, "Cached Error";
    /// Not ready.
    NOT_READY = 14, "Not Ready";
    /// Blocked by policy of the operator.
    BLOCKED = 15, "Blocked";
    /// Censored.
    CENSORED = 16, "Censored";
    /// Filtered (at the client's request).
    FILTERED = 17, "Filtered";
    /// Prohibited (client not allowed).
    PROHIBITED = 18, "Prohibited";
    /// Stale NXDOMAIN answer.
    STALE_NXDOMAIN_ANSWER = 19, "Stale NXDOMAIN Answer";
    /// Not authoritative.
    NOT_AUTHORITATIVE = 20, "Not Authoritative";
    /// Not supported.
    NOT_SUPPORTED = 21, "Not Supported";
    /// No reachable authority (every upstream failed).
    NO_REACHABLE_AUTHORITY = 22, "No Reachable Authority";
    /// Network error.
    NETWORK_ERROR = 23, "Network Error";
    /// Invalid data.
    INVALID_DATA = 24, "Invalid Data";
    /// Unsupported NSEC3 iterations value (RFC 9276).
    UNSUPPORTED_NSEC3_ITERATIONS = 27, "Unsupported NSEC3 Iterations Value";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mnemonics_round_trip_and_unknown_values_use_generic_form() {
        assert_eq!(RecordType::AAAA.to_string(), "AAAA");
        assert_eq!("aaaa".parse::<RecordType>(), Ok(RecordType::AAAA));
        assert_eq!(RecordType(65280).to_string(), "TYPE65280");
        assert_eq!("type65280".parse::<RecordType>(), Ok(RecordType(65280)));
        assert_eq!("TYPE1".parse::<RecordType>(), Ok(RecordType::A));
        assert!("TYPE".parse::<RecordType>().is_err());
        assert!("TYPE+1".parse::<RecordType>().is_err());
        assert!("TYPE70000".parse::<RecordType>().is_err());
        assert_eq!(Class(42).to_string(), "CLASS42");
        assert_eq!(SvcParamKey(667).to_string(), "key667");
        assert_eq!("key667".parse::<SvcParamKey>(), Ok(SvcParamKey(667)));
    }

    #[test]
    fn extended_error_codes_print_their_rfc_8914_text_or_a_generic_form() {
        assert_eq!(ExtendedErrorCode::OTHER.to_string(), "Other Error");
        assert_eq!(ExtendedErrorCode::BLOCKED, ExtendedErrorCode(15));
        assert_eq!(ExtendedErrorCode::BLOCKED.to_string(), "Blocked");
        assert_eq!(ExtendedErrorCode::UNSUPPORTED_NSEC3_ITERATIONS.to_string(), "Unsupported NSEC3 Iterations Value");
        assert_eq!(ExtendedErrorCode(25).to_string(), "EDE25");
    }

    #[test]
    fn extended_rcode_splits_into_header_and_opt_bits() {
        let badvers = Rcode::BADVERS;
        assert_eq!(badvers.header_bits(), 0);
        assert_eq!(badvers.extended_bits(), 1);
        assert_eq!(Rcode::from_parts(0, 1), Rcode::BADVERS);
        assert_eq!(Rcode::from_parts(3, 0), Rcode::NXDOMAIN);
    }
}
