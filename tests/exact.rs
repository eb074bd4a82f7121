//! Nothing silently changed (issue 8, items 9 and 10): lossless gives back every tensor byte for
//! byte or refuses it before anything is written, empty tensors come back, and u16/u8 keep NaN
//! and ±Inf. Files are hand-built with exact bytes; encode and decode run through the library
//! (the refusals through the binary, to check the one-line error and the untouched store). One
//! named test per case.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use safetensors::SafeTensors;
use support::cli::{listing, path, run};
use support::fixtures::write_raw;
use weightreel::encode::{encode, EncodeOptions, EncodeOutcome};
use weightreel::frames::{FrameOptions, PixelMode};
use weightreel::source::{Model, OpenOptions};
use weightreel::store::Store;

/// A tensor with exact little-endian bytes.
struct Raw {
    name: &'static str,
    dtype: &'static str,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

fn raw(name: &'static str, dtype: &'static str, shape: &[usize], bytes: Vec<u8>) -> Raw {
    Raw {
        name,
        dtype,
        shape: shape.to_vec(),
        bytes,
    }
}

fn le<T: Copy, const N: usize>(values: &[T], to: fn(T) -> [u8; N]) -> Vec<u8> {
    values.iter().flat_map(|&v| to(v)).collect()
}

/// Write `tensors` as one safetensors file (header and data by hand, so every byte is ours).
fn write(path: &Path, tensors: &[Raw]) -> PathBuf {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for t in tensors {
        let start = data.len();
        data.extend_from_slice(&t.bytes);
        header.insert(
            t.name.into(),
            serde_json::json!({"dtype": t.dtype, "shape": t.shape, "data_offsets": [start, data.len()]}),
        );
    }
    let mut text = serde_json::Value::Object(header).to_string();
    while !(8 + text.len()).is_multiple_of(8) {
        text.push(' ');
    }
    write_raw(path, None, &text, &data)
}

/// What an encode and decode gave back.
struct Back {
    _dir: tempfile::TempDir,
    bytes: Vec<u8>,
    nonfinite: u64,
    frame_nonfinite: u64,
}

impl Back {
    fn tensor(&self, name: &str) -> (String, Vec<usize>, Vec<u8>) {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        let t = st
            .tensor(name)
            .unwrap_or_else(|e| panic!("{name} missing: {e}"));
        (
            format!("{:?}", t.dtype()),
            t.shape().to_vec(),
            t.data().to_vec(),
        )
    }

