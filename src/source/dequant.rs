//! Dequantizing GGML blocks to f32, value for value as `gguf.quants.dequantize` (gguf-py) does.
//!
//! Every formula keeps the reference's order of f32 operations (`d * q + m` is two roundings,
//! never a fused multiply-add; Rust does not contract), and f16 scales convert exactly, so the
//! results are bit-identical to the reference. Element order inside a block follows ggml's
//! layouts, spelled out per type below.

use super::convert::f16_to_f32;
use super::gguf::GgmlType;

fn f16_at(block: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([block[at], block[at + 1]]))
}

/// The 6-bit scales and mins of Q4_K and Q5_K: 8 of each packed into 12 bytes.
fn scale_min_k4(s: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0f) | ((s[j - 4] >> 2) & 0x30),
            (s[j + 4] >> 4) | ((s[j] >> 2) & 0x30),
        )
    }
}

/// Dequantize one block of `t` (its block size in bytes) into `out` (its block size in values).
/// `t` must be one of the types [`GgmlType::encoding`] maps to blocks.
pub fn dequantize_block(t: GgmlType, b: &[u8], out: &mut [f32]) {
    use GgmlType::*;
    match t {
        Q4_0 | Q4_1 => {
            // d, (m), 16 bytes: value l is the low nibble of byte l, value 16 + l the high one.
            let d = f16_at(b, 0);
            let (m, qs) = if t == Q4_1 {
                (Some(f16_at(b, 2)), &b[4..20])
            } else {
                (None, &b[2..18])
            };
            for i in 0..32 {
                let q = (qs[i % 16] >> (4 * (i / 16))) & 0x0f;
                out[i] = match m {
                    Some(m) => d * q as f32 + m,
                    None => d * (q as i8 - 8) as f32,
                };
            }
        }
        Q5_0 | Q5_1 => {
            // d, (m), 32 high bits as a u32, then 16 bytes of low nibbles as in Q4.
            let d = f16_at(b, 0);
            let (m, rest) = if t == Q5_1 {
                (Some(f16_at(b, 2)), &b[4..])
            } else {
                (None, &b[2..])
            };
            let qh = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes"));
            let qs = &rest[4..20];
            for i in 0..32 {
                let low = (qs[i % 16] >> (4 * (i / 16))) & 0x0f;
                let q = low | ((((qh >> i) & 1) as u8) << 4);
                out[i] = match m {
                    Some(m) => d * q as f32 + m,
                    None => d * (q as i8 - 16) as f32,
                };
            }
        }
        Q8_0 => {
            let d = f16_at(b, 0);
            for i in 0..32 {
                out[i] = (b[2 + i] as i8) as f32 * d;
            }
        }
        Q8_K => {
            // f32 d, 256 i8, then 16 i16 block sums (not needed to dequantize).
            let d = f32::from_le_bytes(b[..4].try_into().expect("4 bytes"));
            for i in 0..256 {
                out[i] = d * (b[4 + i] as i8) as f32;
            }
        }
        Q2_K => {
            // 16 scale bytes (low nibble scale, high nibble min), 64 bytes of 2-bit values,
            // d, dmin. Value i: bits 2·s of byte 32·h + l, for i = 128·h + 32·s + l.
            let (scales, qs) = (&b[..16], &b[16..80]);
            let d = f16_at(b, 80);
            let dmin = f16_at(b, 82);
            for i in 0..256 {
                let (h, s, l) = (i / 128, (i % 128) / 32, i % 32);
                let q = (qs[32 * h + l] >> (2 * s)) & 3;
                let sc = scales[i / 16];
                let dl = d * (sc & 0x0f) as f32;
                let ml = dmin * (sc >> 4) as f32;
                out[i] = dl * q as f32 - ml;
            }
        }
        Q3_K => {
            // 32 bytes of high-bit mask, 64 bytes of 2-bit values, 12 bytes of 6-bit scales, d.
            let (hmask, qs, sc) = (&b[..32], &b[32..96], &b[96..108]);
            let d = f16_at(b, 108);
            for (i, o) in out.iter_mut().enumerate().take(256) {
                let j = i / 16;
                let low = if j < 8 { sc[j] & 0x0f } else { sc[j - 8] >> 4 };
                let high = (sc[8 + j % 4] >> (2 * (j / 4))) & 3;
                let scale = ((low | (high << 4)) as i8 - 32) as f32;
                let dl = d * scale;
                let (h, s, l) = (i / 128, (i % 128) / 32, i % 32);
                let q2 = ((qs[32 * h + l] >> (2 * s)) & 3) as i8;
                let hbit = (hmask[l] >> (i / 32)) & 1;
                let q = q2 - (((hbit ^ 1) << 2) as i8);
                *o = dl * q as f32;
            }
        }
        Q4_K | Q5_K => {
            // d, dmin, 12 bytes of scales and mins, (32 bytes of fifth bits), 128 bytes of
            // nibbles: value i = 64·h + 32·s + l is nibble s of byte 32·h + l.
            let d = f16_at(b, 0);
            let dmin = f16_at(b, 2);
            let scales = &b[4..16];
            let (qh, qs) = if t == Q5_K {
                (Some(&b[16..48]), &b[48..176])
            } else {
                (None, &b[16..144])
            };
            for (i, o) in out.iter_mut().enumerate().take(256) {
                let (sc, m) = scale_min_k4(scales, i / 32);
                let dl = d * sc as f32;
                let dm = dmin * m as f32;
                let (h, s, l) = (i / 64, (i % 64) / 32, i % 32);
                let mut q = (qs[32 * h + l] >> (4 * s)) & 0x0f;
                if let Some(qh) = qh {
                    q |= ((qh[l] >> (i / 32)) & 1) << 4;
                }
                *o = dl * q as f32 - dm;
            }
        }
        Q6_K => {
            // 128 bytes of low nibbles, 64 bytes of high 2-bit pairs, 16 i8 scales, d.
            let (ql, qh, scales) = (&b[..128], &b[128..192], &b[192..208]);
            let d = f16_at(b, 208);
            for i in 0..256 {
                let h = i / 128;
                let low = (ql[64 * h + i % 64] >> (4 * ((i % 128) / 64))) & 0x0f;
                let high = (qh[32 * h + i % 32] >> (2 * ((i % 128) / 32))) & 3;
                let q = (low | (high << 4)) as i8 - 32;
                let dl = d * (scales[i / 16] as i8) as f32;
                out[i] = dl * q as f32;
            }
        }
        other => unreachable!("{} has no block dequantizer", other.name()),
    }
}

