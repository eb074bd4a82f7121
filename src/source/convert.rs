//! Little-endian element bytes to f32.
//!
//! F32, F16 and BF16 convert exactly (every f16 and bf16 is an f32), which is what lets the
//! lossless reel mode give the source bits back. F64 and wide integers round to nearest f32.

use half::{bf16, f16};
use safetensors::Dtype;

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
        Dtype::F16 => conv!(2, |c: [u8; 2]| f16::from_le_bytes(c).to_f32()),
        Dtype::BF16 => conv!(2, |c: [u8; 2]| bf16::from_le_bytes(c).to_f32()),
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
