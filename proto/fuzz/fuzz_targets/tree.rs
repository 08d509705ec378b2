#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edm_cast_proto_fuzz::tree(data));
