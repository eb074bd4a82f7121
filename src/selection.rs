//! Stage 2: which values to take. A [`Selection`] (roles, name patterns, a parameter limit and a
//! sampling rule) turns a [`Model`]'s tensor list into a [`Plan`]: for every selected tensor,
//! the element runs to read. Plans depend only on tensor names and shapes, so two models with
//! the same architecture sample the same positions — which is what similarity search compares.

use regex_lite::Regex;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::roles::Role;
use crate::source::{Model, TensorInfo};

/// Values per sampled run: contiguous, so that a read delivers many values, where scattered
/// single values would need one read each.
pub const SAMPLE_RUN: u64 = 512;
/// Runs per cluster: a tensor's runs are grouped into clusters of up to this many, and the
/// clusters (not the runs) are spread over the tensor, so that one read delivers a cluster
/// (4,096 values): a sampled remote model needs about one request per 4,096 values, plus one
/// per tensor whose share is smaller.
pub const CLUSTER_RUNS: u64 = 8;
/// Largest gap between the runs of a cluster, in elements. A cluster then spans at most
/// 8 × 512 + 7 × 1,536 = 14,848 elements (116 KiB even in F64), one read on any source: the
/// gaps stay under what a local read reads through (16 KiB) for every dtype.
pub const CLUSTER_GAP: u64 = 1536;

/// How `--max-params` picks values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SampleMode {
    /// Spread over all selected tensors in proportion to their size, deterministically.
    #[default]
    Stratified,
    /// The first N values in stream order (the guide's original behaviour).
    Head,
}

impl SampleMode {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            SampleMode::Stratified => "stratified",
            SampleMode::Head => "head",
        }
    }

    /// Parse `stratified` or `head`.
    pub fn parse(text: &str) -> Result<SampleMode> {
        match text.to_ascii_lowercase().as_str() {
            "stratified" => Ok(SampleMode::Stratified),
            "head" => Ok(SampleMode::Head),
            _ => Err(Error::invalid("--sample", text, "stratified or head")),
        }
    }
}

/// What to take from a model.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Roles to keep; empty means all.
    pub roles: Vec<Role>,
    /// Keep only names matching this.
    pub include: Option<Regex>,
    /// Drop names matching this.
    pub exclude: Option<Regex>,
    /// Take exactly this many values (or all, if fewer are selected).
    pub max_params: Option<u64>,
    /// How to pick them.
    pub sample: SampleMode,
}

/// Parse `--layers` words (roles or aliases, `all`), reporting an unknown one with the valid list.
pub fn parse_roles<S: AsRef<str>>(words: &[S]) -> Result<Vec<Role>> {
    let mut roles = Vec::new();
    let mut all = false;
    for word in words {
        // Accept "attention,mlp" as well as separate words; an empty word names nothing,
        // which is a mistake rather than "all".
        if word.as_ref().split(',').all(|p| p.trim().is_empty()) {
            return Err(Error::invalid("--layers", "''", Role::valid_names()));
        }
        for part in word.as_ref().split(',').filter(|p| !p.trim().is_empty()) {
            if part.trim().eq_ignore_ascii_case("all") {
                all = true;
                continue;
            }
            let role = Role::parse(part).ok_or_else(|| {
                let mut expected = Role::valid_names();
                if let Some(near) = Role::closest(part.trim()) {
                    expected.push_str(&format!("; did you mean '{near}'?"));
                }
                Error::invalid("--layers", format!("'{}'", part.trim()), expected)
            })?;
            if !roles.contains(&role) {
                roles.push(role);
            }
        }
    }
    if all {
        return Ok(Vec::new());
    }
    roles.sort();
    Ok(roles)
}

/// Compile a user regex with an error naming the flag.
/// Longest `--include`/`--exclude` pattern, in bytes: far more than a tensor-name filter needs,
/// small enough that a hostile pattern cannot blow up (a 100 KB alternation once asked for
/// 38 GB while matching).
pub const MAX_PATTERN_LEN: usize = 1024;

