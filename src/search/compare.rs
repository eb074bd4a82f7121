//! Comparing two fingerprints: matching their tensors, then the scores.

use serde::Serialize;

use crate::fingerprint::{Fingerprint, RoleFeatures, TensorPrint};
use crate::roles::Role;

/// Fewest aligned values for a tensor's correlation to count.
pub const MIN_ALIGNED: usize = 8;

/// How two tensors were paired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MatchKind {
    /// Same name after stripping wrapper prefixes, same shape.
    Name,
    /// Renamed: the k-th unmatched tensor of a role and shape in one model with the k-th in the
    /// other.
    ShapeOrder,
}

/// Two tensors paired across models.
#[derive(Debug, Clone, Serialize)]
pub struct TensorMatch {
    /// Index in the first fingerprint.
    pub a: usize,
    /// Index in the second.
    pub b: usize,
    /// How they were paired.
    pub how: MatchKind,
    /// Values both samples hold.
    pub aligned: usize,
    /// Pearson correlation over those values (0 when either side is constant).
    pub correlation: f64,
    /// ‖b − a‖ / ‖a‖ over those values.
    pub relative_change: f64,
    /// Σ(b² − a²) / Σa² over those values: > 0 when the second has more energy.
    pub energy_change: f64,
    /// Parameters of the tensor.
    pub params: u64,
}

/// The comparison of two fingerprints.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Paired tensors.
    pub matches: Vec<TensorMatch>,
    /// Tensors paired by name and by shape/order.
    pub by_name: usize,
    /// Tensors paired by role, shape and order.
    pub by_order: usize,
    /// Parameters of the paired tensors.
    pub matched_params: u64,
    /// Parameters of the larger model.
    pub larger_params: u64,
    /// `matched_params / larger_params`.
    pub coverage: f64,
    /// Parameter-weighted correlation of the paired tensors, `-1..=1`; `None` when nothing
    /// was paired.
    pub exact: Option<f64>,
    /// Parameter-weighted RMS of the paired tensors' relative change.
    pub relative_change: Option<f64>,
    /// Similarity of per-role distribution statistics, `0..=1`.
    pub features: f64,
    /// The documented combination, `0..=1`: see [`hybrid_score`].
    pub hybrid: f64,
}

/// `coverage · max(exact, 0) + (1 − coverage) · FEATURES_WEIGHT · features`: the exact score
/// where tensors were paired, the distribution features (worth at most
/// [`FEATURES_WEIGHT`]) for the rest. A copy scores 1, a model that shares no shape at most
/// `FEATURES_WEIGHT`.
pub fn hybrid_score(coverage: f64, exact: Option<f64>, features: f64) -> f64 {
    let exact = exact.unwrap_or(0.0).max(0.0);
    (coverage * exact + (1.0 - coverage) * FEATURES_WEIGHT * features).clamp(0.0, 1.0)
}

/// What the features method can add to a hybrid score at most.
pub const FEATURES_WEIGHT: f64 = 0.25;

/// Compare `a` with `b`.
pub fn compare(a: &Fingerprint, b: &Fingerprint) -> Comparison {
    let matches = pair_tensors(a, b);
    let larger_params = a.params().max(b.params()).max(1);
    let (matched_params, coverage, exact, relative_change) = summarize(&matches, larger_params);
    let features = features_score(a, b);
    Comparison {
        by_name: matches.iter().filter(|m| m.how == MatchKind::Name).count(),
        by_order: matches
            .iter()
            .filter(|m| m.how == MatchKind::ShapeOrder)
            .count(),
        matches,
        matched_params,
        larger_params,
        coverage,
        exact,
        relative_change,
        features,
        hybrid: hybrid_score(coverage, exact, features),
    }
}

