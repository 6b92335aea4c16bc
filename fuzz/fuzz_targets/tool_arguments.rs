//! Arguments of a tools/call against the published input schemas.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plugboard::fuzzing::config::tool_arguments(data));
