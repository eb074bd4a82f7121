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

/// One tensor, as `inspect --tensors` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct TensorRow {
    /// Name as stored.
    pub name: String,
    /// Stored type (`F32`, `Q4_1`…).
    pub dtype: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Role from the role table.
    pub role: Role,
    /// Layer index, for tensors in numbered layers.
    pub layer: Option<u32>,
}

/// Skipped tensors that differ only in their layer number, once.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SkippedGroup {
    /// The name, with the layer number as `*` when several share it.
    pub name: String,
    /// Stored type.
    pub dtype: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Why they are skipped.
    pub reason: String,
    /// How many.
    pub count: usize,
}

/// Group `skipped` by name pattern (layer number as `*`), dtype, shape and reason, in order
/// of first appearance.
pub fn group_skipped(skipped: &[SkippedTensor]) -> Vec<SkippedGroup> {
    let mut groups: Vec<(SkippedGroup, String)> = Vec::new();
    for t in &skipped_with_patterns(skipped) {
        let (t, pattern) = t;
        match groups.iter_mut().find(|(g, p)| {
            *p == *pattern && g.dtype == t.dtype && g.shape == t.shape && g.reason == t.reason
        }) {
            Some((g, _)) => {
                g.count += 1;
                g.name = pattern.clone();
            }
            None => groups.push((
                SkippedGroup {
                    name: t.name.clone(),
                    dtype: t.dtype.clone(),
                    shape: t.shape.clone(),
                    reason: t.reason.clone(),
                    count: 1,
                },
                pattern.clone(),
            )),
        }
    }
    groups.into_iter().map(|(g, _)| g).collect()
}

/// Each skipped tensor with its name's layer number replaced by `*`.
fn skipped_with_patterns(skipped: &[SkippedTensor]) -> Vec<(&SkippedTensor, String)> {
    skipped
        .iter()
        .map(|t| {
            let pattern = t
                .name
                .split('.')
                .map(|part| {
                    if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
                        "*"
                    } else {
                        part
                    }
                })
                .collect::<Vec<_>>()
                .join(".");
            (t, pattern)
        })
        .collect()
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
    /// What `config.json` says of the architecture (hidden size, layers, heads, vocabulary).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<crate::source::ModelConfig>,
    /// The safetensors `__metadata__` of the first file (`format: pt`…).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
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
    /// By layer index (keys are the layer numbers).
    pub layers: BTreeMap<u32, Count>,
    /// Tensors outside numbered layers.
    pub no_layer: Count,
    /// Listed but not streamed.
    pub skipped: Vec<SkippedTensor>,
    /// What the selection would read.
    pub selection: SelectionReport,
    /// Every tensor, streamed then skipped (`--tensors`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tensors: Option<Vec<TensorRow>>,
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
        let mut layers: BTreeMap<u32, Count> = BTreeMap::new();
        let mut no_layer = Count::default();
        for t in &model.tensors {
            let n = t.numel();
            dtypes
                .entry(t.stored_type())
                .or_insert_with(Count::default)
                .add(n);
            roles.entry(t.role.as_str().to_string()).or_default().add(n);
            match t.layer {
                Some(l) => layers.entry(l).or_default().add(n),
                None => no_layer.add(n),
            }
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
            config: model.config.clone(),
            metadata: model
                .shards
                .first()
                .filter(|s| s.table.format == FileFormat::Safetensors)
                .map(|s| s.table.metadata.clone())
                .unwrap_or_default(),
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
            no_layer,
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
            tensors: None,
        }
    }

    /// The report with every tensor of `model` listed (`--tensors`): streamed ones in file
    /// order, then the skipped ones.
    pub fn with_tensors(mut self, model: &Model) -> Report {
        let mut rows: Vec<TensorRow> = model
            .tensors
            .iter()
            .map(|t| TensorRow {
                name: t.name.clone(),
                dtype: t.stored_type(),
                shape: t.shape.clone(),
                role: t.role,
                layer: t.layer,
            })
            .collect();
        rows.extend(model.skipped.iter().map(|t| TensorRow {
            name: t.name.clone(),
            dtype: t.dtype.clone(),
            shape: t.shape.clone(),
            role: Role::of(&t.name),
            layer: crate::roles::layer_index(&t.name),
        }));
        self.tensors = Some(rows);
        self
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
        if let Some(c) = &self.config {
            let field = |v: Option<u64>| v.map_or("-".to_string(), group);
            if c.hidden_size.is_some()
                || c.layers.is_some()
                || c.heads.is_some()
                || c.vocab_size.is_some()
            {
                let _ = writeln!(
                    out,
                    "Config: hidden size {}, layers {}, heads {}, vocabulary {}",
                    field(c.hidden_size),
                    field(c.layers),
                    field(c.heads),
                    field(c.vocab_size)
                );
            }
        }
        let _ = writeln!(out, "Format: {}", self.format);
        if !self.metadata.is_empty() {
            let pairs: Vec<String> = self
                .metadata
                .iter()
                .map(|(k, v)| format!("{}: {}", printable(k), printable(v)))
                .collect();
            let _ = writeln!(out, "  __metadata__: {}", pairs.join(", "));
        }
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
        let none = (self.no_layer.tensors > 0).then(|| ("(none)".to_string(), &self.no_layer));
        for (label, c) in none
            .into_iter()
            .chain(self.layers.iter().map(|(l, c)| (l.to_string(), c)))
        {
            let _ = writeln!(
                out,
                "  {label:<10} {:>6} tensors {:>16} params",
                c.tensors,
                group(c.params)
            );
        }
        if !self.skipped.is_empty() {
            let _ = writeln!(out, "\nSkipped:");
            for s in group_skipped(&self.skipped) {
                let _ = writeln!(
                    out,
                    "  {} {} {:?}: {}{}",
                    printable(&s.name),
                    s.dtype,
                    s.shape,
                    s.reason,
                    if s.count > 1 {
                        format!(" (x{})", s.count)
                    } else {
                        String::new()
                    }
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
        if let Some(rows) = &self.tensors {
            let _ = writeln!(out, "\nTensors:");
            let width = rows
                .iter()
                .map(|r| printable(&r.name).chars().count())
                .max()
                .unwrap_or(4);
            let skipped = group_skipped(&self.skipped);
            let streamed = rows.len() - self.skipped.len();
            for r in &rows[..streamed] {
                let _ = writeln!(
                    out,
                    "  {:<width$}  {:<6} {:<20} {:<9} {}",
                    printable(&r.name),
                    r.dtype,
                    format!("{:?}", r.shape),
                    r.role.as_str(),
                    r.layer.map_or("-".to_string(), |l| l.to_string())
                );
            }
            for g in &skipped {
                let _ = writeln!(
                    out,
                    "  {:<width$}  {:<6} {:<20} skipped: {}{}",
                    printable(&g.name),
                    g.dtype,
                    format!("{:?}", g.shape),
                    g.reason,
                    if g.count > 1 {
                        format!(" (x{})", g.count)
                    } else {
                        String::new()
                    }
                );
            }
        }
        let _ = writeln!(out, "\nHeader bytes read: {}", group(self.bytes_read));
        out
    }
}

pub use crate::text::group;
