//! The tensor stream: reads a [`Plan`] from a [`Model`] in bounded pieces and pushes f32 values
//! into a [`Sink`], ripgrep style. A sink returning `Ok(false)` stops the stream at once without
//! reading further (a parameter limit, Ctrl-C).
//!
//! Memory: at most [`READ_AHEAD_BYTES`] raw bytes (one [`MAX_READ`] read for a local file) plus
//! [`MAX_READ`] bytes of f32 values are held at any time, whatever the model's size. Reads of
//! nearby runs (gaps up to the source's [`ByteSource::read_through`](crate::source::ByteSource::read_through)
//! in one shard) are merged into one request, so a sampled remote read needs few requests.
//!
//! Concurrency: a source that waits a round trip per read (HTTP) has its reads issued ahead by
//! up to [`ByteSource::concurrency`](crate::source::ByteSource::concurrency) threads, while the
//! sink still receives every value in plan order, from one thread: the output does not depend
//! on how many reads were in flight.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::selection::Plan;
use crate::source::{Model, ReadStats, TensorInfo};

/// Largest single read, in bytes.
pub const MAX_READ: u64 = 1 << 20;
/// Raw bytes of reads in flight or waiting for the sink, when reads run concurrently.
pub const READ_AHEAD_BYTES: u64 = 8 * MAX_READ;

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
/// the gap is at most the shard's [`ByteSource::read_through`](crate::source::ByteSource::read_through)
/// and the read stays within [`MAX_READ`]. The stream performs
/// exactly these reads, and `inspect` counts them, so its estimate is what streaming costs.
pub fn windows<'a>(
    model: &'a Model,
    plan: &'a Plan,
    skip: u64,
) -> impl Iterator<Item = Window> + 'a {
    // Whole blocks: a quantized piece reads every block it touches.
    let byte_range = move |p: &Piece| {
        let t = &model.tensors[p.tensor];
        let (begin, end) = t.byte_range(p.start, p.len);
        (t.shard, begin, end)
    };
    let mut left = skip;
    let mut pieces = plan
        .items
        .iter()
        .flat_map(move |item| {
            let (block_values, block_bytes) = model.tensors[item.tensor].block();
            let per_piece = (MAX_READ / block_bytes.max(1)).max(1) * block_values;
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
        let max_gap = model.shards[shard].source.read_through();
        let mut window = Window {
            shard,
            begin,
            end,
            pieces: vec![first],
        };
        while let Some((s, b, e)) = pieces.peek().map(&byte_range) {
            if s != shard || b < end || b - end > max_gap || e - begin > MAX_READ {
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
    let mut values: Vec<f32> = Vec::new();
    let mut started: Option<usize> = None;
    let selected_of = |tensor: usize| -> u64 {
        plan.items
            .iter()
            .find(|i| i.tensor == tensor)
            .map_or(0, |i| i.len())
    };
    let mut deliver = |window: &Window, raw: &[u8]| -> Result<bool> {
        summary.data.requests += 1;
        summary.data.bytes += window.end - window.begin;
        let source = &model.shards[window.shard].source;
        for piece in &window.pieces {
            let t = &model.tensors[piece.tensor];
            if started != Some(piece.tensor) {
                if let Some(prev) = started.take() {
                    if !sink.end_tensor(&model.tensors[prev])? {
                        return Ok(false);
                    }
                }
                started = Some(piece.tensor);
                summary.tensors += 1;
                // A resumed tensor still gets its begin_tensor call.
                if !sink.begin_tensor(t, selected_of(piece.tensor))? {
                    return Ok(false);
                }
            }
            let (begin, end) = t.byte_range(piece.start, piece.len);
            let bytes = &raw[(begin - window.begin) as usize..(end - window.begin) as usize];
            values.resize(piece.len as usize, 0.0);
            if !t.decode(bytes, piece.start, &mut values) {
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
    let windows = windows(model, plan, options.skip_values);
    let completed = read_in_order(model, windows, options.cancel, &mut deliver)?;
    if completed {
        if let Some(prev) = started.take() {
            summary.stopped = !sink.end_tensor(&model.tensors[prev])?;
        }
    } else {
        summary.stopped = true;
    }
    Ok(summary)
}

/// A byte range of one shard: `(shard, first byte, length)`.
pub type ByteRange = (usize, u64, u64);

/// Read whole byte ranges of `model`'s shards (small side data such as the buffers a reel keeps
/// verbatim, not values): neighbouring ranges of a shard merge into one read as in [`windows`]
/// (gaps up to the source's read-through, reads up to [`MAX_READ`] unless one range is longer),
/// and the merged reads go through the stream's own read pool ([`read_in_order`]), so a remote
/// model pays a round trip or two, not one per range. Returns each range's bytes in the order
/// given.
pub fn read_byte_ranges(model: &Model, ranges: &[ByteRange]) -> Result<Vec<Vec<u8>>> {
    let mut order: Vec<usize> = (0..ranges.len()).collect();
    order.sort_by_key(|&i| (ranges[i].0, ranges[i].1));
    // Each read as a window without value pieces, and the ranges it serves.
    let mut reads: Vec<(Window, Vec<usize>)> = Vec::new();
    for i in order {
        let (shard, offset, len) = ranges[i];
        let end = offset.checked_add(len).ok_or_else(|| {
            Error::tensor(
                model.shards[shard].source.name(),
                "(buffer)",
                format!("byte range {offset}+{len} overflows"),
            )
        })?;
        if let Some((last, members)) = reads.last_mut() {
            let reach = last
                .end
                .saturating_add(model.shards[shard].source.read_through());
            if last.shard == shard && offset <= reach && end.max(last.end) - last.begin <= MAX_READ
            {
                last.end = last.end.max(end);
                members.push(i);
                continue;
            }
        }
        let window = Window {
            shard,
            begin: offset,
            end,
            pieces: Vec::new(),
        };
        reads.push((window, vec![i]));
    }
    let mut out = vec![Vec::new(); ranges.len()];
    let mut next = 0;
    let windows: Vec<Window> = reads.iter().map(|(w, _)| w.clone()).collect();
    read_in_order(model, windows.into_iter(), None, &mut |window, raw| {
        // Delivered in the order given, one call per read.
        for &i in &reads[next].1 {
            let (_, offset, len) = ranges[i];
            let at = (offset - window.begin) as usize;
            out[i] = raw[at..at + len as usize].to_vec();
        }
        next += 1;
        Ok(true)
    })?;
    Ok(out)
}

/// Read every window and hand its bytes to `deliver` in order. Returns false when `deliver`
/// or the cancel flag stopped it.
fn read_in_order(
    model: &Model,
    windows: impl Iterator<Item = Window>,
    cancel: Option<&AtomicBool>,
    deliver: &mut dyn FnMut(&Window, &[u8]) -> Result<bool>,
) -> Result<bool> {
    let cancelled = || cancel.is_some_and(|c| c.load(Ordering::Relaxed));
    let workers = model
        .shards
        .iter()
        .map(|s| s.source.concurrency())
        .max()
        .unwrap_or(1);
    if workers <= 1 {
        let mut raw = Vec::new();
        for window in windows {
            if cancelled() {
                return Ok(false);
            }
            raw.resize((window.end - window.begin) as usize, 0);
            model.shards[window.shard]
                .source
                .read_at(window.begin, &mut raw)?;
            if !deliver(&window, &raw)? {
                return Ok(false);
            }
        }
        return Ok(true);
    }
    /// A read for a worker: shard, first byte, end, and where to send the bytes.
    type Job = (usize, u64, u64, mpsc::Sender<Result<Vec<u8>>>);
    let (jobs, queue) = mpsc::channel::<Job>();
    let queue = Mutex::new(queue);
    // Set when the stream ends early, so that queued reads are dropped rather than made.
    let abandoned = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let job = queue.lock().expect("read queue").recv();
                let Ok((shard, begin, end, reply)) = job else {
                    break;
                };
                if abandoned.load(Ordering::Relaxed) {
                    continue;
                }
                let mut raw = vec![0; (end - begin) as usize];
                let read = model.shards[shard].source.read_at(begin, &mut raw);
                let _ = reply.send(read.map(|()| raw));
            });
        }
        // `jobs` moves in and is dropped on return, which ends the workers.
        let result = (move || {
            let mut windows = windows.peekable();
            let mut pending: VecDeque<(Window, mpsc::Receiver<Result<Vec<u8>>>)> = VecDeque::new();
            let mut pending_bytes = 0;
            loop {
                while pending.len() < workers {
                    let Some(size) = windows.peek().map(|w| w.end - w.begin) else {
                        break;
                    };
                    if !pending.is_empty() && pending_bytes + size > READ_AHEAD_BYTES {
                        break;
                    }
                    let window = windows.next().expect("peeked");
                    let (reply, answer) = mpsc::channel();
                    jobs.send((window.shard, window.begin, window.end, reply))
                        .expect("read workers run until the queue closes");
                    pending_bytes += size;
                    pending.push_back((window, answer));
                }
                let Some((window, answer)) = pending.pop_front() else {
                    return Ok(true);
                };
                if cancelled() {
                    return Ok(false);
                }
                let raw = answer.recv().map_err(|_| {
                    Error::http(
                        model.shards[window.shard].source.name(),
                        "a read thread stopped without an answer",
                    )
                })??;
                pending_bytes -= window.end - window.begin;
                if !deliver(&window, &raw)? {
                    return Ok(false);
                }
            }
        })();
        abandoned.store(true, Ordering::Relaxed);
        result
    })
}
