//! libFuzzer target: `jecp_hub::fuzzing::check_provenance` (see that module for the properties).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    jecp_hub::fuzzing::check_provenance(data);
});