/// Matched parameters, coverage, exact score and relative change of `matches`.
fn summarize(matches: &[TensorMatch], larger_params: u64) -> (u64, f64, Option<f64>, Option<f64>) {
    let mut matched_params = 0u64;
    let (mut corr_sum, mut change_sum, mut weight) = (0.0, 0.0, 0.0);
    for m in matches {
        matched_params += m.params;
        if m.aligned >= MIN_ALIGNED {
            let w = m.params as f64;
            corr_sum += w * m.correlation;
            change_sum += w * m.relative_change * m.relative_change;
            weight += w;
        }
    }
    let coverage = (matched_params as f64 / larger_params as f64).min(1.0);
    let exact = (weight > 0.0).then(|| corr_sum / weight);
    let relative_change = (weight > 0.0).then(|| (change_sum / weight).sqrt());
    (matched_params, coverage, exact, relative_change)
}

/// `exact × coverage` of [`compare`], without the role features (what family trees test
/// every pair on; the same number `compare` gives).
pub fn exact_times_coverage(a: &Fingerprint, b: &Fingerprint) -> f64 {
    let matches = pair_tensors(a, b);
    let larger_params = a.params().max(b.params()).max(1);
    let (_, coverage, exact, _) = summarize(&matches, larger_params);
    exact.unwrap_or(0.0) * coverage
}

/// Pair tensors by key and shape first, then the rest by role, shape and order.
pub fn pair_tensors(a: &Fingerprint, b: &Fingerprint) -> Vec<TensorMatch> {
    let mut by_key: std::collections::HashMap<(&str, &[u64]), usize> =
        std::collections::HashMap::with_capacity(b.tensors.len());
    for (j, t) in b.tensors.iter().enumerate() {
        by_key.entry((t.key(), &t.shape)).or_insert(j);
    }
    let mut used_a = vec![false; a.tensors.len()];
    let mut used_b = vec![false; b.tensors.len()];
    let mut out = Vec::new();
    for (i, t) in a.tensors.iter().enumerate() {
        if let Some(&j) = by_key.get(&(t.key(), t.shape.as_slice())) {
            if !used_b[j] {
                used_a[i] = true;
                used_b[j] = true;
                out.push(measure(i, j, &a.tensors[i], &b.tensors[j], MatchKind::Name));
            }
        }
    }
    // Renamed keys: the unmatched tensors of each (role, shape), in order.
    let mut rest_b: std::collections::HashMap<(Role, &[u64]), std::collections::VecDeque<usize>> =
        std::collections::HashMap::new();
    for (j, t) in b.tensors.iter().enumerate() {
        if !used_b[j] {
            rest_b.entry((t.role, &t.shape)).or_default().push_back(j);
        }
    }
    for (i, t) in a.tensors.iter().enumerate() {
        if used_a[i] {
            continue;
        }
        if let Some(j) = rest_b
            .get_mut(&(t.role, t.shape.as_slice()))
            .and_then(|q| q.pop_front())
        {
            out.push(measure(i, j, t, &b.tensors[j], MatchKind::ShapeOrder));
        }
    }
    out
}

fn measure(i: usize, j: usize, ta: &TensorPrint, tb: &TensorPrint, how: MatchKind) -> TensorMatch {
    let (ra, rb) = (ta.sample_range(), tb.sample_range());
    let common = ra.start.max(rb.start)..ra.end.min(rb.end).max(ra.start.max(rb.start));
    let (va, vb) = (ta.values_at(common.clone()), tb.values_at(common));
    let pairs = || {
        va.iter()
            .zip(vb)
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|(&x, &y)| (f64::from(x), f64::from(y)))
    };
    let n = pairs().count();
    let (mut sa, mut sb) = (0.0, 0.0);
    for (x, y) in pairs() {
        sa += x;
        sb += y;
    }
    let (ma, mb) = (sa / n.max(1) as f64, sb / n.max(1) as f64);
    let (mut cov, mut vxa, mut vxb, mut diff, mut aa, mut bb) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for (x, y) in pairs() {
        cov += (x - ma) * (y - mb);
        vxa += (x - ma) * (x - ma);
        vxb += (y - mb) * (y - mb);
        diff += (y - x) * (y - x);
        aa += x * x;
        bb += y * y;
    }
    let correlation = if vxa > 0.0 && vxb > 0.0 {
        (cov / (vxa * vxb).sqrt()).clamp(-1.0, 1.0)
    } else if vxa == 0.0 && vxb == 0.0 && diff == 0.0 && n > 0 {
        // Two equal constants (a LayerNorm at its initial value): the same weights.
        1.0
    } else {
        0.0
    };
    let relative_change = if aa > 0.0 {
        (diff / aa).sqrt()
    } else if diff == 0.0 {
        0.0
    } else {
        1.0
    };
    TensorMatch {
        a: i,
        b: j,
        how,
        aligned: n,
        correlation,
        relative_change,
        energy_change: if aa > 0.0 { (bb - aa) / aa } else { 0.0 },
        params: ta.numel(),
    }
}

