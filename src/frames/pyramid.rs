//! The mean pyramid and the statistics of a frame, accumulated while its values are laid out.
//!
//! On a Hilbert curve an aligned run of `4^k` positions is exactly one `2^k × 2^k` quad-tree
//! block, so block means need no pixel coordinates: sums over aligned curve runs suffice.
//! Padding is at the curve's end, so the blocks holding at least one value are a prefix of
//! each level and only that prefix is stored.
//!
//! Non-finite values (NaN, ±inf) are left out of every mean, of the histogram and of
//! min/max/mean/std, and counted in [`FrameStats::nonfinite`]; this also keeps every stored
//! number finite, which JSON needs. A block without finite values has mean 0.

use serde::{Deserialize, Serialize};

use super::layout::FrameLayout;

/// Bins of the value histogram.
pub const HISTOGRAM_BINS: usize = 64;
/// Default side of the finest pyramid blocks.
pub const DEFAULT_PYRAMID_FINEST: u32 = 8;

/// One level of the pyramid: the means of its blocks in curve order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PyramidLevel {
    /// Block width in pixels.
    pub block_width: u32,
    /// Block height in pixels; equal to the width except for the top level of a 2:1 frame.
    pub block_height: u32,
    /// Mean of each block that holds at least one value, in curve order.
    pub means: Vec<f32>,
}

/// Block means from the whole frame (first level, one value) down to the finest blocks.
/// Empty (no levels) where only decoding parameters are kept, as in a reel's manifest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pyramid {
    /// Levels, coarsest first.
    pub levels: Vec<PyramidLevel>,
}

impl Pyramid {
    /// True when no level is kept.
    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }
}

impl FrameStats {
    /// True for the default value (statistics not kept).
    pub fn is_empty(&self) -> bool {
        self.histogram.is_empty() && self.count == 0
    }
}

/// Summary statistics of a frame's values (non-finite values excluded, see the module doc).
/// The default (count 0, empty histogram) stands for "not kept here".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FrameStats {
    /// Values in the frame, non-finite ones included.
    pub count: u64,
    /// NaN and infinite values.
    pub nonfinite: u64,
    /// Smallest finite value (0 if there is none).
    pub min: f32,
    /// Largest finite value (0 if there is none).
    pub max: f32,
    /// Mean of the finite values (accumulated in f64; stored as f32, which JSON round-trips
    /// exactly).
    pub mean: f32,
    /// Population standard deviation of the finite values (likewise).
    pub std: f32,
    /// [`HISTOGRAM_BINS`] equal bins over `[min, max]`; `max` lands in the last bin.
    pub histogram: Vec<u64>,
}

/// Sums per block and totals, fed with values in curve order.
pub(crate) struct Accumulator {
    /// Values are summed relative to this centre so that variances do not cancel.
    center: f64,
    hist_min: f64,
    hist_scale: f64,
    /// Curve run of one accumulated block.
    run: u64,
    /// Curve position of the next value.
    pos: u64,
    /// Centred sum and finite count per block.
    blocks: Vec<(f64, u64)>,
    sum_sq: f64,
    /// Four interleaved histograms: consecutive values often share a bin, and separate
    /// counters keep those increments from waiting on each other. The extra last bin counts
    /// non-finite values.
    hist: [[u64; HISTOGRAM_BINS + 1]; 4],
    min: f32,
    max: f32,
}

/// Side of the accumulated blocks: the finest stored side, or the square side when the frame
/// is smaller than the finest blocks.
fn accumulated_side(layout: &FrameLayout, finest: u32) -> u32 {
    finest.clamp(1, layout.height.max(1))
}

impl Accumulator {
    /// An accumulator for a frame whose finite values lie in `range` (`None`: no finite
    /// value), with finest blocks of side `finest`, reusing `blocks`' allocation.
    pub(crate) fn new(
        layout: &FrameLayout,
        range: Option<(f32, f32)>,
        finest: u32,
        mut blocks: Vec<(f64, u64)>,
    ) -> Self {
        let (min, max) = range.unwrap_or((0.0, 0.0));
        let span = f64::from(max) - f64::from(min);
        let side = u64::from(accumulated_side(layout, finest));
        blocks.clear();
        Accumulator {
            center: (f64::from(min) + f64::from(max)) / 2.0,
            hist_min: f64::from(min),
            hist_scale: if span > 0.0 {
                HISTOGRAM_BINS as f64 / span
            } else {
                0.0
            },
            run: side * side,
            pos: 0,
            blocks,
            sum_sq: 0.0,
            hist: [[0; HISTOGRAM_BINS + 1]; 4],
            min,
            max,
        }
    }

    /// Adds the next values in curve order.
    pub(crate) fn push(&mut self, mut values: &[f32]) {
        while !values.is_empty() {
            let offset = self.pos % self.run;
            let take = ((self.run - offset).min(values.len() as u64)) as usize;
            let (piece, rest) = values.split_at(take);
            let (sum, count) = self.piece(piece);
            match self.blocks.last_mut() {
                Some(block) if offset != 0 => {
                    block.0 += sum;
                    block.1 += count;
                }
                _ => self.blocks.push((sum, count)),
            }
            self.pos += take as u64;
            values = rest;
        }
    }