/// Dequantize the values `skip..skip + out.len()` of the blocks in `raw` (whole blocks).
pub fn dequantize(t: GgmlType, raw: &[u8], skip: usize, out: &mut [f32]) {
    let (values, bytes) = t.block();
    let (values, bytes) = (values as usize, bytes as usize);
    let mut block = [0f32; 256];
    let mut filled = 0;
    let mut index = skip / values;
    let mut from = skip % values;
    while filled < out.len() {
        dequantize_block(
            t,
            &raw[index * bytes..(index + 1) * bytes],
            &mut block[..values],
        );
        let take = (values - from).min(out.len() - filled);
        out[filled..filled + take].copy_from_slice(&block[from..from + take]);
        filled += take;
        from = 0;
        index += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_0_is_scale_times_value() {
        let mut b = vec![0u8; 34];
        b[..2].copy_from_slice(&half::f16::from_f32(0.5).to_bits().to_le_bytes());
        b[2] = 4;
        b[3] = (-6i8) as u8;
        let mut out = [0f32; 32];
        dequantize_block(GgmlType::Q8_0, &b, &mut out);
        assert_eq!(&out[..3], &[2.0, -3.0, 0.0]);
    }

    #[test]
    fn a_sub_range_starts_inside_a_block() {
        // Two Q8_0 blocks with values 0..32 and 32..64 (scale 1): values 30..34 span both.
        let mut raw = Vec::new();
        for k in 0..2 {
            raw.extend_from_slice(&half::f16::from_f32(1.0).to_bits().to_le_bytes());
            raw.extend((0..32).map(|i| (32 * k + i) as u8));
        }
        let mut out = [0f32; 4];
        dequantize(GgmlType::Q8_0, &raw, 30, &mut out);
        assert_eq!(out, [30.0, 31.0, 32.0, 33.0]);
    }
}
