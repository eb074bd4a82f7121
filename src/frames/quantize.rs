//! Pixel modes: how f32 values become 16-bit plane samples and back.
//!
//! * [`PixelMode::U16`]: per-segment affine quantization, `value = min + q * scale`,
//!   `q in 0..=65535`. The error is at most `(max - min) / 131070` plus f32 rounding.
//! * [`PixelMode::Lossless`]: bit-exact. 16-bit sources keep their f16/bf16 pattern; other
//!   sources keep all 32 bits in two planes, high half first. The bits are rotated left by
//!   one ([`sample16`], [`sample32`]) so that each sample starts with the float's exponent:
//!   the first byte of an f32 or bf16 sample is the whole exponent (the reel compresses it),
//!   the rest is mantissa and sign (near-random, the reel stores it as is). The brightness of
//!   the first byte is therefore the value's magnitude (log2 |v|), whatever its sign.
//! * [`PixelMode::U8`]: as `U16` with `q in 0..=255`, for previews.
//!
//! Lossy modes keep NaN, +inf and -inf: a segment holding any of them reserves the top three
//! levels for them ([`SegmentQuant::specials`]; its finite values get the levels below), so
//! decoding gives them back (NaN as the canonical quiet NaN). Segments of finite values only
//! use every level, as before.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::source::convert;

/// How values are written into a frame's planes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PixelMode {
    /// 16-bit affine quantization per segment (the default).
    #[default]
    U16,
    /// Bit-exact: 1 plane for all-16-bit sources, else 2 planes.
    Lossless,
    /// 8-bit affine quantization per segment, stored as 0..=255 in a 16-bit plane.
    U8,
}

impl PixelMode {
    /// Parses `u16`, `lossless` or `u8`.
    pub fn parse(text: &str) -> Result<PixelMode> {
        match text {
            "u16" => Ok(PixelMode::U16),
            "lossless" => Ok(PixelMode::Lossless),
            "u8" => Ok(PixelMode::U8),
            other => {
                let near = ["u16", "lossless", "u8"]
                    .into_iter()
                    .map(|m| {
                        (
                            crate::text::edit_distance(&other.to_ascii_lowercase(), m),
                            m,
                        )
                    })
                    .filter(|&(d, _)| d <= 2)
                    .min()
                    .map(|(_, m)| format!("; did you mean '{m}'?"))
                    .unwrap_or_default();
                Err(Error::invalid(
                    "--mode",
                    format!("'{other}'"),
                    format!("u16, lossless, u8{near}"),
                ))
            }
        }
    }

    /// The mode's name as [`PixelMode::parse`] accepts it.
    pub fn as_str(self) -> &'static str {
        match self {
            PixelMode::U16 => "u16",
            PixelMode::Lossless => "lossless",
            PixelMode::U8 => "u8",
        }
    }

    /// The top quantization level of a lossy mode; `None` for lossless.
    pub fn levels(self) -> Option<u16> {
        match self {
            PixelMode::U16 => Some(u16::MAX),
            PixelMode::U8 => Some(u8::MAX.into()),
            PixelMode::Lossless => None,
        }
    }

    /// Planes a frame of these segments needs: 2 only for lossless frames holding any source
    /// that is not 16-bit.
    pub fn planes_for<'a>(self, mut dtypes: impl Iterator<Item = &'a SourceDtype>) -> u32 {
        match self {
            PixelMode::Lossless if dtypes.any(|d| !d.is_16bit()) => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for PixelMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PixelMode {
    type Err = Error;

    fn from_str(text: &str) -> Result<PixelMode> {
        PixelMode::parse(text)
    }
}

/// The dtype a segment's values came from; decides the lossless encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceDtype {
    /// 32-bit float.
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    BF16,
    /// Anything else (integers, f64, 8-bit floats): stored like F32.
    Other,
}

impl SourceDtype {
    /// True for the sources whose every value fits a 16-bit pattern.
    pub fn is_16bit(self) -> bool {
        matches!(self, SourceDtype::F16 | SourceDtype::BF16)
    }

    fn name(self) -> &'static str {
        match self {
            SourceDtype::F32 => "f32",
            SourceDtype::F16 => "f16",
            SourceDtype::BF16 => "bf16",
            SourceDtype::Other => "other",
        }
    }
}

