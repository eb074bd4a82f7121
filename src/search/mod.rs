//! Stage 7: which stored models are related to this one — from their fingerprints.
//!
//! Methods, each with its score range:
//!
//! | method | score | what it measures |
//! |---|---|---|
//! | `exact` | `-1..=1` | Σ over paired tensors of parameters × correlation of the aligned samples, ÷ the larger model's parameters: 1 for a copy, ~0 for unrelated weights of the same shapes, and a share for partial relatives (a model that copies the embeddings) |
//! | `features` | `0..=1` | per-role distribution statistics (scale, mean, skew, tails); works across architectures, cannot tell a re-initialized model with matching statistics from a relative |
//! | `hierarchical` | as `exact` | the guide's progressive filtering: sketches of every model, then block means of the best candidates, then `exact` on the best of those; reports the values it touched |
//! | `hybrid` (default) | `0..=1` | `coverage · max(exact, 0) + (1 − coverage) · 0.25 · features` over sketch-chosen candidates: `exact` where tensors pair, features (worth at most 0.25) for the rest |
//!
//! | file | contents |
//! |---|---|
//! | `compare.rs` | pairing tensors, the per-tensor measures, the scores |
//! | `tree.rs` | families as trees, parent → child |

mod compare;
mod tree;

use serde::Serialize;

pub use compare::{
    compare, features_score, features_score_of, hybrid_score, pair_tensors, Comparison, LayerGrid,
    MatchKind, TensorMatch, FEATURES_WEIGHT, MIN_ALIGNED,
};
pub use tree::{families, families_counting, family_pairs, Family, FamilyEdge, RELATED};

use crate::error::{Error, Result};
use crate::fingerprint::Fingerprint;
use crate::roles::Role;
use crate::store::{IndexRow, Store};

/// How to score candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Correlation of aligned samples over every stored model.
    Exact,
    /// Per-role distribution statistics.
    Features,
    /// Sketches, then block means, then exact.
    Hierarchical,
    /// Exact where tensors pair, features for the rest.
    #[default]
    Hybrid,
}

impl Method {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Exact => "exact",
            Method::Features => "features",
            Method::Hierarchical => "hierarchical",
            Method::Hybrid => "hybrid",
        }
    }

    /// Parse a method name.
    pub fn parse(text: &str) -> Result<Method> {
        match text.to_ascii_lowercase().as_str() {
            "exact" => Ok(Method::Exact),
            "features" => Ok(Method::Features),
            "hierarchical" => Ok(Method::Hierarchical),
            "hybrid" => Ok(Method::Hybrid),
            _ => Err(Error::invalid(
                "--method",
                text,
                "exact, features, hierarchical or hybrid",
            )),
        }
    }
}

/// Candidates that the sketch stage keeps, per result asked for (and at least
/// [`MIN_CANDIDATES`]); stores this small are compared in full.
pub const CANDIDATES_PER_RESULT: usize = 4;
/// Fewest candidates the sketch stage keeps.
pub const MIN_CANDIDATES: usize = 32;

/// One ranked model.
#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    /// Stored name.
    pub name: String,
    /// The method's score (see the module table for its range).
    pub score: f64,
    /// The method that produced `score`.
    pub method: Method,
    /// `exact` score (coverage × correlation over paired tensors), when it was computed.
    pub exact: Option<f64>,
    /// Correlation over the paired tensors alone.
    pub correlation: Option<f64>,
    /// Features score.
    pub features: f64,
    /// Sketch score (the candidate stage's estimate), `-1..=1`.
    pub sketch: f64,
    /// Share of the larger model's parameters in paired tensors, when pairing ran.
    pub coverage: Option<f64>,
    /// Tensors paired by name and by role/shape/order.
    pub paired_by_name: usize,
    /// Tensors paired by role, shape and order (renamed keys).
    pub paired_by_order: usize,
    /// Parameters in paired tensors.
    pub paired_params: u64,
    /// How the score was reached, in words.
    pub basis: String,
}

/// A ranking, and what computing it cost.
#[derive(Debug, Clone, Serialize)]
pub struct SearchResult {
    /// The best `top` models, best first.
    pub hits: Vec<Hit>,
    /// The method asked for.
    pub method: Method,
    /// Stored fingerprints considered.
    pub searched: usize,
    /// Values compared (sketch values, block means and aligned samples), summed over models.
    pub values_touched: u64,
    /// Models whose full fingerprint was read.
    pub fingerprints_read: usize,
}

/// Search options.
#[derive(Debug, Clone, Copy)]
pub struct SearchOptions<'a> {
    /// Results wanted.
    pub top: usize,
    /// Method.
    pub method: Method,
    /// A stored name to leave out (the query itself).
    pub exclude: Option<&'a str>,
    /// Compare only tensors of these roles (all when empty). The stored sketches and
    /// features cover every role, so a filtered search compares every model in full.
    pub roles: &'a [Role],
}

