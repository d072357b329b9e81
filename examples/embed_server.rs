//! Embed a Signpost server, as a test harness would: answer cloud API names
//! locally, forward the rest to an upstream you name, and print where it
//! listens.
//!
//! ```sh
//! cargo run -p signpost-examples --example embed_server -- 127.0.0.1:5353 127.0.0.1:53535
//! dig @127.0.0.1 -p 5353 sqs.us-east-1.amazonaws.com     # 127.0.0.1, from the rules
//! dig @127.0.0.1 -p 5353 example.org                      # whatever the upstream says
//! ```
//!
//! Arguments: the listen address (default 127.0.0.1:0, a free port) and the
//! upstream (default: none, so forwarded names get SERVFAIL with an
//! extended error). It runs until Ctrl-C.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::error::Error;
use std::net::SocketAddr;

use signpost_rules::RuleSet;
use signpost_rules::config::RulesConfig;
use signpost_server::Server;
use signpost_upstream::{GroupConfig, ServerConfig as Upstream, Upstreams};

const RULES: &str = r#"
default_group = "upstream"

[[rules]]
id = "aws"
suffix = "amazonaws.com"
action = "redirect"
ipv4 = "127.0.0.1"
ipv6 = "none"
"#;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut arguments = std::env::args().skip(1);
    let listen: SocketAddr = arguments.next().as_deref().unwrap_or("127.0.0.1:0").parse()?;
    let upstream: Option<SocketAddr> = arguments.next().map(|text| text.parse()).transpose()?;

    let rules = RuleSet::from_config(&RulesConfig::from_toml(RULES, "embedded rules")?, ".".as_ref(), &["upstream"])?;
    let mut groups = Vec::new();
    if let Some(upstream) = upstream {
        groups.push(GroupConfig::new("upstream", vec![Upstream::udp(upstream)]));
    }
    let server = Server::builder().udp_and_tcp(listen).rules(rules).upstreams(Upstreams::new(groups)?).start().await?;
    println!("listening on udp {:?} and tcp {:?}", server.udp_addrs(), server.tcp_addrs());
    server.run_until_signalled(|result| eprintln!("reload: {result:?}")).await?;
    Ok(())
}
