//! Frames: one chunk of parameter values laid out along a Hilbert curve as 16-bit planes.
//!
//! A chunk of `n` values (in curve order) becomes a [`Frame`]: the smallest square or 2:1
//! power-of-two [`FrameLayout`] that holds it, one or two row-major `u16` planes written in
//! the chosen [`PixelMode`], and a [`FrameMeta`] with everything needed to decode it plus a
//! mean [`Pyramid`] and [`FrameStats`]. The chunk is made of [`SegmentSpec`]s, contiguous
//! curve ranges from one tensor each; lossy modes quantize each segment with its own range.
//!
//! Encoding makes one range scan (each segment's finite min/max and NaN/±inf count fix its
//! quantization, see [`SegmentQuant::specials`]; the finite range also the histogram's bins),
//! then one pass that quantizes each piece and sums it into the
//! pyramid and statistics while it is in cache; the curve-ordered samples are then scattered
//! to raster order with one table lookup per pixel. Padding pixels (curve positions `>= n`)
//! are 0 in every plane.
//!
//! | file | contents |
//! |---|---|
//! | `hilbert.rs` | table-driven Hilbert curve on a square |
//! | `layout.rs` | [`FrameLayout`], efficiency check, curve walking, scatter/gather |
//! | `quantize.rs` | [`PixelMode`], segments, the per-mode sample transforms |
//! | `pyramid.rs` | [`Pyramid`] and [`FrameStats`] accumulated in curve order |
//! | `tiled.rs` | frames larger than one tile, encoded and decoded tile by tile ([`TiledFrameEncoder`]) |

mod hilbert;
mod layout;
mod pyramid;
mod quantize;
mod tiled;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub use layout::{
    check_efficiency, efficiency_message, FrameCuts, FrameLayout, DEFAULT_MAX_FRAME_VALUES,
};
pub use pyramid::{FrameStats, Pyramid, PyramidLevel, DEFAULT_PYRAMID_FINEST, HISTOGRAM_BINS};
pub use quantize::{PixelMode, SampleOrder, SegmentQuant, SegmentSpec, SourceDtype};
pub use tiled::{
    decode_tile, is_tiled, tile_count, tile_origin, EncodedTile, TiledFrameEncoder, QUANT_BLOCK,
    TILE_SIDE, TILE_VALUES,
};

use layout::RasterOffsets;
use pyramid::Accumulator;

/// Values quantized and summed per step, so that the second read of a piece hits the cache.
const PIECE: usize = 4096;

/// Settings of the frame stage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameOptions {
    /// How values become samples.
    pub mode: PixelMode,
    /// Most values per frame.
    pub max_values: u64,
    /// Smallest accepted share of the frame filled by values, in `0.0..=1.0`.
    pub min_efficiency: f64,
    /// Side of the finest pyramid blocks: a power of two.
    pub pyramid_finest: u32,
}

impl Default for FrameOptions {
    fn default() -> Self {
        FrameOptions {
            mode: PixelMode::U16,
            max_values: DEFAULT_MAX_FRAME_VALUES,
            min_efficiency: 0.5,
            pyramid_finest: DEFAULT_PYRAMID_FINEST,
        }
    }
}

impl FrameOptions {
    /// Checks the settings that do not depend on a chunk.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.min_efficiency) {
            return Err(Error::invalid(
                "--min-efficiency",
                self.min_efficiency,
                "0.0..=1.0",
            ));
        }
        if !self.pyramid_finest.is_power_of_two() {
            return Err(Error::invalid(
                "--pyramid-finest",
                self.pyramid_finest,
                "a power of two, 1..=2147483648",
            ));
        }
        // Below 1,024 values a frame is smaller than the pictures' overhead is worth (and a
        // cap of 3 turns MiniLM into 7.5 M frames); above 2^30 (32768 x 32768) nothing gains.
        if !(MIN_FRAME_CAP..=MAX_FRAME_CAP).contains(&self.max_values) {
            return Err(Error::invalid(
                "--max-frame-values",
                self.max_values,
                format!("{MIN_FRAME_CAP}..={MAX_FRAME_CAP}"),
            ));
        }
        Ok(())
    }
}

/// Smallest `--max-frame-values`.
pub const MIN_FRAME_CAP: u64 = 1024;

/// Largest `--max-frame-values`: a 32768 × 32768 frame.
pub const MAX_FRAME_CAP: u64 = 1 << 30;

