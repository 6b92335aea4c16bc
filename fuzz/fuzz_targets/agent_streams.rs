//! Server-sent event streams of the four provider formats.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plugboard::fuzzing::agents::streams(data));
