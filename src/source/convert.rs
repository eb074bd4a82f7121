//! Little-endian element bytes to f32.
//!
//! F32, F16 and BF16 convert exactly (every f16 and bf16 is an f32), which is what lets the
//! lossless reel mode give the source bits back: the 16-bit conversions here move bits, so a
//! NaN keeps its payload and a signalling NaN stays signalling (`half`'s `f16::to_f32`, like
//! the F16C instruction, quiets it: `fc01` would come back as `fe01`). [`f16_bits`] and
//! [`bf16_bits`] are their exact inverses. F64 and wide integers round to nearest f32 (lossless
//! encodes refuse them; see [`exact_in_f32`]).

use half::f16;
use safetensors::Dtype;

/// The f32 of an f16 pattern, NaN payloads (and the signalling bit) kept.
#[inline]
pub fn f16_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits & 0x8000) << 16;
    let exponent = (bits >> 10) & 0x1f;
    let mantissa = u32::from(bits & 0x3ff);
    match exponent {
        0x1f => f32::from_bits(sign | 0x7f80_0000 | (mantissa << 13)),
        // Zero and subnormals: mantissa * 2^-24, exact in f32.
        0 => {
            let magnitude = mantissa as f32 * f32::from_bits(0x3380_0000);
            f32::from_bits(sign | magnitude.to_bits())
        }
        _ => f32::from_bits(sign | ((u32::from(exponent) + 112) << 23) | (mantissa << 13)),
    }
}

/// The f16 pattern whose [`f16_to_f32`] is exactly `v` (bit for bit), or `None` if there is
/// none.
#[inline]
pub fn f16_bits(v: f32) -> Option<u16> {
    let bits = v.to_bits();
    let pattern = if v.is_nan() {
        ((bits >> 16) & 0x8000) as u16 | 0x7c00 | ((bits >> 13) & 0x3ff) as u16
    } else {
        f16::from_f32(v).to_bits()
    };
    (f16_to_f32(pattern).to_bits() == bits).then_some(pattern)
}

/// The f32 of a bf16 pattern (its top 16 bits), NaN payloads kept.
#[inline]
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// The bf16 pattern whose [`bf16_to_f32`] is exactly `v`, or `None` if there is none.
#[inline]
pub fn bf16_bits(v: f32) -> Option<u16> {
    let bits = v.to_bits();
    (bits & 0xffff == 0).then_some((bits >> 16) as u16)
}

/// True for the dtypes whose every value is an f32, so that the f32 stream carries them
/// exactly. F64, I32, U32, I64 and U64 are not: their values may round.
pub fn exact_in_f32(dtype: Dtype) -> bool {
    matches!(
        dtype,
        Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::I8 | Dtype::U8 | Dtype::I16 | Dtype::U16
    )
}

/// Convert `bytes` (whole elements of `dtype`) into `out`, which must hold
/// `bytes.len() / size_of(dtype)` values. Returns false for a dtype we do not convert.
pub fn to_f32(dtype: Dtype, bytes: &[u8], out: &mut [f32]) -> bool {
    macro_rules! conv {
        ($n:expr, $f:expr) => {{
            debug_assert_eq!(bytes.len(), out.len() * $n);
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact($n)) {
                *o = $f(c.try_into().expect("chunk size"));
            }
        }};
    }
    match dtype {
        Dtype::F32 => conv!(4, |c: [u8; 4]| f32::from_le_bytes(c)),
        Dtype::F16 => conv!(2, |c: [u8; 2]| f16_to_f32(u16::from_le_bytes(c))),
        Dtype::BF16 => conv!(2, |c: [u8; 2]| bf16_to_f32(u16::from_le_bytes(c))),
        Dtype::F64 => conv!(8, |c: [u8; 8]| f64::from_le_bytes(c) as f32),
        Dtype::I8 => conv!(1, |c: [u8; 1]| c[0] as i8 as f32),
        Dtype::U8 => conv!(1, |c: [u8; 1]| c[0] as f32),
        Dtype::I16 => conv!(2, |c: [u8; 2]| i16::from_le_bytes(c) as f32),
        Dtype::U16 => conv!(2, |c: [u8; 2]| u16::from_le_bytes(c) as f32),
        Dtype::I32 => conv!(4, |c: [u8; 4]| i32::from_le_bytes(c) as f32),
        Dtype::U32 => conv!(4, |c: [u8; 4]| u32::from_le_bytes(c) as f32),
        Dtype::I64 => conv!(8, |c: [u8; 8]| i64::from_le_bytes(c) as f32),
        Dtype::U64 => conv!(8, |c: [u8; 8]| u64::from_le_bytes(c) as f32),
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::bf16;

    #[test]
    fn every_f16_pattern_converts_exactly_and_back() {
        for bits in 0..=u16::MAX {
            let v = f16_to_f32(bits);
            let h = f16::from_bits(bits);
            if !h.is_nan() {
                assert_eq!(v.to_bits(), h.to_f32().to_bits(), "{bits:04x}");
            }
            assert_eq!(f16_bits(v), Some(bits), "{bits:04x}");
        }
        assert_eq!(f16_to_f32(0xfc01).to_bits(), 0xff80_2000);
        assert_eq!(f16_bits(0.1), None);
    }

    #[test]
    fn every_bf16_pattern_converts_exactly_and_back() {
        for bits in 0..=u16::MAX {
            assert_eq!(bf16_bits(bf16_to_f32(bits)), Some(bits), "{bits:04x}");
        }
        assert_eq!(bf16_to_f32(0x7f81).to_bits(), 0x7f81_0000);
        assert_eq!(bf16_bits(0.1), None);
    }

    #[test]
    fn every_supported_dtype_converts() {
        let cases: Vec<(Dtype, Vec<u8>, Vec<f32>)> = vec![
            (
                Dtype::F32,
                [1.5f32, -2.0]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
                vec![1.5, -2.0],
            ),
            (
                Dtype::F16,
                [f16::from_f32(0.5), f16::from_f32(-3.0)]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
                vec![0.5, -3.0],
            ),
            (
                Dtype::BF16,
                [bf16::from_f32(0.25), bf16::from_f32(8.0)]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
                vec![0.25, 8.0],
            ),
            (
                Dtype::F64,
                [0.125f64, 1e3]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
                vec![0.125, 1000.0],
            ),
            (Dtype::I8, vec![0xff, 5], vec![-1.0, 5.0]),
            (Dtype::U8, vec![0xff, 5], vec![255.0, 5.0]),
            (
                Dtype::I16,
                [-7i16, 300].iter().flat_map(|v| v.to_le_bytes()).collect(),
                vec![-7.0, 300.0],
            ),
            (
                Dtype::I32,
                [-70000i32, 3]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
                vec![-70000.0, 3.0],
            ),
            (
                Dtype::I64,
                [-9i64, 1 << 20]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
                vec![-9.0, 1048576.0],
            ),
        ];
        for (dtype, bytes, expected) in cases {
            let mut out = vec![0f32; expected.len()];
            assert!(to_f32(dtype, &bytes, &mut out), "{dtype:?}");
            assert_eq!(out, expected, "{dtype:?}");
        }
        assert!(!to_f32(Dtype::BOOL, &[1], &mut [0.0]));
    }
}
