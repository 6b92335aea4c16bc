//! Bytes on stdin, split as a pipe may split them: rmcp's line framing behind our method gate.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plugboard::fuzzing::server::stdio(data));
