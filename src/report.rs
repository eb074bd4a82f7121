//! Text renderings of store contents: the guide's statistics block and the model list.

use std::fmt::Write as _;

use crate::inspect::group;
use crate::store::{EntrySummary, StoreStats};

/// The guide's "STREAMING ENCODING STATISTICS" block, with its title and labels in its order.
/// The chunk size comes from the registry: one value, or the distinct values when stored
/// models differ.
pub fn statistics_block(stats: &StoreStats) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "📊 STREAMING ENCODING STATISTICS");
    let _ = writeln!(out, "================================================");
    let _ = writeln!(out, "Encoded Models: {}", stats.encoded_models);
    let _ = writeln!(out, "Total Parameters: {}", group(stats.total_parameters));
    let _ = writeln!(out, "Total Chunks: {}", group(stats.total_chunks));
    let _ = writeln!(
        out,
        "Average Encoding Time: {:.2}s",
        stats.average_encoding_time
    );
    let _ = writeln!(
        out,
        "Average Chunks per Model: {:.1}",
        stats.average_chunks_per_model
    );
    let sizes = if stats.chunk_sizes.is_empty() {
        "-".to_string()
    } else {
        stats
            .chunk_sizes
            .iter()
            .map(|&c| group(c))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(out, "Chunk Size: {sizes}");
    out
}

/// The `--list-models` table: what tells entries apart (settings key, chunk size and method,
/// mode, layers, max-params, date) and both counts, labelled: the values the reel stores and
/// the model's parameters.
pub fn models_table(entries: &[EntrySummary]) -> String {
    let headers = [
        "Name",
        "Key",
        "Values stored",
        "Model params",
        "Chunks",
        "Chunk size",
        "Method",
        "Mode",
        "Layers",
        "Max-params",
        "Time",
        "Date",
    ];
    const RIGHT: [usize; 6] = [2, 3, 4, 5, 9, 10];
    let rows: Vec<[String; 12]> = entries
        .iter()
        .map(|e| {
            let r = &e.record;
            [
                r.name.clone(),
                e.short_key.clone(),
                group(r.totals.params),
                e.model_params.map_or("-".into(), group),
                group(r.totals.chunks),
                group(r.settings.chunk_size),
                r.settings.method.clone(),
                r.settings.mode.clone(),
                r.settings.layers.clone(),
                r.settings.max_params.map_or("-".into(), group),
                format!("{:.2}s", r.totals.encoding_secs),
                r.created_at.get(..10).unwrap_or(&r.created_at).to_string(),
            ]
        })
        .collect();
    let mut widths = headers.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let _ = writeln!(out, "📋 STREAMING-ENCODED MODELS ({})", entries.len());
    let line = |cells: &[String]| -> String {
        cells
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if RIGHT.contains(&i) {
                    format!("{c:>w$}")
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let _ = writeln!(out, "{}", line(&headers.map(String::from)));
    let _ = writeln!(
        out,
        "{}",
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("  ")
    );
    for row in &rows {
        let _ = writeln!(out, "{}", line(row));
    }
    let _ = writeln!(
        out,
        "Key: the settings key's first 8 digits (decode, frames, show and rm take it with --settings-key)"
    );
    out
}
