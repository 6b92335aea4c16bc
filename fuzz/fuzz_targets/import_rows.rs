//! CSV, TSV, JSON and JSONL rows of an Airtable import.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plugboard::fuzzing::plugins::import_rows(data));
