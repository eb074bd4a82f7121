//! Fingerprints: a few tens of KB that say what a model's weights are, whatever settings it was
//! encoded with, so that stored models can be compared (stage `search`).
//!
//! Every streamable tensor contributes a [`TensorPrint`]: its name, role, layer and shape, the
//! statistics of a sample, and the sample itself — one contiguous run of values centred in the
//! tensor. The run depends only on the tensor's shape (and, for models with very many tensors,
//! on a power-of-two budget factor, see [`sample_len`]), and runs of different lengths share
//! their centre, so two models that share a tensor shape line up on that tensor even when one
//! was encoded with `--max-params 20000 --layers attention` and the other in full. Values are
//! compared as f32, so an F16 copy lines up with its source.
//!
//! One run per tensor is one read per tensor (neighbouring small tensors merge into one read):
//! on the Hub, MiniLM's fingerprint costs about 100 ranged requests, issued concurrently by the
//! stream stage, and ~106 KB of values (F32).
//!
//! | file | contents |
//! |---|---|
//! | `mod.rs` | the sample rule, [`Fingerprint::compute`], statistics, the sketch |
//! | `format.rs` | the stored bytes: version, checksum, checked parsing |

mod format;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::roles::Role;
use crate::selection::{Plan, PlanItem, Run};
use crate::source::{Model, TensorInfo};
use crate::stream::{self, Sink, StreamOptions, StreamSummary};

pub use format::{
    features_bytes, features_from_bytes, sketch_from_bytes, FINGERPRINT_VERSION, SKETCH_DIM,
};

/// Values sampled from a tensor of fewer than [`LARGE_TENSOR`] elements.
pub const SAMPLE_VALUES: u64 = 256;
/// Values sampled from a tensor of at least [`LARGE_TENSOR`] elements (embedding tables, LM
/// heads): they hold most of a model's parameters, and per-parameter scores lean on them.
pub const SAMPLE_VALUES_LARGE: u64 = 1024;
/// Elements from which a tensor is large.
pub const LARGE_TENSOR: u64 = 1 << 20;
/// Fewest values sampled from a tensor that has them, whatever the budget.
pub const MIN_SAMPLE_VALUES: u64 = 32;
/// Raw bytes a fingerprint may read; models with so many tensors that the full samples would
/// read more take shorter (still centred, so still comparable) runs.
pub const READ_BUDGET_BYTES: u64 = 256 * 1024;
/// Values of each tensor's sample centre that feed the sketch (every sample has them).
pub const SKETCH_VALUES: u64 = MIN_SAMPLE_VALUES;

/// Wrapper prefixes stripped from tensor names before matching: task heads and wrappers
/// (`bert.` in `BertForMaskedLM`, `0.auto_model.` in sentence-transformers, `module.` from
/// DataParallel, `base_model.model.` from PEFT) do not change what a weight is.
pub const WRAPPER_PREFIXES: &[&str] = &[
    "module.",
    "0.auto_model.",
    "auto_model.",
    "base_model.model.",
    "base_model.",
    "model.",
    "transformer.",
    "bert.",
    "roberta.",
    "distilbert.",
    "albert.",
    "electra.",
    "deberta.",
    "xlm_roberta.",
    "mpnet.",
    "gpt_neox.",
];

/// `name` without its wrapper prefixes: the key tensors are matched by.
pub fn canonical_name(name: &str) -> &str {
    let mut rest = name;
    'strip: loop {
        for prefix in WRAPPER_PREFIXES {
            if let Some(r) = rest.strip_prefix(prefix) {
                if !r.is_empty() {
                    rest = r;
                    continue 'strip;
                }
            }
        }
        return rest;
    }
}

/// The budget factor of a model: the smallest power of two by which the full sample lengths
/// must be divided to read at most [`READ_BUDGET_BYTES`].
pub fn budget_factor(tensors: &[TensorInfo]) -> u64 {
    // The bytes each full sample really reads: whole blocks for a quantized tensor.
    let full: u64 = tensors
        .iter()
        .map(|t| {
            let run = sample_run(t.numel(), sample_len(t.numel(), 1));
            let (begin, end) = t.byte_range(run.start, run.len);
            end - begin
        })
        .sum();
    full.div_ceil(READ_BUDGET_BYTES).max(1).next_power_of_two()
}

/// Length of the sample of a tensor of `numel` elements under budget `factor`.
pub fn sample_len(numel: u64, factor: u64) -> u64 {
    let full = if numel >= LARGE_TENSOR {
        SAMPLE_VALUES_LARGE
    } else {
        SAMPLE_VALUES
    };
    (full / factor.max(1)).max(MIN_SAMPLE_VALUES).min(numel)
}

