//! Encode → reel → decode on the real all-MiniLM-L6-v2 and on F16/BF16 copies of it: lossless
//! is bit-exact (each tensor's bytes compared by SHA-256), u16 stays within
//! (max − min) / 131070 per segment, and sampled encodes decode to the sampled values plus
//! their positions. Also: `ffprobe` reads a real reel, PNG frames and an H.264 preview are
//! written, and corrupt reels fail with one-line errors.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use half::{bf16, f16};
use safetensors::{Dtype, SafeTensors};
use sha2::{Digest, Sha256};
use support::minilm;

fn weightreel(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_weightreel"))
        .args(args)
        .env_remove("WEIGHTREEL_STORE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn fails(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_weightreel"))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    stderr
}

/// Encode `model` into `store` and return the reel path.
fn encode(model: &Path, store: &Path, extra: &[&str]) -> PathBuf {
    let mut args = vec![
        "encode",
        model.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--quiet",
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = weightreel(&args);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    PathBuf::from(json[0]["reel"].as_str().unwrap())
}

fn decode(reel: &Path, out: &Path) {
    weightreel(&[
        "decode",
        reel.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
}

fn sha(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Write a copy of MiniLM with every F32 tensor converted to `dtype` (F16 or BF16).
fn converted_copy(dir: &Path, dtype: Dtype) -> PathBuf {
    let bytes = std::fs::read(minilm::safetensors()).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>, Dtype)> = Vec::new();
    for (name, view) in st.tensors() {
        let (data, dt) = if view.dtype() == Dtype::F32 {
            let data: Vec<u8> = view
                .data()
                .chunks_exact(4)
                .flat_map(|c| {
                    let v = f32::from_le_bytes(c.try_into().unwrap());
                    if dtype == Dtype::F16 {
                        f16::from_f32(v).to_le_bytes()
                    } else {
                        bf16::from_f32(v).to_le_bytes()
                    }
                })
                .collect();
            (data, dtype)
        } else {
            (view.data().to_vec(), view.dtype())
        };
        tensors.push((name, view.shape().to_vec(), data, dt));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, shape, data, dt)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*dt, shape.clone(), data).unwrap(),
            )
        })
        .collect();
    let out = dir.join(format!("minilm-{dtype:?}.safetensors"));
    safetensors::serialize_to_file(views, None, &out).unwrap();
    out
}

/// name → (dtype, shape, bytes) for every tensor of a file.
fn tensors_of(path: &Path) -> BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(n, v)| (n, (v.dtype(), v.shape().to_vec(), v.data().to_vec())))
        .collect()
}

fn as_f32(dtype: Dtype, bytes: &[u8]) -> Vec<f32> {
    match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes(c.try_into().unwrap()).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|c| bf16::from_le_bytes(c.try_into().unwrap()).to_f32())
            .collect(),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn lossless_is_bit_exact_for_f32_f16_and_bf16() {
    let tmp = tempfile::tempdir().unwrap();
    let sources = vec![
        minilm::safetensors(),
        converted_copy(tmp.path(), Dtype::F16),
        converted_copy(tmp.path(), Dtype::BF16),
    ];
    for source in sources {
        let store = tmp.path().join("store");
        let reel = encode(
            &source,
            &store,
            &[
                "--mode",
                "lossless",
                "--chunk-encoding",
                "--chunk-size",
                "65536",
            ],
        );
        let original = decodes_bit_exact(&reel, &source, tmp.path());
        let raw: u64 = original.values().map(|t| t.2.len() as u64).sum();
        let reel_bytes = std::fs::metadata(&reel).unwrap().len();
        eprintln!(
            "{}: lossless reel {} bytes = {:.3} of raw",
            source.display(),
            reel_bytes,
            reel_bytes as f64 / raw as f64
        );
    }
}

