//! A synthetic model family derived from a real base model, for judging search: an F16 copy,
//! two fine-tunes (low-rank plus noise updates, different seeds), a fine-tune of a fine-tune,
//! a re-initialized model with the base's names, shapes and per-tensor mean and std, a model of
//! another architecture (GPT-2 names, hidden size 256), and a 3-layer model that copies only
//! the base's embeddings. Shared by `tests/search.rs` and `examples/family.rs`, which prints
//! the rankings for any BERT-style base model.

use std::path::{Path, PathBuf};

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

/// What a member is, relative to the base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kinship {
    /// The base itself.
    Base,
    /// The same weights in another dtype.
    Copy,
    /// Base plus an update.
    FineTune,
    /// A fine-tune's fine-tune.
    GrandChild,
    /// Shares the embeddings only.
    SharesEmbeddings,
    /// Same shapes, new values.
    Unrelated,
}

/// One model of the family.
#[derive(Debug, Clone)]
pub struct Member {
    /// Short name (the directory's name).
    pub name: &'static str,
    /// Its model directory.
    pub dir: PathBuf,
    /// What it is.
    pub kinship: Kinship,
    /// Its parent's name, for those derived by an update.
    pub parent: Option<&'static str>,
    /// Encode arguments (mixed on purpose: search must not depend on them).
    pub encode_args: &'static [&'static str],
}

/// Tensors as (name, shape, f32 values).
pub type Tensors = Vec<(String, Vec<usize>, Vec<f32>)>;

/// The F32 tensors of the safetensors file `base`, sorted by name.
pub fn load_f32(base: &Path) -> Tensors {
    let bytes = std::fs::read(base).expect("read the base model");
    let st = SafeTensors::deserialize(&bytes).expect("parse the base model");
    let mut tensors: Tensors = st
        .tensors()
        .into_iter()
        .filter(|(_, v)| v.dtype() == Dtype::F32)
        .map(|(name, v)| {
            let values = v
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (name, v.shape().to_vec(), values)
        })
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    tensors
}

/// Write the family of `base` (a safetensors file of F32 tensors) under `out`, one directory
/// per member, and return the members, base first.
pub fn derive(base: &Path, out: &Path) -> Vec<Member> {
    let tensors = load_f32(base);

    let member = |name: &'static str,
                  kinship: Kinship,
                  parent: Option<&'static str>,
                  encode_args: &'static [&'static str]| Member {
        name,
        dir: out.join(name),
        kinship,
        parent,
        encode_args,
    };
    let finetune_a = fine_tune(&tensors, 0.04, 11);
    let grandchild = fine_tune(&finetune_a, 0.04, 13);
    let members = vec![
        (
            member("base", Kinship::Base, None, &["--max-params", "20000"]),
            tensors.clone(),
            Dtype::F32,
        ),
        (
            member(
                "base-f16",
                Kinship::Copy,
                Some("base"),
                &[
                    "--max-params",
                    "30000",
                    "--chunk-encoding",
                    "--chunk-size",
                    "5000",
                ],
            ),
            tensors.clone(),
            Dtype::F16,
        ),
        (
            member(
                "finetune-a",
                Kinship::FineTune,
                Some("base"),
                &["--max-params", "40000", "--layers", "attention"],
            ),
            finetune_a,
            Dtype::F32,
        ),
        (
            member(
                "finetune-b",
                Kinship::FineTune,
                Some("base"),
                &["--max-params", "20000", "--mode", "lossless"],
            ),
            fine_tune(&tensors, 0.05, 12),
            Dtype::F32,
        ),
        (
            member(
                "grandchild",
                Kinship::GrandChild,
                Some("finetune-a"),
                &["--max-params", "30000"],
            ),
            grandchild,
            Dtype::F32,
        ),
        (
            member(
                "three-layer",
                Kinship::SharesEmbeddings,
                None,
                &["--max-params", "40000"],
            ),
            three_layer(&tensors, 21),
            Dtype::F32,
        ),
        (
            member(
                "reinit",
                Kinship::Unrelated,
                None,
                &["--max-params", "20000"],
            ),
            reinit(&tensors, 31),
            Dtype::F32,
        ),
        (
            member(
                "gpt2-like",
                Kinship::Unrelated,
                None,
                &["--max-params", "20000"],
            ),
            gpt2_like(41),
            Dtype::F32,
        ),
    ];
    let mut out_members = Vec::new();
    for (m, t, dtype) in members {
        std::fs::create_dir_all(&m.dir).expect("member directory");
        write(&m.dir.join("model.safetensors"), &t, dtype);
        let config = if m.name == "gpt2-like" {
            r#"{"model_type": "gpt2", "architectures": ["GPT2Model"]}"#
        } else {
            r#"{"model_type": "bert", "architectures": ["BertModel"]}"#
        };
        std::fs::write(m.dir.join("config.json"), config).expect("config.json");
        out_members.push(m);
    }
    out_members
}

/// Uniform and normal numbers from splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

fn norm(v: &[f32]) -> f64 {
    v.iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt()
}

fn mean_std(v: &[f32]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let var = v
        .iter()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum::<f64>()
        / n;
    (mean, var.sqrt())
}