/// Scales of the feature distance: a difference of one scale costs a factor e in the score.
/// A factor of 1.4 in the standard deviation (0.15 in log10), 0.2 standard deviations of
/// mean, 0.5 of skewness, 0.25 of tails.
const FEATURE_SCALES: [f64; 4] = [0.15, 0.2, 0.5, 0.25];

/// Similarity of two models' per-role features, `0..=1`: for each role either model has,
/// `exp(−Σ |difference| / scale)` (0 for a role only one has), weighted by the role's mean
/// share of parameters.
pub fn features_score(a: &Fingerprint, b: &Fingerprint) -> f64 {
    features_score_of(&a.role_features(), &b.role_features())
}

/// [`features_score`] over precomputed features.
pub fn features_score_of(fa: &[RoleFeatures], fb: &[RoleFeatures]) -> f64 {
    let (mut num, mut den) = (0.0, 0.0);
    for role in Role::ALL {
        let x = fa.iter().find(|f| f.role == role);
        let y = fb.iter().find(|f| f.role == role);
        let share = (x.map_or(0.0, |f| f.share) + y.map_or(0.0, |f| f.share)) / 2.0;
        den += share;
        if let (Some(x), Some(y)) = (x, y) {
            let d = [
                x.log_std - y.log_std,
                x.mean_over_std - y.mean_over_std,
                x.skew - y.skew,
                x.tails - y.tails,
            ]
            .iter()
            .zip(FEATURE_SCALES)
            .map(|(d, s)| d.abs() / s)
            .sum::<f64>();
            num += share * (-d).exp();
        }
    }
    if den > 0.0 {
        num / den
    } else {
        0.0
    }
}

/// The hierarchical method's middle level: like [`Comparison::exact`] × coverage, but over
/// means of `block` aligned values, so it touches `1/block` of the values. Returns the score
/// and the block means compared.
pub fn block_mean_score(a: &Fingerprint, b: &Fingerprint, block: usize) -> (f64, u64) {
    let mut by_key: std::collections::HashMap<(&str, &[u64]), usize> =
        std::collections::HashMap::with_capacity(b.tensors.len());
    for (j, t) in b.tensors.iter().enumerate() {
        by_key.entry((t.key(), &t.shape)).or_insert(j);
    }
    let (mut sum, mut touched) = (0.0, 0u64);
    for ta in &a.tensors {
        let Some(&j) = by_key.get(&(ta.key(), ta.shape.as_slice())) else {
            continue;
        };
        let tb = &b.tensors[j];
        let (ra, rb) = (ta.sample_range(), tb.sample_range());
        let start = ra.start.max(rb.start);
        let end = ra.end.min(rb.end).max(start);
        let means = |t: &TensorPrint| -> Vec<f64> {
            t.values_at(start..end)
                .chunks(block)
                .map(|c| {
                    c.iter()
                        .map(|&v| f64::from(v))
                        .filter(|v| v.is_finite())
                        .sum::<f64>()
                        / c.len() as f64
                })
                .collect()
        };
        let (ma, mb) = (means(ta), means(tb));
        touched += ma.len() as u64;
        sum += ta.numel() as f64 * pearson(&ma, &mb);
    }
    let larger = a.params().max(b.params()).max(1) as f64;
    (sum / larger, touched)
}

