//! Text renderings of store contents: the guide's statistics block and the model list, and
//! [`printable`], which every text shown on a terminal that came from a file or a server
//! passes through.

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::inspect::group;
use crate::store::{EntrySummary, StoreStats};

/// `text` with every control character (C0, DEL, C1) written as an escape (`\x1b`, `\n`, …),
/// so that a name or value from a model file, `config.json` or a server cannot move the
/// cursor, clear the screen or forge a line of output.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

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

/// The `--list-models` table: name, params, chunks, time, method, layers, mode.
pub fn models_table(entries: &[EntrySummary]) -> String {
    let headers = [
        "Name", "Params", "Chunks", "Time", "Method", "Layers", "Mode",
    ];
    let rows: Vec<[String; 7]> = entries
        .iter()
        .map(|e| {
            let r = &e.record;
            [
                printable(&r.name).into_owned(),
                group(r.totals.params),
                group(r.totals.chunks),
                format!("{:.2}s", r.totals.encoding_secs),
                printable(&r.settings.method).into_owned(),
                printable(&r.settings.layers).into_owned(),
                printable(&r.settings.mode).into_owned(),
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
                if (1..4).contains(&i) {
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
    out
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn control_characters_are_escaped_and_plain_text_is_borrowed() {
        assert_eq!(
            printable("bert\x1b[2J\nerror: forged"),
            "bert\\u{1b}[2J\\nerror: forged"
        );
        assert_eq!(printable("a\u{9b}b\u{7f}"), "a\\u{9b}b\\u{7f}");
        assert!(matches!(
            printable("gpt2 — ünïcode"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
