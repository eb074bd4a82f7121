//! Frames larger than one tile, encoded tile by tile as their values arrive.
//!
//! A frame wider than [`TILE_SIDE`] is at least `2 * TILE_SIDE` × `TILE_SIDE` (sides are powers
//! of two and `W <= 2H`), so each of its Hilbert squares has a side of at least [`TILE_SIDE`].
//! The curve fills every aligned quad-tree block of a square before it leaves it, so each
//! aligned `TILE_SIDE`² block is one contiguous run of [`TILE_VALUES`] curve positions: tile `k`
//! holds positions `k * TILE_VALUES..(k + 1) * TILE_VALUES`. Tiles in curve order are thus
//! complete as soon as their values have arrived, and [`TiledFrameEncoder`] holds one block of
//! values and samples at a time, never the frame.
//!
//! Lossy modes quantize each segment's piece of a [`QUANT_BLOCK`] (32 tiles) with that piece's
//! own range: a segment crossing a block boundary gets one range per block (which is also more
//! precise than one range for the whole segment), and each tile's record lists its pieces with
//! their block's parameters. Statistics are summed tile by tile (count, min, max,
//! and mean and variance merged with Chan et al.'s pairwise update); the pyramid and the
//! histogram are derived data, computed from decoded frames when asked for, so they are not
//! summed here.

use super::layout::{FrameLayout, RasterOffsets};
use super::quantize::{self, SampleOrder, SegmentQuant, SegmentSpec, SourceDtype};
use super::{check_efficiency, FrameMeta, FrameOptions, FrameStats, PixelMode, Pyramid};
use crate::error::{Error, Result};

/// Side of a tile: frames wider than this are stored tile by tile.
pub const TILE_SIDE: u32 = 128;

/// Curve positions (and pixels) of one tile.
pub const TILE_VALUES: u64 = (TILE_SIDE as u64) * (TILE_SIDE as u64);

/// True when `layout` is stored as several tiles (it is wider than [`TILE_SIDE`]; a frame
/// taller than a tile is wider still).
pub fn is_tiled(layout: &FrameLayout) -> bool {
    layout.width > TILE_SIDE
}

/// Tiles of a tiled `layout`, in curve order (1 for a frame that is not tiled).
pub fn tile_count(layout: &FrameLayout) -> u32 {
    if is_tiled(layout) {
        (layout.area() / TILE_VALUES) as u32
    } else {
        1
    }
}

/// Top-left pixel of tile `tile` of a tiled `layout`.
pub fn tile_origin(layout: &FrameLayout, tile: u32) -> (u32, u32) {
    let (x, y) = layout.xy(u64::from(tile) * TILE_VALUES);
    (x & !(TILE_SIDE - 1), y & !(TILE_SIDE - 1))
}

/// One encoded tile.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedTile {
    /// Its place in the frame's curve order.
    pub index: u32,
    /// Its top-left pixel in the frame.
    pub x: u32,
    /// Likewise.
    pub y: u32,
    /// Row-major `TILE_SIDE` × `TILE_SIDE` planes (as many as the encoder was given).
    pub planes: Vec<Vec<u16>>,
    /// The pieces of segments it holds, in curve order, with their own quantization; curve
    /// positions are the frame's. Empty for a tile of padding only.
    pub pieces: Vec<SegmentQuant>,
}

/// Count, mean and sum of squared deviations of finite values.
#[derive(Debug, Clone, Copy, Default)]
struct Moments {
    count: u64,
    mean: f64,
    m2: f64,
}

impl Moments {
    /// The moments of `values`' finite values, in two passes.
    fn of(values: &[f32]) -> Moments {
        let (mut sum, mut count) = (0f64, 0u64);
        for &v in values {
            if v.is_finite() {
                sum += f64::from(v);
                count += 1;
            }
        }
        if count == 0 {
            return Moments::default();
        }
        let mean = sum / count as f64;
        let m2 = values
            .iter()
            .filter(|v| v.is_finite())
            .map(|&v| (f64::from(v) - mean) * (f64::from(v) - mean))
            .sum();
        Moments { count, mean, m2 }
    }