/// Every tensor plus an update of relative size `change` (‖ΔW‖ = change · ‖W‖): for a matrix,
/// half its energy a rank-4 product and half Gaussian noise; for a vector, noise.
pub fn fine_tune(tensors: &Tensors, change: f64, seed: u64) -> Tensors {
    let mut rng = Rng(seed);
    tensors
        .iter()
        .map(|(name, shape, w)| {
            let n = w.len();
            let mut delta: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
            if shape.len() == 2 {
                let (rows, cols) = (shape[0], shape[1]);
                let rank = 4;
                let u: Vec<f64> = (0..rows * rank).map(|_| rng.normal()).collect();
                let v: Vec<f64> = (0..cols * rank).map(|_| rng.normal()).collect();
                let mut low = vec![0f64; n];
                for r in 0..rows {
                    for c in 0..cols {
                        low[r * cols + c] =
                            (0..rank).map(|k| u[r * rank + k] * v[c * rank + k]).sum();
                    }
                }
                let (ln, dn) = (
                    low.iter().map(|x| x * x).sum::<f64>().sqrt(),
                    delta.iter().map(|x| x * x).sum::<f64>().sqrt(),
                );
                for (d, l) in delta.iter_mut().zip(&low) {
                    *d = *d / dn + l / ln;
                }
            }
            let dn = delta.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-30);
            let scale = change * norm(w) / dn;
            let values = w
                .iter()
                .zip(&delta)
                .map(|(&x, d)| (f64::from(x) + d * scale) as f32)
                .collect();
            (name.clone(), shape.clone(), values)
        })
        .collect()
}

/// New Gaussian values with each tensor's mean and standard deviation.
pub fn reinit(tensors: &Tensors, seed: u64) -> Tensors {
    let mut rng = Rng(seed);
    tensors
        .iter()
        .map(|(name, shape, w)| {
            let (mean, std) = mean_std(w);
            let values = (0..w.len())
                .map(|_| (mean + std * rng.normal()) as f32)
                .collect();
            (name.clone(), shape.clone(), values)
        })
        .collect()
}

/// The base's embeddings, then three re-initialized layers (and pooler) of its shapes.
pub fn three_layer(tensors: &Tensors, seed: u64) -> Tensors {
    let kept: Tensors = tensors
        .iter()
        .filter(|(name, _, _)| {
            !name.contains("layer.")
                || ["layer.0.", "layer.1.", "layer.2."]
                    .iter()
                    .any(|l| name.contains(l))
        })
        .cloned()
        .collect();
    let fresh = reinit(&kept, seed);
    kept.into_iter()
        .zip(fresh)
        .map(|(old, new)| {
            if old.0.starts_with("embeddings.") {
                old
            } else {
                new
            }
        })
        .collect()
}

/// A small GPT-2-shaped model (hidden 256, 2 layers, vocabulary 5,000), initialised as GPT-2
/// is (normal, std 0.02; LayerNorm scales 1).
pub fn gpt2_like(seed: u64) -> Tensors {
    let mut rng = Rng(seed);
    let h = 256;
    let mut specs: Vec<(String, Vec<usize>)> = vec![
        ("wte.weight".into(), vec![5000, h]),
        ("wpe.weight".into(), vec![512, h]),
        ("ln_f.weight".into(), vec![h]),
        ("ln_f.bias".into(), vec![h]),
    ];
    for l in 0..2 {
        for (n, s) in [
            ("ln_1.weight", vec![h]),
            ("ln_1.bias", vec![h]),
            ("attn.c_attn.weight", vec![h, 3 * h]),
            ("attn.c_attn.bias", vec![3 * h]),
            ("attn.c_proj.weight", vec![h, h]),
            ("attn.c_proj.bias", vec![h]),
            ("ln_2.weight", vec![h]),
            ("ln_2.bias", vec![h]),
            ("mlp.c_fc.weight", vec![h, 4 * h]),
            ("mlp.c_fc.bias", vec![4 * h]),
            ("mlp.c_proj.weight", vec![4 * h, h]),
            ("mlp.c_proj.bias", vec![h]),
        ] {
            specs.push((format!("h.{l}.{n}"), s));
        }
    }
    specs
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let values = if name.contains("ln_") && name.ends_with("weight") {
                vec![1.0; n]
            } else if name.ends_with("bias") {
                vec![0.0; n]
            } else {
                (0..n).map(|_| (0.02 * rng.normal()) as f32).collect()
            };
            (name, shape, values)
        })
        .collect()
}

/// Write `tensors` as a safetensors file of `dtype` (F32 or F16).
pub fn write(path: &Path, tensors: &Tensors, dtype: Dtype) {
    let data: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| match dtype {
            Dtype::F16 => v
                .iter()
                .flat_map(|&x| half::f16::from_f32(x).to_bits().to_le_bytes())
                .collect(),
            _ => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .zip(&data)
        .map(|((name, shape, _), d)| {
            (
                name.clone(),
                TensorView::new(dtype, shape.clone(), d).expect("tensor view"),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).expect("write safetensors");
}
