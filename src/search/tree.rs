//! Families: related models grouped and drawn as trees, parent → child.
//!
//! 1. Every pair is compared; pairs whose `exact` score (coverage × correlation) is at least
//!    [`RELATED`] are related, and families are the connected groups of related models.
//! 2. Within a family the edges are a minimum spanning tree over the distance
//!    `1 − exact score` (Kruskal): each model hangs from its closest relative, and a fine-tune
//!    of a fine-tune hangs from its parent, not from the base, because its updates add up.
//! 3. Direction: training adds energy. An update is mostly independent of the weights it is
//!    added to, so `‖child‖² ≈ ‖parent‖² + ‖update‖²` on the aligned samples. The root is the
//!    member for which the edges, oriented away from it, agree best with that rule (the sum
//!    of each edge's relative energy change, child minus parent). MoTHer (ICLR 2025) orients by
//!    kurtosis instead, which rises when real fine-tunes grow outliers; on low-rank-plus-noise
//!    updates it falls, while the energy rule holds for both: see the README.
//!    The energy difference is a small signal next to the sampling noise of the cross term
//!    `2⟨parent, update⟩`: it is reliable when `relative change × √(aligned values) ≫ 2`
//!    (≥ ~3 % change on MiniLM's fingerprint); below that the edges stay right and the
//!    direction may flip. Copies (relative change below [`COPY_CHANGE`]) have no energy to
//!    compare; their edge points from the wider dtype to the narrower (F32 → F16), the only
//!    way a conversion goes without loss.

use serde::Serialize;

use super::compare::{compare, Comparison};
use crate::fingerprint::Fingerprint;

/// Smallest `exact` score at which two models are related.
pub const RELATED: f64 = 0.5;

/// A parent → child edge of a family tree.
#[derive(Debug, Clone, Serialize)]
pub struct FamilyEdge {
    /// Parent name.
    pub parent: String,
    /// Child name.
    pub child: String,
    /// `exact` score of the pair.
    pub score: f64,
    /// Parameter-weighted RMS relative change, parent to child.
    pub relative_change: f64,
    /// Relative energy change, parent to child (> 0 agrees with the direction rule).
    pub energy_change: f64,
}

/// A family: its root and its edges in depth-first order from the root.
#[derive(Debug, Clone, Serialize)]
pub struct Family {
    /// The root's name.
    pub root: String,
    /// Every member, root first.
    pub members: Vec<String>,
    /// Parent → child edges, depth-first from the root.
    pub edges: Vec<FamilyEdge>,
}

impl Family {
    /// The family as indented text: the root, then each child under its parent.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        out.push_str(&crate::text::printable(&self.root));
        out.push('\n');
        self.children_text(&self.root, 1, &mut out);
        out
    }

    fn children_text(&self, parent: &str, depth: usize, out: &mut String) {
        for e in self.edges.iter().filter(|e| e.parent == parent) {
            out.push_str(&format!(
                "{}└─ {}  (score {:.3}, change {:.2}%)\n",
                "   ".repeat(depth - 1),
                crate::text::printable(&e.child),
                e.score,
                e.relative_change * 100.0
            ));
            self.children_text(&e.child, depth + 1, out);
        }
    }

    /// The family as Graphviz DOT edges (without the enclosing `digraph`).
    pub fn to_dot(&self) -> String {
        let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
        let mut out = format!("  {};\n", q(&self.root));
        for e in &self.edges {
            out.push_str(&format!(
                "  {} -> {} [label=\"{:.3}\"];\n",
                q(&e.parent),
                q(&e.child),
                e.score
            ));
        }
        out
    }
}

/// Group `models` into families (largest first, then by root name).
pub fn families(models: &[(String, Fingerprint)]) -> Vec<Family> {
    families_counting(models, &std::sync::atomic::AtomicU64::new(0))
}

/// Pairs of `n` models: what [`families_counting`] counts up to.
pub fn family_pairs(n: usize) -> u64 {
    (n as u64) * (n as u64).saturating_sub(1) / 2
}

/// [`families`], adding each pair compared to `done` as it goes (for a progress display).
/// The pairs are compared on every core (`std::thread::available_parallelism`), each thread
/// taking every k-th row of the pair triangle; the result does not depend on the threads.
pub fn families_counting(
    models: &[(String, Fingerprint)],
    done: &std::sync::atomic::AtomicU64,
) -> Vec<Family> {
    use std::sync::atomic::Ordering;
    let n = models.len();
    let threads = std::thread::available_parallelism()
        .map_or(1, |t| t.get())
        .clamp(1, n.max(1));
    let mut pairs: Vec<(usize, usize, Comparison)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let mut found = Vec::new();
                    for i in (t..n).step_by(threads) {
                        for j in i + 1..n {
                            // The score alone first: most pairs are unrelated, and the
                            // role features of a full comparison cost as much again.
                            let (a, b) = (&models[i].1, &models[j].1);
                            if super::compare::exact_times_coverage(a, b) >= RELATED {
                                found.push((i, j, compare(a, b)));
                            }
                        }
                        done.fetch_add((n - i - 1) as u64, Ordering::Relaxed);
                    }
                    found
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a family worker panicked"))
            .collect()
    });
    // Kruskal over 1 − score: ascending distance is descending score.
    pairs.sort_by(|a, b| {
        exact_score(&b.2)
            .total_cmp(&exact_score(&a.2))
            .then((a.0, a.1).cmp(&(b.0, b.1)))
    });
    let mut group: Vec<usize> = (0..n).collect();
    fn find(g: &mut [usize], mut x: usize) -> usize {
        while g[x] != x {
            g[x] = g[g[x]];
            x = g[x];
        }
        x
    }
    let mut tree_edges: Vec<&(usize, usize, Comparison)> = Vec::new();
    for p in &pairs {
        let (ra, rb) = (find(&mut group, p.0), find(&mut group, p.1));
        if ra != rb {
            group[ra] = rb;
            tree_edges.push(p);
        }
    }
    let mut members: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for i in 0..n {
        let r = find(&mut group, i);
        members.entry(r).or_default().push(i);
    }
    let mut out: Vec<Family> = members
        .values()
        .map(|m| orient(models, m, &tree_edges))
        .collect();
    out.sort_by(|a, b| {
        b.members
            .len()
            .cmp(&a.members.len())
            .then(a.root.cmp(&b.root))
    });
    out
}

