//! The CLI's faces of the search stage: `fingerprint`, `search` (and the guide's
//! `--search-similar`), `compare`, `tree`, and the guide's `--models` matrix.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use weightreel::encode::store_fingerprint;
use weightreel::error::{Error, Result};
use weightreel::fingerprint::Fingerprint;
use weightreel::inspect::group;
use weightreel::roles::Role;
use weightreel::search::{self, families, Comparison, Method, SearchOptions, SearchResult};
use weightreel::source::{Model, OpenOptions};
use weightreel::store::Store;
use weightreel::text::printable;

/// A model named on the command line: a stored fingerprint's name, else any source,
/// fingerprinted on the fly (nothing is stored).
pub struct Query {
    /// The name as typed.
    pub name: String,
    /// Its fingerprint.
    pub fingerprint: Fingerprint,
    /// True when it came from the store.
    pub stored: bool,
}

/// Resolve `name` against `store`, then as a source.
pub fn resolve(
    store: &Store,
    name: &str,
    open: &OpenOptions,
    cancel: &AtomicBool,
) -> Result<Query> {
    if let Some(fp) = store.fingerprint(name)? {
        return Ok(Query {
            name: name.to_string(),
            fingerprint: fp,
            stored: true,
        });
    }
    match Model::open(name, open) {
        Ok(model) => {
            let (fp, _) = Fingerprint::compute(&model, Some(cancel))?;
            // A source that is stored (under its derived name) is left out of its own ranking.
            let stored = store.fingerprint_source(&model.name)?.is_some();
            Ok(Query {
                name: if stored { model.name } else { name.to_string() },
                fingerprint: fp,
                stored,
            })
        }
        Err(open_error) => {
            let names = store.fingerprint_names()?;
            let closest = search::closest_names(name, &names, 3);
            let hint = if closest.is_empty() {
                String::new()
            } else {
                format!(
                    "; closest stored names: {}",
                    closest
                        .iter()
                        .map(|n| printable(n))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            Err(Error::model(
                name,
                format!(
                    "no stored model has this name, and it cannot be opened ({open_error}){hint}"
                ),
            ))
        }
    }
}

/// A store with fingerprints to search, or the error that says what to do.
pub fn searchable(store: &Store) -> Result<Vec<weightreel::store::IndexRow>> {
    let index = store.fingerprint_index()?;
    let missing = store.entries_without_fingerprint()?;
    if !missing.is_empty() {
        eprintln!(
            "note: {} stored model{} ha{} no fingerprint (encoded before fingerprints existed): run `weightreel fingerprint --missing --store {}` to add {}",
            missing.len(),
            if missing.len() == 1 { "" } else { "s" },
            if missing.len() == 1 { "s" } else { "ve" },
            store.location(),
            if missing.len() == 1 { "it" } else { "them" },
        );
    }
    if index.is_empty() {
        return Err(Error::store(
            store.location(),
            "holds no fingerprinted models yet (encode or `weightreel fingerprint` some first)",
        ));
    }
    Ok(index)
}

/// `weightreel fingerprint MODEL…` / `--missing`.
pub fn run_fingerprint(
    store: &mut Store,
    models: &[String],
    missing: bool,
    open: &OpenOptions,
    cancel: &AtomicBool,
    json: bool,
) -> Result<()> {
    // (the name to store under, when not the model's own; the source to open)
    let mut names: Vec<(Option<String>, String)> =
        models.iter().map(|m| (None, m.clone())).collect();
    if missing {
        names.extend(
            store
                .entries_without_fingerprint()?
                .into_iter()
                .map(|(name, source)| (Some(name), source)),
        );
    }
    if names.is_empty() {
        return Err(Error::invalid(
            "arguments",
            "(none)",
            "one or more models, or --missing",
        ));
    }
    let mut rows = Vec::new();
    for (stored_name, source) in &names {
        let mut model = Model::open(source, open)?;
        // `--missing` re-opens an entry's source under the entry's own name.
        if let Some(n) = stored_name {
            model.name = n.clone();
        }
        let name = &model.name;
        let (fp, cost) = store_fingerprint(store, &model, cancel)?;
        let read = cost.stream.data;
        if !json {
            println!(
                "Fingerprinted {}: {} tensors, {} of {} parameters sampled, {} bytes in {} reads, {} bytes stored",
                printable(name),
                fp.tensors.len(),
                group(cost.values),
                group(fp.params()),
                group(read.bytes),
                group(read.requests),
                group(fp.to_bytes().len() as u64),
            );
        }
        rows.push(serde_json::json!({
            "name": name,
            "tensors": fp.tensors.len(),
            "params": fp.params(),
            "sampled_values": cost.values,
            "bytes_read": read.bytes,
            "read_requests": read.requests,
            "stored_bytes": fp.to_bytes().len(),
        }));
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("rows serialize")
        );
    }
    Ok(())
}

/// Options of `search`.
pub struct SearchArgs<'a> {
    pub top: usize,
    pub method: Method,
    pub roles: &'a [Role],
    pub json: bool,
}

