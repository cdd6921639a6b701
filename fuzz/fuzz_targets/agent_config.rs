#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| steward_fuzz_targets::agent_config(data));
