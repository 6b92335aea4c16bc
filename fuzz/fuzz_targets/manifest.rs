//! A plugin manifest (plugin.toml).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plugboard::fuzzing::config::manifest(data));
