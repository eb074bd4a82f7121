//! Reels written by the previous release (reel format 1: a per-frame table in the header,
//! every track FFV1 with trained coder states, lossless samples in an order-preserving map)
//! still decode: what users stored is never lost to an upgrade. `tests/data/v1/` holds a small
//! model and the two reels that release wrote of it (`encode --chunk-encoding --chunk-size
//! 1024`, lossless and u16; the F32 tensor has an infinity, a negative zero and a subnormal).

use std::path::PathBuf;
use std::process::Command;

use safetensors::SafeTensors;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/v1")
        .join(name)
}

fn decode(reel: &str) -> (tempfile::TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("back.safetensors");
    let o = Command::new(env!("CARGO_BIN_EXE_weightreel"))
        .arg("decode")
        .arg(data(reel))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bytes = std::fs::read(&out).unwrap();
    (dir, bytes)
}

#[test]
fn a_version_1_lossless_reel_decodes_bit_exact() {
    let source = std::fs::read(data("model.safetensors")).unwrap();
    let source = SafeTensors::deserialize(&source).unwrap();
    let (_dir, back) = decode("lossless.mkv");
    let back = SafeTensors::deserialize(&back).unwrap();
    for (name, view) in source.tensors() {
        let got = back.tensor(&name).unwrap();
        assert_eq!(got.dtype(), view.dtype(), "{name}");
        assert_eq!(got.shape(), view.shape(), "{name}");
        assert!(got.data() == view.data(), "{name}: bytes differ");
    }
}

/// The values of BF16 tensor `name` in `st`.
fn bf16_values(st: &SafeTensors<'_>, name: &str) -> Vec<f32> {
    st.tensor(name)
        .unwrap()
        .data()
        .chunks_exact(2)
        .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
        .collect()
}

#[test]
fn a_version_1_u16_reel_decodes_within_its_bound() {
    let source = std::fs::read(data("model.safetensors")).unwrap();
    let source = SafeTensors::deserialize(&source).unwrap();
    let (_dir, back) = decode("u16.mkv");
    let back = SafeTensors::deserialize(&back).unwrap();
    let name = "encoder.layer.0.output.LayerNorm.weight";
    let (want, got) = (bf16_values(&source, name), bf16_values(&back, name));
    let range = want.iter().cloned().fold(f32::MIN, f32::max)
        - want.iter().cloned().fold(f32::MAX, f32::min);
    for (w, g) in want.iter().zip(&got) {
        // The u16 bound plus bf16's own rounding of the decoded value.
        assert!(
            (w - g).abs() <= range / 131070.0 + w.abs() / 128.0,
            "{w} vs {g}"
        );
    }
}
