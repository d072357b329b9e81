//! Transfer a zone from a primary and print it in presentation format.
//!
//! `cargo run -p signpost-upstream --example transfer -- 127.0.0.1:5300 example. [KEY-NAME:ALGORITHM:BASE64-SECRET] [SERIAL]`
//!
//! With a serial, asks for an IXFR from a copy at that serial and prints the
//! changes. Only send it to a primary you run (loopback in the tests).
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a command-line example")]

use signpost_upstream::TransferClient;
use signpost_wire::{RecordBuf, Transfer, TransferRequest, TsigAlgorithm, TsigKey};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: transfer SERVER ZONE [KEY:ALGORITHM:SECRET|-] [SERIAL]";
    let server = args.next().ok_or(usage)?.parse()?;
    let zone = args.next().ok_or(usage)?.parse()?;
    let key = match args.next().as_deref() {
        None | Some("-") => None,
        Some(text) => {
            let mut parts = text.splitn(3, ':');
            let (Some(name), Some(algorithm), Some(secret)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(usage.into());
            };
            let algorithm = TsigAlgorithm::from_name(algorithm).ok_or("unknown TSIG algorithm")?;
            Some(TsigKey::from_base64(name.parse()?, algorithm, secret)?)
        }
    };
    let client = TransferClient::new(server).with_key(key);
    let request = match args.next() {
        Some(serial) => {
            let soa: RecordBuf = format!("{zone} 0 IN SOA . . {serial} 0 0 0 0").parse()?;
            TransferRequest::Ixfr { soa }
        }
        None => TransferRequest::Axfr,
    };
    match client.transfer(&zone, &request).await? {
        Transfer::Full { records, .. } => {
            println!(";; full");
            for record in records {
                println!("{record}");
            }
        }
        Transfer::Incremental { soa, diffs } => {
            println!(";; incremental to {soa}");
            for diff in diffs {
                println!(";; from {}", diff.from);
                for record in diff.deleted {
                    println!("- {record}");
                }
                println!(";; to {}", diff.to);
                for record in diff.added {
                    println!("+ {record}");
                }
            }
        }
        Transfer::UpToDate { soa } => println!(";; up to date: {soa}"),
    }
    Ok(())
}