/// Largest compiled pattern, in bytes (regex-lite's approximate size limit).
pub const MAX_COMPILED_PATTERN: usize = 1 << 20;

/// Compile `pattern` for `flag`, within [`MAX_PATTERN_LEN`] and [`MAX_COMPILED_PATTERN`].
pub fn parse_regex(flag: &str, pattern: &str) -> Result<Regex> {
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(Error::invalid(
            flag,
            format!("of {} bytes", pattern.len()),
            format!("a pattern of at most {MAX_PATTERN_LEN} bytes"),
        ));
    }
    regex_lite::RegexBuilder::new(pattern)
        .size_limit(MAX_COMPILED_PATTERN)
        .nest_limit(64)
        .build()
        .map_err(|e| {
            let first_line = e
                .to_string()
                .lines()
                .last()
                .unwrap_or("")
                .trim()
                .to_string();
            Error::invalid(
                flag,
                format!("'{pattern}'"),
                format!("a valid regular expression: {first_line}"),
            )
        })
}

impl Selection {
    /// Does this selection keep `tensor` (before the parameter limit)?
    pub fn keeps(&self, tensor: &TensorInfo) -> bool {
        self.keeps_name(&tensor.name, tensor.role)
    }

    /// Does this selection keep a tensor of this name and role (roles, `--include`,
    /// `--exclude`)?
    pub fn keeps_name(&self, name: &str, role: crate::roles::Role) -> bool {
        (self.roles.is_empty() || self.roles.contains(&role))
            && self.include.as_ref().is_none_or(|re| re.is_match(name))
            && !self.exclude.as_ref().is_some_and(|re| re.is_match(name))
    }

    /// The layer words, for display and the registry (`all` when unrestricted).
    pub fn roles_label(&self) -> String {
        if self.roles.is_empty() {
            "all".into()
        } else {
            self.roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(",")
        }
    }

    /// Build the read plan for `model`.
    pub fn plan(&self, model: &Model) -> Plan {
        let chosen: Vec<usize> = (0..model.tensors.len())
            .filter(|&i| self.keeps(&model.tensors[i]))
            .collect();
        let available: u64 = chosen.iter().map(|&i| model.tensors[i].numel()).sum();
        let target = self.max_params.map_or(available, |n| n.min(available));
        let quotas: Vec<u64> = if target == available {
            chosen.iter().map(|&i| model.tensors[i].numel()).collect()
        } else {
            match self.sample {
                SampleMode::Stratified => {
                    let sizes: Vec<u64> =
                        chosen.iter().map(|&i| model.tensors[i].numel()).collect();
                    proportional_quotas(&sizes, target)
                }
                SampleMode::Head => {
                    let mut left = target;
                    chosen
                        .iter()
                        .map(|&i| {
                            let take = model.tensors[i].numel().min(left);
                            left -= take;
                            take
                        })
                        .collect()
                }
            }
        };
        let mut items = Vec::new();
        for (&tensor, &quota) in chosen.iter().zip(&quotas) {
            // An empty tensor (a shape with a 0) is kept, with no run: it costs no read, and
            // decode gives it back.
            if quota == 0 && model.tensors[tensor].numel() > 0 {
                continue;
            }
            let numel = model.tensors[tensor].numel();
            let runs = if numel == 0 {
                Vec::new()
            } else if quota == numel {
                vec![Run {
                    start: 0,
                    len: numel,
                }]
            } else if self.sample == SampleMode::Head {
                vec![Run {
                    start: 0,
                    len: quota,
                }]
            } else {
                clustered_runs(numel, quota, SAMPLE_RUN, CLUSTER_RUNS, CLUSTER_GAP)
            };
            items.push(PlanItem { tensor, runs });
        }
        Plan {
            items,
            total: target,
            available,
        }
    }
}

