//! A path a model asks the files plugin for.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plugboard::fuzzing::sandbox::paths(data));