    /// Both sets together (Chan, Golub and LeVeque's pairwise update).
    fn merge(self, other: Moments) -> Moments {
        if other.count == 0 {
            return self;
        }
        if self.count == 0 {
            return other;
        }
        let count = self.count + other.count;
        let delta = other.mean - self.mean;
        let mean = self.mean + delta * other.count as f64 / count as f64;
        let m2 = self.m2
            + other.m2
            + delta * delta * (self.count as f64 * other.count as f64 / count as f64);
        Moments { count, mean, m2 }
    }
}

/// Values quantized together: each segment's piece of a block of this many curve positions
/// (32 tiles) gets its own range. Ranges over a few tiles only would cost u16 reels their
/// compression (FFV1 stores the high byte of levels spread over their range as noise); a block
/// bounds what is held to 2 MiB of values and 1 MiB of samples per plane.
pub const QUANT_BLOCK: u64 = 32 * TILE_VALUES;

/// Encodes one frame larger than a tile from values pushed in curve order.
///
/// [`TiledFrameEncoder::push`] takes values until the current quantization block
/// ([`QUANT_BLOCK`] values) is full; its tiles are then ready, one by one, from
/// [`TiledFrameEncoder::take_ready`], which must give them all before more is pushed.
/// [`TiledFrameEncoder::close`] ends the values (the last tile is padded with zeros; take the
/// tiles it makes ready), then [`TiledFrameEncoder::next_padding`] gives the tiles of padding
/// only, and [`TiledFrameEncoder::finish`] the frame's metadata.
pub struct TiledFrameEncoder {
    layout: FrameLayout,
    mode: PixelMode,
    /// Planes of every tile.
    planes: u32,
    /// Values the frame holds.
    count: u64,
    tiles: u32,
    /// Tiles produced so far.
    produced: u32,
    /// Values pushed so far.
    pushed: u64,
    /// The current block's values, and where each of its pieces starts (with its dtype).
    values: Vec<f32>,
    starts: Vec<(usize, SourceDtype)>,
    /// The encoded block: its samples in curve order, its pieces, and its tiles not yet
    /// taken (`tile_end` is one past its last tile).
    curves: [Vec<u16>; 2],
    block_pieces: Vec<SegmentQuant>,
    block_base: u64,
    tile_end: u32,
    offsets: RasterOffsets,
    closed: bool,
    /// A piece held a source that is not 16-bit.
    wide: bool,
    nonfinite: u64,
    range: Option<(f32, f32)>,
    moments: Moments,
    /// Most samples any one buffer held.
    largest: usize,
}

impl TiledFrameEncoder {
    /// An encoder for a frame of `count` values whose tiles have `planes` planes (1, or 2
    /// for lossless frames of a reel holding 32-bit sources). The frame must be larger than a
    /// tile (see [`is_tiled`]).
    pub fn new(count: u64, planes: u32, options: &FrameOptions) -> Result<TiledFrameEncoder> {
        options.validate()?;
        let layout = FrameLayout::for_count(count, options.max_values)?;
        check_efficiency(count, &layout, options.min_efficiency)?;
        if !is_tiled(&layout) {
            return Err(Error::Frame(format!(
                "frame {}x{} fits one tile; encode it whole",
                layout.width, layout.height
            )));
        }
        if !(1..=2).contains(&planes) {
            return Err(Error::invalid("planes", planes, "1 or 2"));
        }
        let tile = FrameLayout {
            width: TILE_SIDE,
            height: TILE_SIDE,
        };
        Ok(TiledFrameEncoder {
            layout,
            mode: options.mode,
            planes,
            count,
            tiles: tile_count(&layout),
            produced: 0,
            pushed: 0,
            values: Vec::new(),
            starts: Vec::new(),
            curves: [Vec::new(), Vec::new()],
            block_pieces: Vec::new(),
            block_base: 0,
            tile_end: 0,
            offsets: tile.raster_offsets(),
            closed: false,
            wide: false,
            nonfinite: 0,
            range: None,
            moments: Moments::default(),
            largest: 0,
        })
    }