/// A contiguous range of elements inside one tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Run {
    /// First element index (row-major).
    pub start: u64,
    /// Number of elements.
    pub len: u64,
}

/// The runs to read from one tensor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanItem {
    /// Index into [`Model::tensors`].
    pub tensor: usize,
    /// Sorted, non-overlapping runs.
    pub runs: Vec<Run>,
}

impl PlanItem {
    /// Values this item takes.
    pub fn len(&self) -> u64 {
        self.runs.iter().map(|r| r.len).sum()
    }

    /// True when it takes nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a selection reads from a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Per tensor, in stream order.
    pub items: Vec<PlanItem>,
    /// Values the plan takes.
    pub total: u64,
    /// Values the selection matched before the limit.
    pub available: u64,
}

impl Plan {
    /// Bytes of tensor data the plan reads (before coalescing nearby runs).
    pub fn data_bytes(&self, model: &Model) -> u64 {
        self.items
            .iter()
            .flat_map(|item| {
                let t = &model.tensors[item.tensor];
                item.runs.iter().map(move |r| {
                    let (begin, end) = t.byte_range(r.start, r.len);
                    end - begin
                })
            })
            .sum()
    }
}

/// Split `target` over tensors of `sizes` in proportion, by the largest-remainder method with
/// ties broken by position, so the result depends only on the sizes. Never exceeds a size.
pub fn proportional_quotas(sizes: &[u64], target: u64) -> Vec<u64> {
    let total: u128 = sizes.iter().map(|&s| s as u128).sum();
    if total == 0 {
        return vec![0; sizes.len()];
    }
    let mut quotas = Vec::with_capacity(sizes.len());
    let mut remainders = Vec::with_capacity(sizes.len());
    let mut assigned: u64 = 0;
    for (i, &size) in sizes.iter().enumerate() {
        let exact = target as u128 * size as u128;
        let q = (exact / total) as u64;
        quotas.push(q);
        remainders.push((exact % total, i));
        assigned += q;
    }
    // Largest remainder first; equal remainders go to the earlier tensor.
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut left = target - assigned;
    for &(_, i) in &remainders {
        if left == 0 {
            break;
        }
        if quotas[i] < sizes[i] {
            quotas[i] += 1;
            left -= 1;
        }
    }
    quotas
}