/// Pearson correlation (0 when either side is constant or there are fewer than 2 values).
fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len().min(y.len());
    if n < 2 {
        return 0.0;
    }
    let mx = x[..n].iter().sum::<f64>() / n as f64;
    let my = y[..n].iter().sum::<f64>() / n as f64;
    let (mut c, mut vx, mut vy) = (0.0, 0.0, 0.0);
    for (a, b) in x[..n].iter().zip(&y[..n]) {
        c += (a - mx) * (b - my);
        vx += (a - mx) * (a - mx);
        vy += (b - my) * (b - my);
    }
    if vx > 0.0 && vy > 0.0 {
        (c / (vx * vy).sqrt()).clamp(-1.0, 1.0)
    } else {
        0.0
    }
}

/// Per-layer similarity of a comparison: rows are layers (tensors without a layer index
/// first), columns roles, cells the parameter-weighted correlation of the paired tensors of
/// that layer and role.
#[derive(Debug, Clone, Serialize)]
pub struct LayerGrid {
    /// Row labels: `None` for tensors outside numbered layers.
    pub layers: Vec<Option<u32>>,
    /// Column labels.
    pub roles: Vec<Role>,
    /// `cells[row][column]`, `None` where nothing was paired.
    pub cells: Vec<Vec<Option<f64>>>,
}

impl Comparison {
    /// The paired tensors, largest relative change first.
    pub fn by_change(&self) -> Vec<&TensorMatch> {
        let mut v: Vec<&TensorMatch> = self.matches.iter().collect();
        v.sort_by(|x, y| {
            y.relative_change
                .total_cmp(&x.relative_change)
                .then(x.a.cmp(&y.a))
        });
        v
    }

    /// The comparison of `a` (fingerprint `fa`, the first compared) with `b` as `compare
    /// --json` prints it and the gallery serves it: scores, the per-tensor change table
    /// (largest change first) and the per-layer grid.
    pub fn report(
        &self,
        a: &str,
        fa: &Fingerprint,
        b: &str,
        fb: &Fingerprint,
    ) -> serde_json::Value {
        let tensors: Vec<_> = self
            .by_change()
            .iter()
            .map(|m| {
                let t = &fa.tensors[m.a];
                serde_json::json!({
                    "tensor": t.name,
                    "other": fb.tensors[m.b].name,
                    "role": t.role.as_str(),
                    "layer": t.layer,
                    "shape": t.shape,
                    "paired_by": m.how,
                    "similarity": m.correlation,
                    "relative_change": m.relative_change,
                    "aligned_values": m.aligned,
                })
            })
            .collect();
        serde_json::json!({
            "a": a, "b": b,
            "exact": self.exact.map(|e| e * self.coverage),
            "correlation": self.exact,
            "coverage": self.coverage,
            "relative_change": self.relative_change,
            "features": self.features,
            "hybrid": self.hybrid,
            "paired_by_name": self.by_name,
            "paired_by_order": self.by_order,
            "paired_params": self.matched_params,
            "tensors": tensors,
            "layers": self.layer_grid(fa),
        })
    }

    /// The per-layer grid; `a` is the first fingerprint compared.
    pub fn layer_grid(&self, a: &Fingerprint) -> LayerGrid {
        let mut layers: Vec<Option<u32>> =
            self.matches.iter().map(|m| a.tensors[m.a].layer).collect();
        layers.sort();
        layers.dedup();
        let roles: Vec<Role> = Role::ALL
            .into_iter()
            .filter(|r| self.matches.iter().any(|m| a.tensors[m.a].role == *r))
            .collect();
        let mut sums = vec![vec![(0.0f64, 0.0f64); roles.len()]; layers.len()];
        for m in self.matches.iter().filter(|m| m.aligned >= MIN_ALIGNED) {
            let t = &a.tensors[m.a];
            let row = layers.binary_search(&t.layer).expect("layer listed");
            let col = roles
                .iter()
                .position(|r| *r == t.role)
                .expect("role listed");
            sums[row][col].0 += m.params as f64 * m.correlation;
            sums[row][col].1 += m.params as f64;
        }
        LayerGrid {
            cells: sums
                .iter()
                .map(|row| row.iter().map(|&(s, w)| (w > 0.0).then(|| s / w)).collect())
                .collect(),
            layers,
            roles,
        }
    }
}
