//! The GGUF header and tensor-table reader must never panic on any file: the input is the
//! file's bytes, served from memory.
//! `cargo +nightly fuzz run gguf`, or `fuzz/run-stable.sh 120 gguf`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weightreel::source::{gguf::read_gguf, MemorySource};

fuzz_target!(|data: &[u8]| {
    let _ = read_gguf(&MemorySource::new("fuzz", data.to_vec()));
});