/// Place `quota` values of a tensor of `numel` elements as runs of at most `run_len` values
/// (lengths differing by at most one), in clusters of up to `cluster_runs` runs. Inside a
/// cluster, runs are `cluster_gap` elements apart (less when the tensor is sampled densely: never
/// more than an even share of the free space); the clusters are spread evenly over the rest, the
/// first and last gap included, so runs never overlap and a single run sits in the middle. The
/// result depends only on the three numbers, so models of one architecture are sampled at the
/// same positions.
pub fn clustered_runs(
    numel: u64,
    quota: u64,
    run_len: u64,
    cluster_runs: u64,
    cluster_gap: u64,
) -> Vec<Run> {
    debug_assert!(quota <= numel && run_len > 0 && cluster_runs > 0);
    if quota == 0 {
        return Vec::new();
    }
    let count = quota.div_ceil(run_len) as u128;
    let clusters = count.div_ceil(cluster_runs as u128);
    let free = (numel - quota) as u128;
    let inner = (cluster_gap as u128).min(free / (count + 1));
    let outer_free = free - inner * (count - clusters);
    let mut runs = Vec::with_capacity(count as usize);
    let mut taken: u128 = 0;
    for j in 0..count {
        let len = quota as u128 * (j + 1) / count - quota as u128 * j / count;
        // Runs are dealt to clusters evenly: cluster c holds runs c·count/clusters onwards.
        let cluster = (j * clusters + clusters - 1) / count;
        // One inner gap before every run but the first of each cluster.
        let inner_before = inner * (j - cluster);
        let outer_before = outer_free * (cluster + 1) / (clusters + 1);
        runs.push(Run {
            start: (taken + inner_before + outer_before) as u64,
            len: len as u64,
        });
        taken += len;
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_sum_to_target_and_respect_sizes() {
        for (sizes, target) in [
            (vec![10u64, 20, 30], 7u64),
            (vec![1, 1, 1, 1], 3),
            (vec![11_720_448, 384, 384, 147_456], 50_000),
            (vec![5, 0, 5], 10),
        ] {
            let q = proportional_quotas(&sizes, target);
            assert_eq!(q.iter().sum::<u64>(), target, "{sizes:?}");
            assert!(q.iter().zip(&sizes).all(|(q, s)| q <= s));
        }
        assert_eq!(proportional_quotas(&[1, 1, 1, 1], 3), vec![1, 1, 1, 0]);
    }

    /// Runs of `clustered_runs(numel, quota, 4, 3, 5)`: they sum to the quota, are at most 4
    /// long, do not overlap and end inside the tensor.
    fn check_runs(numel: u64, quota: u64) -> Vec<Run> {
        let runs = clustered_runs(numel, quota, 4, 3, 5);
        assert_eq!(runs.iter().map(|r| r.len).sum::<u64>(), quota);
        let mut end = 0;
        for r in &runs {
            assert!(r.start >= end, "{numel} {quota} {runs:?}");
            assert!(r.len <= 4 && r.len > 0);
            end = r.start + r.len;
        }
        assert!(end <= numel);
        runs
    }

    #[test]
    fn runs_nearly_fill_a_tensor() {
        check_runs(10, 9);
        check_runs(11, 10);
    }

    #[test]
    fn runs_fill_a_tensor_whole() {
        assert_eq!(check_runs(100, 100).last().unwrap().start, 96);
    }

    #[test]
    fn one_value_sits_in_the_middle() {
        assert_eq!(check_runs(1000, 1), vec![Run { start: 499, len: 1 }]);
    }

    #[test]
    fn runs_of_a_dense_sample_are_spread_evenly() {
        check_runs(7, 3);
        // 4 runs (3, 4, 4, 4) in 20 elements: the inner gap shrinks to an even share (5 / 5).
        let runs = check_runs(20, 15);
        assert_eq!(
            runs.iter().map(|r| r.start).collect::<Vec<_>>(),
            [1, 5, 10, 15]
        );
    }

    #[test]
    fn runs_of_a_sparse_sample_form_clusters() {
        let runs = check_runs(100_000, 24);
        // 6 runs of 4 in 2 clusters of 3, 5 apart inside a cluster, the clusters at a third and
        // two thirds of the free space (99,956 after the inner gaps).
        assert_eq!(
            runs.iter().map(|r| r.start).collect::<Vec<_>>(),
            [33_318, 33_327, 33_336, 66_659, 66_668, 66_677]
        );
    }

    #[test]
    fn a_large_sparse_sample_needs_one_read_per_cluster() {
        // MiniLM's word embeddings at --max-params 50000: 25,767 of 11,720,448 values.
        let runs = clustered_runs(11_720_448, 25_767, SAMPLE_RUN, CLUSTER_RUNS, CLUSTER_GAP);
        let reads = 1 + runs
            .windows(2)
            .filter(|w| w[1].start - (w[0].start + w[0].len) > CLUSTER_GAP)
            .count();
        assert_eq!(runs.len(), 51);
        assert_eq!(reads, 7);
    }

    #[test]
    fn unknown_layer_lists_valid_names() {
        let err = parse_roles(&["attention", "transformer"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'transformer'") && err.contains("attention, mlp"),
            "{err}"
        );
        assert_eq!(
            parse_roles(&["MLP", "attn"]).unwrap(),
            vec![Role::Attention, Role::Mlp]
        );
        assert!(parse_roles(&["all"]).unwrap().is_empty());
    }
}
