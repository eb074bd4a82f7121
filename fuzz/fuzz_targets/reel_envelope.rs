//! A reel's metadata envelope (its header attachment), its frame and tile records must be refused,
//! never panic, whatever their bytes: `cargo +nightly fuzz run reel_envelope`, or
//! `fuzz/run-stable.sh 120 reel_envelope`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = weightreel::reel::envelope::decode(data);
    let _ = weightreel::reel::record::decode(data);
    let _ = weightreel::reel::record::decode_tile(data);
});