/// Search the store for the models most related to `query`. `index` is the store's
/// [`Store::fingerprint_index`] (loaded once for many queries).
pub fn search(
    store: &Store,
    index: &[IndexRow],
    query: &Fingerprint,
    options: SearchOptions<'_>,
) -> Result<SearchResult> {
    if !options.roles.is_empty() {
        return search_roles(store, index, query, options);
    }
    let qfeatures = query.role_features();
    let rows: Vec<&IndexRow> = index
        .iter()
        .filter(|r| Some(r.name.as_str()) != options.exclude)
        .collect();
    let mut touched = 0u64;
    let sketch_of = |row: &IndexRow| dot(&query.sketch, &row.sketch);
    let base_hit = |row: &IndexRow, method: Method| Hit {
        name: row.name.clone(),
        score: 0.0,
        method,
        exact: None,
        correlation: None,
        features: features_score_of(&qfeatures, &row.features),
        sketch: sketch_of(row),
        coverage: None,
        paired_by_name: 0,
        paired_by_order: 0,
        paired_params: 0,
        basis: String::new(),
    };
    let mut fingerprints_read = 0;
    let mut load = |name: &str| -> Result<Fingerprint> {
        fingerprints_read += 1;
        store.fingerprint(name)?.ok_or_else(|| {
            Error::store(
                store.location(),
                format!("fingerprint of '{name}' vanished"),
            )
        })
    };
    let mut hits: Vec<Hit> = match options.method {
        Method::Features => {
            // Score every model, build rows only for the best.
            let scores: Vec<f64> = rows
                .iter()
                .map(|r| features_score_of(&qfeatures, &r.features))
                .collect();
            best_of(&scores, options.top)
                .into_iter()
                .map(|k| {
                    let mut h = base_hit(rows[k], Method::Features);
                    h.score = h.features;
                    h.basis = "per-role distribution statistics".into();
                    h
                })
                .collect()
        }
        Method::Exact => {
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let fp = load(&r.name)?;
                let c = compare(query, &fp);
                touched += aligned_values(&c);
                out.push(full_hit(base_hit(r, Method::Exact), &c, Method::Exact));
            }
            out
        }
        Method::Hybrid => {
            touched += (rows.len() * query.sketch.len()) as u64;
            let keep = (options.top * CANDIDATES_PER_RESULT).max(MIN_CANDIDATES);
            let sketches: Vec<f64> = rows.iter().map(|r| sketch_of(r)).collect();
            let mut chosen = vec![false; rows.len()];
            for k in best_of(&sketches, keep) {
                chosen[k] = true;
            }
            // Models that are not sketch candidates share little with the query, so only the
            // features part of the hybrid score is left for them.
            let mut scores: Vec<f64> = rows
                .iter()
                .zip(&chosen)
                .map(|(r, &c)| {
                    if c {
                        0.0
                    } else {
                        hybrid_score(0.0, None, features_score_of(&qfeatures, &r.features))
                    }
                })
                .collect();
            let mut full = std::collections::HashMap::new();
            for k in (0..rows.len()).filter(|&k| chosen[k]) {
                let fp = load(&rows[k].name)?;
                let c = compare(query, &fp);
                touched += aligned_values(&c);
                let h = full_hit(base_hit(rows[k], Method::Hybrid), &c, Method::Hybrid);
                scores[k] = h.score;
                full.insert(k, h);
            }
            best_of(&scores, options.top)
                .into_iter()
                .map(|k| {
                    full.remove(&k).unwrap_or_else(|| {
                        let mut h = base_hit(rows[k], Method::Hybrid);
                        h.score = scores[k];
                        h.basis = "features only (not a sketch candidate)".into();
                        h
                    })
                })
                .collect()
        }
        Method::Hierarchical => {
            touched += (rows.len() * query.sketch.len()) as u64;
            let keep = (options.top * CANDIDATES_PER_RESULT).max(MIN_CANDIDATES / 4);
            // Level 1: every sketch; level 2: block means of the `keep` best; level 3: exact
            // on the best of those.
            let sketches: Vec<f64> = rows.iter().map(|r| sketch_of(r)).collect();
            let mut level1 = best_of(&sketches, keep);
            level1.sort_unstable();
            let mut coarse = Vec::new();
            for &k in &level1 {
                let fp = load(&rows[k].name)?;
                let (score, values) = compare::block_mean_score(query, &fp, BLOCK);
                touched += values;
                coarse.push((k, score, fp));
            }
            coarse.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            // Block means rank like the full samples, up to noise of a few hundredths: the
            // `top` best, and any within [`REFINE_MARGIN`] of the last of them, are refined.
            if let Some(last) = coarse.get(options.top.saturating_sub(1)).map(|c| c.1) {
                coarse.retain(|c| c.1 >= last - REFINE_MARGIN);
            }
            let mut out = Vec::new();
            for (k, _, fp) in &coarse {
                let c = compare(query, fp);
                touched += aligned_values(&c);
                out.push(full_hit(
                    base_hit(rows[*k], Method::Hierarchical),
                    &c,
                    Method::Exact,
                ));
            }
            for h in &mut out {
                h.method = Method::Hierarchical;
            }
            out
        }
    };
    hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.name.cmp(&b.name)));
    hits.truncate(options.top);
    Ok(SearchResult {
        hits,
        method: options.method,
        searched: rows.len(),
        values_touched: touched,
        fingerprints_read,
    })
}