    /// The frame's layout.
    pub fn layout(&self) -> FrameLayout {
        self.layout
    }

    /// Tiles of the frame.
    pub fn tiles(&self) -> u32 {
        self.tiles
    }

    /// Most samples (values or plane samples) that any one buffer of this encoder has held:
    /// at most [`QUANT_BLOCK`], whatever the frame's size.
    pub fn largest_buffer(&self) -> usize {
        self.largest
    }

    /// Takes values of the frame, in curve order, up to the end of the current block; returns
    /// how many it took. `new_segment` says that `values` start a segment (another tensor or
    /// a jump in it) of `dtype`; otherwise they continue the previous one.
    pub fn push(&mut self, values: &[f32], dtype: SourceDtype, new_segment: bool) -> Result<usize> {
        if self.produced < self.tile_end || self.closed {
            return Err(Error::Frame(
                "a tiled frame was pushed values while tiles waited or after it closed".into(),
            ));
        }
        let room = (QUANT_BLOCK as usize - self.values.len())
            .min((self.count - self.pushed) as usize)
            .min(values.len());
        if room == 0 {
            return if values.is_empty() {
                Ok(0)
            } else {
                Err(Error::Frame(format!(
                    "more values than the frame's {}",
                    self.count
                )))
            };
        }
        if self.values.capacity() == 0 {
            self.values
                .reserve_exact(QUANT_BLOCK.min(self.count) as usize);
        }
        if new_segment || self.values.is_empty() {
            self.starts.push((self.values.len(), dtype));
        }
        self.values.extend_from_slice(&values[..room]);
        self.largest = self.largest.max(self.values.capacity());
        self.pushed += room as u64;
        if self.values.len() as u64 == QUANT_BLOCK {
            self.encode_block()?;
        }
        Ok(room)
    }

    /// The next tile of the last encoded block, if one is waiting.
    pub fn take_ready(&mut self) -> Option<EncodedTile> {
        if self.produced >= self.tile_end {
            return None;
        }
        let index = self.produced;
        self.produced += 1;
        let tile_start = u64::from(index) * TILE_VALUES;
        let n = self.curves[0].len() as u64;
        let from = (tile_start - self.block_base).min(n) as usize;
        let to = (tile_start + TILE_VALUES - self.block_base).min(n) as usize;
        let (x, y) = tile_origin(&self.layout, index);
        let mut planes = Vec::with_capacity(self.planes as usize);
        for curve in self.curves.iter().take(self.planes as usize) {
            let mut raster = vec![0u16; TILE_VALUES as usize];
            scatter_tile(
                &self.layout,
                &self.offsets,
                index,
                &curve[from..to],
                &mut raster,
            );
            planes.push(raster);
        }
        // The block's pieces cut at the tile's bounds.
        let (lo, hi) = (tile_start, tile_start + (to - from) as u64);
        let pieces = self
            .block_pieces
            .iter()
            .filter_map(|p| {
                let start = p.curve_start.max(lo);
                let end = (p.curve_start + p.len).min(hi);
                (start < end).then_some(SegmentQuant {
                    curve_start: start,
                    len: end - start,
                    ..*p
                })
            })
            .collect();
        Some(EncodedTile {
            index,
            x,
            y,
            planes,
            pieces,
        })
    }

    /// Ends the values: the frame must have received all of them. The tiles of the block
    /// they end in are then ready.
    pub fn close(&mut self) -> Result<()> {
        if self.pushed != self.count {
            return Err(Error::Frame(format!(
                "tiled frame closed after {} of its {} values",
                self.pushed, self.count
            )));
        }
        if self.produced < self.tile_end {
            return Err(Error::Frame("tiles were not taken before close".into()));
        }
        if !self.values.is_empty() {
            self.encode_block()?;
        }
        self.closed = true;
        Ok(())
    }

