//! `weightreel show MODEL`: what a stored model's values look like — statistics per role,
//! per layer and per tensor, and a histogram — from its reel and registry entry.
//!
//! The registry's frame rows give the value range (the histogram's bins) before any value is
//! read; the values come from one pass over the reel ([`crate::decode::scan_values`]), one
//! frame or tile at a time, so memory is the per-tensor accumulators plus one frame. A lossy
//! reel's statistics are those of its stored values (within the quantization bound of the
//! source's).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::error::Result;
use crate::roles::{layer_index, Role};
use crate::store::{EntrySummary, Store};
use crate::text::{group, printable};

/// Summary statistics of a set of values (the finite ones; `nonfinite` counts the rest).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stats {
    /// Finite values.
    pub count: u64,
    /// NaN and ±inf values.
    pub nonfinite: u64,
    /// Mean.
    pub mean: f64,
    /// Population standard deviation.
    pub std: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
}

/// Running sums for [`Stats`] (f64, so that 10^9 values keep their precision).
#[derive(Debug, Clone, Copy)]
struct Acc {
    count: u64,
    nonfinite: u64,
    sum: f64,
    sumsq: f64,
    min: f64,
    max: f64,
}

impl Default for Acc {
    fn default() -> Self {
        Acc {
            count: 0,
            nonfinite: 0,
            sum: 0.0,
            sumsq: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl Acc {
    fn push_all(&mut self, values: &[f32]) {
        for &v in values {
            if !v.is_finite() {
                self.nonfinite += 1;
                continue;
            }
            let v = f64::from(v);
            self.count += 1;
            self.sum += v;
            self.sumsq += v * v;
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
    }

    fn merge(&mut self, o: &Acc) {
        self.count += o.count;
        self.nonfinite += o.nonfinite;
        self.sum += o.sum;
        self.sumsq += o.sumsq;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }

    fn stats(&self) -> Stats {
        let n = self.count.max(1) as f64;
        let mean = self.sum / n;
        let var = (self.sumsq / n - mean * mean).max(0.0);
        let (min, max) = if self.count == 0 {
            (0.0, 0.0)
        } else {
            (self.min, self.max)
        };
        Stats {
            count: self.count,
            nonfinite: self.nonfinite,
            mean: if self.count == 0 { 0.0 } else { mean },
            std: var.sqrt(),
            min,
            max,
        }
    }
}

/// Statistics of one group of tensors (a role, a layer).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupStats {
    /// Tensors in the group.
    pub tensors: u64,
    /// Their values.
    #[serde(flatten)]
    pub stats: Stats,
}

/// One stored tensor.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorStats {
    /// Name as stored.
    pub name: String,
    /// Dtype in the source.
    pub dtype: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Role.
    pub role: Role,
    /// Layer index, for tensors in numbered layers.
    pub layer: Option<u32>,
    /// Its values.
    #[serde(flatten)]
    pub stats: Stats,
}

/// Counts of values in equal-width bins from `min` to `max`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Histogram {
    /// Lower edge of the first bin.
    pub min: f64,
    /// Upper edge of the last bin.
    pub max: f64,
    /// Values per bin.
    pub counts: Vec<u64>,
}

impl Histogram {
    fn new(min: f64, max: f64, bins: usize) -> Histogram {
        Histogram {
            min,
            max,
            counts: vec![0; bins.max(1)],
        }
    }

    fn push_all(&mut self, values: &[f32]) {
        let bins = self.counts.len();
        let width = (self.max - self.min) / bins as f64;
        for &v in values {
            if !v.is_finite() {
                continue;
            }
            let at = if width > 0.0 {
                (((f64::from(v) - self.min) / width) as usize).min(bins - 1)
            } else {
                0
            };
            self.counts[at] += 1;
        }
    }
}

/// Everything `show` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    /// The stored name.
    pub name: String,
    /// Settings key of the entry, and its short form.
    pub settings_key: String,
    /// Short settings key.
    pub short_key: String,
    /// Pixel mode.
    pub mode: String,
    /// Values the reel holds.
    pub values_stored: u64,
    /// The model's parameter count (all its streamable tensors), from its fingerprint.
    pub model_params: Option<u64>,
    /// Frames in the reel.
    pub frames: u64,
    /// All stored values.
    pub overall: Stats,
    /// By role (roles with stored values).
    pub roles: BTreeMap<String, GroupStats>,
    /// By layer number.
    pub layers: BTreeMap<u32, GroupStats>,
    /// Tensors outside numbered layers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_layer: Option<GroupStats>,
    /// The stored values' distribution.
    pub histogram: Histogram,
    /// Every stored tensor, in stream order.
    pub tensors: Vec<TensorStats>,
    /// Tensors kept verbatim (buffers), not counted in the statistics.
    pub verbatim: Vec<String>,
}