/// Everything needed to decode a frame, plus its summaries.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct FrameMeta {
    /// Frame dimensions.
    pub layout: FrameLayout,
    /// How values became samples.
    pub mode: PixelMode,
    /// Values in the frame (curve positions `0..count`; the rest is padding).
    pub count: u64,
    /// Number of planes: 2 for lossless frames holding any 32-bit source, else 1.
    pub planes: u32,
    /// The segments tiling `0..count`, with their quantization parameters.
    pub segments: Vec<SegmentQuant>,
    /// How lossless samples hold their bit patterns; absent in version-1 reels, whose
    /// order this default names.
    #[serde(default = "SampleOrder::version_1")]
    pub sample_order: SampleOrder,
    /// Block means from the whole frame down to the finest blocks (left out of reel
    /// manifests, which keep only what decoding needs).
    #[serde(default, skip_serializing_if = "Pyramid::is_empty")]
    pub pyramid: Pyramid,
    /// Statistics of the values (likewise).
    #[serde(default, skip_serializing_if = "FrameStats::is_empty")]
    pub stats: FrameStats,
}

/// An encoded frame.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    /// Decoding parameters and summaries.
    pub meta: FrameMeta,
    /// Row-major planes of `width * height` samples each. In lossless frames with two planes,
    /// plane 0 holds the high 16 bits of 32-bit sources' samples (exponent first, see
    /// `quantize::sample32`) and plane 1 the low 16 bits; 16-bit sources put their sample in
    /// plane 0 and 0 in plane 1.
    pub planes: Vec<Vec<u16>>,
}

/// Encodes one chunk; see [`FrameEncoder::encode`].
pub fn encode_frame(
    values: &[f32],
    segments: &[SegmentSpec],
    options: &FrameOptions,
) -> Result<Frame> {
    FrameEncoder::new().encode(values, segments, options)
}

/// Decodes a frame's planes back to its values in curve order (`meta.count` of them).
/// Planes that do not match `meta` are an error.
pub fn decode_frame(meta: &FrameMeta, planes: &[Vec<u16>]) -> Result<Vec<f32>> {
    meta.layout.validate()?;
    let area = meta.layout.area();
    if meta.count == 0 || meta.count > area {
        return Err(Error::Frame(format!(
            "frame {}x{} claims {} values (expected 1..={area})",
            meta.layout.width, meta.layout.height, meta.count
        )));
    }
    check_tiling(
        meta.segments.iter().map(|s| (s.curve_start, s.len)),
        meta.count,
    )?;
    let expected = meta.mode.planes_for(meta.segments.iter().map(|s| &s.dtype));
    if meta.planes != expected || planes.len() != expected as usize {
        return Err(Error::Frame(format!(
            "{} frame needs {expected} planes, metadata says {} and {} were given",
            meta.mode,
            meta.planes,
            planes.len()
        )));
    }
    if let Some(bad) = planes.iter().find(|p| p.len() as u64 != area) {
        return Err(Error::Frame(format!(
            "plane of {} samples in a {}x{} frame (expected {area})",
            bad.len(),
            meta.layout.width,
            meta.layout.height
        )));
    }
    let count = usize::try_from(meta.count)
        .map_err(|_| Error::Frame(format!("frame of {} values is too large", meta.count)))?;
    let mut curves = Vec::with_capacity(planes.len());
    for plane in planes {
        let mut curve = vec![0u16; count];
        meta.layout.gather(plane, &mut curve)?;
        curves.push(curve);
    }
    let mut out = vec![0f32; count];
    for seg in &meta.segments {
        // Tiling was checked, so these ranges are within `0..count`.
        let range = seg.curve_start as usize..(seg.curve_start + seg.len) as usize;
        let high = &curves[0][range.clone()];
        let target = &mut out[range.clone()];
        match meta.mode.levels() {
            Some(levels) => quantize::dequantize(high, seg, levels, target),
            None => {
                let low = curves.get(1).map(|c| &c[range.clone()]);
                quantize::decode_lossless(high, low, seg.dtype, meta.sample_order, target)?;
            }
        }
    }
    Ok(out)
}

/// Checks that `(start, len)` ranges tile `0..n` in order, without gaps, overlaps or empty
/// ranges.
fn check_tiling(segments: impl Iterator<Item = (u64, u64)>, n: u64) -> Result<()> {
    let mut end = 0u64;
    for (i, (start, len)) in segments.enumerate() {
        if start != end {
            return Err(Error::Frame(format!(
                "segment {i} starts at curve position {start}, expected {end}: segments must tile the chunk"
            )));
        }
        if len == 0 {
            return Err(Error::Frame(format!(
                "segment {i} at curve position {start} is empty"
            )));
        }
        end = start.checked_add(len).filter(|&e| e <= n).ok_or_else(|| {
            Error::Frame(format!(
                "segment {i} ({len} values at curve position {start}) runs past the chunk of {n} values"
            ))
        })?;
    }
    if end != n {
        return Err(Error::Frame(format!(
            "segments cover {end} of the chunk's {n} values"
        )));
    }
    Ok(())
}