    /// After [`TiledFrameEncoder::close`] and the tiles it made ready: the next tile holding
    /// padding only, until every tile of the frame has been produced.
    pub fn next_padding(&mut self) -> Option<EncodedTile> {
        if !self.closed || self.produced < self.tile_end || self.produced >= self.tiles {
            return None;
        }
        let index = self.produced;
        self.produced += 1;
        let (x, y) = tile_origin(&self.layout, index);
        Some(EncodedTile {
            index,
            x,
            y,
            planes: vec![vec![0u16; TILE_VALUES as usize]; self.planes as usize],
            pieces: Vec::new(),
        })
    }

    /// The frame's metadata once every tile is produced. Its `segments` are empty: each
    /// tile's pieces travel with the tile.
    pub fn finish(self) -> Result<FrameMeta> {
        if !self.closed || self.produced != self.tiles {
            return Err(Error::Frame(format!(
                "tiled frame finished after {} of its {} tiles",
                self.produced, self.tiles
            )));
        }
        let (min, max) = self.range.unwrap_or((0.0, 0.0));
        let m = self.moments;
        let (mean, std) = if m.count == 0 {
            (0.0, 0.0)
        } else {
            (m.mean, (m.m2 / m.count as f64).max(0.0).sqrt())
        };
        let planes = if self.mode == PixelMode::Lossless && self.wide {
            2
        } else {
            1
        };
        Ok(FrameMeta {
            layout: self.layout,
            mode: self.mode,
            count: self.count,
            planes,
            segments: Vec::new(),
            sample_order: SampleOrder::Rotated,
            pyramid: Pyramid::default(),
            stats: FrameStats {
                count: self.count,
                nonfinite: self.nonfinite,
                min,
                max,
                mean: mean as f32,
                std: std as f32,
                histogram: Vec::new(),
            },
        })
    }

    /// Quantize and sum the current block's values into samples in curve order; its tiles
    /// become ready.
    fn encode_block(&mut self) -> Result<()> {
        let base = self.pushed - self.values.len() as u64;
        let n = self.values.len();
        let two = self.planes == 2;
        let [high, low] = &mut self.curves;
        high.clear();
        high.resize(n, 0);
        if two {
            low.clear();
            low.resize(n, 0);
        }
        self.largest = self.largest.max(high.capacity());
        self.block_pieces.clear();
        for (i, &(start, dtype)) in self.starts.iter().enumerate() {
            let end = self.starts.get(i + 1).map_or(n, |s| s.0);
            let values = &self.values[start..end];
            let scan = quantize::scan(values);
            if let Some((lo, hi)) = scan.range {
                self.range = Some(match self.range {
                    Some((a, b)) => (a.min(lo), b.max(hi)),
                    None => (lo, hi),
                });
            }
            self.nonfinite += scan.nonfinite;
            self.wide |= !dtype.is_16bit();
            let spec = SegmentSpec {
                curve_start: base + start as u64,
                len: (end - start) as u64,
                dtype,
            };
            let quant = SegmentQuant::fit(&spec, self.mode, &scan);
            match self.mode.levels() {
                Some(levels) => quantize::quantize(values, &quant, levels, &mut high[start..end]),
                None => {
                    let low = two.then(|| &mut low[start..end]);
                    quantize::encode_lossless(
                        values,
                        dtype,
                        spec.curve_start,
                        &mut high[start..end],
                        low,
                    )?;
                }
            }
            self.moments = self.moments.merge(Moments::of(values));
            self.block_pieces.push(quant);
        }
        self.block_base = base;
        self.tile_end = (base + n as u64).div_ceil(TILE_VALUES) as u32;
        self.values.clear();
        self.starts.clear();
        Ok(())
    }
}

