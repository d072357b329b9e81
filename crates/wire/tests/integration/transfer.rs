//! Transfer streams captured from Knot DNS (tests/vectors/transfer/) read by
//! `TransferReader`: what a secondary of a real primary sees.

use signpost_wire::{
    NameBuf, RecordBuf, Serial, Transfer, TransferProblem, TransferReader, TransferRequest, soa_serial,
};

use crate::vectors::read;

/// The messages of a TCP byte stream (each after its two-byte length).
fn messages(stream: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = stream;
    while let [high, low, tail @ ..] = rest {
        let (message, after) = tail.split_at(usize::from(u16::from_be_bytes([*high, *low])));
        out.push(message);
        rest = after;
    }
    out
}

fn zone() -> NameBuf {
    "example.".parse().expect("name")
}

fn record(text: &str) -> RecordBuf {
    text.parse().expect("record")
}

#[test]
fn knot_axfr_reads_as_the_zone() {
    let stream = read("transfer/knot_axfr.stream.bin");
    let mut reader = TransferReader::new(0x1234, &zone(), &TransferRequest::Axfr);
    for message in messages(&stream) {
        reader.handle_message(message).expect("valid message");
    }
    let Transfer::Full { soa, records } = reader.finish().expect("complete") else { panic!("a full transfer") };
    assert_eq!(soa_serial(&soa), Some(Serial(2024010102)));
    assert_eq!(records.len(), 8);
    assert!(records.contains(&record("new.example. 300 IN A 192.0.2.50")));
    assert!(records.contains(&record("txt.example. 300 IN TXT \"hello\" \"world\"")));
}

#[test]
fn knot_ixfr_reads_as_one_step_of_changes() {
    let stream = read("transfer/knot_ixfr.stream.bin");
    let request = TransferRequest::Ixfr {
        soa: record("example. 300 IN SOA ns1.example. hostmaster.example. 2024010101 3600 600 86400 60"),
    };
    let mut reader = TransferReader::new(0x2345, &zone(), &request);
    for message in messages(&stream) {
        reader.handle_message(message).expect("valid message");
    }
    let Transfer::Incremental { diffs, .. } = reader.finish().expect("complete") else { panic!("incremental") };
    assert_eq!(diffs.len(), 1);
    assert_eq!(diffs[0].deleted, [record("www.example. 300 IN A 192.0.2.1")]);
    assert_eq!(diffs[0].added, [record("new.example. 300 IN A 192.0.2.50"), record("www.example. 300 IN A 192.0.2.2")]);
}

#[test]
fn cut_or_misdirected_knot_streams_are_rejected() {
    let stream = read("transfer/knot_axfr.stream.bin");
    let message = messages(&stream)[0];
    // The stream cut before its end: no transfer.
    let mut reader = TransferReader::new(0x1234, &zone(), &TransferRequest::Axfr);
    let cut = &message[..message.len() - 40];
    assert!(reader.handle_message(cut).is_err() || reader.finish().is_err());
    // Another query's ID.
    let mut reader = TransferReader::new(0x4321, &zone(), &TransferRequest::Axfr);
    assert!(matches!(
        reader.handle_message(message),
        Err(signpost_wire::Error::Transfer { problem: TransferProblem::IdMismatch { .. }, .. })
    ));
}
