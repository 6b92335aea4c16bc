//! GitHub's error bodies, Link headers, issue/pull/search JSON and diffs.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plugboard::fuzzing::plugins::github(data));