impl Analysis {
    /// Analyse `entry` of `store`: one pass over its reel, with `bins` histogram bins.
    pub fn of(store: &Store, entry: &EntrySummary, bins: usize) -> Result<Analysis> {
        let rows = store.frames(entry.id)?;
        let finite = rows.iter().filter(|r| r.count > r.nonfinite);
        let lo = finite
            .clone()
            .map(|r| f64::from(r.min))
            .fold(f64::INFINITY, f64::min);
        let hi = finite
            .map(|r| f64::from(r.max))
            .fold(f64::NEG_INFINITY, f64::max);
        let (lo, hi) = if lo <= hi { (lo, hi) } else { (0.0, 0.0) };
        let mut histogram = Histogram::new(lo, hi, bins);
        let reel = store.reel_path(&entry.record.totals.reel_file);
        let mut accs: Vec<Acc> = Vec::new();
        let manifest = crate::decode::scan_values(&reel, |tensor, values| {
            let t = tensor as usize;
            if accs.len() <= t {
                accs.resize(t + 1, Acc::default());
            }
            accs[t].push_all(values);
            histogram.push_all(values);
        })?;
        // A lossy level may decode a hair outside the rows' range; the edges follow the data.
        accs.resize(manifest.tensors.len(), Acc::default());
        let mut overall = Acc::default();
        let mut roles: BTreeMap<String, (u64, Acc)> = BTreeMap::new();
        let mut layers: BTreeMap<u32, (u64, Acc)> = BTreeMap::new();
        let mut no_layer: Option<(u64, Acc)> = None;
        let mut tensors = Vec::new();
        for (t, acc) in manifest.tensors.iter().zip(&accs) {
            if acc.count + acc.nonfinite == 0 {
                continue;
            }
            overall.merge(acc);
            let add = |slot: &mut (u64, Acc)| {
                slot.0 += 1;
                slot.1.merge(acc);
            };
            add(roles.entry(t.role.as_str().to_string()).or_default());
            let layer = layer_index(&t.name);
            match layer {
                Some(l) => add(layers.entry(l).or_default()),
                None => add(no_layer.get_or_insert_with(Default::default)),
            }
            tensors.push(TensorStats {
                name: t.name.clone(),
                dtype: t.source_type.clone().unwrap_or_else(|| t.dtype.clone()),
                shape: t.shape.clone(),
                role: t.role,
                layer,
                stats: acc.stats(),
            });
        }
        let group = |(n, acc): (u64, Acc)| GroupStats {
            tensors: n,
            stats: acc.stats(),
        };
        let key = entry.record.settings.key();
        Ok(Analysis {
            name: entry.record.name.clone(),
            short_key: crate::store::short_key(&key).to_string(),
            settings_key: key,
            mode: entry.record.settings.mode.clone(),
            values_stored: entry.record.totals.params,
            model_params: store.fingerprint(&entry.record.name)?.map(|fp| fp.params()),
            frames: rows.len() as u64,
            overall: overall.stats(),
            roles: roles.into_iter().map(|(k, v)| (k, group(v))).collect(),
            layers: layers.into_iter().map(|(k, v)| (k, group(v))).collect(),
            no_layer: no_layer.map(group),
            histogram,
            tensors,
            verbatim: manifest.verbatim.iter().map(|v| v.name.clone()).collect(),
        })
    }

