//! The admin listener's JSON API under `/redirect`: LocalStack's in-process
//! DNS API over HTTP (docs/redirect.md, "Changes at run time").

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use signpost_server::ServerHandle;
use signpost_server::admin::{AdminExtension, AdminRequest, AdminResponse, percent_decode, query_parameter};
use signpost_wire::RecordType;

use crate::runtime::{AliasSpec, RecordFilter, RecordSpec, Redirector};
use crate::{ADMIN_PREFIX, RedirectError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HostBody {
    name: String,
    #[serde(default)]
    addresses: Vec<IpAddr>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SkipBody {
    pattern: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasDeleteBody {
    name: String,
    #[serde(default, rename = "type")]
    rtype: Option<String>,
    #[serde(default)]
    id: Option<String>,
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, AdminResponse> {
    serde_json::from_slice(body).map_err(|error| AdminResponse::error(400, &format!("invalid JSON body: {error}")))
}

fn json_response(value: &impl Serialize) -> AdminResponse {
    match serde_json::to_string_pretty(value) {
        Ok(body) => AdminResponse::ok(body),
        Err(_) => AdminResponse::error(500, "could not serialise the answer"),
    }
}

fn record_type(text: &str) -> Result<RecordType, AdminResponse> {
    RecordType::from_mnemonic(text.trim())
        .ok_or_else(|| AdminResponse::error(400, &format!("unknown record type {text:?}")))
}

/// The record filter of `DELETE /redirect/records`: query parameters, or a JSON body.
fn record_filter(query: Option<&str>, body: &[u8]) -> Result<RecordFilter, AdminResponse> {
    match query_parameter(query, "name") {
        Some(name) => Ok(RecordFilter {
            name,
            rtype: query_parameter(query, "type").map(|text| record_type(&text)).transpose()?,
            value: query_parameter(query, "value"),
            id: query_parameter(query, "id"),
        }),
        None => parse_body(body),
    }
}

impl Redirector {
    /// One request under `/redirect` (`rest` is the path after it).
    fn handle_admin(
        &self,
        request: (&str, &str),
        query: Option<&str>,
        body: &[u8],
        server: &ServerHandle,
    ) -> AdminResponse {
        let (method, rest) = request;
        let outcome: Result<(&str, String), RedirectError> = match (method, rest) {
            ("GET", "" | "/") => return json_response(&self.snapshot()),
            ("GET", "/hosts") => return json_response(&self.snapshot().hosts),
            ("GET", "/records") => return json_response(&self.snapshot().records),
            ("GET", "/aliases") => return json_response(&self.snapshot().aliases),
            ("GET", "/skip") => return json_response(&self.snapshot().skip_patterns),
            ("GET", "/zones") => return json_response(&self.snapshot().hosted_zones),
            ("POST", "/hosts") => match parse_body::<HostBody>(body) {
                Ok(host) => self.add_host(server, &host.name, &host.addresses).map(|()| ("added", host.name)),
                Err(response) => return response,
            },
            ("POST", "/records") => match parse_body::<RecordSpec>(body) {
                Ok(record) => self.add_record(server, &record).map(|()| ("added", record.name)),
                Err(response) => return response,
            },
            ("DELETE", "/records") => match record_filter(query, body) {
                Ok(filter) => self.delete_records(server, &filter).map(|count| ("deleted", count.to_string())),
                Err(response) => return response,
            },
            ("POST", "/aliases") => match parse_body::<AliasSpec>(body) {
                Ok(alias) => {
                    let name = alias.name.clone();
                    self.add_alias_with(server, alias).map(|()| ("added", name))
                }
                Err(response) => return response,
            },
            ("DELETE", "/aliases") => {
                let body = match query_parameter(query, "name") {
                    Some(name) => AliasDeleteBody {
                        name,
                        rtype: query_parameter(query, "type"),
                        id: query_parameter(query, "id"),
                    },
                    None => match parse_body::<AliasDeleteBody>(body) {
                        Ok(body) => body,
                        Err(response) => return response,
                    },
                };
                let rtype = match body.rtype.as_deref().map(record_type).transpose() {
                    Ok(rtype) => rtype,
                    Err(response) => return response,
                };
                self.delete_alias_matching(server, &body.name, rtype, body.id.as_deref())
                    .map(|count| ("deleted", count.to_string()))
            }
            ("POST", "/skip") => match parse_body::<SkipBody>(body) {
                Ok(skip) => self.add_skip_pattern(server, &skip.pattern).map(|()| ("added", skip.pattern)),
                Err(response) => return response,
            },
            ("DELETE", "/skip") => {
                let pattern = match query_parameter(query, "pattern") {
                    Some(pattern) => pattern,
                    None => match parse_body::<SkipBody>(body) {
                        Ok(skip) => skip.pattern,
                        Err(response) => return response,
                    },
                };
                self.delete_skip_pattern(server, &pattern).map(|()| ("deleted", pattern))
            }
            ("POST", "/clear") => self.clear(server).map(|()| ("cleared", "everything added at run time".to_owned())),
            ("DELETE", rest) => {
                if let Some(name) = rest.strip_prefix("/hosts/") {
                    let name = percent_decode(name);
                    self.delete_host(server, &name).map(|()| ("deleted", name))
                } else if let Some(name) = rest.strip_prefix("/aliases/") {
                    let name = percent_decode(name);
                    self.delete_alias(server, &name).map(|()| ("deleted", name))
                } else {
                    return AdminResponse::error(404, "no such route");
                }
            }
            _ => return AdminResponse::error(404, "no such route"),
        };
        match outcome {
            Ok((verb, what)) => AdminResponse::ok(serde_json::json!({ verb: what }).to_string()),
            Err(error) => AdminResponse::error(error.status(), &error.to_string()),
        }
    }
}

impl AdminExtension for Redirector {
    /// The JSON API under `/redirect` (docs/redirect.md): `GET /redirect`
    /// (everything), `/hosts`, `/records`, `/aliases`, `/skip`, `/zones`;
    /// `POST /redirect/hosts` `{"name", "addresses"}`, `DELETE
    /// /redirect/hosts/NAME`; `POST /redirect/records` `{"name", "type",
    /// "value", "ttl", "id"}`, `DELETE /redirect/records?name=&type=&value=&id=`;
    /// `POST /redirect/aliases` `{"name", "target", "types", "id",
    /// "health_check"}`, `DELETE /redirect/aliases/NAME` or
    /// `?name=&type=&id=`; `POST /redirect/skip` `{"pattern"}`, `DELETE
    /// /redirect/skip?pattern=...`; `POST /redirect/clear`.
    fn handle(&self, request: &AdminRequest<'_>, server: &ServerHandle) -> Option<AdminResponse> {
        let rest = request.path.strip_prefix(ADMIN_PREFIX).filter(|rest| rest.is_empty() || rest.starts_with('/'))?;
        Some(self.handle_admin((request.method, rest), request.query, request.body, server))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_paths_decode() {
        assert_eq!(percent_decode("a%2Eb+c"), "a.b c");
        assert_eq!(query_parameter(Some("x=1&pattern=.%2A%5C.s3"), "pattern").as_deref(), Some(r".*\.s3"));
        let filter = record_filter(Some("name=db.test&type=TXT&id=7"), b"").expect("filter");
        assert_eq!(filter.rtype, Some(RecordType::TXT));
        assert_eq!(filter.id.as_deref(), Some("7"));
        assert!(record_filter(Some("name=db.test&type=NOPE"), b"").is_err());
        let filter = record_filter(None, br#"{"name": "db.test", "type": "MX"}"#).expect("body");
        assert_eq!(filter.rtype, Some(RecordType::MX));
    }
}