/// Decode `reel` into `dir` and check that every tensor of `source` (the skipped
/// position_ids too, kept verbatim in the reel) comes back identical: dtype, shape and bytes.
/// Returns the source's tensors.
fn decodes_bit_exact(
    reel: &Path,
    source: &Path,
    dir: &Path,
) -> BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)> {
    let out = dir.join("decoded.safetensors");
    decode(reel, &out);
    let original = tensors_of(source);
    let decoded = tensors_of(&out);
    assert_eq!(
        decoded.keys().collect::<Vec<_>>(),
        original.keys().collect::<Vec<_>>(),
        "{source:?}"
    );
    for (name, (dtype, shape, bytes)) in &decoded {
        let (odtype, oshape, obytes) = &original[name];
        assert_eq!((dtype, shape), (odtype, oshape), "{name}");
        assert_eq!(sha(bytes), sha(obytes), "{source:?}: {name} differs");
    }
    original
}

/// Batch mode in lossless gives back every bit of `source` (MiniLM, or a copy in `dtype`),
/// in frames of 1,000,003 values (1024×1024, 64 tiles, not a whole number of tiles; tensors
/// cross tiles and quantization blocks), and `check --deep` verifies the reel tile by tile.
fn batch_lossless_round_trip(dtype: Option<Dtype>) {
    let tmp = tempfile::tempdir().unwrap();
    let source = match dtype {
        None => minilm::safetensors(),
        Some(dtype) => converted_copy(tmp.path(), dtype),
    };
    let store = tmp.path().join("store");
    let reel = encode(
        &source,
        &store,
        &["--mode", "lossless", "--max-frame-values", "1000003"],
    );
    decodes_bit_exact(&reel, &source, tmp.path());
    let checked = weightreel(&["check", "--store", store.to_str().unwrap(), "--deep"]);
    assert!(checked.contains("1 entries ok, 0 problems"), "{checked}");
}

#[test]
fn batch_lossless_is_bit_exact_for_f32() {
    batch_lossless_round_trip(None);
}

#[test]
fn batch_lossless_is_bit_exact_for_f16() {
    batch_lossless_round_trip(Some(Dtype::F16));
}

#[test]
fn batch_lossless_is_bit_exact_for_bf16() {
    batch_lossless_round_trip(Some(Dtype::BF16));
}

#[test]
fn u16_is_within_the_quantization_bound() {
    u16_round_trip(&["--chunk-encoding", "--chunk-size", "8192"]);
}

#[test]
fn batch_u16_is_within_the_quantization_bound() {
    // Two frames: 4096×4096 (1,024 tiles) and 3.6 M values in 2048×2048.
    u16_round_trip(&[]);
}

/// u16 encode then decode of MiniLM with `extra` settings: every value within its tensor's
/// bound (each quantization range lies inside its tensor's).
fn u16_round_trip(extra: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let reel = encode(&minilm::safetensors(), &store, extra);
    let out = tmp.path().join("decoded.safetensors");
    decode(&reel, &out);
    let original = tensors_of(&minilm::safetensors());
    let decoded = tensors_of(&out);
    assert_eq!(decoded.len(), 104);
    for (name, (dtype, shape, bytes)) in &decoded {
        let (odtype, oshape, obytes) = &original[name];
        assert_eq!((dtype, shape), (odtype, oshape), "{name}");
        if *dtype == Dtype::I64 {
            // position_ids, kept verbatim.
            assert_eq!(bytes, obytes, "{name}");
            continue;
        }
        let (a, b) = (as_f32(*dtype, bytes), as_f32(*odtype, obytes));
        // Segments never exceed the tensor, so the tensor's range bounds every segment's.
        let lo = b.iter().cloned().fold(f32::INFINITY, f32::min);
        let hi = b.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let bound = (hi - lo) as f64 / 131070.0
            + (hi.abs().max(lo.abs()) as f64) * 2.0 * f32::EPSILON as f64;
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs() as f64)
            .fold(0.0, f64::max);
        assert!(worst <= bound, "{name}: error {worst} > bound {bound}");
    }
}

