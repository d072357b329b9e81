//! `NextToken`/`MaxResults` paging and `Filters` of Route 53 Resolver's
//! list calls, over items already rendered as the API returns them.

use serde_json::{Value, json};

use super::error::ApiError;
use super::resolver::with_token;

/// Cut `items` to the page `body` asks for (`NextToken`, `MaxResults`,
/// `default_max` when none): the page, the next token, the page size used.
/// Tokens are opaque to clients; here they are the offset of the next item.
pub(crate) fn page(
    items: Vec<Value>,
    body: &Value,
    default_max: usize,
) -> Result<(Vec<Value>, Option<String>, usize), ApiError> {
    let max = match body.get("MaxResults") {
        None | Some(Value::Null) => default_max,
        Some(value) => value
            .as_u64()
            .filter(|max| (1..=1000).contains(max))
            .map(|max| max as usize)
            .ok_or_else(|| ApiError::invalid_parameter("MaxResults must be a number from 1 to 100."))?,
    };
    let start = match body.get("NextToken").and_then(Value::as_str) {
        None => 0,
        Some(token) => token
            .strip_prefix("signpost-")
            .and_then(|offset| offset.parse::<usize>().ok())
            .filter(|offset| *offset <= items.len())
            .ok_or_else(|| {
                ApiError::bad_request("InvalidNextTokenException", "Invalid value passed for the NextToken parameter")
            })?,
    };
    let end = start.saturating_add(max).min(items.len());
    let next = (end < items.len()).then(|| format!("signpost-{end}"));
    let page = items.into_iter().skip(start).take(end - start).collect();
    Ok((page, next, max))
}

/// A list call's answer: the page of `items` under `key`, with `NextToken`
/// when more follow.
pub(crate) fn paged(items: Vec<Value>, body: &Value, default_max: usize, key: &str) -> Result<Value, ApiError> {
    let (items, next, _) = page(items, body, default_max)?;
    Ok(with_token(json!({ key: items }), next))
}

/// [`paged`] that also says `MaxResults`, as the endpoint and rule lists do.
pub(crate) fn paged_with_max(
    items: Vec<Value>,
    body: &Value,
    default_max: usize,
    key: &str,
) -> Result<Value, ApiError> {
    let (items, next, max) = page(items, body, default_max)?;
    Ok(with_token(json!({ key: items, "MaxResults": max }), next))
}

/// A list call's `Filters`: every filter must match (a value among its `Values`).
pub(crate) struct Filter {
    /// The item field each filter reads, and its allowed values.
    conditions: Vec<(&'static str, Vec<String>)>,
}

impl Filter {
    /// Read `Filters` from `body`. `names` maps a filter name (lowercase,
    /// without underscores, so `CREATOR_REQUEST_ID` and `CreatorRequestId`
    /// both work, as the service accepts) to the item field it reads.
    pub(crate) fn parse(body: &Value, names: &[(&str, &'static str)]) -> Result<Self, ApiError> {
        let mut conditions = Vec::new();
        let Some(filters) = body.get("Filters").and_then(Value::as_array) else {
            return Ok(Self { conditions });
        };
        for filter in filters {
            let name = filter.get("Name").and_then(Value::as_str).unwrap_or_default();
            let key: String = name.chars().filter(|c| *c != '_').flat_map(char::to_lowercase).collect();
            let Some((_, field)) = names.iter().find(|(known, _)| *known == key) else {
                return Err(ApiError::invalid_parameter(format!("The filter '{name}' is invalid")));
            };
            let values: Vec<String> = filter
                .get("Values")
                .and_then(Value::as_array)
                .map(|values| values.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default();
            if values.is_empty() {
                return Err(ApiError::invalid_parameter(format!("No values specified for filter {name}")));
            }
            conditions.push((*field, values));
        }
        Ok(Self { conditions })
    }

    /// Whether `item` passes every filter.
    pub(crate) fn matches(&self, item: &Value) -> bool {
        self.conditions.iter().all(|(field, values)| {
            let matches_one = |value: &Value| match value {
                Value::String(text) => values.iter().any(|wanted| same(wanted, text)),
                Value::Number(number) => values.iter().any(|wanted| *wanted == number.to_string()),
                _ => false,
            };
            match item.get(*field) {
                Some(Value::Array(list)) => list.iter().any(matches_one),
                Some(value) => matches_one(value),
                None => false,
            }
        })
    }
}

/// Filter values compare exactly, except domain names, where the final dot
/// and case do not matter.
fn same(wanted: &str, actual: &str) -> bool {
    wanted == actual
        || (actual.ends_with('.') && wanted.trim_end_matches('.').eq_ignore_ascii_case(actual.trim_end_matches('.')))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn pages_follow_the_token() {
        let items: Vec<Value> = (0..25).map(|n| json!(n)).collect();
        let (first, next, max) = page(items.clone(), &json!({}), 10).unwrap();
        assert_eq!((first.len(), next.as_deref(), max), (10, Some("signpost-10"), 10));
        let (last, next, _) =
            page(items.clone(), &json!({ "NextToken": "signpost-20", "MaxResults": 10 }), 10).unwrap();
        assert_eq!((last.len(), next), (5, None));
        let error = page(items, &json!({ "NextToken": "garbage" }), 10).unwrap_err();
        assert_eq!(error.code, "InvalidNextTokenException");
    }

    #[test]
    fn filters_accept_both_spellings_and_reject_unknown_names() {
        let names = [("creatorrequestid", "CreatorRequestId"), ("domainname", "DomainName")];
        let item = json!({ "CreatorRequestId": "abc", "DomainName": "corp.example." });
        let filter =
            Filter::parse(&json!({ "Filters": [{ "Name": "CREATOR_REQUEST_ID", "Values": ["abc"] }] }), &names)
                .unwrap();
        assert!(filter.matches(&item));
        let filter =
            Filter::parse(&json!({ "Filters": [{ "Name": "DomainName", "Values": ["Corp.example"] }] }), &names)
                .unwrap();
        assert!(filter.matches(&item));
        let filter =
            Filter::parse(&json!({ "Filters": [{ "Name": "DomainName", "Values": ["other."] }] }), &names).unwrap();
        assert!(!filter.matches(&item));
        assert!(Filter::parse(&json!({ "Filters": [{ "Name": "Colour", "Values": ["x"] }] }), &names).is_err());
    }
}
