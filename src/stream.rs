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

/// One contiguous read of element ranges of one tensor.
#[derive(Debug, Clone, Copy)]
struct Piece {
    tensor: usize,
    start: u64,
    len: u64,
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
    let mut skip = options.skip_values;
    // Pieces are grouped into windows: one read covering several pieces of one shard.
    let mut window: Vec<Piece> = Vec::new();
    let mut started: Option<usize> = None;

    // Split every run into pieces of at most MAX_READ bytes, in stream order.
    let pieces = plan.items.iter().flat_map(|item| {
        let t = &model.tensors[item.tensor];
        let per_piece = (MAX_READ / t.elem_bytes().max(1)).max(1);
        item.runs.iter().flat_map(move |run| {
            let count = run.len.div_ceil(per_piece);
            (0..count).map(move |k| {
                let start = run.start + k * per_piece;
                Piece {
                    tensor: item.tensor,
                    start,
                    len: per_piece.min(run.start + run.len - start),
                }
            })
        })
    });

    let selected_of = |tensor: usize| -> u64 {
        plan.items
            .iter()
            .find(|i| i.tensor == tensor)
            .map_or(0, |i| i.len())
    };

    let mut flush = |window: &mut Vec<Piece>,
                     summary: &mut StreamSummary,
                     started: &mut Option<usize>,
                     sink: &mut dyn Sink|
     -> Result<bool> {
        if window.is_empty() {
            return Ok(true);
        }
        let first = &model.tensors[window[0].tensor];
        let last_piece = window[window.len() - 1];
        let last = &model.tensors[last_piece.tensor];
        let begin = first.offset + window[0].start * first.elem_bytes();
        let end = last.offset + (last_piece.start + last_piece.len) * last.elem_bytes();
        raw.resize((end - begin) as usize, 0);
        let source = &model.shards[first.shard].source;
        source.read_at(begin, &mut raw)?;
        summary.data.requests += 1;
        summary.data.bytes += end - begin;
        for piece in window.drain(..) {
            let t = &model.tensors[piece.tensor];
            if *started != Some(piece.tensor) {
                if let Some(prev) = started.take() {
                    if !sink.end_tensor(&model.tensors[prev])? {
                        return Ok(false);
                    }
                }
                *started = Some(piece.tensor);
                summary.tensors += 1;
                if !sink.begin_tensor(t, selected_of(piece.tensor))? {
                    return Ok(false);
                }
            }
            let at = (t.offset + piece.start * t.elem_bytes() - begin) as usize;
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
                return Ok(false);
            }
        }
        Ok(true)
    };

    for mut piece in pieces {
        if options.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            summary.stopped = true;
            return Ok(summary);
        }
        if skip > 0 {
            let drop = skip.min(piece.len);
            skip -= drop;
            piece.start += drop;
            piece.len -= drop;
            if piece.len == 0 {
                continue;
            }
            // A resumed tensor still gets its begin_tensor call.
        }
        let t = &model.tensors[piece.tensor];
        let piece_begin = t.offset + piece.start * t.elem_bytes();
        let piece_end = piece_begin + piece.len * t.elem_bytes();
        let joins = window.last().is_some_and(|prev| {
            let pt = &model.tensors[prev.tensor];
            let prev_end = pt.offset + (prev.start + prev.len) * pt.elem_bytes();
            let window_begin = {
                let w0 = &window[0];
                let t0 = &model.tensors[w0.tensor];
                t0.offset + w0.start * t0.elem_bytes()
            };
            pt.shard == t.shard
                && piece_begin >= prev_end
                && piece_begin - prev_end <= MAX_GAP
                && piece_end - window_begin <= MAX_READ
        });
        if !joins && !flush(&mut window, &mut summary, &mut started, sink)? {
            summary.stopped = true;
            return Ok(summary);
        }
        window.push(piece);
    }
    if !flush(&mut window, &mut summary, &mut started, sink)? {
        summary.stopped = true;
        return Ok(summary);
    }
    if let Some(prev) = started.take() {
        if !sink.end_tensor(&model.tensors[prev])? {
            summary.stopped = true;
        }
    }
    Ok(summary)
}