    /// Sums one piece of a block and adds it to the histogram.
    ///
    /// Two branch-free loops: the sums (non-finite values contribute 0) in four independent
    /// lanes, then the histogram, where non-finite values go to an extra discard bin.
    #[inline]
    fn piece(&mut self, piece: &[f32]) -> (f64, u64) {
        let (center, hist_min, hist_scale) = (self.center, self.hist_min, self.hist_scale);
        let mut sums = [0f64; 4];
        let mut squares = [0f64; 4];
        let mut counts = [0u64; 4];
        let mut quads = piece.chunks_exact(4);
        for quad in quads.by_ref() {
            for lane in 0..4 {
                let v = quad[lane];
                let finite = v.is_finite();
                let c = if finite { f64::from(v) - center } else { 0.0 };
                sums[lane] += c;
                squares[lane] += c * c;
                counts[lane] += u64::from(finite);
            }
        }
        for &v in quads.remainder() {
            let finite = v.is_finite();
            let c = if finite { f64::from(v) - center } else { 0.0 };
            sums[0] += c;
            squares[0] += c * c;
            counts[0] += u64::from(finite);
        }
        let bin_of = |v: f32| -> usize {
            // `as usize` saturates and maps NaN to 0; the select then sends every non-finite
            // value to the discard bin.
            let bin = (((f64::from(v) - hist_min) * hist_scale) as usize).min(HISTOGRAM_BINS - 1);
            if v.is_finite() {
                bin
            } else {
                HISTOGRAM_BINS
            }
        };
        let mut quads = piece.chunks_exact(4);
        for quad in quads.by_ref() {
            for (hist, &v) in self.hist.iter_mut().zip(quad) {
                hist[bin_of(v)] += 1;
            }
        }
        for &v in quads.remainder() {
            self.hist[0][bin_of(v)] += 1;
        }
        let count: u64 = counts.iter().sum();
        self.sum_sq += squares.iter().sum::<f64>();
        (sums.iter().sum(), count)
    }

    /// The pyramid and statistics of everything pushed, for `layout` and finest side
    /// `finest`. Also hands back the block buffer for reuse.
    pub(crate) fn finish(
        self,
        layout: &FrameLayout,
        finest: u32,
    ) -> (Pyramid, FrameStats, Vec<(f64, u64)>) {
        let center = self.center;
        let mean_of = |(sum, count): (f64, u64)| -> f32 {
            if count == 0 {
                0.0
            } else {
                (center + sum / count as f64) as f32
            }
        };
        let mut side = accumulated_side(layout, finest);
        let mut square_levels = Vec::new();
        let mut current: Vec<(f64, u64)> = self.blocks.clone();
        loop {
            if side >= finest {
                square_levels.push(PyramidLevel {
                    block_width: side,
                    block_height: side,
                    means: current.iter().copied().map(mean_of).collect(),
                });
            }
            if side >= layout.height {
                break;
            }
            current = current.chunks(4).map(combine).collect();
            side *= 2;
        }
        let total = combine(&current);
        // The top level is the whole frame; on a square frame that is the largest square level.
        if layout.width == layout.height && side >= finest {
            square_levels.pop();
        }
        let mut levels = vec![PyramidLevel {
            block_width: layout.width,
            block_height: layout.height,
            means: vec![mean_of(total)],
        }];
        levels.extend(square_levels.into_iter().rev());

        let (sum, finite) = total;
        let (mean, std) = if finite == 0 {
            (0.0, 0.0)
        } else {
            let m = sum / finite as f64;
            let var = (self.sum_sq / finite as f64 - m * m).max(0.0);
            (center + m, var.sqrt())
        };
        let mut histogram = vec![0u64; HISTOGRAM_BINS + 1];
        for lane in &self.hist {
            for (bin, count) in histogram.iter_mut().zip(lane) {
                *bin += count;
            }
        }
        let nonfinite = histogram.pop().unwrap_or(0);
        let stats = FrameStats {
            count: self.pos,
            nonfinite,
            min: self.min,
            max: self.max,
            mean: mean as f32,
            std: std as f32,
            histogram,
        };
        (Pyramid { levels }, stats, self.blocks)
    }
}

