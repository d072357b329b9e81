//! Where query-log destinations write: `stdout`, a file path, or an AWS
//! destination ARN mapped to a JSON-lines file under the state directory.
//!
//! | destination ARN | file |
//! |---|---|
//! | `arn:aws:logs:REGION:ACCOUNT:log-group:NAME[:*]` | `query-logs/cloudwatch-logs/NAME.jsonl` |
//! | `arn:aws:s3:::BUCKET[/PREFIX]` | `query-logs/s3/BUCKET[/PREFIX]/queries.jsonl` |
//! | `arn:aws:firehose:REGION:ACCOUNT:deliverystream/NAME` | `query-logs/firehose/NAME.jsonl` |
//!
//! Slashes in names become directories; `.` and `..` components and empty
//! names are refused, so a destination never leaves `query-logs/`.

use std::path::{Path, PathBuf};

use signpost_server::LogDestination;

/// The kinds of AWS destination a query logging configuration may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DestinationKind {
    /// A CloudWatch Logs log group.
    CloudWatchLogs,
    /// An S3 bucket (with an optional prefix).
    S3,
    /// A Kinesis Data Firehose delivery stream.
    Firehose,
}

/// Why a destination ARN cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DestinationProblem {
    /// Not an ARN of a CloudWatch Logs log group, an S3 bucket or a Firehose stream.
    #[error(
        "destination {0:?} is not the ARN of a CloudWatch Logs log group, an S3 bucket or a Kinesis Data Firehose delivery stream"
    )]
    UnsupportedArn(String),
    /// A name that would leave the query-log directory or is empty.
    #[error("destination {0:?} has an empty, `.` or `..` path component")]
    UnsafeName(String),
}

/// Parse a destination ARN into its kind and the relative file it writes.
pub fn arn_file(arn: &str) -> Result<(DestinationKind, PathBuf), DestinationProblem> {
    let unsupported = || DestinationProblem::UnsupportedArn(arn.to_string());
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(_partition), Some(service), Some(_region), Some(_account), Some(resource)) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(unsupported());
    };
    let (kind, base, name, file) = match service {
        "logs" => {
            let name = resource.strip_prefix("log-group:").ok_or_else(unsupported)?;
            let name = name.strip_suffix(":*").unwrap_or(name);
            (DestinationKind::CloudWatchLogs, "cloudwatch-logs", name, None)
        }
        "s3" => (DestinationKind::S3, "s3", resource, Some("queries.jsonl")),
        "firehose" => {
            let name = resource.strip_prefix("deliverystream/").ok_or_else(unsupported)?;
            (DestinationKind::Firehose, "firehose", name, None)
        }
        _ => return Err(unsupported()),
    };
    let mut path = PathBuf::from("query-logs").join(base);
    let components: Vec<&str> = name.trim_start_matches('/').split('/').collect();
    if components.iter().any(|part| part.is_empty() || *part == "." || *part == "..") {
        return Err(DestinationProblem::UnsafeName(arn.to_string()));
    }
    let last = components.len().saturating_sub(1);
    for (index, part) in components.iter().enumerate() {
        let safe: String =
            part.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.#".contains(c) { c } else { '_' }).collect();
        if index == last && file.is_none() {
            path.push(format!("{safe}.jsonl"));
        } else {
            path.push(safe);
        }
    }
    if let Some(file) = file {
        path.push(file);
    }
    Ok((kind, path))
}

/// Where a configured destination writes: `stdout`, an ARN's file under
/// `files_dir`, or a path relative to `base_dir`.
pub fn resolve(destination: &str, base_dir: &Path, files_dir: &Path) -> Result<LogDestination, DestinationProblem> {
    if destination.eq_ignore_ascii_case("stdout") {
        return Ok(LogDestination::Stdout);
    }
    if destination.starts_with("arn:") {
        let (_, relative) = arn_file(destination)?;
        return Ok(LogDestination::File(files_dir.join(relative)));
    }
    Ok(LogDestination::File(base_dir.join(destination)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_map_to_files_under_query_logs() {
        let cases = [
            (
                "arn:aws:logs:us-east-1:111122223333:log-group:/aws/route53/resolver:*",
                "query-logs/cloudwatch-logs/aws/route53/resolver.jsonl",
            ),
            ("arn:aws:logs:us-east-1:111122223333:log-group:dns", "query-logs/cloudwatch-logs/dns.jsonl"),
            ("arn:aws:s3:::my-bucket/resolver/logs", "query-logs/s3/my-bucket/resolver/logs/queries.jsonl"),
            ("arn:aws:s3:::my-bucket", "query-logs/s3/my-bucket/queries.jsonl"),
            ("arn:aws:firehose:eu-west-1:111122223333:deliverystream/dns", "query-logs/firehose/dns.jsonl"),
        ];
        for (arn, path) in cases {
            assert_eq!(arn_file(arn).map(|(_, file)| file), Ok(PathBuf::from(path)), "{arn}");
        }
    }

    #[test]
    fn bad_arns_are_refused() {
        for arn in [
            "arn:aws:sqs:us-east-1:1:queue",
            "arn:aws:logs:us-east-1:1:metric:x",
            "not-an-arn",
            "arn:aws:s3:::bucket/../../etc",
            "arn:aws:firehose:r:1:deliverystream/",
        ] {
            assert!(arn_file(arn).is_err(), "{arn}");
        }
    }

    #[test]
    fn stdout_and_paths_resolve() {
        let base = Path::new("/etc/signpost");
        let files = Path::new("/var/lib/signpost");
        assert!(matches!(resolve("stdout", base, files), Ok(LogDestination::Stdout)));
        assert!(matches!(resolve("q.log", base, files), Ok(LogDestination::File(p)) if p == base.join("q.log")));
        assert!(matches!(resolve("arn:aws:s3:::b", base, files), Ok(LogDestination::File(p)) if p.starts_with(files)));
    }
}