/// Writes `curve` (the first values of tile `tile`, in curve order) to their pixels of the
/// tile's row-major `raster`.
fn scatter_tile(
    layout: &FrameLayout,
    offsets: &RasterOffsets,
    tile: u32,
    curve: &[u16],
    raster: &mut [u16],
) {
    let base = u64::from(tile) * TILE_VALUES;
    let (tx, ty) = tile_origin(layout, tile);
    let side = TILE_SIDE as usize;
    let mut values = curve.iter();
    layout.for_each_block_in(base, base + curve.len() as u64, |_, len, ox, oy, state| {
        let at = (oy - ty) as usize * side + (ox - tx) as usize;
        for (value, off) in values.by_ref().take(len).zip(offsets.row(state)) {
            if let Some(slot) = raster.get_mut(at + off) {
                *slot = *value;
            }
        }
    });
}

/// Decodes tile `tile` of a tiled frame of `layout` (its row-major planes, `TILE_SIDE`²
/// samples each) into the values of its `pieces`, in curve order; `pieces` must tile the
/// tile's first values (the frame's curve positions `tile * TILE_VALUES..`) in order.
pub fn decode_tile(
    layout: &FrameLayout,
    tile: u32,
    mode: PixelMode,
    order: SampleOrder,
    planes: &[&[u16]],
    pieces: &[SegmentQuant],
    out: &mut Vec<f32>,
) -> Result<()> {
    layout.validate()?;
    if !is_tiled(layout) || tile >= tile_count(layout) {
        return Err(Error::Frame(format!(
            "tile {tile} of a {}x{} frame (expected 0..{} of a frame wider than {TILE_SIDE})",
            layout.width,
            layout.height,
            tile_count(layout)
        )));
    }
    let base = u64::from(tile) * TILE_VALUES;
    let mut end = base;
    for (i, p) in pieces.iter().enumerate() {
        let next = p.curve_start.checked_add(p.len);
        if p.curve_start != end || p.len == 0 || next.is_none_or(|e| e > base + TILE_VALUES) {
            return Err(Error::Frame(format!(
                "tile {tile}: piece {i} ({} values at curve position {}) does not continue at {end} inside the tile",
                p.len, p.curve_start
            )));
        }
        end = p.curve_start + p.len;
    }
    let n = (end - base) as usize;
    if planes.is_empty() || planes.iter().any(|p| p.len() as u64 != TILE_VALUES) {
        return Err(Error::Frame(format!(
            "tile {tile}: planes must be {TILE_SIDE}x{TILE_SIDE}"
        )));
    }
    let offsets = FrameLayout {
        width: TILE_SIDE,
        height: TILE_SIDE,
    }
    .raster_offsets();
    let (tx, ty) = tile_origin(layout, tile);
    let side = TILE_SIDE as usize;
    let mut curves = Vec::with_capacity(planes.len());
    for raster in planes {
        let mut curve = Vec::with_capacity(n);
        layout.for_each_block_in(base, end, |_, len, ox, oy, state| {
            let at = (oy - ty) as usize * side + (ox - tx) as usize;
            curve.extend(
                offsets
                    .row(state)
                    .iter()
                    .take(len)
                    .map(|off| raster.get(at + off).copied().unwrap_or(0)),
            );
        });
        curves.push(curve);
    }
    out.clear();
    out.resize(n, 0.0);
    for p in pieces {
        let range = (p.curve_start - base) as usize..(p.curve_start - base + p.len) as usize;
        let target = &mut out[range.clone()];
        let high = &curves[0][range.clone()];
        match mode.levels() {
            Some(levels) => quantize::dequantize(high, p, levels, target),
            None => {
                let low = curves.get(1).map(|c| &c[range.clone()]);
                quantize::decode_lossless(high, low, p.dtype, order, target)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layouts() -> Vec<FrameLayout> {
        [
            (256, 128),
            (256, 256),
            (512, 256),
            (1024, 1024),
            (2048, 1024),
        ]
        .into_iter()
        .map(|(width, height)| FrameLayout { width, height })
        .collect()
    }

    #[test]
    fn each_tile_is_one_contiguous_curve_run() {
        for layout in layouts() {
            layout.for_each_cell(layout.area(), |d, x, y| {
                let tile = (d / TILE_VALUES) as u32;
                let (tx, ty) = tile_origin(&layout, tile);
                assert!(
                    (tx..tx + TILE_SIDE).contains(&x) && (ty..ty + TILE_SIDE).contains(&y),
                    "{layout:?}: position {d} at ({x},{y}) is outside tile {tile} at ({tx},{ty})"
                );
            });
        }
    }

    #[test]
    fn tiled_layouts_start_above_one_tile() {
        let small = FrameLayout::for_count(TILE_VALUES, u64::MAX).unwrap();
        assert!(!is_tiled(&small));
        assert_eq!(tile_count(&small), 1);
        let big = FrameLayout::for_count(TILE_VALUES + 1, u64::MAX).unwrap();
        assert_eq!((big.width, big.height), (2 * TILE_SIDE, TILE_SIDE));
        assert_eq!(tile_count(&big), 2);
        assert_eq!(tile_origin(&big, 1), (TILE_SIDE, 0));
    }

    /// Deterministic values of a few magnitudes, with a NaN and an infinity now and then.
    fn value(i: u64) -> f32 {
        let t = (i as u32).wrapping_mul(2_654_435_761);
        let v = (t >> 8) as f32 / (1 << 24) as f32 - 0.5;
        match i % 100_003 {
            7 => f32::NAN,
            11 => f32::INFINITY,
            _ => v * (1 + (i / 70_000) % 5) as f32,
        }
    }

    /// Encode `count` values in segments of `segment` values alternating F32 and BF16 (BF16
    /// values rounded to bf16), pushed in pieces of `piece`; returns the tiles and the meta.
    fn encode(
        count: u64,
        segment: u64,
        piece: usize,
        mode: PixelMode,
    ) -> (Vec<EncodedTile>, FrameMeta, Vec<f32>, usize) {
        let options = FrameOptions {
            mode,
            max_values: 4096 * 4096,
            ..FrameOptions::default()
        };
        let planes = if mode == PixelMode::Lossless { 2 } else { 1 };
        let mut enc = TiledFrameEncoder::new(count, planes, &options).unwrap();
        let dtype_of = |i: u64| {
            if (i / segment).is_multiple_of(2) {
                SourceDtype::F32
            } else {
                SourceDtype::BF16
            }
        };
        let values: Vec<f32> = (0..count)
            .map(|i| match dtype_of(i) {
                SourceDtype::BF16 => half::bf16::from_f32(value(i)).to_f32(),
                _ => value(i),
            })
            .collect();
        let mut tiles = Vec::new();
        let mut at = 0usize;
        while at < values.len() {
            let dtype = dtype_of(at as u64);
            let seg_end = ((at as u64 / segment + 1) * segment).min(count) as usize;
            let end = (at + piece).min(seg_end);
            let mut slice = &values[at..end];
            let mut first = (at as u64).is_multiple_of(segment);
            while !slice.is_empty() {
                let took = enc.push(slice, dtype, first).unwrap();
                first = false;
                slice = &slice[took..];
                tiles.extend(std::iter::from_fn(|| enc.take_ready()));
            }
            at = end;
        }
        enc.close().unwrap();
        tiles.extend(std::iter::from_fn(|| enc.take_ready()));
        tiles.extend(std::iter::from_fn(|| enc.next_padding()));
        let largest = enc.largest_buffer();
        (tiles, enc.finish().unwrap(), values, largest)
    }

    #[test]
    fn a_4096_frame_holds_one_block_at_most() {
        let count = 4096 * 4096;
        let (tiles, meta, _, largest) = encode(count, 3_000_001, 1 << 20, PixelMode::U16);
        assert_eq!(tiles.len() as u64, count / TILE_VALUES);
        assert_eq!(largest, QUANT_BLOCK as usize, "largest buffer");
        assert!((largest as u64) * 32 <= count);
        assert_eq!(meta.count, count);
        assert_eq!(meta.stats.nonfinite, 2 * 168);
        for (k, tile) in tiles.iter().enumerate() {
            assert_eq!(tile.index as usize, k);
            assert!(tile.planes.iter().all(|p| p.len() as u64 == TILE_VALUES));
        }
    }

    /// Decode every tile back into the frame's values, in curve order.
    fn decode_all(tiles: &[EncodedTile], meta: &FrameMeta) -> Vec<f32> {
        let mut out = Vec::new();
        let mut values = Vec::new();
        for tile in tiles {
            let planes: Vec<&[u16]> = tile.planes.iter().map(Vec::as_slice).collect();
            decode_tile(
                &meta.layout,
                tile.index,
                meta.mode,
                meta.sample_order,
                &planes,
                &tile.pieces,
                &mut values,
            )
            .unwrap();
            out.extend_from_slice(&values);
        }
        out
    }

    #[test]
    fn lossless_tiles_give_back_every_bit() {
        // Not a multiple of a tile or a block; segments cross tiles and blocks.
        let count = 3 * QUANT_BLOCK + 5 * TILE_VALUES + 1234;
        let (tiles, meta, values, _) = encode(count, 100_003, 77_777, PixelMode::Lossless);
        assert_eq!(meta.planes, 2);
        let back = decode_all(&tiles, &meta);
        assert_eq!(back.len(), values.len());
        for (i, (a, b)) in back.iter().zip(&values).enumerate() {
            assert_eq!(a.to_bits(), b.to_bits(), "value {i}");
        }
        // Padding tiles are zeros and hold no piece.
        let last_data = (count - 1) / TILE_VALUES;
        for tile in &tiles[last_data as usize + 1..] {
            assert!(tile.pieces.is_empty());
            assert!(tile.planes.iter().all(|p| p.iter().all(|&v| v == 0)));
        }
    }

    #[test]
    fn u16_tiles_stay_within_each_pieces_bound() {
        let count = QUANT_BLOCK + 3 * TILE_VALUES + 17;
        let (tiles, meta, values, _) = encode(count, 200_001, 50_000, PixelMode::U16);
        let back = decode_all(&tiles, &meta);
        for tile in &tiles {
            for p in &tile.pieces {
                let range = p.curve_start as usize..(p.curve_start + p.len) as usize;
                let bound = f64::from(p.scale) / 2.0 * 1.0001 + 1e-6;
                for i in range {
                    let (a, b) = (back[i], values[i]);
                    if b.is_finite() {
                        assert!(f64::from((a - b).abs()) <= bound, "value {i}: {a} vs {b}");
                    } else {
                        assert_eq!(a.is_nan(), b.is_nan(), "value {i}");
                    }
                }
            }
        }
        let finite: Vec<f64> = values
            .iter()
            .filter(|v| v.is_finite())
            .map(|&v| f64::from(v))
            .collect();
        let mean = finite.iter().sum::<f64>() / finite.len() as f64;
        assert!((f64::from(meta.stats.mean) - mean).abs() < 1e-6);
    }

    #[test]
    fn moments_merge_like_one_pass() {
        let values: Vec<f32> = (0..1000)
            .map(|i| ((i * 37) % 101) as f32 * 0.25 - 3.0)
            .collect();
        let whole = Moments::of(&values);
        let merged = values
            .chunks(77)
            .map(Moments::of)
            .fold(Moments::default(), Moments::merge);
        assert_eq!(merged.count, whole.count);
        assert!((merged.mean - whole.mean).abs() < 1e-12);
        assert!((merged.m2 - whole.m2).abs() < 1e-9 * whole.m2);
    }
}