/// Sum and count of several blocks.
fn combine(blocks: &[(f64, u64)]) -> (f64, u64) {
    blocks
        .iter()
        .fold((0.0, 0), |(s, c), &(bs, bc)| (s + bs, c + bc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::quantize::finite_range;

    fn run(layout: FrameLayout, values: &[f32], finest: u32) -> (Pyramid, FrameStats) {
        let mut acc = Accumulator::new(&layout, finite_range(values), finest, Vec::new());
        // Uneven pushes exercise blocks split across calls.
        for piece in values.chunks(37) {
            acc.push(piece);
        }
        let (pyramid, stats, _) = acc.finish(&layout, finest);
        (pyramid, stats)
    }

    /// Block means by iterating pixels of each block and looking up their curve position.
    fn naive_level(layout: FrameLayout, values: &[f32], bw: u32, bh: u32) -> Vec<f32> {
        let mut blocks = Vec::new();
        for by in 0..layout.height / bh {
            for bx in 0..layout.width / bw {
                let (mut sum, mut count, mut first) = (0f64, 0u64, u64::MAX);
                for y in by * bh..(by + 1) * bh {
                    for x in bx * bw..(bx + 1) * bw {
                        let d = layout.index(x, y);
                        first = first.min(d);
                        if let Some(&v) = values.get(d as usize) {
                            if v.is_finite() {
                                sum += f64::from(v);
                                count += 1;
                            }
                        }
                    }
                }
                let holds_values = (first as usize) < values.len();
                if holds_values {
                    let mean = if count == 0 { 0.0 } else { sum / count as f64 };
                    blocks.push((first, mean as f32));
                }
            }
        }
        blocks.sort_by_key(|b| b.0);
        blocks.into_iter().map(|b| b.1).collect()
    }

    fn values_for(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let t = (i as u32).wrapping_mul(2654435761).wrapping_add(seed);
                let v = (t >> 8) as f32 / (1 << 24) as f32 - 0.3;
                match i % 97 {
                    5 => f32::NAN,
                    11 => f32::INFINITY,
                    _ => v * 3.0,
                }
            })
            .collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-5 * (1.0 + a.abs().max(b.abs()))
    }

    #[test]
    fn pyramid_matches_naive_block_means() {
        for (n, finest) in [
            (1, 8),
            (3, 1),
            (50, 2),
            (200, 8),
            (1000, 8),
            (5000, 8),
            (5000, 4),
        ] {
            let layout = FrameLayout::for_count(n as u64, u64::MAX).unwrap();
            let values = values_for(n, n as u32);
            let (pyramid, _) = run(layout, &values, finest);
            let top = &pyramid.levels[0];
            assert_eq!(
                (top.block_width, top.block_height),
                (layout.width, layout.height)
            );
            let mut expected_side = if layout.width == layout.height {
                layout.height / 2
            } else {
                layout.height
            };
            for level in &pyramid.levels {
                let (bw, bh) = (level.block_width, level.block_height);
                if (bw, bh) != (layout.width, layout.height) {
                    assert_eq!((bw, bh), (expected_side, expected_side));
                    expected_side /= 2;
                }
                let naive = naive_level(layout, &values, bw, bh);
                assert_eq!(level.means.len(), naive.len(), "n={n} {bw}x{bh}");
                for (a, b) in level.means.iter().zip(&naive) {
                    assert!(
                        close(f64::from(*a), f64::from(*b)),
                        "n={n} {bw}x{bh}: {a} {b}"
                    );
                }
            }
            let finest_side = pyramid.levels.last().map(|l| l.block_height).unwrap_or(0);
            let expected_finest = if finest <= layout.height {
                finest
            } else {
                layout.height
            };
            assert!(
                finest_side == expected_finest || pyramid.levels.len() == 1,
                "n={n}"
            );
        }
    }

    #[test]
    fn statistics_match_naive_computation() {
        for n in [1usize, 2, 97, 4096, 5000] {
            let layout = FrameLayout::for_count(n as u64, u64::MAX).unwrap();
            let values = values_for(n, 7);
            let (_, stats) = run(layout, &values, 8);
            let finite: Vec<f64> = values
                .iter()
                .filter(|v| v.is_finite())
                .map(|&v| f64::from(v))
                .collect();
            let count = finite.len() as f64;
            let mean = finite.iter().sum::<f64>() / count;
            let var = finite.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / count;
            let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
            let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            assert_eq!(stats.count, n as u64);
            assert_eq!(stats.nonfinite, (n - finite.len()) as u64);
            assert_eq!(f64::from(stats.min), min);
            assert_eq!(f64::from(stats.max), max);
            assert!(close(f64::from(stats.mean), mean), "{} {mean}", stats.mean);
            let std = var.sqrt();
            assert!(close(f64::from(stats.std), std), "{} {std}", stats.std);
            let mut hist = vec![0u64; HISTOGRAM_BINS];
            for v in &finite {
                let bin = if max > min {
                    (((v - min) / (max - min)) * 64.0).floor() as usize
                } else {
                    0
                };
                hist[bin.min(63)] += 1;
            }
            assert_eq!(stats.histogram, hist, "n={n}");
            assert_eq!(stats.histogram.iter().sum::<u64>(), finite.len() as u64);
        }
    }

    #[test]
    fn all_non_finite_frame_has_zero_stats() {
        let layout = FrameLayout::for_count(3, 10).unwrap();
        let (pyramid, stats) = run(layout, &[f32::NAN; 3], 8);
        assert_eq!(stats.mean, 0.0);
        assert_eq!(stats.nonfinite, 3);
        assert_eq!(pyramid.levels[0].means, vec![0.0]);
        serde_json::to_string(&stats).unwrap();
    }
}