    fn f32s(&self, name: &str) -> Vec<f32> {
        let (dtype, _, data) = self.tensor(name);
        assert_eq!(dtype, "F32", "{name}");
        data.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }
}

/// Encode `tensors` in `mode` (chunked by `chunk` when given) and decode the reel.
fn round_trip(tensors: &[Raw], mode: PixelMode, chunk: Option<u64>) -> Back {
    let dir = tempfile::tempdir().unwrap();
    let model_path = write(&dir.path().join("m.safetensors"), tensors);
    let mut store = Store::open(&dir.path().join("store")).unwrap();
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
    let outcome = encode(&mut store, &model, &options, &AtomicBool::new(false)).unwrap();
    let EncodeOutcome::Completed {
        reel,
        nonfinite,
        id,
        ..
    } = outcome
    else {
        panic!("not completed")
    };
    let frame_nonfinite = store.frames(id).unwrap().iter().map(|f| f.nonfinite).sum();
    let out = dir.path().join("back.safetensors");
    weightreel::decode::decode_reel(&reel, &out).unwrap();
    Back {
        bytes: std::fs::read(&out).unwrap(),
        _dir: dir,
        nonfinite,
        frame_nonfinite,
    }
}

/// One `#[test]` per named case: `cases!(check { name: args...; })` calls `check(args...)`.
macro_rules! cases {
    ($check:ident { $($name:ident: $($arg:expr),+;)* }) => {$(
        #[test]
        fn $name() {
            $check($($arg),+);
        }
    )*};
}

// Item 9: lossless is bit-exact for every dtype it accepts.

/// Lossless gives `tensor` back with its dtype, shape and bytes, batch and chunked.
fn exact(tensor: Raw) {
    for chunk in [None, Some(3)] {
        let back = round_trip(std::slice::from_ref(&tensor), PixelMode::Lossless, chunk);
        let (dtype, shape, bytes) = back.tensor(tensor.name);
        assert_eq!(
            (dtype.as_str(), &shape, &bytes),
            (tensor.dtype, &tensor.shape, &tensor.bytes),
            "chunk {chunk:?}"
        );
    }
}

cases!(exact {
    f16_signalling_nans_stay_signalling: raw("w", "F16", &[8],
        le(&[0xfc01u16, 0x7c01, 0x7d55, 0xfe01, 0x7e00, 0x7c00, 0xfc00, 0x0001], u16::to_le_bytes));
    bf16_signalling_nans_stay_signalling: raw("w", "BF16", &[7],
        le(&[0x7f81u16, 0xff81, 0x7fa5, 0x7d01, 0x7fc1, 0xff80, 0x0001], u16::to_le_bytes));
    f32_nan_payloads_stay: raw("w", "F32", &[4],
        le(&[0x7f80_0001u32, 0xffa0_0000, 0x7fc0_1234, 0x8000_0000], u32::to_le_bytes));
    i8_comes_back_as_i8: raw("w", "I8", &[4], le(&[-128i8, -1, 0, 127], i8::to_le_bytes));
    u8_comes_back_as_u8: raw("w", "U8", &[3], vec![0, 1, 255]);
    i16_comes_back_as_i16: raw("w", "I16", &[4], le(&[i16::MIN, -1, 1, i16::MAX], i16::to_le_bytes));
    u16_comes_back_as_u16: raw("w", "U16", &[3], le(&[0u16, 40000, u16::MAX], u16::to_le_bytes));
});

/// Lossless of a model holding `tensor` (beside an F32 one) fails with exactly `message`,
/// exit 1, and leaves a store that holds an earlier entry exactly as it was; `--mode u16` of
/// the same model succeeds.
fn refused(tensor: Raw, message: &str) {
    let dir = tempfile::tempdir().unwrap();
    let f32s = raw(
        "a.weight",
        "F32",
        &[2],
        le(&[1.5f32, -2.0], f32::to_le_bytes),
    );
    let earlier = write(
        &dir.path().join("earlier.safetensors"),
        &[raw(
            "a.weight",
            "F32",
            &[2],
            le(&[1.0f32, 2.0], f32::to_le_bytes),
        )],
    );
    let model = write(&dir.path().join("m.safetensors"), &[f32s, tensor]);
    let store = dir.path().join("store");
    let ok = run(&[
        "encode",
        path(&earlier),
        "--store",
        path(&store),
        "--quiet",
        "--mode",
        "lossless",
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let before = listing(&store);
    let registry = std::fs::read(store.join("registry.sqlite")).unwrap();

    let out = run(&[
        "encode",
        path(&model),
        "--store",
        path(&store),
        "--mode",
        "lossless",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err.trim_end(),
        format!("error: model '{}': {message}", model.display())
    );
    assert_eq!(listing(&store), before, "the store's files changed");
    assert_eq!(
        std::fs::read(store.join("registry.sqlite")).unwrap(),
        registry,
        "the registry changed"
    );
    let lossy = run(&[
        "encode",
        path(&model),
        "--store",
        path(&store),
        "--quiet",
        "--mode",
        "u16",
    ]);
    assert!(
        lossy.status.success(),
        "{}",
        String::from_utf8_lossy(&lossy.stderr)
    );
}

/// [`refused`] with the message for a tensor `b.weight` of `dtype`.
fn refused_dtype(tensor: Raw, dtype: &str) {
    refused(
        tensor,
        &format!("tensor 'b.weight' is {dtype}, which --mode lossless cannot store exactly (it takes F32, F16, BF16, I8, U8, I16, U16); use --mode u16 or --exclude it"),
    );
}

cases!(refused_dtype {
    lossless_refuses_f64: raw("b.weight", "F64", &[1], le(&[1e300f64], f64::to_le_bytes)), "F64";
    lossless_refuses_i64: raw("b.weight", "I64", &[1], le(&[(1i64 << 53) + 1], i64::to_le_bytes)), "I64";
    lossless_refuses_u64: raw("b.weight", "U64", &[1], le(&[u64::MAX], u64::to_le_bytes)), "U64";
    lossless_refuses_i32: raw("b.weight", "I32", &[1], le(&[(1i32 << 24) + 1], i32::to_le_bytes)), "I32";
    lossless_refuses_u32: raw("b.weight", "U32", &[1], le(&[u32::MAX], u32::to_le_bytes)), "U32";
});

/// An empty tensor (a 0 in its shape) beside a full one comes back empty, with its dtype and
/// shape, in `mode`.
fn empty_comes_back(mode: PixelMode, dtype: &'static str, shape: &[usize]) {
    let tensors = [
        raw(
            "a.weight",
            "F32",
            &[3],
            le(&[1.0f32, 2.0, 3.0], f32::to_le_bytes),
        ),
        raw("b.weight", dtype, shape, Vec::new()),
    ];
    let back = round_trip(&tensors, mode, None);
    assert_eq!(
        back.tensor("b.weight"),
        (dtype.to_string(), shape.to_vec(), Vec::new())
    );
    assert_eq!(back.f32s("a.weight").len(), 3);
}

cases!(empty_comes_back {
    empty_f32_tensor_comes_back_in_lossless: PixelMode::Lossless, "F32", &[0, 4];
    empty_f16_tensor_comes_back_in_u16: PixelMode::U16, "F16", &[4, 0];
    empty_f64_tensor_comes_back_in_lossless: PixelMode::Lossless, "F64", &[0];
    empty_i64_tensor_comes_back_in_u8: PixelMode::U8, "I64", &[2, 0, 3];
});

// Item 10: u16 and u8 keep NaN and ±Inf.

/// In `mode`, NaN, +Inf and -Inf come back at their positions (NaN as a NaN), finite values
/// within the quantization bound, and the encode and the registry's frame rows count them.
fn keeps_nonfinite(mode: PixelMode, chunk: Option<u64>) {
    let values = [
        -1.0f32,
        f32::NAN,
        0.5,
        f32::INFINITY,
        2.0,
        f32::NEG_INFINITY,
        f32::from_bits(0xffc0_0001),
        1.0,
    ];
    let back = round_trip(
        &[raw(
            "w",
            "F32",
            &[values.len()],
            le(&values, f32::to_le_bytes),
        )],
        mode,
        chunk,
    );
    let got = back.f32s("w");
    let levels = f32::from(mode.levels().unwrap() - 3);
    for (i, (a, b)) in values.iter().zip(&got).enumerate() {
        match a {
            a if a.is_nan() => assert!(b.is_nan(), "{i}: {a} -> {b}"),
            a if a.is_infinite() => assert_eq!(a, b, "{i}"),
            // The segment's range is at most 3 (-1..2) and it keeps levels - 3 finite levels.
            _ => assert!(
                (a - b).abs() <= 3.0 / levels / 2.0 * 1.001,
                "{i}: {a} -> {b}"
            ),
        }
    }
    assert_eq!((back.nonfinite, back.frame_nonfinite), (4, 4));
}

cases!(keeps_nonfinite {
    u16_keeps_nan_and_infinities: PixelMode::U16, None;
    u8_keeps_nan_and_infinities: PixelMode::U8, None;
    u16_chunks_keep_nan_and_infinities: PixelMode::U16, Some(3);
    u8_chunks_keep_nan_and_infinities: PixelMode::U8, Some(3);
});

/// The encode summary says how many values were NaN or ±Inf.
#[test]
fn encode_summary_counts_nonfinite_values() {
    let dir = tempfile::tempdir().unwrap();
    let values = [f32::NAN, 1.0, f32::INFINITY, 2.0];
    let model = write(
        &dir.path().join("m.safetensors"),
        &[raw("w", "F32", &[4], le(&values, f32::to_le_bytes))],
    );
    let store = dir.path().join("store");
    let out = run(&["encode", path(&model), "--store", path(&store)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text.lines().find(|l| l.starts_with("Non-finite:"));
    assert_eq!(
        line,
        Some("Non-finite: 2 NaN/±Inf values, kept as they are"),
        "{text}"
    );
    let json = run(&["encode", path(&model), "--store", path(&store), "--json"]);
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(parsed[0]["nonfinite"], 2);
}
