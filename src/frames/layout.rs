//! Frame dimensions for a chunk and the one continuous Hilbert curve that covers the frame.
//!
//! A frame is a square (`W == H`) or a 2:1 rectangle (`W == 2H`) of power-of-two sides, the
//! smallest such area that holds the chunk. A 2:1 frame is two `H × H` Hilbert squares side by
//! side; the classic curve starts at `(0, 0)` and ends at `(H - 1, 0)`, so the second square's
//! first cell `(H, 0)` neighbours the first square's last cell and the curve stays continuous.
//! Curve positions at or beyond the chunk length are padding, so padding sits at the curve's
//! end.

use serde::{Deserialize, Serialize};

use super::hilbert::{self, BLOCK_CELLS, FORWARD, MAX_SIDE_BITS};
use crate::error::{Error, Result};

/// Default cap on the values of one frame: a 4096 × 4096 frame.
pub const DEFAULT_MAX_FRAME_VALUES: u64 = 4096 * 4096;

/// Width and height of a frame in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FrameLayout {
    /// Pixels per row: a power of two.
    pub width: u32,
    /// Rows: equal to `width` or to `width / 2`.
    pub height: u32,
}

impl FrameLayout {
    /// The smallest square or 2:1 power-of-two frame holding `n` values, for `1 <= n <=
    /// max_values`.
    pub fn for_count(n: u64, max_values: u64) -> Result<FrameLayout> {
        if n == 0 || n > max_values {
            return Err(Error::invalid(
                "chunk of",
                format!("{n} values"),
                format!("1..={max_values}"),
            ));
        }
        // Area 2^k with k = ceil(log2 n); an even k is a square, an odd k a 2:1 frame.
        let k = 64 - (n - 1).leading_zeros();
        if k > 2 * MAX_SIDE_BITS {
            return Err(Error::invalid(
                "chunk of",
                format!("{n} values"),
                format!("1..={}", 1u64 << (2 * MAX_SIDE_BITS)),
            ));
        }
        Ok(FrameLayout {
            width: 1 << k.div_ceil(2),
            height: 1 << (k / 2),
        })
    }

    /// Checks the shape rules, for layouts read back from metadata.
    pub fn validate(&self) -> Result<()> {
        let (w, h) = (self.width, self.height);
        let ok = w.is_power_of_two()
            && h.is_power_of_two()
            && (h == w || h.checked_mul(2) == Some(w))
            && h.trailing_zeros() <= MAX_SIDE_BITS;
        if ok {
            Ok(())
        } else {
            Err(Error::Frame(format!(
                "invalid frame layout {w}x{h} (expected power-of-two sides, width == height or 2 * height)"
            )))
        }
    }

    /// Pixels in the frame.
    pub fn area(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }

    /// Share of the frame's pixels that `n` values fill.
    pub fn efficiency(&self, n: u64) -> f64 {
        n as f64 / self.area().max(1) as f64
    }

    /// Exponent `m` of the Hilbert squares' side `2^m` (the height).
    fn square_bits(&self) -> u32 {
        self.height.max(1).trailing_zeros().min(MAX_SIDE_BITS)
    }

    /// Cell `(x, y)` at curve position `d`. Positions beyond the area wrap (only the bits
    /// that address the frame are used), so no input panics.
    #[inline]
    pub fn xy(&self, d: u64) -> (u32, u32) {
        let m = self.square_bits();
        let cells = 1u64 << (2 * m);
        let square = if self.width > self.height {
            (d >> (2 * m)) & 1
        } else {
            0
        };
        let (x, y) = hilbert::d2xy(m, d & (cells - 1));
        (x | ((square as u32) << m), y)
    }

    /// Curve position of cell `(x, y)`; the inverse of [`FrameLayout::xy`]. Coordinates beyond
    /// the frame wrap like positions do in `xy`.
    #[inline]
    pub fn index(&self, x: u32, y: u32) -> u64 {
        let m = self.square_bits();
        let side_mask = ((1u64 << m) - 1) as u32;
        let square = if self.width > self.height {
            u64::from((x >> m) & 1)
        } else {
            0
        };
        hilbert::xy2d(m, x & side_mask, y & side_mask) | (square << (2 * m))
    }

    /// Calls `f(d, x, y)` for the curve positions `d = 0..n` in order (`n` is capped at the
    /// area). Much faster than calling [`FrameLayout::xy`] per position: one table lookup per
    /// cell plus one descent per 256 cells.
    pub fn for_each_cell(&self, n: u64, mut f: impl FnMut(u64, u32, u32)) {
        self.for_each_block(n, |start, len, ox, oy, state| {
            let table = &FORWARD[usize::from(state & 7)];
            for (i, entry) in table.iter().take(len).enumerate() {
                let x = ox + u32::from(entry & 0xf);
                let y = oy + u32::from((entry >> 4) & 0xf);
                f(start + i as u64, x, y);
            }
        });
    }

