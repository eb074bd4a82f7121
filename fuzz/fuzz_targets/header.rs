//! The safetensors header checker must never panic, whatever the JSON: run with
//! `cargo +nightly fuzz run header` from the repository root.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = weightreel::source::header::parse_header_json("fuzz", data, 8 + data.len() as u64);
});
