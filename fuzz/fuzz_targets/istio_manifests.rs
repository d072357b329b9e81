#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| signpost_forward::fuzzing::istio_manifests(data));
