//! Every encode that succeeds decodes (issue 8, item 8): models of 1 value upward, in every
//! mode, batch and chunked with small chunks, give back their values — lossless bit for bit,
//! u16 and u8 within their quantization bound. Reels of one or two values once failed their
//! CRC check on decode. One named test per mode and method; each runs n = 1..=40 and a few
//! sizes around powers of two.

mod support;

use std::path::Path;
use std::sync::atomic::AtomicBool;

use safetensors::{Dtype, SafeTensors};
use support::fixtures::{spec, write_model};
use weightreel::encode::{encode, EncodeOptions, EncodeOutcome};
use weightreel::frames::{FrameOptions, PixelMode};
use weightreel::source::{Model, OpenOptions};
use weightreel::store::Store;

fn sizes() -> impl Iterator<Item = usize> {
    (1..=40).chain([63, 64, 65, 127, 128, 129, 255, 257, 1000])
}

/// Encode an `n`-value F32 tensor and decode it; the largest error against the source (NaN
/// when the decoded tensor is missing or of the wrong length).
fn round_trip(dir: &Path, n: usize, mode: PixelMode, chunk: Option<u64>) -> (f32, f32) {
    let model_path = dir.join(format!("m{n}.safetensors"));
    let written = write_model(&model_path, &[spec("w", Dtype::F32, &[n])], n as u64);
    let source = written[0].values.clone().unwrap();
    let store_dir = dir.join(format!("s{n}-{}-{chunk:?}", mode.as_str()));
    let mut store = Store::open(&store_dir).unwrap();
    let model = Model::open(model_path.to_str().unwrap(), &OpenOptions::default()).unwrap();
    let options = EncodeOptions {
        chunk_size: chunk.unwrap_or(8192),
        chunk_encoding: chunk.is_some(),
        frame: FrameOptions {
            mode,
            ..FrameOptions::default()
        },
        ..EncodeOptions::default()
    };
    let outcome = encode(&mut store, &model, &options, &AtomicBool::new(false))
        .unwrap_or_else(|e| panic!("n = {n}: encode failed: {e}"));
    let EncodeOutcome::Completed { reel, .. } = outcome else {
        panic!("n = {n}: not completed")
    };
    let out = dir.join(format!("back{n}.safetensors"));
    weightreel::decode::decode_reel(&reel, &out)
        .unwrap_or_else(|e| panic!("n = {n}, {mode:?}, chunk {chunk:?}: decode failed: {e}"));
    let bytes = std::fs::read(&out).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let back: Vec<f32> = st
        .tensor("w")
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(back.len(), n, "n = {n}: decoded length");
    let range = source.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b))
        - source.iter().fold(f32::INFINITY, |a, &b| a.min(b));
    let worst = source
        .iter()
        .zip(&back)
        .map(|(a, b)| {
            if mode == PixelMode::Lossless {
                if a.to_bits() == b.to_bits() {
                    0.0
                } else {
                    f32::INFINITY
                }
            } else {
                (a - b).abs()
            }
        })
        .fold(0.0f32, f32::max);
    (worst, range)
}

fn check(mode: PixelMode, chunk: Option<u64>) {
    let dir = tempfile::tempdir().unwrap();
    // Half a quantization step of the whole range bounds every segment's error.
    let levels = match mode {
        PixelMode::U8 => 255.0,
        _ => 65535.0,
    };
    for n in sizes() {
        let (worst, range) = round_trip(dir.path(), n, mode, chunk);
        let bound = if mode == PixelMode::Lossless {
            0.0
        } else {
            range / levels / 2.0 * 1.0001 + f32::EPSILON
        };
        assert!(
            worst <= bound,
            "n = {n}, {mode:?}, chunk {chunk:?}: error {worst} above {bound}"
        );
    }
}

macro_rules! cases {
    ($($name:ident: $mode:expr, $chunk:expr;)*) => {$(
        #[test]
        fn $name() {
            check($mode, $chunk);
        }
    )*};
}

cases! {
    lossless_batch: PixelMode::Lossless, None;
    lossless_chunks_of_1: PixelMode::Lossless, Some(1);
    lossless_chunks_of_2: PixelMode::Lossless, Some(2);
    lossless_chunks_of_7: PixelMode::Lossless, Some(7);
    u16_batch: PixelMode::U16, None;
    u16_chunks_of_1: PixelMode::U16, Some(1);
    u16_chunks_of_2: PixelMode::U16, Some(2);
    u16_chunks_of_7: PixelMode::U16, Some(7);
    u8_batch: PixelMode::U8, None;
    u8_chunks_of_2: PixelMode::U8, Some(2);
    u8_chunks_of_7: PixelMode::U8, Some(7);
}