/// Half the spacing of `dtype`'s values next to `v`: the most that rounding to `dtype` moves a
/// value there (the spacing above |v| is the larger one at a power of two).
fn half_ulp(dtype: Dtype, v: f32) -> f64 {
    let a = v.abs();
    match dtype {
        Dtype::F16 => {
            let h = f16::from_f32(a);
            (f16::from_bits(h.to_bits() + 1).to_f64() - h.to_f64()) / 2.0
        }
        Dtype::BF16 => {
            let h = bf16::from_f32(a);
            (bf16::from_bits(h.to_bits() + 1).to_f64() - h.to_f64()) / 2.0
        }
        _ => (f64::from(f32::from_bits(a.to_bits() + 1)) - f64::from(a)) / 2.0,
    }
}

/// u16 in `dtype` (MiniLM, or its F16/BF16 copy) against the bound the README states: for
/// every value, |decoded − source| ≤ (max − min) / 131070 of its tensor, plus half an f32 ulp
/// (the dequantized value is rounded to f32 once), plus for 16-bit output half an ulp of the
/// output dtype (the f32 is rounded to it). Returns the worst error as a multiple of the
/// bare (max − min) / 131070.
fn u16_bound_per_dtype(dtype: Option<Dtype>) -> f64 {
    let tmp = tempfile::tempdir().unwrap();
    let source = match dtype {
        None => minilm::safetensors(),
        Some(d) => converted_copy(tmp.path(), d),
    };
    let store = tmp.path().join("store");
    let reel = encode(&source, &store, &["--mode", "u16"]);
    let out = tmp.path().join("decoded.safetensors");
    decode(&reel, &out);
    let original = tensors_of(&source);
    let decoded = tensors_of(&out);
    let mut worst_ratio = 0.0f64;
    let mut checked = 0;
    for (name, (odtype, _, obytes)) in &original {
        if *odtype == Dtype::I64 {
            continue;
        }
        let (ddtype, _, dbytes) = &decoded[name];
        assert_eq!(ddtype, odtype, "{name}: decoded in the source's dtype");
        let (a, b) = (as_f32(*ddtype, dbytes), as_f32(*odtype, obytes));
        let lo = b.iter().cloned().fold(f32::INFINITY, f32::min);
        let hi = b.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let step = (f64::from(hi) - f64::from(lo)) / 131070.0;
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            let err = (f64::from(*x) - f64::from(*y)).abs();
            let mut bound = step * (1.0 + 1e-6) + half_ulp(Dtype::F32, *x);
            if *ddtype != Dtype::F32 {
                bound += half_ulp(*ddtype, *x);
            }
            assert!(
                err <= bound,
                "{name}[{i}]: error {err:e} > bound {bound:e} (source {y}, decoded {x})"
            );
            if step > 0.0 {
                worst_ratio = worst_ratio.max(err / step);
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 22_713_216);
    eprintln!("{dtype:?}: worst u16 error = {worst_ratio:.4} x (max - min) / 131070");
    worst_ratio
}

#[test]
fn u16_bound_holds_for_f32() {
    let ratio = u16_bound_per_dtype(None);
    // F32 output: the f32 rounding adds at most a few per cent on small-range tensors.
    assert!(ratio < 1.1, "{ratio}");
}

#[test]
fn u16_bound_holds_for_f16() {
    u16_bound_per_dtype(Some(Dtype::F16));
}

#[test]
fn u16_bound_holds_for_bf16() {
    u16_bound_per_dtype(Some(Dtype::BF16));
}

#[test]
fn sampled_encodes_decode_to_values_and_positions() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let reel = encode(
        &minilm::safetensors(),
        &store,
        &["--max-params", "50000", "--mode", "lossless"],
    );
    let out = tmp.path().join("decoded.safetensors");
    let summary = weightreel(&[
        "decode",
        reel.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(summary["values"], 50_000);
    let original = tensors_of(&minilm::safetensors());
    let decoded = tensors_of(&out);
    let mut total = 0;
    for (name, (dtype, shape, bytes)) in &decoded {
        if let Some(base) = name.strip_suffix(".sample_indices") {
            assert_eq!(*dtype, Dtype::I64);
            let (_, vshape, vbytes) = &decoded[base];
            assert_eq!(vshape, shape);
            let (odtype, _, obytes) = &original[base];
            let source = as_f32(*odtype, obytes);
            let values = as_f32(Dtype::F32, vbytes);
            let positions: Vec<usize> = bytes
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as usize)
                .collect();
            assert!(
                positions.windows(2).all(|w| w[0] < w[1]),
                "{base}: positions sorted and distinct"
            );
            for (v, p) in values.iter().zip(&positions) {
                assert_eq!(v.to_bits(), source[*p].to_bits(), "{base}[{p}]");
            }
            total += values.len();
        }
    }
    // Small tensors may be taken whole; everything else is sampled.
    let whole: usize = decoded
        .iter()
        .filter(|(n, (dtype, _, _))| {
            // position_ids comes back verbatim, outside the 50,000 values.
            *dtype != Dtype::I64
                && !n.ends_with(".sample_indices")
                && !decoded.contains_key(&format!("{n}.sample_indices"))
        })
        .map(|(_, (_, shape, _))| shape.iter().product::<usize>())
        .sum();
    assert_eq!(total + whole, 50_000);
    assert!(total > 40_000, "most values are samples");
}

#[test]
fn real_reels_open_in_ffprobe_and_export_pngs_and_previews() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let preview = tmp.path().join("preview.mp4");
    let reel = encode(
        &minilm::safetensors(),
        &store,
        &[
            "--max-params",
            "40000",
            "--chunk-encoding",
            "--chunk-size",
            "8000",
            "--preview",
            preview.to_str().unwrap(),
        ],
    );
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-show_streams",
            "-of",
            "json",
        ])
        .arg(&reel)
        .output()
        .unwrap();
    assert!(probe.status.success());
    let json: serde_json::Value = serde_json::from_slice(&probe.stdout).unwrap();
    let video: Vec<&serde_json::Value> = json["streams"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["codec_type"] == "video")
        .collect();
    // 8000-value u16 chunks: both bytes of a level are stored uncompressed (see
    // reel::MIN_FFV1_QUANTIZED_PICTURE), and ffprobe decodes them.
    let codecs: Vec<&str> = video
        .iter()
        .map(|s| s["codec_name"].as_str().unwrap())
        .collect();
    assert_eq!(codecs, ["rawvideo", "rawvideo"]);
    assert_eq!(video[0]["nb_read_frames"], "5");
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-show_streams", "-of", "json"])
        .arg(&preview)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&probe.stdout).unwrap();
    assert_eq!(json["streams"][0]["codec_name"], "h264");
    let pngs = tmp.path().join("png");
    let out = weightreel(&[
        "frames",
        reel.to_str().unwrap(),
        "--png",
        pngs.to_str().unwrap(),
    ]);
    assert!(out.contains("Wrote 5 PNG frames"), "{out}");
    let first = std::fs::read_dir(&pngs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let png = std::fs::read(first).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    assert_eq!(
        u32::from_be_bytes(png[16..20].try_into().unwrap()),
        128,
        "width"
    );
    assert_eq!(
        u32::from_be_bytes(png[20..24].try_into().unwrap()),
        64,
        "height"
    );
    assert_eq!(png[24], 16, "bit depth");
}

