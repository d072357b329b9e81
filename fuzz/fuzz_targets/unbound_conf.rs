#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| signpost_forward::fuzzing::unbound_conf(data));