    /// [`FrameLayout::for_each_cell`] for the curve positions `from..to`; `from` must be a
    /// multiple of 256 (or of the square's area when it is smaller), as tile starts are.
    pub fn for_each_cell_in(&self, from: u64, to: u64, mut f: impl FnMut(u64, u32, u32)) {
        self.for_each_block_in(from, to, |start, len, ox, oy, state| {
            let table = &FORWARD[usize::from(state & 7)];
            for (i, entry) in table.iter().take(len).enumerate() {
                let x = ox + u32::from(entry & 0xf);
                let y = oy + u32::from((entry >> 4) & 0xf);
                f(start + i as u64, x, y);
            }
        });
    }

    /// Walks the curve `0..n` in table blocks: `f(start, len, origin_x, origin_y, state)`,
    /// where the cells of the block are `FORWARD[state][0..len]` offset by the origin.
    pub(crate) fn for_each_block(&self, n: u64, f: impl FnMut(u64, usize, u32, u32, u8)) {
        self.for_each_block_in(0, n, f);
    }

    /// [`FrameLayout::for_each_block`] for the curve positions `from..n`; `from` must be a
    /// multiple of the table block (256 cells, or the whole square when it is smaller), as
    /// tile starts are.
    pub(crate) fn for_each_block_in(
        &self,
        from: u64,
        n: u64,
        mut f: impl FnMut(u64, usize, u32, u32, u8),
    ) {
        let m = self.square_bits();
        let n = n.min(self.area());
        let cells_per_square = 1u64 << (2 * m);
        let block = (BLOCK_CELLS as u64).min(cells_per_square);
        let outer = hilbert::steps(m).saturating_sub(1);
        let mut start = from;
        while start < n {
            let len = block.min(n - start);
            let square = ((start >> (2 * m)) & 1) as u32;
            let (ox, oy, state) = hilbert::descend(m, start & (cells_per_square - 1), outer);
            f(start, len as usize, ox | (square << m), oy, state);
            start += block;
        }
    }

    /// Row-major offsets of each table cell for each state, for this frame's width.
    pub(crate) fn raster_offsets(&self) -> RasterOffsets {
        let width = self.width as usize;
        let mut offsets = Box::new([[0usize; BLOCK_CELLS]; 8]);
        for (row, table) in offsets.iter_mut().zip(FORWARD.iter()) {
            for (slot, entry) in row.iter_mut().zip(table.iter()) {
                let x = usize::from(entry & 0xf);
                let y = usize::from((entry >> 4) & 0xf);
                *slot = y * width + x;
            }
        }
        RasterOffsets {
            width: self.width,
            offsets,
        }
    }

    /// Writes `curve[d]` to its pixel of the row-major `raster` for every `d`. Pixels past
    /// `curve.len()` are left untouched (the caller zeroes them for padding).
    pub fn scatter(&self, curve: &[u16], raster: &mut [u16]) -> Result<()> {
        self.scatter_with(&self.raster_offsets(), curve, raster)
    }

    /// Reads the row-major `raster` back into curve order: `curve[d]` for `d < curve.len()`.
    pub fn gather(&self, raster: &[u16], curve: &mut [u16]) -> Result<()> {
        self.check_buffers(curve.len(), raster.len())?;
        let offsets = self.raster_offsets();
        let width = self.width as usize;
        let n = curve.len() as u64;
        let mut out = curve.iter_mut();
        self.for_each_block(n, |_, len, ox, oy, state| {
            let base = oy as usize * width + ox as usize;
            let row = &offsets.offsets[usize::from(state & 7)];
            for (slot, off) in out.by_ref().take(len).zip(row.iter()) {
                *slot = raster.get(base + off).copied().unwrap_or(0);
            }
        });
        Ok(())
    }