/// Encodes frames one after another, keeping scratch buffers and per-width tables between
/// calls so that the many small frames of a model cost few allocations.
#[derive(Default)]
pub struct FrameEncoder {
    offsets: Option<RasterOffsets>,
    curves: [Vec<u16>; 2],
    blocks: Vec<(f64, u64)>,
}

impl FrameEncoder {
    /// An encoder with empty buffers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Encodes `values` (in curve order) made of `segments`, which must tile
    /// `0..values.len()` in order.
    pub fn encode(
        &mut self,
        values: &[f32],
        segments: &[SegmentSpec],
        options: &FrameOptions,
    ) -> Result<Frame> {
        options.validate()?;
        let n = values.len() as u64;
        let layout = FrameLayout::for_count(n, options.max_values)?;
        check_efficiency(n, &layout, options.min_efficiency)?;
        check_tiling(segments.iter().map(|s| (s.curve_start, s.len)), n)?;
        let area = usize::try_from(layout.area())
            .map_err(|_| Error::Frame(format!("frame of {} pixels is too large", layout.area())))?;
        let mode = options.mode;
        let planes = mode.planes_for(segments.iter().map(|s| &s.dtype));

        // First read: each segment's finite range and NaN/±inf count fix its quantization, the
        // finite range also the histogram.
        let mut quants = Vec::with_capacity(segments.len());
        let mut frame_range: Option<(f32, f32)> = None;
        for spec in segments {
            let scan = quantize::scan(&values[span(spec)]);
            if let Some((lo, hi)) = scan.range {
                frame_range = Some(match frame_range {
                    Some((a, b)) => (a.min(lo), b.max(hi)),
                    None => (lo, hi),
                });
            }
            quants.push(SegmentQuant::fit(spec, mode, &scan));
        }

        // Second read: samples in curve order and the statistics, piece by piece.
        let blocks = std::mem::take(&mut self.blocks);
        let mut acc = Accumulator::new(&layout, frame_range, options.pyramid_finest, blocks);
        let [high, low] = &mut self.curves;
        high.resize(values.len(), 0);
        if planes == 2 {
            low.resize(values.len(), 0);
        }
        for quant in &quants {
            let seg = span_q(quant);
            let mut start = seg.start;
            while start < seg.end {
                let end = (start + PIECE).min(seg.end);
                let piece = &values[start..end];
                match mode.levels() {
                    Some(levels) => {
                        quantize::quantize(piece, quant, levels, &mut high[start..end]);
                    }
                    None => {
                        let low = (planes == 2).then(|| &mut low[start..end]);
                        quantize::encode_lossless(
                            piece,
                            quant.dtype,
                            start as u64,
                            &mut high[start..end],
                            low,
                        )?;
                    }
                }
                acc.push(piece);
                start = end;
            }
        }
        let (pyramid, stats, blocks) = acc.finish(&layout, options.pyramid_finest);
        self.blocks = blocks;

        let offsets = match self.offsets.take() {
            Some(o) if o.width() == layout.width => o,
            _ => layout.raster_offsets(),
        };
        let mut out = Vec::with_capacity(planes as usize);
        for curve in self.curves.iter().take(planes as usize) {
            let mut raster = vec![0u16; area];
            layout.scatter_with(&offsets, &curve[..values.len()], &mut raster)?;
            out.push(raster);
        }
        self.offsets = Some(offsets);

        Ok(Frame {
            meta: FrameMeta {
                layout,
                mode,
                count: n,
                planes,
                segments: quants,
                sample_order: SampleOrder::Rotated,
                pyramid,
                stats,
            },
            planes: out,
        })
    }
}

/// The value range of a segment whose tiling was checked.
fn span(spec: &SegmentSpec) -> std::ops::Range<usize> {
    spec.curve_start as usize..(spec.curve_start + spec.len) as usize
}

/// [`span`] for a stored segment.
fn span_q(quant: &SegmentQuant) -> std::ops::Range<usize> {
    quant.curve_start as usize..(quant.curve_start + quant.len) as usize
}

#[cfg(test)]
mod tests;