/// The sample run of a tensor of `numel` elements: `len` values centred in it.
pub fn sample_run(numel: u64, len: u64) -> Run {
    Run {
        start: (numel - len) / 2,
        len,
    }
}

/// Statistics of a tensor's sample (finite values only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct SampleStats {
    /// Mean.
    pub mean: f32,
    /// Standard deviation.
    pub std: f32,
    /// Skewness.
    pub skew: f32,
    /// Excess kurtosis (0 for a normal distribution).
    pub kurtosis: f32,
    /// Root mean square.
    pub rms: f32,
    /// Largest magnitude.
    pub absmax: f32,
    /// NaN and ±inf values in the sample.
    pub nonfinite: u32,
}

impl SampleStats {
    /// Statistics of `values`.
    pub fn of(values: &[f32]) -> SampleStats {
        let finite = || {
            values
                .iter()
                .filter(|v| v.is_finite())
                .map(|&v| f64::from(v))
        };
        let n = finite().count();
        let nonfinite = (values.len() - n) as u32;
        if n == 0 {
            return SampleStats {
                nonfinite,
                ..SampleStats::default()
            };
        }
        let nf = n as f64;
        let mean = finite().sum::<f64>() / nf;
        let (mut m2, mut m3, mut m4, mut sq, mut absmax) = (0.0, 0.0, 0.0, 0.0, 0.0f64);
        for v in finite() {
            let d = v - mean;
            m2 += d * d;
            m3 += d * d * d;
            m4 += d * d * d * d;
            sq += v * v;
            absmax = absmax.max(v.abs());
        }
        let (m2, m3, m4) = (m2 / nf, m3 / nf, m4 / nf);
        let (skew, kurtosis) = if m2 > 0.0 {
            (m3 / m2.powf(1.5), m4 / (m2 * m2) - 3.0)
        } else {
            (0.0, 0.0)
        };
        SampleStats {
            mean: mean as f32,
            std: m2.sqrt() as f32,
            skew: skew as f32,
            kurtosis: kurtosis as f32,
            rms: (sq / nf).sqrt() as f32,
            absmax: absmax as f32,
            nonfinite,
        }
    }
}

/// What a fingerprint keeps of one tensor.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorPrint {
    /// Name as stored in the model.
    pub name: String,
    /// Role from the role table.
    pub role: Role,
    /// Layer index, if the name has one.
    pub layer: Option<u32>,
    /// Shape.
    pub shape: Vec<u64>,
    /// Stored element type (`F32`, `F16`, …).
    pub dtype: String,
    /// First element of the sample (row-major index).
    pub sample_start: u64,
    /// The sample, as f32 (kept in the store as f16 multiples of the sample's RMS, which keeps
    /// 11 significant bits whatever the tensor's scale).
    #[serde(skip)]
    pub values: Vec<f32>,
    /// What the stored f16 patterns are multiples of (see [`TensorPrint::values`]).
    #[serde(skip)]
    pub scale: f32,
    /// Statistics of the sample.
    pub stats: SampleStats,
}

impl TensorPrint {
    /// Number of elements.
    pub fn numel(&self) -> u64 {
        self.shape.iter().product()
    }

    /// The key tensors are matched by.
    pub fn key(&self) -> &str {
        canonical_name(&self.name)
    }

    /// The sample values at elements `range` (which must lie inside the sample).
    pub fn values_at(&self, range: std::ops::Range<u64>) -> &[f32] {
        let from = (range.start - self.sample_start) as usize;
        let to = (range.end - self.sample_start) as usize;
        &self.values[from..to]
    }

    /// Elements of the sample, as a range of the tensor.
    pub fn sample_range(&self) -> std::ops::Range<u64> {
        self.sample_start..self.sample_start + self.values.len() as u64
    }
}

/// A model's fingerprint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fingerprint {
    /// One print per streamable tensor, in the model's stream order.
    pub tensors: Vec<TensorPrint>,
    /// A [`SKETCH_DIM`]-value summary of all samples for the candidate stage of search: the
    /// dot product of two sketches estimates the parameter-weighted correlation of the models'
    /// tensors that share a name and shape (see [`Fingerprint::sketch`]).
    #[serde(skip)]
    pub sketch: Vec<f32>,
}

/// What computing a fingerprint read.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FingerprintCost {
    /// Values read.
    pub values: u64,
    /// Bytes and requests.
    pub stream: StreamSummary,
}

/// Collects each tensor's sample as the stream delivers it.
struct SampleSink<'a> {
    model: &'a Model,
    samples: Vec<Vec<f32>>,
    index: std::collections::HashMap<&'a str, usize>,
}

impl Sink for SampleSink<'_> {
    fn values(&mut self, tensor: &TensorInfo, _start: u64, values: &[f32]) -> Result<bool> {
        let i = self.index[tensor.name.as_str()];
        self.samples[i].extend_from_slice(values);
        Ok(true)
    }
}