    /// Human-readable text.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Model: {} (settings key {}, mode {})",
            printable(&self.name),
            self.short_key,
            self.mode
        );
        let _ = writeln!(
            out,
            "Values stored: {}{}",
            group(self.values_stored),
            self.model_params.map_or(String::new(), |p| format!(
                " (the model has {} parameters)",
                group(p)
            ))
        );
        let _ = writeln!(out, "Frames: {}", self.frames);
        let o = &self.overall;
        let _ = writeln!(
            out,
            "All values: mean {} std {} min {} max {}{}",
            num(o.mean),
            num(o.std),
            num(o.min),
            num(o.max),
            if o.nonfinite > 0 {
                format!(" ({} NaN/±inf left out)", group(o.nonfinite))
            } else {
                String::new()
            }
        );
        let header = format!(
            "  {:<10} {:>7} {:>14} {:>11} {:>11} {:>11} {:>11}",
            "", "tensors", "values", "mean", "std", "min", "max"
        );
        let row = |label: &str, g: &GroupStats| {
            format!(
                "  {:<10} {:>7} {:>14} {:>11} {:>11} {:>11} {:>11}",
                label,
                g.tensors,
                group(g.stats.count),
                num(g.stats.mean),
                num(g.stats.std),
                num(g.stats.min),
                num(g.stats.max)
            )
        };
        let _ = writeln!(out, "\nBy role:\n{}", header.trim_end());
        for (role, g) in &self.roles {
            let _ = writeln!(out, "{}", row(role, g));
        }
        let _ = writeln!(out, "\nBy layer:\n{}", header.trim_end());
        if let Some(g) = &self.no_layer {
            let _ = writeln!(out, "{}", row("(none)", g));
        }
        for (layer, g) in &self.layers {
            let _ = writeln!(out, "{}", row(&layer.to_string(), g));
        }
        let h = &self.histogram;
        let peak = h.counts.iter().copied().max().unwrap_or(0).max(1);
        let width = (h.max - h.min) / h.counts.len() as f64;
        let _ = writeln!(
            out,
            "\nHistogram ({} bins from {} to {}):",
            h.counts.len(),
            num(h.min),
            num(h.max)
        );
        for (i, &c) in h.counts.iter().enumerate() {
            let from = h.min + width * i as f64;
            let bar = (c as f64 / peak as f64 * 40.0).round() as usize;
            let _ = writeln!(
                out,
                "  {:>11} | {:<40} {}",
                num(from),
                "#".repeat(if c > 0 { bar.max(1) } else { 0 }),
                group(c)
            );
        }
        let name_width = self
            .tensors
            .iter()
            .map(|t| printable(&t.name).chars().count())
            .max()
            .unwrap_or(4);
        let _ = writeln!(out, "\nTensors ({}):", self.tensors.len());
        for t in &self.tensors {
            let _ = writeln!(
                out,
                "  {:<name_width$}  {:<5} {:<16} {:<9} {:>12} mean {} std {} min {} max {}",
                printable(&t.name),
                t.dtype,
                format!("{:?}", t.shape),
                t.role.as_str(),
                group(t.stats.count),
                num(t.stats.mean),
                num(t.stats.std),
                num(t.stats.min),
                num(t.stats.max)
            );
        }
        if !self.verbatim.is_empty() {
            let _ = writeln!(
                out,
                "Kept verbatim (not in the statistics): {}",
                self.verbatim
                    .iter()
                    .map(|n| printable(n).into_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        out
    }
}

/// A value in 4 significant digits, scientific when far from 1.
fn num(v: f64) -> String {
    if v == 0.0 || (1e-3..1e4).contains(&v.abs()) {
        format!("{v:.4}")
    } else {
        format!("{v:.3e}")
    }
}

/// The analysis of the entry `typed` names in the store at `dir`.
pub fn analyse(
    dir: &Path,
    typed: &str,
    settings_key: Option<&str>,
    bins: usize,
    reels: Option<&crate::store::objects::ReelLocation>,
) -> Result<Analysis> {
    let store = Store::open_existing(dir)?.with_reels(reels)?;
    let entry = store.resolve(typed, settings_key)?;
    Analysis::of(&store, &entry, bins)
}
