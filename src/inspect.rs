//! `weightreel inspect`: what a model holds and what a selection would read, from headers only.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::text::printable;

use serde::Serialize;

use crate::roles::Role;
use crate::selection::{Plan, Selection};
use crate::source::table::FileFormat;
use crate::source::{Model, Origin, SkippedTensor};
use crate::stream::windows;

/// Counts for one group of tensors.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Count {
    /// Tensors.
    pub tensors: u64,
    /// Parameters (elements).
    pub params: u64,
}

impl Count {
    fn add(&mut self, params: u64) {
        self.tensors += 1;
        self.params += params;
    }
}

/// One shard file.
#[derive(Debug, Clone, Serialize)]
pub struct ShardReport {
    /// File name.
    pub file: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Header JSON length.
    pub header_bytes: u64,
    /// Tensors in it.
    pub tensors: usize,
}

/// The selection's cost.
#[derive(Debug, Clone, Serialize)]
pub struct SelectionReport {
    /// `--layers` as given (`all` when unrestricted).
    pub layers: String,
    /// Tensors the plan touches.
    pub tensors: usize,
    /// Values matched before the limit.
    pub available: u64,
    /// Values the plan takes.
    pub params: u64,
    /// Bytes of tensor data the plan reads, counting merged gaps.
    pub read_bytes: u64,
    /// Separate reads (HTTP requests for the Hub) the plan needs.
    pub reads: u64,
}

/// Everything `inspect` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The name as given.
    pub model: String,
    /// Where it was found.
    pub origin: Origin,
    /// `model_type`, when `config.json` has it.
    pub model_type: Option<String>,
    /// `architectures`, when `config.json` has them.
    pub architectures: Vec<String>,
    /// "safetensors" or "safetensors (N shards)".
    pub format: String,
    /// What a GGUF file says about itself (architecture, context length, quantization mix);
    /// empty for other formats.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
    /// Files.
    pub shards: Vec<ShardReport>,
    /// Tensors in the files, streamed or not.
    pub tensor_count: usize,
    /// Streamable parameters.
    pub total_params: u64,
    /// By dtype (streamable tensors).
    pub dtypes: BTreeMap<String, Count>,
    /// By role.
    pub roles: BTreeMap<String, Count>,
    /// By layer index (`-` for tensors outside numbered layers).
    pub layers: BTreeMap<String, Count>,
    /// Listed but not streamed.
    pub skipped: Vec<SkippedTensor>,
    /// What the selection would read.
    pub selection: SelectionReport,
    /// Bytes read to produce this report (headers only).
    pub bytes_read: u64,
}

/// Count the reads and bytes a plan needs: the stream's own windows.
pub fn plan_reads(model: &Model, plan: &Plan) -> (u64, u64) {
    windows(model, plan, 0).fold((0, 0), |(reads, bytes), w| {
        (reads + 1, bytes + w.end - w.begin)
    })
}

impl Report {
    /// Build the report for `model` and `selection`.
    pub fn new(model: &Model, selection: &Selection) -> Report {
        let mut dtypes = BTreeMap::new();
        let mut roles: BTreeMap<String, Count> = Role::ALL
            .iter()
            .map(|r| (r.as_str().to_string(), Count::default()))
            .collect();
        let mut layers: BTreeMap<String, Count> = BTreeMap::new();
        for t in &model.tensors {
            let n = t.numel();
            dtypes
                .entry(t.stored_type())
                .or_insert_with(Count::default)
                .add(n);
            roles.entry(t.role.as_str().to_string()).or_default().add(n);
            let key = t.layer.map_or("-".to_string(), |l| format!("{l:>4}"));
            layers.entry(key).or_default().add(n);
        }
        let plan = selection.plan(model);
        let (reads, read_bytes) = plan_reads(model, &plan);
        let config = model.config.clone().unwrap_or_default();
        Report {
            model: model.spec.clone(),
            origin: model.origin.clone(),
            model_type: config.model_type,
            architectures: config.architectures,
            format: model.format(),
            details: model
                .shards
                .iter()
                .filter(|s| matches!(s.table.format, FileFormat::Gguf(_)))
                .flat_map(|s| s.table.metadata.clone())
                .collect(),
            shards: model
                .shards
                .iter()
                .map(|s| ShardReport {
                    file: s.file.clone(),
                    bytes: s.source.len(),
                    header_bytes: s.table.header_bytes,
                    tensors: s.table.tensor_count(),
                })
                .collect(),
            tensor_count: model.tensors.len() + model.skipped.len(),
            total_params: model.total_params(),
            dtypes,
            roles,
            layers,
            skipped: model.skipped.clone(),
            selection: SelectionReport {
                layers: selection.roles_label(),
                tensors: plan.items.len(),
                available: plan.available,
                params: plan.total,
                read_bytes,
                reads,
            },
            bytes_read: model.read_stats().bytes,
        }
    }