#[test]
fn corrupt_reels_fail_with_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let reel = encode(
        &minilm::safetensors(),
        &store,
        &[
            "--max-params",
            "40000",
            "--chunk-encoding",
            "--chunk-size",
            "8000",
        ],
    );
    let bytes = std::fs::read(&reel).unwrap();
    let out = tmp.path().join("out.safetensors");
    let out_s = out.to_str().unwrap();
    // Truncated.
    let truncated = tmp.path().join("truncated.mkv");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = fails(&["decode", truncated.to_str().unwrap(), "--out", out_s]);
    assert!(err.contains("truncated.mkv"), "{err}");
    // A flipped byte near the end (inside the last frames' packets).
    let flipped = tmp.path().join("flipped.mkv");
    let mut damaged = bytes.clone();
    let at = damaged.len() - 2000;
    damaged[at] ^= 0x55;
    std::fs::write(&flipped, &damaged).unwrap();
    let err = fails(&["decode", flipped.to_str().unwrap(), "--out", out_s]);
    assert!(
        err.contains("flipped.mkv") && err.contains("frame"),
        "{err}"
    );
    // Not a reel at all.
    let text = tmp.path().join("text.mkv");
    std::fs::write(&text, b"hello").unwrap();
    fails(&["decode", text.to_str().unwrap(), "--out", out_s]);
    assert!(!out.exists(), "no output left behind by a failed decode");
}

