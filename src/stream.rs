//! The tensor stream: reads a [`Plan`] from a [`Model`] in bounded pieces and pushes f32 values
//! into a [`Sink`], ripgrep style. A sink returning `Ok(false)` stops the stream at once without
//! reading further (a parameter limit, Ctrl-C).
//!
//! Memory: at most [`MAX_READ`] raw bytes plus the same number of f32 values are held at any
//! time, whatever the model's size. Reads of nearby runs (within [`MAX_GAP`] bytes in one
//! shard) are merged into one request, so a sampled remote read needs few requests.

use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::selection::Plan;
use crate::source::convert::to_f32;
use crate::source::{Model, ReadStats, TensorInfo};

/// Largest single read, in bytes.
pub const MAX_READ: u64 = 1 << 20;
/// Largest gap between two runs that is read through rather than split into two requests.
pub const MAX_GAP: u64 = 16 * 1024;

/// Receives the stream. Every method may stop it by returning `Ok(false)`.
pub trait Sink {
    /// A tensor starts; `selected` values of it follow.
    fn begin_tensor(&mut self, _tensor: &TensorInfo, _selected: u64) -> Result<bool> {
        Ok(true)
    }
    /// Values of `tensor` starting at element `start` (row-major index in the tensor).
    fn values(&mut self, tensor: &TensorInfo, start: u64, values: &[f32]) -> Result<bool>;
    /// The tensor's selected values have all been delivered.
    fn end_tensor(&mut self, _tensor: &TensorInfo) -> Result<bool> {
        Ok(true)
    }
}

/// What a stream did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StreamSummary {
    /// Tensors started.
    pub tensors: u64,
    /// Values delivered.
    pub values: u64,
    /// Reads of tensor data (requests, for the Hub) and their bytes.
    pub data: ReadStats,
    /// True when a sink (or the cancel flag) stopped the stream early.
    pub stopped: bool,
}

/// A contiguous range of elements of one tensor, at most [`MAX_READ`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// Index into [`Model::tensors`].
    pub tensor: usize,
    /// First element.
    pub start: u64,
    /// Elements.
    pub len: u64,
}

/// One read: a byte range of one shard covering whole pieces (and the gaps between them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Index into [`Model::shards`].
    pub shard: usize,
    /// First byte, absolute in the shard file.
    pub begin: u64,
    /// One past the last byte.
    pub end: u64,
    /// The pieces it delivers, in order.
    pub pieces: Vec<Piece>,
}

/// The reads that deliver `plan` after its first `skip` values, in order: runs cut into pieces
/// of at most [`MAX_READ`] bytes, and consecutive pieces of one shard merged into one read when
/// the gap is at most [`MAX_GAP`] and the read stays within [`MAX_READ`]. The stream performs
/// exactly these reads, and `inspect` counts them, so its estimate is what streaming costs.
pub fn windows<'a>(
    model: &'a Model,
    plan: &'a Plan,
    skip: u64,
) -> impl Iterator<Item = Window> + 'a {
    let byte_range = move |p: &Piece| {
        let t = &model.tensors[p.tensor];
        let begin = t.offset + p.start * t.elem_bytes();
        (t.shard, begin, begin + p.len * t.elem_bytes())
    };
    let mut left = skip;
    let mut pieces = plan
        .items
        .iter()
        .flat_map(move |item| {
            let per_piece = (MAX_READ / model.tensors[item.tensor].elem_bytes().max(1)).max(1);
            item.runs.iter().flat_map(move |run| {
                (0..run.len.div_ceil(per_piece)).map(move |k| {
                    let start = run.start + k * per_piece;
                    Piece {
                        tensor: item.tensor,
                        start,
                        len: per_piece.min(run.start + run.len - start),
                    }
                })
            })
        })
        .filter_map(move |mut piece| {
            // Resume: values already encoded are not read again.
            let drop = left.min(piece.len);
            left -= drop;
            piece.start += drop;
            piece.len -= drop;
            (piece.len > 0).then_some(piece)
        })
        .peekable();
    std::iter::from_fn(move || {
        let first = pieces.next()?;
        let (shard, begin, mut end) = byte_range(&first);
        let mut window = Window {
            shard,
            begin,
            end,
            pieces: vec![first],
        };
        while let Some((s, b, e)) = pieces.peek().map(&byte_range) {
            if s != shard || b < end || b - end > MAX_GAP || e - begin > MAX_READ {
                break;
            }
            end = e;
            window.pieces.extend(pieces.next());
        }
        window.end = end;
        Some(window)
    })
}

/// Options for [`stream`].
#[derive(Default, Clone, Copy)]
pub struct StreamOptions<'a> {
    /// Checked between reads; set by a Ctrl-C handler.
    pub cancel: Option<&'a AtomicBool>,
    /// Skip the first `skip_values` values of the plan without reading them (resume).
    pub skip_values: u64,
}

/// Stream `plan` from `model` into `sink`.
pub fn stream(
    model: &Model,
    plan: &Plan,
    sink: &mut dyn Sink,
    options: StreamOptions<'_>,
) -> Result<StreamSummary> {
    let mut summary = StreamSummary::default();
    let mut raw = Vec::new();
    let mut values: Vec<f32> = Vec::new();
    let mut started: Option<usize> = None;
    let selected_of = |tensor: usize| -> u64 {
        plan.items
            .iter()
            .find(|i| i.tensor == tensor)
            .map_or(0, |i| i.len())
    };
    for window in windows(model, plan, options.skip_values) {
        if options.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            summary.stopped = true;
            return Ok(summary);
        }
        raw.resize((window.end - window.begin) as usize, 0);
        let source = &model.shards[window.shard].source;
        source.read_at(window.begin, &mut raw)?;
        summary.data.requests += 1;
        summary.data.bytes += window.end - window.begin;
        for piece in &window.pieces {
            let t = &model.tensors[piece.tensor];
            if started != Some(piece.tensor) {
                if let Some(prev) = started.take() {
                    if !sink.end_tensor(&model.tensors[prev])? {
                        summary.stopped = true;
                        return Ok(summary);
                    }
                }
                started = Some(piece.tensor);
                summary.tensors += 1;
                // A resumed tensor still gets its begin_tensor call.
                if !sink.begin_tensor(t, selected_of(piece.tensor))? {
                    summary.stopped = true;
                    return Ok(summary);
                }
            }
            let at = (t.offset + piece.start * t.elem_bytes() - window.begin) as usize;
            let bytes = &raw[at..at + (piece.len * t.elem_bytes()) as usize];
            values.resize(piece.len as usize, 0.0);
            if !to_f32(t.dtype, bytes, &mut values) {
                return Err(Error::tensor(
                    source.name(),
                    &t.name,
                    format!("dtype {:?} cannot be converted to f32", t.dtype),
                ));
            }
            summary.values += piece.len;
            if !sink.values(t, piece.start, &values)? {
                summary.stopped = true;
                return Ok(summary);
            }
        }
    }
    if let Some(prev) = started.take() {
        if !sink.end_tensor(&model.tensors[prev])? {
            summary.stopped = true;
        }
    }
    Ok(summary)
}