/// A contiguous curve range of a frame whose values came from one tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentSpec {
    /// First curve position of the segment.
    pub curve_start: u64,
    /// Number of values.
    pub len: u64,
    /// The tensor's dtype.
    pub dtype: SourceDtype,
}

/// A segment as stored: its range and dtype, plus the affine parameters of lossy modes
/// (`value = min + q * scale`; both 0 for lossless, `scale` 0 for a constant segment).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SegmentQuant {
    /// First curve position of the segment.
    pub curve_start: u64,
    /// Number of values.
    pub len: u64,
    /// The tensor's dtype.
    pub dtype: SourceDtype,
    /// Value of level 0.
    pub min: f32,
    /// Value step between levels.
    pub scale: f32,
    /// Lossy modes: the segment holds NaN or ±inf, and the top [`RESERVED_LEVELS`] levels
    /// are theirs (NaN, +inf, -inf, in that order). Absent in reels written before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub specials: bool,
}

/// Levels a lossy segment holding NaN or ±inf sets aside for them.
pub const RESERVED_LEVELS: u16 = 3;

/// The finite levels of a lossy segment, `0..=top`, and its codes for NaN, +inf and -inf.
#[derive(Clone, Copy)]
struct Codes {
    top: u16,
    nan: u16,
    pos_inf: u16,
    neg_inf: u16,
}

impl Codes {
    fn new(levels: u16, specials: bool) -> Codes {
        if specials {
            Codes {
                top: levels - RESERVED_LEVELS,
                nan: levels - 2,
                pos_inf: levels - 1,
                neg_inf: levels,
            }
        } else {
            // No code is reserved: these are out of reach (`top` is the largest level).
            Codes {
                top: levels,
                nan: levels,
                pos_inf: levels,
                neg_inf: levels,
            }
        }
    }
}

impl SegmentQuant {
    /// Parameters for `spec` in `mode`, given the segment's [`Scan`].
    pub(crate) fn fit(spec: &SegmentSpec, mode: PixelMode, scan: &Scan) -> Self {
        let specials = mode.levels().is_some() && scan.nonfinite > 0;
        let (min, scale) = match (mode.levels(), scan.range) {
            (Some(levels), Some((lo, hi))) => {
                let top = Codes::new(levels, specials).top;
                // f64 keeps the span finite even for spans beyond f32::MAX.
                let scale = ((f64::from(hi) - f64::from(lo)) / f64::from(top)) as f32;
                (lo, scale)
            }
            _ => (0.0, 0.0),
        };
        SegmentQuant {
            curve_start: spec.curve_start,
            len: spec.len,
            dtype: spec.dtype,
            min,
            scale,
            specials,
        }
    }
}

/// What one read of a segment finds: its finite range and how many values are NaN or ±inf.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Scan {
    /// Smallest and largest finite value, `None` when there is none.
    pub range: Option<(f32, f32)>,
    /// NaN and ±inf values.
    pub nonfinite: u64,
}

/// Scans `values` once: [`finite_range`] and the count of values that are not finite.
pub(crate) fn scan(values: &[f32]) -> Scan {
    // A separate, branch-free count: the compiler vectorizes it, and it costs little next to
    // quantization.
    let nonfinite = values
        .iter()
        .map(|v| u64::from(!v.is_finite()))
        .sum::<u64>();
    Scan {
        range: finite_range(values),
        nonfinite,
    }
}