#[test]
fn decoding_one_tensor_touches_only_its_frames() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let reel = encode(
        &minilm::safetensors(),
        &store,
        &[
            "--chunk-encoding",
            "--chunk-size",
            "65536",
            "--mode",
            "lossless",
        ],
    );
    let out = tmp.path().join("one.safetensors");
    let summary = weightreel(&[
        "decode",
        reel.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--include",
        "^encoder\\.layer\\.3\\.attention\\.self\\.query\\.weight$",
        "--json",
    ]);
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    // 147,456 values in 64Ki-value frames: 3 or 4 frames of the reel's 347.
    assert_eq!(summary["tensors"], 1);
    assert!(summary["frames_read"].as_u64().unwrap() <= 4, "{summary}");
    let decoded = tensors_of(&out);
    let original = tensors_of(&minilm::safetensors());
    let name = "encoder.layer.3.attention.self.query.weight";
    assert_eq!(sha(&decoded[name].2), sha(&original[name].2));
}

#[test]
fn batch_mode_splits_at_the_frame_cap_and_stays_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let model = minilm::safetensors();
    // 22.7 M values at a 4 Mi-value cap: 5 frames of 2048×2048, then the tail's 1,741,696
    // values as exactly full frames of 1,048,576, 524,288, 131,072 and 32,768 values and a
    // last one of 4,992, all stored as 128×128 tiles but the last.
    let out = weightreel(&[
        "encode",
        model.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--quiet",
        "--mode",
        "lossless",
        "--max-frame-values",
        "4194304",
    ]);
    assert!(out.contains("Frames: 10 frames: 5 of 4,194,304 values, then the other 1,741,696 in 5 smaller frames (batch mode: 22,713,216 values exceed the frame cap)"), "{out}");
    let reel = PathBuf::from(
        out.lines()
            .find_map(|l| l.strip_prefix("Reel: "))
            .unwrap()
            .split(" (")
            .next()
            .unwrap(),
    );
    // Every frame but the last is exactly full: the padding is under one 128×128 tile.
    let store = weightreel::store::Store::open(&store).unwrap();
    let entry = &store.list().unwrap()[0];
    let frames = store.frames(entry.id).unwrap();
    let padding: Vec<u64> = frames
        .iter()
        .map(|f| u64::from(f.width) * u64::from(f.height) - f.count)
        .collect();
    assert_eq!(padding.len(), 10);
    assert!(padding[..9].iter().all(|&p| p == 0), "{padding:?}");
    assert!(padding[9] < 128 * 128, "{padding:?}");
    assert_eq!(frames.iter().map(|f| f.count).sum::<u64>(), 22_713_216);
    let decoded_path = tmp.path().join("decoded.safetensors");
    decode(&reel, &decoded_path);
    let original = tensors_of(&model);
    let decoded = tensors_of(&decoded_path);
    assert_eq!(decoded.len(), 104);
    for (name, (_, _, bytes)) in &decoded {
        assert_eq!(sha(bytes), sha(&original[name].2), "{name}");
    }
}
