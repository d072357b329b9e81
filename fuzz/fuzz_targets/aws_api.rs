#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| signpost_endpoint::fuzzing::aws_api(data));