impl Fingerprint {
    /// Read `model`'s samples (one run per tensor, concurrently on the Hub) and build its
    /// fingerprint. Tensors with no elements have no sample and are left out.
    pub fn compute(
        model: &Model,
        cancel: Option<&std::sync::atomic::AtomicBool>,
    ) -> Result<(Fingerprint, FingerprintCost)> {
        let factor = budget_factor(&model.tensors);
        let items: Vec<PlanItem> = model
            .tensors
            .iter()
            .enumerate()
            .filter(|(_, t)| t.numel() > 0)
            .map(|(i, t)| PlanItem {
                tensor: i,
                runs: vec![sample_run(t.numel(), sample_len(t.numel(), factor))],
            })
            .collect();
        let total = items.iter().map(PlanItem::len).sum();
        let plan = Plan {
            items,
            total,
            available: total,
        };
        let mut sink = SampleSink {
            model,
            samples: vec![Vec::new(); model.tensors.len()],
            index: model
                .tensors
                .iter()
                .enumerate()
                .map(|(i, t)| (t.name.as_str(), i))
                .collect(),
        };
        let summary = stream::stream(
            model,
            &plan,
            &mut sink,
            StreamOptions {
                cancel,
                skip_values: 0,
            },
        )?;
        if summary.stopped {
            return Err(Error::Interrupted);
        }
        let SampleSink { model, samples, .. } = sink;
        let mut tensors = Vec::with_capacity(plan.items.len());
        for item in &plan.items {
            let t = &model.tensors[item.tensor];
            let (values, scale) = round_to_stored(&samples[item.tensor]);
            tensors.push(TensorPrint {
                name: t.name.clone(),
                role: t.role,
                layer: t.layer,
                shape: t.shape.iter().map(|&d| d as u64).collect(),
                dtype: t.stored_type(),
                sample_start: item.runs[0].start,
                stats: SampleStats::of(&samples[item.tensor]),
                values,
                scale,
            });
        }
        let mut fp = Fingerprint {
            tensors,
            sketch: Vec::new(),
        };
        fp.sketch = fp.make_sketch();
        Ok((
            fp,
            FingerprintCost {
                values: total,
                stream: summary,
            },
        ))
    }

    /// Parameters over the printed tensors.
    pub fn params(&self) -> u64 {
        self.tensors.iter().map(TensorPrint::numel).sum()
    }

    /// Only the tensors whose role is in `roles` (all when empty).
    pub fn restricted_to(&self, roles: &[Role]) -> Fingerprint {
        if roles.is_empty() {
            return self.clone();
        }
        let mut fp = Fingerprint {
            tensors: self
                .tensors
                .iter()
                .filter(|t| roles.contains(&t.role))
                .cloned()
                .collect(),
            sketch: Vec::new(),
        };
        fp.sketch = fp.make_sketch();
        fp
    }

    /// Feature hashing of every tensor's standardized sample centre: value `i` of the tensor
    /// keyed `k` lands in bucket `h(k, i) mod D` with sign `s(k, i)`, weighted by the square
    /// root of the tensor's share of parameters, and the sketch is scaled to unit length.
    /// Tensors that two models share (same key, same shape) then add their weighted
    /// correlation to the sketches' dot product, and the rest adds noise of about `1/√D`.
    pub fn make_sketch(&self) -> Vec<f32> {
        let mut sketch = vec![0f64; SKETCH_DIM];
        let total = self.params().max(1) as f64;
        for t in &self.tensors {
            let centre = centre_range(t, SKETCH_VALUES);
            let values = t.values_at(centre.clone());
            if values.len() < 2 || t.stats.std.is_nan() || t.stats.std <= 0.0 {
                continue;
            }
            let weight = (t.numel() as f64 / total / values.len() as f64).sqrt();
            let seed = hash_key(t.key(), &t.shape);
            for (i, &v) in values.iter().enumerate() {
                if !v.is_finite() {
                    continue;
                }
                let z = (f64::from(v) - f64::from(t.stats.mean)) / f64::from(t.stats.std);
                let h = mix(seed ^ (centre.start + i as u64));
                let bucket = (h % SKETCH_DIM as u64) as usize;
                let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
                sketch[bucket] += sign * z * weight;
            }
        }
        let norm = sketch.iter().map(|v| v * v).sum::<f64>().sqrt();
        sketch
            .iter()
            .map(|&v| if norm > 0.0 { (v / norm) as f32 } else { 0.0 })
            .collect()
    }
}

