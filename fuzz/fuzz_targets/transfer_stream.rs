#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| signpost_wire::fuzzing::transfer_stream(data));