/// Smallest and largest finite value, or `None` when there is none.
pub(crate) fn finite_range(values: &[f32]) -> Option<(f32, f32)> {
    // Eight independent lanes of compare-and-select (the shape of SSE `minps`/`maxps`);
    // `f32::min` would add NaN handling to every step and serialize the loop.
    const LANES: usize = 8;
    let mut lo = [f32::INFINITY; LANES];
    let mut hi = [f32::NEG_INFINITY; LANES];
    let mut chunks = values.chunks_exact(LANES);
    for chunk in chunks.by_ref() {
        for lane in 0..LANES {
            let (l, h) = finite_or_neutral(chunk[lane]);
            lo[lane] = if l < lo[lane] { l } else { lo[lane] };
            hi[lane] = if h > hi[lane] { h } else { hi[lane] };
        }
    }
    for &v in chunks.remainder() {
        let (l, h) = finite_or_neutral(v);
        lo[0] = if l < lo[0] { l } else { lo[0] };
        hi[0] = if h > hi[0] { h } else { hi[0] };
    }
    let lo = lo
        .iter()
        .fold(f32::INFINITY, |a, &b| if b < a { b } else { a });
    let hi = hi
        .iter()
        .fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a });
    (lo <= hi).then_some((lo, hi))
}

/// `(v, v)` for a finite value; otherwise the neutral elements of min and max.
#[inline]
fn finite_or_neutral(v: f32) -> (f32, f32) {
    if v.is_finite() {
        (v, v)
    } else {
        (f32::INFINITY, f32::NEG_INFINITY)
    }
}

/// Lossy quantization of `values` into `out` with the segment's parameters.
pub(crate) fn quantize(values: &[f32], quant: &SegmentQuant, levels: u16, out: &mut [u16]) {
    let min = f64::from(quant.min);
    let inv = if quant.scale > 0.0 {
        1.0 / f64::from(quant.scale)
    } else {
        0.0
    };
    let codes = Codes::new(levels, quant.specials);
    let top = f64::from(codes.top);
    // `as u16` saturates (negatives to 0); `min` keeps rounding at the top within the finite
    // levels (and would map NaN there, which only a segment without specials never holds).
    let level = |v: f32| ((f64::from(v) - min) * inv + 0.5).min(top) as u16;
    if !quant.specials {
        for (slot, &v) in out.iter_mut().zip(values) {
            *slot = level(v);
        }
        return;
    }
    for (slot, &v) in out.iter_mut().zip(values) {
        *slot = if v.is_finite() {
            level(v)
        } else if v.is_nan() {
            codes.nan
        } else if v > 0.0 {
            codes.pos_inf
        } else {
            codes.neg_inf
        };
    }
}

/// Largest finite f32, as f64.
const LARGEST: f64 = f32::MAX as f64;

/// Inverse of [`quantize`]; `levels` is the mode's top level.
pub(crate) fn dequantize(samples: &[u16], quant: &SegmentQuant, levels: u16, out: &mut [f32]) {
    let min = f64::from(quant.min);
    let scale = f64::from(quant.scale);
    // f64 because `min + 65535 * scale` may exceed f32::MAX before rounding back; the clamp
    // keeps a scale rounded up at the very top of the f32 range from giving inf.
    let value = |q: u16| (min + f64::from(q) * scale).clamp(-LARGEST, LARGEST) as f32;
    if !quant.specials {
        for (slot, &q) in out.iter_mut().zip(samples) {
            *slot = value(q);
        }
        return;
    }
    let codes = Codes::new(levels, true);
    for (slot, &q) in out.iter_mut().zip(samples) {
        *slot = match q {
            q if q <= codes.top => value(q),
            q if q == codes.nan => f32::NAN,
            q if q == codes.pos_inf => f32::INFINITY,
            _ => f32::NEG_INFINITY,
        };
    }
}

/// Lossless sample of a 16-bit float pattern: the bits rotated left by one, so that the sign
/// moves to the lowest bit and the exponent starts at the top. For bf16 the high byte is then
/// the whole 8-bit exponent (skewed, a few bits of entropy, which FFV1 compresses) and the low
/// byte the mantissa and sign (near-random, stored as is); for f16 the high byte is the 5-bit
/// exponent and the top 3 mantissa bits. With the sign at the top instead, every sign change
/// between neighbours is a jump of half the range, which costs FFV1's predictor dearly.
#[inline]
pub(crate) fn sample16(bits: u16) -> u16 {
    bits.rotate_left(1)
}

