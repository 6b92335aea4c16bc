//! A client's JSON-RPC message: our fast path against rmcp's decoding.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plugboard::fuzzing::server::jsonrpc(data));