    /// Human-readable text.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "Model: {}", self.model);
        let source = match &self.origin {
            Origin::File { path } => format!("file {path}"),
            Origin::Directory { path } => format!("directory {path}"),
            Origin::Cache {
                revision,
                commit,
                path,
                ..
            } => format!("HF cache {path} (revision {revision}, commit {commit})"),
            Origin::Hub {
                endpoint,
                revision,
                commit,
                ..
            } => format!("Hub {endpoint} (revision {revision}, commit {commit})"),
        };
        let _ = writeln!(out, "Source: {}", printable(&source));
        if let Some(mt) = &self.model_type {
            let _ = writeln!(
                out,
                "Model type: {}{}",
                printable(mt),
                if self.architectures.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", printable(&self.architectures.join(", ")))
                }
            );
        }
        let _ = writeln!(out, "Format: {}", self.format);
        for (key, value) in &self.details {
            let _ = writeln!(out, "  {}: {}", printable(key), printable(value));
        }
        for s in &self.shards {
            let _ = writeln!(
                out,
                "  {}: {} bytes, header {} bytes, {} tensors",
                printable(&s.file),
                group(s.bytes),
                group(s.header_bytes),
                s.tensors
            );
        }
        let _ = writeln!(
            out,
            "Tensors: {} ({} streamed, {} skipped)",
            self.tensor_count,
            self.tensor_count - self.skipped.len(),
            self.skipped.len()
        );
        let _ = writeln!(out, "Parameters: {}", group(self.total_params));
        let _ = writeln!(out, "\nBy dtype:");
        for (dtype, c) in &self.dtypes {
            let _ = writeln!(
                out,
                "  {dtype:<6} {:>6} tensors {:>16} params",
                c.tensors,
                group(c.params)
            );
        }
        let _ = writeln!(out, "\nBy role:");
        for (role, c) in &self.roles {
            let _ = writeln!(
                out,
                "  {role:<10} {:>6} tensors {:>16} params",
                c.tensors,
                group(c.params)
            );
        }
        let _ = writeln!(out, "\nBy layer:");
        for (layer, c) in &self.layers {
            let label = if layer == "-" {
                "(none)".to_string()
            } else {
                printable(layer.trim()).into_owned()
            };
            let _ = writeln!(
                out,
                "  {label:<10} {:>6} tensors {:>16} params",
                c.tensors,
                group(c.params)
            );
        }
        if !self.skipped.is_empty() {
            let _ = writeln!(out, "\nSkipped:");
            for s in &self.skipped {
                let _ = writeln!(
                    out,
                    "  {} {} {:?}: {}",
                    printable(&s.name),
                    s.dtype,
                    s.shape,
                    s.reason
                );
            }
        }
        let sel = &self.selection;
        let _ = writeln!(out, "\nSelection (layers: {}):", sel.layers);
        let _ = writeln!(out, "  tensors: {}", sel.tensors);
        let _ = writeln!(
            out,
            "  parameters: {} of {} matched",
            group(sel.params),
            group(sel.available)
        );
        let _ = writeln!(
            out,
            "  would read: {} bytes in {} reads",
            group(sel.read_bytes),
            sel.reads
        );
        let _ = writeln!(out, "\nHeader bytes read: {}", group(self.bytes_read));
        out
    }
}

/// `1234567` → `1,234,567`.
pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}
