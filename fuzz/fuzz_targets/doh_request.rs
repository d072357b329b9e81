#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| signpost_server::fuzzing::doh_request(data));
