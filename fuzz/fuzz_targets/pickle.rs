//! The restricted unpickler and the state-dict flattening must never panic, loop or blow up on
//! any pickle: the input is a `data.pkl`'s bytes.
//! `cargo +nightly fuzz run pickle`, or `fuzz/run-stable.sh 120 pickle`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weightreel::source::pytorch::{flatten, pickle::unpickle};

fuzz_target!(|data: &[u8]| {
    if let Ok((value, used)) = unpickle(data) {
        assert!(used <= data.len());
        let _ = flatten(&value);
    }
});
