#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| signpost_dnssec::fuzzing::trust_anchors(data));
