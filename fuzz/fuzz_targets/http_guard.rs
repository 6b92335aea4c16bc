//! The Host, Origin and bearer-token rules of the HTTP guard.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plugboard::fuzzing::server::guard(data));
