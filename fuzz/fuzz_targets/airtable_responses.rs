//! Airtable's error bodies, list cursors and formula strings.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plugboard::fuzzing::plugins::airtable(data));
