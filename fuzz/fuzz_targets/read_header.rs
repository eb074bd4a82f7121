//! The whole header reader — length prefix, JSON, offsets against the file's length — must
//! never panic on any file: the input is the file's bytes, served from memory.
//! `cargo +nightly fuzz run read_header`, or `fuzz/run-stable.sh 120 read_header`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weightreel::source::{header::read_header, MemorySource};

fuzz_target!(|data: &[u8]| {
    let _ = read_header(&MemorySource::new("fuzz", data.to_vec()));
});
