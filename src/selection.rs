//! Stage 2: which values to take. A [`Selection`] (roles, name patterns, a parameter limit and a
//! sampling rule) turns a [`Model`]'s tensor list into a [`Plan`]: for every selected tensor,
//! the element runs to read. Plans depend only on tensor names and shapes, so two models with
//! the same architecture sample the same positions — which is what similarity search compares.

use regex_lite::Regex;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::roles::Role;
use crate::source::{Model, TensorInfo};

/// Values per sampled run. Contiguous runs keep a remote read to a few hundred requests
/// (`--max-params 50000` on MiniLM needs ~200), where scattered single values would need one
/// request each.
pub const SAMPLE_RUN: u64 = 512;

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
    for word in words {
        // Accept "attention,mlp" as well as separate words.
        for part in word.as_ref().split(',').filter(|p| !p.trim().is_empty()) {
            if part.trim().eq_ignore_ascii_case("all") {
                return Ok(Vec::new());
            }
            let role = Role::parse(part).ok_or_else(|| {
                Error::invalid(
                    "--layers",
                    format!("'{}'", part.trim()),
                    Role::valid_names(),
                )
            })?;
            if !roles.contains(&role) {
                roles.push(role);
            }
        }
    }
    roles.sort();
    Ok(roles)
}

/// Compile a user regex with an error naming the flag.
pub fn parse_regex(flag: &str, pattern: &str) -> Result<Regex> {
    Regex::new(pattern).map_err(|e| {
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
        (self.roles.is_empty() || self.roles.contains(&tensor.role))
            && self
                .include
                .as_ref()
                .is_none_or(|re| re.is_match(&tensor.name))
            && !self
                .exclude
                .as_ref()
                .is_some_and(|re| re.is_match(&tensor.name))
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
                spread_runs(numel, quota, SAMPLE_RUN)
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
            .map(|item| item.len() * model.tensors[item.tensor].elem_bytes())
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

/// Place `quota` values of a tensor of `numel` elements as evenly spread runs of at most
/// `run_len` values. Gaps are spread evenly between runs, so runs never overlap and the last
/// one ends inside the tensor.
pub fn spread_runs(numel: u64, quota: u64, run_len: u64) -> Vec<Run> {
    debug_assert!(quota <= numel && run_len > 0);
    if quota == 0 {
        return Vec::new();
    }
    let count = quota.div_ceil(run_len);
    let gap_total = (numel - quota) as u128;
    let mut runs = Vec::with_capacity(count as usize);
    let mut taken: u64 = 0;
    for j in 0..count {
        // Run lengths differ by at most one.
        let len = ((quota as u128 * (j as u128 + 1)) / count as u128
            - (quota as u128 * j as u128) / count as u128) as u64;
        let gap_before = (gap_total * (j as u128 + 1) / (count as u128 + 1)) as u64;
        runs.push(Run {
            start: taken + gap_before,
            len,
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

    #[test]
    fn runs_cover_quota_without_overlap() {
        for (numel, quota) in [
            (10u64, 9u64),
            (11, 10),
            (1000, 1),
            (147_456, 1303),
            (100, 100),
            (7, 3),
        ] {
            let runs = spread_runs(numel, quota, 4);
            assert_eq!(runs.iter().map(|r| r.len).sum::<u64>(), quota);
            let mut end = 0;
            for r in &runs {
                assert!(r.start >= end, "{numel} {quota} {runs:?}");
                assert!(r.len <= 4 && r.len > 0);
                end = r.start + r.len;
            }
            assert!(end <= numel);
        }
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