/// Inverse of [`sample16`].
#[inline]
pub(crate) fn unsample16(sample: u16) -> u16 {
    sample.rotate_right(1)
}

/// Lossless sample of a 32-bit float pattern, as [`sample16`]: the first byte is the 8-bit
/// exponent, the other three the mantissa, then the sign.
#[inline]
pub(crate) fn sample32(bits: u32) -> u32 {
    bits.rotate_left(1)
}

/// How lossless samples were laid out: how to read a frame's bit patterns back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SampleOrder {
    /// Version-1 reels: an order-preserving map (sign flips the rest; see [`unorder32`]).
    Ordered,
    /// Rotated left by one, exponent first ([`sample32`]): what this build writes.
    #[default]
    Rotated,
}

impl SampleOrder {
    /// The order of frames whose metadata names none: they come from version-1 reels.
    pub fn version_1() -> SampleOrder {
        SampleOrder::Ordered
    }

    fn bits16(self, sample: u16) -> u16 {
        match self {
            SampleOrder::Ordered => unorder16(sample),
            SampleOrder::Rotated => unsample16(sample),
        }
    }

    fn bits32(self, sample: u32) -> u32 {
        match self {
            SampleOrder::Ordered => unorder32(sample),
            SampleOrder::Rotated => unsample32(sample),
        }
    }
}

/// Inverse of version 1's order-preserving map of a 16-bit pattern (kept to read its reels).
#[inline]
fn unorder16(code: u16) -> u16 {
    if code & 0x8000 != 0 {
        code & 0x7fff
    } else {
        !code
    }
}

/// Inverse of version 1's order-preserving map of a 32-bit pattern.
#[inline]
fn unorder32(code: u32) -> u32 {
    if code & 0x8000_0000 != 0 {
        code & 0x7fff_ffff
    } else {
        !code
    }
}

/// Inverse of [`sample32`].
#[inline]
pub(crate) fn unsample32(sample: u32) -> u32 {
    sample.rotate_right(1)
}

/// Lossless encoding of one segment. `high` always receives a sample; `low` (the second plane,
/// when the frame has one) receives the low half of 32-bit sources and 0 for 16-bit ones.
/// `start` is the segment's curve position, for error messages.
pub(crate) fn encode_lossless(
    values: &[f32],
    dtype: SourceDtype,
    start: u64,
    high: &mut [u16],
    low: Option<&mut [u16]>,
) -> Result<()> {
    match dtype {
        SourceDtype::F16 | SourceDtype::BF16 => {
            for (i, (slot, &v)) in high.iter_mut().zip(values).enumerate() {
                let pattern = pattern16(v, dtype).ok_or_else(|| {
                    Error::Frame(format!(
                        "lossless {} segment at curve position {start}: value {v:e} at position {} is not a {} value",
                        dtype.name(),
                        start + i as u64,
                        dtype.name()
                    ))
                })?;
                *slot = sample16(pattern);
            }
            if let Some(low) = low {
                low.iter_mut().take(values.len()).for_each(|s| *s = 0);
            }
        }
        SourceDtype::F32 | SourceDtype::Other => {
            let Some(low) = low else {
                return Err(Error::Frame(format!(
                    "lossless {} segment at curve position {start} needs two planes",
                    dtype.name()
                )));
            };
            for ((hi, lo), &v) in high.iter_mut().zip(low.iter_mut()).zip(values) {
                let code = sample32(v.to_bits());
                *hi = (code >> 16) as u16;
                *lo = code as u16;
            }
        }
    }
    Ok(())
}

/// The exact 16-bit pattern of `v` in `dtype` (NaN payloads included), or `None` if `v` is not
/// such a value.
#[inline]
fn pattern16(v: f32, dtype: SourceDtype) -> Option<u16> {
    if dtype == SourceDtype::BF16 {
        convert::bf16_bits(v)
    } else {
        convert::f16_bits(v)
    }
}