    /// [`FrameLayout::scatter`] with offsets computed once by the caller.
    pub(crate) fn scatter_with(
        &self,
        offsets: &RasterOffsets,
        curve: &[u16],
        raster: &mut [u16],
    ) -> Result<()> {
        self.check_buffers(curve.len(), raster.len())?;
        if offsets.width != self.width {
            return Err(Error::Frame(format!(
                "raster offsets for width {} used on width {}",
                offsets.width, self.width
            )));
        }
        let width = self.width as usize;
        let mut values = curve.iter();
        self.for_each_block(curve.len() as u64, |_, len, ox, oy, state| {
            let base = oy as usize * width + ox as usize;
            let row = &offsets.offsets[usize::from(state & 7)];
            for (value, off) in values.by_ref().take(len).zip(row.iter()) {
                if let Some(slot) = raster.get_mut(base + off) {
                    *slot = *value;
                }
            }
        });
        Ok(())
    }

    fn check_buffers(&self, curve: usize, raster: usize) -> Result<()> {
        self.validate()?;
        let area = self.area();
        if raster as u64 != area || curve as u64 > area {
            return Err(Error::Frame(format!(
                "frame {}x{} needs a raster of {area} pixels and at most {area} curve values, got {raster} and {curve}",
                self.width, self.height
            )));
        }
        Ok(())
    }
}

/// Row-major offsets of the 256 cells of a table block, per state, for one frame width.
pub(crate) struct RasterOffsets {
    width: u32,
    offsets: Box<[[usize; BLOCK_CELLS]; 8]>,
}

impl RasterOffsets {
    /// The frame width these offsets were computed for.
    pub(crate) fn width(&self) -> u32 {
        self.width
    }

    /// The offsets of the cells of a table block walked in `state`.
    pub(crate) fn row(&self, state: u8) -> &[usize; BLOCK_CELLS] {
        &self.offsets[usize::from(state & 7)]
    }
}

/// How an encode's values are cut into frames: every frame holds `per_frame` values (the chunk
/// size, or the frame cap in batch mode) until fewer remain.
///
/// What remains after the last full frame is one frame, padded up to a power-of-two area, as
/// the guide describes. In batch mode (`split_tail`) an encode that fills at least one whole
/// frame has its tail laid out instead as frames of descending power-of-two areas, each exactly
/// full, down to a last one of at most one tile: the padding is then under one tile rather than
/// up to half of a 4096 × 4096 frame (at MiniLM's 22.7 M values, 2.4 M padding values that
/// lossless mode stores as raw bytes). A batch encode that fits one frame stays one frame.
/// Lengths depend only on the totals and the start, so a resumed encode cuts the same frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameCuts {
    total: u64,
    per_frame: u64,
    split_tail: bool,
}

impl FrameCuts {
    /// Cuts for `total` values at `per_frame` values a frame (`per_frame >= 1`).
    pub fn new(total: u64, per_frame: u64, split_tail: bool) -> FrameCuts {
        FrameCuts {
            total,
            per_frame: per_frame.max(1),
            split_tail: split_tail && total > per_frame,
        }
    }

    /// Values of the frame that starts `start` values into the encode (0 at the end).
    pub fn len_at(&self, start: u64) -> u64 {
        let rest = self.total.saturating_sub(start);
        if rest >= self.per_frame || !self.split_tail || rest <= super::TILE_VALUES {
            return rest.min(self.per_frame);
        }
        // The largest power of two not above `rest`: a whole, exactly full, tiled frame.
        1u64 << (63 - rest.leading_zeros())
    }

    /// Frames holding `per_frame` values; the others (the tail) are smaller.
    pub fn full_frames(&self) -> u64 {
        self.total / self.per_frame
    }

    /// Frames in all.
    pub fn count(&self) -> u64 {
        let full = self.full_frames();
        let mut count = full;
        let mut start = full * self.per_frame;
        while start < self.total {
            start += self.len_at(start);
            count += 1;
        }
        count
    }

    /// The distinct frame lengths, largest first (at most ~25: the full length and the tail's).
    pub fn distinct_lens(&self) -> Vec<u64> {
        let full = self.full_frames();
        let mut lens = Vec::new();
        if full > 0 {
            lens.push(self.per_frame);
        }
        let mut start = full * self.per_frame;
        while start < self.total {
            let len = self.len_at(start);
            if lens.last() != Some(&len) {
                lens.push(len);
            }
            start += len;
        }
        lens
    }
}

/// The error text for a chunk of `n` values filling too little of a frame of `area` pixels.
pub fn efficiency_message(n: u64, area: u64, min: f64) -> String {
    let ratio = n as f64 / area.max(1) as f64;
    format!("Efficiency ratio {ratio:.2} is below minimum {min}")
}