/// [`search`] over the tensors of `options.roles`: every stored fingerprint is read,
/// filtered and compared in full.
fn search_roles(
    store: &Store,
    index: &[IndexRow],
    query: &Fingerprint,
    options: SearchOptions<'_>,
) -> Result<SearchResult> {
    let query = query.restricted_to(options.roles);
    let mut hits = Vec::new();
    let mut touched = 0u64;
    let mut read = 0;
    for row in index
        .iter()
        .filter(|r| Some(r.name.as_str()) != options.exclude)
    {
        let Some(fp) = store.fingerprint(&row.name)? else {
            continue;
        };
        read += 1;
        let fp = fp.restricted_to(options.roles);
        let c = compare(&query, &fp);
        touched += aligned_values(&c);
        let hit = Hit {
            name: row.name.clone(),
            score: 0.0,
            method: options.method,
            exact: None,
            correlation: None,
            features: c.features,
            sketch: dot(&query.sketch, &fp.sketch),
            coverage: None,
            paired_by_name: 0,
            paired_by_order: 0,
            paired_params: 0,
            basis: String::new(),
        };
        hits.push(full_hit(hit, &c, options.method));
    }
    hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.name.cmp(&b.name)));
    hits.truncate(options.top);
    Ok(SearchResult {
        hits,
        method: options.method,
        searched: read,
        values_touched: touched,
        fingerprints_read: read,
    })
}

/// Candidates whose block-mean score is within this of the `top`-th best are refined too.
pub const REFINE_MARGIN: f64 = 0.05;

/// Block length of the hierarchical method's middle level: each paired tensor's aligned
/// sample is compared as means of this many values.
pub const BLOCK: usize = 16;

fn full_hit(mut h: Hit, c: &Comparison, score_of: Method) -> Hit {
    let exact = c.exact.map(|e| e * c.coverage);
    h.exact = exact;
    h.correlation = c.exact;
    h.coverage = Some(c.coverage);
    h.paired_by_name = c.by_name;
    h.paired_by_order = c.by_order;
    h.paired_params = c.matched_params;
    h.score = match score_of {
        Method::Exact | Method::Hierarchical => exact.unwrap_or(0.0),
        Method::Hybrid => c.hybrid,
        Method::Features => c.features,
    };
    h.basis = if c.matches.is_empty() {
        "no shared tensor shapes: distribution features only".into()
    } else if c.by_order == 0 {
        format!("{} tensors paired by name", c.by_name)
    } else {
        format!(
            "{} tensors paired by name, {} by role/shape/order",
            c.by_name, c.by_order
        )
    };
    h
}

fn aligned_values(c: &Comparison) -> u64 {
    c.matches.iter().map(|m| m.aligned as u64).sum()
}

/// Indices of the `keep` highest `scores`, best first (ties by position).
fn best_of(scores: &[f64], keep: usize) -> Vec<usize> {
    let order = |a: &usize, b: &usize| scores[*b].total_cmp(&scores[*a]).then(a.cmp(b));
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    if idx.len() > keep && keep > 0 {
        idx.select_nth_unstable_by(keep - 1, order);
        idx.truncate(keep);
    }
    idx.truncate(keep);
    idx.sort_by(order);
    idx
}

/// Dot product in eight lanes (which the compiler vectorizes; a plain sum must keep its
/// order and cannot be).
fn dot(a: &[f32], b: &[f32]) -> f64 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    f64::from(lanes.iter().sum::<f32>() + tail)
}

/// Stored names closest to `name` (for "no model named X; did you mean …").
pub fn closest_names<'a>(name: &str, names: &'a [String], n: usize) -> Vec<&'a str> {
    let mut scored: Vec<(usize, &str)> = names
        .iter()
        .map(|c| {
            (
                crate::text::edit_distance(&name.to_lowercase(), &c.to_lowercase()),
                c.as_str(),
            )
        })
        .collect();
    scored.sort();
    scored.into_iter().take(n).map(|(_, c)| c).collect()
}