/// Distribution features of one role: parameter-weighted means over its tensors.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RoleFeatures {
    /// The role.
    pub role: Role,
    /// Its share of the model's parameters.
    pub share: f64,
    /// log10 of the standard deviation.
    pub log_std: f64,
    /// Mean over standard deviation.
    pub mean_over_std: f64,
    /// Skewness.
    pub skew: f64,
    /// ln(1 + excess kurtosis + 2): tails, on a scale where a few outliers do not dominate.
    pub tails: f64,
}

impl Fingerprint {
    /// Per-role features, roles in `Role::ALL` order.
    pub fn role_features(&self) -> Vec<RoleFeatures> {
        let fp = self;
        let total = fp.params().max(1) as f64;
        let mut out = Vec::new();
        for role in Role::ALL {
            let (mut w, mut ls, mut ms, mut sk, mut tl) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for t in fp.tensors.iter().filter(|t| t.role == role) {
                let s = &t.stats;
                if s.std.is_nan() || s.std <= 0.0 {
                    continue;
                }
                let tw = t.numel() as f64;
                w += tw;
                ls += tw * f64::from(s.std).log10();
                ms += tw * f64::from(s.mean / s.std);
                sk += tw * f64::from(s.skew);
                tl += tw * (f64::from(s.kurtosis) + 3.0).max(0.0).ln_1p();
            }
            if w > 0.0 {
                out.push(RoleFeatures {
                    role,
                    share: w / total,
                    log_std: ls / w,
                    mean_over_std: ms / w,
                    skew: sk / w,
                    tails: tl / w,
                });
            }
        }
        out
    }
}

/// The `len` elements (at most) at the centre of `t`'s sample.
pub fn centre_range(t: &TensorPrint, len: u64) -> std::ops::Range<u64> {
    let sample = t.sample_range();
    let n = sample.end - sample.start;
    let take = len.min(n);
    let start = sample.start + (n - take) / 2;
    start..start + take
}

/// The values as the store keeps them (f16 multiples of the sample's RMS) and that scale, so
/// that a fingerprint compares the same fresh and stored.
pub fn round_to_stored(values: &[f32]) -> (Vec<f32>, f32) {
    let scale = format::sample_scale(values);
    let rounded = values
        .iter()
        .map(|&v| format::from_stored(format::to_stored(v, scale), scale))
        .collect();
    (rounded, scale)
}

/// FNV-1a of a tensor key and shape.
fn hash_key(key: &str, shape: &[u64]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let mut eat = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    key.bytes().for_each(&mut eat);
    for d in shape {
        d.to_le_bytes().into_iter().for_each(&mut eat);
    }
    h
}

/// splitmix64's finalizer: a well-mixed hash of `x`.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapper_prefixes_are_stripped_repeatedly() {
        assert_eq!(
            canonical_name("0.auto_model.encoder.layer.0.attention.self.query.weight"),
            "encoder.layer.0.attention.self.query.weight"
        );
        assert_eq!(
            canonical_name("module.bert.embeddings.word_embeddings.weight"),
            "embeddings.word_embeddings.weight"
        );
        assert_eq!(
            canonical_name("transformer.h.0.attn.c_attn.weight"),
            "h.0.attn.c_attn.weight"
        );
        assert_eq!(canonical_name("lm_head.weight"), "lm_head.weight");
        // A name that is only a prefix keeps it.
        assert_eq!(canonical_name("model."), "model.");
    }

    #[test]
    fn shorter_samples_sit_inside_longer_ones() {
        for numel in [33u64, 100, 384, 1535, 147_456, 11_720_448] {
            let long = sample_run(numel, sample_len(numel, 1));
            for factor in [2u64, 4, 8, 64] {
                let short = sample_run(numel, sample_len(numel, factor));
                assert!(short.start >= long.start, "{numel} {factor}");
                assert!(
                    short.start + short.len <= long.start + long.len,
                    "{numel} {factor}"
                );
            }
        }
        assert_eq!(sample_len(10, 1), 10);
        assert_eq!(sample_len(384, 1), SAMPLE_VALUES);
        assert_eq!(sample_len(1 << 20, 1), SAMPLE_VALUES_LARGE);
        assert_eq!(sample_len(1 << 20, 1 << 20), MIN_SAMPLE_VALUES);
    }

    #[test]
    fn statistics_of_a_known_sample() {
        let s = SampleStats::of(&[1.0, 2.0, 3.0, 4.0, f32::NAN]);
        assert_eq!(s.nonfinite, 1);
        assert!((s.mean - 2.5).abs() < 1e-6);
        assert!((s.std - 1.118_034).abs() < 1e-5);
        assert!(s.skew.abs() < 1e-6);
        assert!((s.kurtosis - (-1.36)).abs() < 1e-5);
        assert!((s.rms - 7.5f32.sqrt()).abs() < 1e-5);
        assert_eq!(s.absmax, 4.0);
    }
}