/// Refuses a layout that `n` values fill less than `min` of (`min` in `0.0..=1.0`).
pub fn check_efficiency(n: u64, layout: &FrameLayout, min: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&min) {
        return Err(Error::invalid("--min-efficiency", min, "0.0..=1.0"));
    }
    if layout.efficiency(n) < min {
        return Err(Error::Frame(efficiency_message(n, layout.area(), min)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every chunk size and total the user guide mentions: (n, width, height, efficiency to
    /// two decimals).
    const GUIDE_SIZES: &[(u64, u32, u32, &str)] = &[
        (2000, 64, 32, "0.98"),
        (3000, 64, 64, "0.73"),
        (5000, 128, 64, "0.61"),
        (7500, 128, 64, "0.92"),
        (8000, 128, 64, "0.98"),
        (10000, 128, 128, "0.61"),
        (12000, 128, 128, "0.73"),
        (20000, 256, 128, "0.61"),
        (30000, 256, 128, "0.92"),
        (40000, 256, 256, "0.61"),
        (50000, 256, 256, "0.76"),
        (75000, 512, 256, "0.57"),
        (100000, 512, 256, "0.76"),
    ];

    /// (total, per frame, split tail) -> frame lengths in order.
    const CUTS: &[(&str, u64, u64, bool, &[u64])] = &[
        (
            "one frame stays one frame",
            13_366,
            1 << 24,
            true,
            &[13_366],
        ),
        (
            "chunks keep their last short chunk",
            20_000,
            8192,
            false,
            &[8192, 8192, 3616],
        ),
        (
            "batch tail without split",
            40_000,
            16_384,
            false,
            &[16_384, 16_384, 7232],
        ),
        (
            "batch tail at or under a tile stays one frame",
            40_000,
            16_384,
            true,
            &[16_384, 16_384, 7232],
        ),
        (
            "batch tail in descending exact frames",
            100_000,
            65_536,
            true,
            &[65_536, 32_768, 1696],
        ),
        ("exact multiple", 131_072, 65_536, true, &[65_536, 65_536]),
    ];

    #[test]
    fn frame_cuts_cover_the_total_in_the_expected_frames() {
        for &(name, total, per, split, want) in CUTS {
            let cuts = FrameCuts::new(total, per, split);
            let mut lens = Vec::new();
            let mut start = 0;
            while start < total {
                let len = cuts.len_at(start);
                assert!(len > 0, "{name}: empty frame at {start}");
                lens.push(len);
                start += len;
            }
            assert_eq!(lens, want, "{name}");
            assert_eq!(cuts.count(), want.len() as u64, "{name}");
            let mut distinct = want.to_vec();
            distinct.dedup();
            assert_eq!(cuts.distinct_lens(), distinct, "{name}");
        }
    }

    #[test]
    fn split_tails_pad_less_than_a_tile_and_fill_half() {
        // MiniLM's 22.7 M values at the default 4096 x 4096 cap.
        let total = 22_713_216;
        let cuts = FrameCuts::new(total, DEFAULT_MAX_FRAME_VALUES, true);
        let (mut start, mut padding) = (0, 0);
        while start < total {
            let len = cuts.len_at(start);
            let layout = FrameLayout::for_count(len, DEFAULT_MAX_FRAME_VALUES).unwrap();
            assert!(layout.efficiency(len) >= 0.5);
            padding += layout.area() - len;
            start += len;
        }
        assert!(padding < crate::frames::TILE_VALUES, "padding {padding}");
        assert!(cuts.count() < 30);
    }

    #[test]
    fn guide_sizes_have_expected_layouts() {
        for &(n, w, h, eff) in GUIDE_SIZES {
            let layout = FrameLayout::for_count(n, DEFAULT_MAX_FRAME_VALUES).unwrap();
            assert_eq!((layout.width, layout.height), (w, h), "n={n}");
            assert_eq!(format!("{:.2}", layout.efficiency(n)), eff, "n={n}");
            check_efficiency(n, &layout, 0.5).unwrap();
        }
    }

    #[test]
    fn small_layouts_and_efficiency_above_half() {
        let expect = [
            (1, 1, 1),
            (2, 2, 1),
            (3, 2, 2),
            (4, 2, 2),
            (5, 4, 2),
            (9, 4, 4),
        ];
        for (n, w, h) in expect {
            let layout = FrameLayout::for_count(n, 100).unwrap();
            assert_eq!((layout.width, layout.height), (w, h), "n={n}");
        }
        for n in 2..5000u64 {
            let layout = FrameLayout::for_count(n, DEFAULT_MAX_FRAME_VALUES).unwrap();
            assert!(layout.efficiency(n) > 0.5, "n={n}");
            assert!(layout.area() >= n);
            assert!(layout.area() / 2 < n);
        }
    }

    #[test]
    fn count_out_of_range_is_refused() {
        let err = FrameLayout::for_count(0, DEFAULT_MAX_FRAME_VALUES).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid chunk of 0 values (expected 1..=16777216)"
        );
        let err = FrameLayout::for_count(16_777_217, DEFAULT_MAX_FRAME_VALUES).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid chunk of 16777217 values (expected 1..=16777216)"
        );
        let max = FrameLayout::for_count(16_777_216, DEFAULT_MAX_FRAME_VALUES).unwrap();
        assert_eq!((max.width, max.height), (4096, 4096));
        assert!(FrameLayout::for_count(u64::MAX, u64::MAX).is_err());
    }

    #[test]
    fn efficiency_messages_are_exact() {
        assert_eq!(
            efficiency_message(45, 100, 0.5),
            "Efficiency ratio 0.45 is below minimum 0.5"
        );
        let layout = FrameLayout::for_count(5000, DEFAULT_MAX_FRAME_VALUES).unwrap();
        let err = check_efficiency(5000, &layout, 0.7).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Efficiency ratio 0.61 is below minimum 0.7"
        );
        let err = check_efficiency(5000, &layout, 1.5).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid --min-efficiency 1.5 (expected 0.0..=1.0)"
        );
        assert!(check_efficiency(5000, &layout, f64::NAN).is_err());
        check_efficiency(5000, &layout, 0.0).unwrap();
    }

    fn shapes() -> Vec<FrameLayout> {
        let mut out = Vec::new();
        for m in 0..=7u32 {
            out.push(FrameLayout {
                width: 1 << m,
                height: 1 << m,
            });
            out.push(FrameLayout {
                width: 2 << m,
                height: 1 << m,
            });
        }
        out
    }

    #[test]
    fn curve_is_continuous_and_covers_every_pixel_once() {
        for layout in shapes() {
            let area = layout.area();
            let mut seen = vec![false; area as usize];
            let mut prev: Option<(u32, u32)> = None;
            let mut walked = 0u64;
            layout.for_each_cell(area, |d, x, y| {
                assert_eq!(d, walked);
                walked += 1;
                assert_eq!((x, y), layout.xy(d), "{layout:?} d={d}");
                assert!(x < layout.width && y < layout.height);
                assert_eq!(layout.index(x, y), d, "{layout:?} ({x},{y})");
                let pixel = (y as usize) * layout.width as usize + x as usize;
                assert!(!seen[pixel], "{layout:?} visits ({x},{y}) twice");
                seen[pixel] = true;
                if let Some((px, py)) = prev {
                    let step = px.abs_diff(x) + py.abs_diff(y);
                    assert_eq!(step, 1, "{layout:?} jump at d={d}");
                }
                prev = Some((x, y));
            });
            assert_eq!(walked, area);
            assert!(seen.iter().all(|&s| s), "{layout:?}");
        }
    }

    #[test]
    fn scatter_and_gather_are_inverse() {
        for layout in shapes() {
            let area = layout.area() as usize;
            for n in [1, area / 2 + 1, area] {
                let curve: Vec<u16> = (0..n).map(|i| (i % 65521) as u16 + 1).collect();
                let mut raster = vec![0u16; area];
                layout.scatter(&curve, &mut raster).unwrap();
                for (d, &v) in curve.iter().enumerate() {
                    let (x, y) = layout.xy(d as u64);
                    assert_eq!(raster[y as usize * layout.width as usize + x as usize], v);
                }
                assert_eq!(raster.iter().filter(|&&v| v == 0).count(), area - n);
                let mut back = vec![0u16; n];
                layout.gather(&raster, &mut back).unwrap();
                assert_eq!(back, curve);
            }
        }
    }

    #[test]
    fn bad_buffers_and_layouts_are_errors() {
        let layout = FrameLayout {
            width: 8,
            height: 4,
        };
        assert!(layout.scatter(&[1; 33], &mut [0; 32]).is_err());
        assert!(layout.scatter(&[1; 3], &mut [0; 31]).is_err());
        let bad = FrameLayout {
            width: 12,
            height: 6,
        };
        assert!(bad.scatter(&[1; 3], &mut [0; 72]).is_err());
        assert!(bad.validate().is_err());
        // Out-of-range queries wrap rather than panic.
        let _ = bad.xy(u64::MAX);
        let _ = bad.index(u32::MAX, u32::MAX);
        let zero = FrameLayout {
            width: 0,
            height: 0,
        };
        assert!(zero.validate().is_err());
        let _ = zero.xy(5);
        zero.for_each_cell(10, |_, _, _| {});
    }
}