/// Inverse of [`encode_lossless`]; `low` must be given for 32-bit sources.
pub(crate) fn decode_lossless(
    high: &[u16],
    low: Option<&[u16]>,
    dtype: SourceDtype,
    order: SampleOrder,
    out: &mut [f32],
) -> Result<()> {
    match (dtype, low) {
        (SourceDtype::BF16, _) => {
            for (slot, &code) in out.iter_mut().zip(high) {
                *slot = convert::bf16_to_f32(order.bits16(code));
            }
        }
        (SourceDtype::F16, _) => {
            for (slot, &code) in out.iter_mut().zip(high) {
                *slot = convert::f16_to_f32(order.bits16(code));
            }
        }
        (_, Some(low)) => {
            for ((slot, &hi), &lo) in out.iter_mut().zip(high).zip(low) {
                *slot = f32::from_bits(order.bits32((u32::from(hi) << 16) | u32::from(lo)));
            }
        }
        (_, None) => {
            return Err(Error::Frame(format!(
                "lossless {} segment needs two planes",
                dtype.name()
            )))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::{bf16, f16};

    #[test]
    fn modes_parse_and_print() {
        for mode in [PixelMode::U16, PixelMode::Lossless, PixelMode::U8] {
            assert_eq!(PixelMode::parse(mode.as_str()).unwrap(), mode);
            let json = serde_json::to_string(&mode).unwrap();
            assert_eq!(json, format!("\"{mode}\""));
        }
        assert_eq!(PixelMode::default(), PixelMode::U16);
        let err = PixelMode::parse("f32").unwrap_err().to_string();
        assert_eq!(err, "invalid --mode 'f32' (expected u16, lossless, u8)");
        assert_eq!(
            serde_json::to_string(&SourceDtype::BF16).unwrap(),
            "\"bf16\""
        );
    }

    #[test]
    fn samples_invert_for_every_pattern() {
        for bits in 0..=u16::MAX {
            assert_eq!(unsample16(sample16(bits)), bits);
        }
        for bits in [0u32, 1, 0x7fc0_0001, 0xffc0_0000, 0x8000_0000, u32::MAX] {
            assert_eq!(unsample32(sample32(bits)), bits);
        }
    }

    #[test]
    fn the_first_byte_of_a_sample_is_the_exponent() {
        for v in [-2.75f32, -1e-3, 0.0, 3.0e-5, 1.0e20, f32::NAN] {
            let exponent = ((v.to_bits() >> 23) & 0xff) as u16;
            let mut high = [0u16];
            let mut low = [0u16];
            encode_lossless(&[v], SourceDtype::F32, 0, &mut high, Some(&mut low)).unwrap();
            assert_eq!(high[0] >> 8, exponent, "f32 {v}");
            let b = bf16::from_f32(v).to_f32();
            encode_lossless(&[b], SourceDtype::BF16, 0, &mut high, None).unwrap();
            assert_eq!(high[0] >> 8, exponent, "bf16 {v}");
            let h = f16::from_f32(v);
            encode_lossless(&[h.to_f32()], SourceDtype::F16, 0, &mut high, None).unwrap();
            assert_eq!(high[0] >> 11, (h.to_bits() >> 10) & 0x1f, "f16 {v}");
        }
    }

    #[test]
    fn lossless_refuses_values_that_are_not_of_the_source_dtype() {
        let mut high = [0u16; 2];
        let err = encode_lossless(&[1.0, 0.1], SourceDtype::F16, 10, &mut high, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("position 11"), "{err}");
        assert!(encode_lossless(&[0.1], SourceDtype::BF16, 0, &mut high, None).is_err());
        assert!(encode_lossless(&[0.1], SourceDtype::F32, 0, &mut high, None).is_err());
        let mut out = [0f32; 1];
        assert!(
            decode_lossless(&[0], None, SourceDtype::F32, SampleOrder::Rotated, &mut out).is_err()
        );
    }

    #[test]
    fn non_finite_values_round_trip_bit_exactly() {
        let f16_values: Vec<f32> = [0x7c00u16, 0xfc00, 0x7e00, 0xfe01, 0x7d55, 0x8000, 0x0001]
            .iter()
            .map(|&b| f16::from_bits(b).to_f32())
            .collect();
        let bf16_values: Vec<f32> = [0x7f80u16, 0xff80, 0x7fc0, 0x7f81, 0xffff, 0x8000]
            .iter()
            .map(|&b| f32::from_bits(u32::from(b) << 16))
            .collect();
        for (values, dtype) in [
            (f16_values, SourceDtype::F16),
            (bf16_values, SourceDtype::BF16),
        ] {
            let mut high = vec![0u16; values.len()];
            encode_lossless(&values, dtype, 0, &mut high, None).unwrap();
            let mut out = vec![0f32; values.len()];
            decode_lossless(&high, None, dtype, SampleOrder::Rotated, &mut out).unwrap();
            for (a, b) in values.iter().zip(&out) {
                assert_eq!(a.to_bits(), b.to_bits(), "{dtype:?}");
            }
        }
    }

    #[test]
    fn quantization_extremes_stay_finite() {
        let spec = SegmentSpec {
            curve_start: 0,
            len: 3,
            dtype: SourceDtype::F32,
        };
        let values = [f32::MAX, -f32::MAX, 0.0];
        let quant = SegmentQuant::fit(&spec, PixelMode::U16, &scan(&values));
        assert!(quant.scale.is_finite());
        assert!(!quant.specials);
        let mut q = [0u16; 3];
        quantize(&values, &quant, u16::MAX, &mut q);
        assert_eq!(q[0], u16::MAX);
        assert_eq!(q[1], 0);
        let mut back = [0f32; 3];
        dequantize(&q, &quant, u16::MAX, &mut back);
        assert!(back.iter().all(|v| v.is_finite()));
        assert_eq!(finite_range(&[f32::NAN, f32::INFINITY]), None);
    }

    /// NaN and ±inf keep their reserved levels in both lossy modes; finite values use the
    /// levels below, ending at the top one the segment's maximum gets.
    fn specials_case(mode: PixelMode, values: &[f32], expected_levels: &[u16]) {
        let spec = SegmentSpec {
            curve_start: 0,
            len: values.len() as u64,
            dtype: SourceDtype::F32,
        };
        let levels = mode.levels().unwrap();
        let quant = SegmentQuant::fit(&spec, mode, &scan(values));
        assert!(quant.specials);
        let mut q = vec![0u16; values.len()];
        quantize(values, &quant, levels, &mut q);
        assert_eq!(q, expected_levels);
        let mut back = vec![0f32; values.len()];
        dequantize(&q, &quant, levels, &mut back);
        for (a, b) in values.iter().zip(&back) {
            if a.is_finite() {
                assert!((a - b).abs() <= 4.0 / f32::from(levels), "{a} -> {b}");
            } else {
                assert_eq!(a.is_nan(), b.is_nan(), "{a} -> {b}");
                assert!(a.is_nan() || a == b, "{a} -> {b}");
            }
        }
    }

    #[test]
    fn u16_keeps_nan_and_infinities() {
        specials_case(
            PixelMode::U16,
            &[
                -1.0,
                f32::NAN,
                1.0,
                f32::INFINITY,
                f32::NEG_INFINITY,
                -f32::NAN,
            ],
            &[0, 65533, 65532, 65534, 65535, 65533],
        );
    }

    #[test]
    fn u8_keeps_nan_and_infinities() {
        specials_case(
            PixelMode::U8,
            &[f32::INFINITY, 2.0, 0.0, f32::NAN, f32::NEG_INFINITY],
            &[254, 252, 0, 253, 255],
        );
    }

    #[test]
    fn a_segment_of_only_specials_keeps_them() {
        specials_case(
            PixelMode::U16,
            &[f32::NAN, f32::NEG_INFINITY, f32::INFINITY],
            &[65533, 65535, 65534],
        );
    }
}
