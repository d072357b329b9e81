//! Ask one upstream server one question through signpost-upstream and print the answer.
//!
//! ```text
//! cargo run -p signpost-upstream --example query -- SERVER PROTOCOL NAME TYPE [CA_FILE] [TLS_NAME]
//! cargo run -p signpost-upstream --example query -- 127.0.0.1:5353 udp www.example.test A
//! cargo run -p signpost-upstream --example query -- 127.0.0.1:8443 https www.example.test AAAA ca.pem dns.test
//! ```
//!
//! Prints `status: RCODE server: ADDRESS protocol: PROTOCOL tries: N`, then one
//! line per answer record in presentation format. Exits 1 when no answer came back.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;
use std::time::Duration;

use signpost_upstream::{GroupConfig, Protocol, ServerConfig, TlsOptions, Upstreams};
use signpost_wire::{Message, NameBuf, RecordType};

const USAGE: &str = "usage: query SERVER PROTOCOL NAME TYPE [CA_FILE] [TLS_NAME]";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("query: {error}");
            ExitCode::from(2)
        }
    }
}

async fn run() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [server, protocol, name, qtype, rest @ ..] = args.as_slice() else {
        return Err(USAGE.into());
    };
    let protocol: Protocol = protocol.parse()?;
    let name: NameBuf = name.parse()?;
    let qtype: RecordType = qtype.parse()?;
    let mut server = ServerConfig::new(server.parse()?, protocol);
    server.tls_name = rest.get(1).cloned();
    let mut group = GroupConfig::new("query", vec![server]);
    group.per_try_timeout = Duration::from_secs(3);
    group.total_timeout = Duration::from_secs(5);
    if let Some(ca_file) = rest.first() {
        group.tls = TlsOptions { ca_file: Some(ca_file.into()), ..TlsOptions::default() };
    }
    let upstreams = Upstreams::new(vec![group])?;
    let group = upstreams.group("query").ok_or("group missing")?;
    let query = signpost_upstream::testing::query(&name, qtype, Some(1232));
    match group.resolve(&query).await {
        Ok(resolved) => {
            let message = Message::parse(&resolved.response)?;
            println!(
                "status: {} server: {} protocol: {} tries: {}",
                message.rcode()?,
                resolved.server,
                resolved.protocol,
                resolved.attempts.len()
            );
            for record in message.answers()? {
                let record = record?;
                println!("{} {} {} {} {}", record.name(), record.ttl(), record.class(), record.rtype(), record.data()?);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("{error}");
            Ok(ExitCode::FAILURE)
        }
    }
}