/// `weightreel search MODEL` and `--search-similar MODEL`.
pub fn run_search(
    store: &Store,
    model: &str,
    args: &SearchArgs<'_>,
    open: &OpenOptions,
    cancel: &AtomicBool,
) -> Result<()> {
    let index = searchable(store)?;
    let query = resolve(store, model, open, cancel)?;
    let result = search::search(
        store,
        &index,
        &query.fingerprint,
        SearchOptions {
            top: args.top,
            method: args.method,
            exclude: query.stored.then_some(query.name.as_str()),
            roles: args.roles,
        },
    )?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&result).expect("result serializes")
        );
        return Ok(());
    }
    print!(
        "{}",
        ranking_text(&query.name, &result, !args.roles.is_empty())
    );
    Ok(())
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{:.1}%", v * 100.0))
}

fn num(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.3}"))
}

/// The ranking as a table.
pub fn ranking_text(query: &str, r: &SearchResult, restricted: bool) -> String {
    let mut out = format!(
        "Models most related to {} (method {}, {} stored model{} searched{}):\n",
        printable(query),
        r.method.as_str(),
        r.searched,
        if r.searched == 1 { "" } else { "s" },
        if restricted {
            ", chosen roles only"
        } else {
            ""
        }
    );
    let width = r
        .hits
        .iter()
        .map(|h| printable(&h.name).chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    out.push_str(&format!(
        "{:>3}  {:<width$}  {:>6}  {:>6}  {:>8}  {:>8}  basis\n",
        "#", "Model", "Score", "Exact", "Features", "Coverage"
    ));
    for (i, h) in r.hits.iter().enumerate() {
        out.push_str(&format!(
            "{:>3}  {:<width$}  {:>6.3}  {:>6}  {:>8.3}  {:>8}  {}\n",
            i + 1,
            printable(&h.name),
            h.score,
            num(h.exact),
            h.features,
            pct(h.coverage),
            h.basis
        ));
    }
    out.push_str(&format!(
        "Compared {} values; read {} fingerprint{}.\n",
        group(r.values_touched),
        r.fingerprints_read,
        if r.fingerprints_read == 1 { "" } else { "s" }
    ));
    out
}

/// `weightreel compare A B [--png FILE]`.
pub fn run_compare(
    store: &Store,
    a: &str,
    b: &str,
    png: Option<&Path>,
    open: &OpenOptions,
    cancel: &AtomicBool,
    json: bool,
) -> Result<()> {
    if let Some(png) = png {
        weightreel::output::check_file("--png", png)?;
    }
    let qa = resolve(store, a, open, cancel)?;
    let qb = resolve(store, b, open, cancel)?;
    let c = search::compare(&qa.fingerprint, &qb.fingerprint);
    let grid = c.layer_grid(&qa.fingerprint);
    if let Some(png) = png {
        write_grid_png(png, &grid)?;
    }
    if json {
        let v = c.report(a, &qa.fingerprint, b, &qb.fingerprint);
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        return Ok(());
    }
    print!(
        "{}",
        compare_text(a, b, &qa.fingerprint, &qb.fingerprint, &c)
    );
    if let Some(png) = png {
        println!("Heat-map written to {}", png.display());
    }
    Ok(())
}

/// The comparison as text.
pub fn compare_text(
    a: &str,
    b: &str,
    fa: &Fingerprint,
    fb: &Fingerprint,
    c: &Comparison,
) -> String {
    let mut out = format!("Compare {} → {}\n", printable(a), printable(b));
    out.push_str(&format!(
        "Paired tensors: {} ({} by name, {} by role/shape/order); {} of {} parameters (coverage {})\n",
        c.matches.len(),
        c.by_name,
        c.by_order,
        group(c.matched_params),
        group(c.larger_params),
        pct(Some(c.coverage))
    ));
    if c.matches.is_empty() {
        out.push_str("No shared tensor shapes: compared by distribution features only.\n");
    }
    out.push_str(&format!(
        "Exact: {}  Correlation: {}  Relative change: {}  Features: {:.3}  Hybrid: {:.3}\n",
        num(c.exact.map(|e| e * c.coverage)),
        num(c.exact),
        pct(c.relative_change),
        c.features,
        c.hybrid
    ));
    if !c.matches.is_empty() {
        let width = c
            .matches
            .iter()
            .map(|m| printable(&fa.tensors[m.a].name).chars().count())
            .max()
            .unwrap_or(6)
            .max(6);
        out.push_str(&format!(
            "\nPer tensor, largest change first:\n{:<9}  {:<width$}  {:>10}  {:>8}\n",
            "role", "tensor", "similarity", "change"
        ));
        for m in c.by_change() {
            let t = &fa.tensors[m.a];
            let renamed = if m.how == search::MatchKind::ShapeOrder {
                format!("  (as {})", printable(&fb.tensors[m.b].name))
            } else {
                String::new()
            };
            out.push_str(&format!(
                "{:<9}  {:<width$}  {:>10.4}  {:>7.2}%{renamed}\n",
                t.role.as_str(),
                printable(&t.name),
                m.correlation,
                m.relative_change * 100.0
            ));
        }
        let grid = c.layer_grid(fa);
        out.push_str("\nPer-layer similarity (rows: layer, columns: role):\n");
        out.push_str(&format!("{:>6}", "layer"));
        for r in &grid.roles {
            out.push_str(&format!("  {:>9}", r.as_str()));
        }
        out.push('\n');
        for (row, layer) in grid.cells.iter().zip(&grid.layers) {
            out.push_str(&format!(
                "{:>6}",
                layer.map_or("-".to_string(), |l| l.to_string())
            ));
            for cell in row {
                out.push_str(&format!("  {:>9}", num(*cell)));
            }
            out.push('\n');
        }
    }
    out
}

/// The layer grid as a heat-map PNG: one 24×24 cell per (layer, role), similarity 0..1
/// coloured as `frames --heatmap` colours values, grey where nothing was paired.
fn write_grid_png(path: &Path, grid: &search::LayerGrid) -> Result<()> {
    const CELL: usize = 24;
    let cols = grid.roles.len().max(1);
    let rows = grid.layers.len().max(1);
    let (w, h) = (cols * CELL, rows * CELL);
    let mut rgb = vec![128u8; w * h * 3];
    for (r, row) in grid.cells.iter().enumerate() {
        for (c, cell) in row.iter().enumerate() {
            let colour = cell.map_or([128, 128, 128], |v| {
                weightreel::reel::heat_colour(v.max(0.0))
            });
            for y in r * CELL..(r + 1) * CELL - 1 {
                for x in c * CELL..(c + 1) * CELL - 1 {
                    rgb[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&colour);
                }
            }
        }
    }
    weightreel::reel::write_png_rgb(path, w as u32, h as u32, &rgb)
}

/// `weightreel tree`.
pub fn run_tree(store: &Store, json: bool, dot: Option<&Path>) -> Result<()> {
    searchable(store)?;
    let mut models = Vec::new();
    for name in store.fingerprint_names()? {
        if let Some(fp) = store.fingerprint(&name)? {
            models.push((name, fp));
        }
    }
    let fams = families(&models);
    if let Some(dot) = dot {
        weightreel::output::check_file("--dot", dot)?;
        let mut text = String::from("digraph families {\n  rankdir=TB;\n");
        for f in &fams {
            text.push_str(&f.to_dot());
        }
        text.push_str("}\n");
        std::fs::write(dot, text).map_err(|e| Error::io(dot, e))?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&fams).expect("json"));
        return Ok(());
    }
    let related: Vec<_> = fams.iter().filter(|f| !f.edges.is_empty()).collect();
    println!(
        "{} famil{} of related models, {} unrelated model{} ({} fingerprinted):",
        related.len(),
        if related.len() == 1 { "y" } else { "ies" },
        fams.len() - related.len(),
        if fams.len() - related.len() == 1 {
            ""
        } else {
            "s"
        },
        models.len()
    );
    for f in &related {
        println!();
        print!("{}", f.to_text());
    }
    let alone: Vec<_> = fams
        .iter()
        .filter(|f| f.edges.is_empty())
        .map(|f| printable(&f.root))
        .collect();
    if !alone.is_empty() {
        println!("\nUnrelated: {}", alone.join(", "));
    }
    Ok(())
}

/// The guide's `--models A B …`: after encoding, the pairwise similarity matrix (hybrid).
pub fn similarity_matrix(store: &Store, names: &[String]) -> Result<String> {
    let mut fps = Vec::new();
    for n in names {
        let fp = store
            .fingerprint(n)?
            .ok_or_else(|| Error::store(store.dir(), format!("no fingerprint of '{n}'")))?;
        fps.push(fp);
    }
    let width = names
        .iter()
        .map(|n| printable(n).chars().count())
        .max()
        .unwrap_or(5)
        .max(7);
    let mut out = String::from("\nSimilarity matrix (hybrid score, 0..1; 1 = same weights):\n");
    out.push_str(&format!("{:<width$}", ""));
    for n in names {
        out.push_str(&format!("  {:>width$}", printable(n)));
    }
    out.push('\n');
    for (i, a) in fps.iter().enumerate() {
        out.push_str(&format!("{:<width$}", printable(&names[i])));
        for b in &fps {
            out.push_str(&format!("  {:>width$.3}", search::compare(a, b).hybrid));
        }
        out.push('\n');
    }
    Ok(out)
}
