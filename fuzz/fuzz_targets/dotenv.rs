//! A `.env` file, and what its errors say.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plugboard::fuzzing::config::dotenv(data));