fn exact_score(c: &Comparison) -> f64 {
    c.exact.unwrap_or(0.0) * c.coverage
}

/// Below this relative change two models are copies (a dtype conversion or a few changed
/// values), and the energy rule has nothing to go on.
pub const COPY_CHANGE: f64 = 0.002;

/// Evidence that the first model of `c` is the second's parent: for copies, whether the
/// conversion narrowed the dtype (an F16 copy comes from the F32 model, never back); else
/// the relative energy change, first to second.
fn evidence(c: &Comparison, a: &Fingerprint, b: &Fingerprint) -> f64 {
    if c.relative_change.is_some_and(|r| r < COPY_CHANGE) {
        let bits = |fp: &Fingerprint| -> f64 {
            let n = fp.tensors.len().max(1) as f64;
            fp.tensors.iter().map(|t| dtype_bits(&t.dtype)).sum::<f64>() / n
        };
        return (bits(a) - bits(b)).signum();
    }
    energy(c)
}

fn dtype_bits(dtype: &str) -> f64 {
    match dtype {
        "F64" | "I64" | "U64" => 64.0,
        "F32" | "I32" | "U32" => 32.0,
        "F16" | "BF16" | "I16" | "U16" => 16.0,
        _ => 8.0,
    }
}

/// Relative energy change from the first model of `c` to the second, over the aligned
/// values of every paired tensor.
fn energy(c: &Comparison) -> f64 {
    let n: usize = c.matches.iter().map(|m| m.aligned).sum();
    if n == 0 {
        return 0.0;
    }
    c.matches
        .iter()
        .map(|m| m.aligned as f64 * m.energy_change)
        .sum::<f64>()
        / n as f64
}

/// Root one family's spanning tree where the direction rule agrees best, and list its edges.
fn orient(
    models: &[(String, Fingerprint)],
    members: &[usize],
    edges: &[&(usize, usize, Comparison)],
) -> Family {
    let inside: Vec<&(usize, usize, Comparison)> = edges
        .iter()
        .copied()
        .filter(|e| members.contains(&e.0))
        .collect();
    // Agreement of a root: Σ over edges of the energy change in the direction away from it.
    let mut best: Option<(f64, usize)> = None;
    for &r in members {
        let agreement: f64 = walk(r, &inside)
            .iter()
            .map(|&(p, _c, e)| {
                let forward = evidence(&e.2, &models[e.0].1, &models[e.1].1);
                if e.0 == p {
                    forward
                } else {
                    -forward
                }
            })
            .sum();
        if best.is_none_or(|(b, _)| agreement > b + 1e-12) {
            best = Some((agreement, r));
        }
    }
    let root = best.map_or(members[0], |(_, r)| r);
    let mut family = Family {
        root: models[root].0.clone(),
        members: vec![models[root].0.clone()],
        edges: Vec::new(),
    };
    for (p, c, e) in walk(root, &inside) {
        let forward = e.0 == p;
        let energy_change = if forward { energy(&e.2) } else { -energy(&e.2) };
        family.members.push(models[c].0.clone());
        family.edges.push(FamilyEdge {
            parent: models[p].0.clone(),
            child: models[c].0.clone(),
            score: exact_score(&e.2),
            relative_change: e.2.relative_change.unwrap_or(0.0),
            energy_change,
        });
    }
    family
}

/// Depth-first (parent, child, edge) from `root` over the tree `edges`.
fn walk<'a>(
    root: usize,
    edges: &[&'a (usize, usize, Comparison)],
) -> Vec<(usize, usize, &'a (usize, usize, Comparison))> {
    let mut out = Vec::new();
    let mut stack = vec![root];
    let mut seen = vec![root];
    while let Some(p) = stack.pop() {
        let mut next: Vec<(usize, &(usize, usize, Comparison))> = edges
            .iter()
            .filter_map(|e| {
                let other = if e.0 == p {
                    e.1
                } else if e.1 == p {
                    e.0
                } else {
                    return None;
                };
                (!seen.contains(&other)).then_some((other, *e))
            })
            .collect();
        next.sort_by_key(|(c, _)| *c);
        for (c, e) in next.into_iter().rev() {
            seen.push(c);
            out.push((p, c, e));
            stack.push(c);
        }
    }
    out
}
