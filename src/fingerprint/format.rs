//! The stored bytes of a fingerprint, and of its sketch.
//!
//! All integers little-endian. A fingerprint, version 1:
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `WRFINGER` |
//! | 4 | format version (u32), [`FINGERPRINT_VERSION`] when written |
//! | 4 | tensor count `t` (u32) |
//! | … | `t` tensor records, below |
//! | 4 | CRC32 of every byte above (u32) |
//!
//! A tensor record: name length (u16) and UTF-8 name; role (u8, index in `Role::ALL`); layer
//! (u32, `u32::MAX` for none); rank (u8) and dimensions (u64 each); dtype length (u8) and name;
//! sample start (u64) and length `n` (u32); the sample's scale (f32); mean, std, skew, excess
//! kurtosis, RMS, largest magnitude (f32 each) and non-finite count (u32); then `n` f16
//! patterns, each value divided by the scale.
//!
//! A sketch is [`SKETCH_DIM`] f16 patterns and the CRC32 of those bytes (u32). Role features
//! are, per role present, the role code (u8) and share, log10 std, mean/std, skew, tails (f32
//! each), then the CRC32 of those bytes (u32).
//!
//! The version is read right after the magic, the CRC is checked before any length is
//! trusted, and every length is bounded by the bytes that are there.

use half::f16;

use super::{Fingerprint, RoleFeatures, SampleStats, TensorPrint};
use crate::roles::Role;

/// Version of the fingerprint format this build writes and reads.
pub const FINGERPRINT_VERSION: u32 = 1;
/// Values in a sketch.
pub const SKETCH_DIM: usize = 256;

const MAGIC: &[u8; 8] = b"WRFINGER";
/// Largest rank accepted.
const MAX_RANK: u8 = 16;

/// The scale a sample's values are stored against: their RMS (finite values), else 1.
pub(super) fn sample_scale(values: &[f32]) -> f32 {
    let rms = SampleStats::of(values).rms;
    if rms > 0.0 && rms.is_finite() {
        rms
    } else {
        1.0
    }
}

/// The stored pattern of `v`.
pub(super) fn to_stored(v: f32, scale: f32) -> u16 {
    f16::from_f32(v / scale).to_bits()
}

/// The value of a stored pattern.
pub(super) fn from_stored(bits: u16, scale: f32) -> f32 {
    f16::from_bits(bits).to_f32() * scale
}

impl Fingerprint {
    /// The stored bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.tensors.len() * 128);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FINGERPRINT_VERSION.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u32).to_le_bytes());
        for t in &self.tensors {
            let name = &t.name.as_bytes()[..t.name.len().min(u16::MAX as usize)];
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(name);
            let role = Role::ALL.iter().position(|&r| r == t.role).unwrap_or(5) as u8;
            out.push(role);
            out.extend_from_slice(&t.layer.unwrap_or(u32::MAX).to_le_bytes());
            out.push(t.shape.len().min(MAX_RANK as usize) as u8);
            for d in t.shape.iter().take(MAX_RANK as usize) {
                out.extend_from_slice(&d.to_le_bytes());
            }
            let dtype = &t.dtype.as_bytes()[..t.dtype.len().min(u8::MAX as usize)];
            out.push(dtype.len() as u8);
            out.extend_from_slice(dtype);
            out.extend_from_slice(&t.sample_start.to_le_bytes());
            out.extend_from_slice(&(t.values.len() as u32).to_le_bytes());
            let scale = t.scale;
            out.extend_from_slice(&scale.to_le_bytes());
            let s = &t.stats;
            for v in [s.mean, s.std, s.skew, s.kurtosis, s.rms, s.absmax] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&s.nonfinite.to_le_bytes());
            for &v in &t.values {
                out.extend_from_slice(&to_stored(v, scale).to_le_bytes());
            }
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parse stored bytes. The error is the problem only; the caller names the model.
    pub fn from_bytes(bytes: &[u8]) -> Result<Fingerprint, String> {
        let mut c = Cursor { bytes, at: 0 };
        if c.take(MAGIC.len()).ok() != Some(&MAGIC[..]) {
            return Err("not a weightreel fingerprint (bad magic)".into());
        }
        let version = c.u32()?;
        if version > FINGERPRINT_VERSION {
            return Err(format!(
                "fingerprint format version {version} is newer than this weightreel supports ({FINGERPRINT_VERSION}); upgrade weightreel"
            ));
        }
        if version == 0 {
            return Err("fingerprint has format version 0 (corrupt)".into());
        }
        let body = bytes.len().checked_sub(4).filter(|&n| n >= c.at);
        let body = body.ok_or("fingerprint is truncated")?;
        let stored = u32::from_le_bytes(bytes[body..].try_into().expect("4 bytes"));
        if crc32fast::hash(&bytes[..body]) != stored {
            return Err("fingerprint checksum mismatch (corrupt)".into());
        }
        let mut c = Cursor {
            bytes: &bytes[..body],
            at: c.at,
        };
        let count = c.u32()? as usize;
        // Each record has at least 60 bytes: a hostile count allocates nothing much.
        if count > c.left() / 60 {
            return Err(format!(
                "fingerprint claims {count} tensors in {} bytes",
                bytes.len()
            ));
        }
        let mut tensors = Vec::with_capacity(count);
        for i in 0..count {
            tensors.push(tensor(&mut c).map_err(|e| format!("tensor record {i}: {e}"))?);
        }
        if c.left() != 0 {
            return Err(format!("{} bytes after the last tensor record", c.left()));
        }
        let mut fp = Fingerprint {
            tensors,
            sketch: Vec::new(),
        };
        fp.sketch = fp.make_sketch();
        Ok(fp)
    }

    /// The stored bytes of the sketch.
    pub fn sketch_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SKETCH_DIM * 2 + 4);
        for &v in &self.sketch {
            out.extend_from_slice(&f16::from_f32(v).to_bits().to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }
}

/// Parse a stored sketch.
pub fn sketch_from_bytes(bytes: &[u8]) -> Result<Vec<f32>, String> {
    if bytes.len() != SKETCH_DIM * 2 + 4 {
        return Err(format!(
            "sketch of {} bytes (expected {})",
            bytes.len(),
            SKETCH_DIM * 2 + 4
        ));
    }
    let (values, crc) = bytes.split_at(SKETCH_DIM * 2);
    if crc32fast::hash(values) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
        return Err("sketch checksum mismatch (corrupt)".into());
    }
    Ok(values
        .chunks_exact(2)
        .map(|b| f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32())
        .collect())
}

/// The stored bytes of role features.
pub fn features_bytes(features: &[RoleFeatures]) -> Vec<u8> {
    let mut out = Vec::with_capacity(features.len() * FEATURE_RECORD + 4);
    for f in features {
        out.push(Role::ALL.iter().position(|&r| r == f.role).unwrap_or(5) as u8);
        for v in [f.share, f.log_std, f.mean_over_std, f.skew, f.tails] {
            out.extend_from_slice(&(v as f32).to_le_bytes());
        }
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

const FEATURE_RECORD: usize = 1 + 5 * 4;

/// Parse stored role features.
pub fn features_from_bytes(bytes: &[u8]) -> Result<Vec<RoleFeatures>, String> {
    let body = bytes
        .len()
        .checked_sub(4)
        .filter(|n| n % FEATURE_RECORD == 0)
        .ok_or_else(|| format!("role features of {} bytes (corrupt)", bytes.len()))?;
    let (records, crc) = bytes.split_at(body);
    if crc32fast::hash(records) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
        return Err("role features checksum mismatch (corrupt)".into());
    }
    records
        .chunks_exact(FEATURE_RECORD)
        .map(|r| {
            let role = *Role::ALL.get(r[0] as usize).ok_or("unknown role code")?;
            let f = |k: usize| {
                f64::from(f32::from_le_bytes(
                    r[1 + 4 * k..5 + 4 * k].try_into().expect("4 bytes"),
                ))
            };
            Ok(RoleFeatures {
                role,
                share: f(0),
                log_std: f(1),
                mean_over_std: f(2),
                skew: f(3),
                tails: f(4),
            })
        })
        .collect()
}

fn tensor(c: &mut Cursor<'_>) -> Result<TensorPrint, String> {
    let name_len = c.u16()? as usize;
    let name = std::str::from_utf8(c.take(name_len)?)
        .map_err(|_| "name is not UTF-8")?
        .to_string();
    let role = *Role::ALL.get(c.u8()? as usize).ok_or("unknown role code")?;
    let layer = Some(c.u32()?).filter(|&l| l != u32::MAX);
    let rank = c.u8()?;
    if rank > MAX_RANK {
        return Err(format!("rank {rank} (expected <= {MAX_RANK})"));
    }
    let shape = (0..rank)
        .map(|_| c.u64())
        .collect::<Result<Vec<u64>, _>>()?;
    let numel = shape
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .ok_or("shape overflows")?;
    let dtype_len = c.u8()? as usize;
    let dtype = std::str::from_utf8(c.take(dtype_len)?)
        .map_err(|_| "dtype is not UTF-8")?
        .to_string();
    let sample_start = c.u64()?;
    let n = c.u32()? as u64;
    if sample_start.checked_add(n).is_none_or(|end| end > numel) {
        return Err(format!(
            "sample of {n} values at element {sample_start} runs past the tensor's {numel}"
        ));
    }
    let scale = c.f32()?;
    if !(scale > 0.0 && scale.is_finite()) {
        return Err(format!(
            "sample scale {scale} (expected a positive finite number)"
        ));
    }
    let mut f = [0f32; 6];
    for v in &mut f {
        *v = c.f32()?;
    }
    let nonfinite = c.u32()?;
    let raw = c.take(n as usize * 2)?;
    let values = raw
        .chunks_exact(2)
        .map(|b| from_stored(u16::from_le_bytes([b[0], b[1]]), scale))
        .collect();
    Ok(TensorPrint {
        name,
        role,
        layer,
        shape,
        dtype,
        sample_start,
        values,
        scale,
        stats: SampleStats {
            mean: f[0],
            std: f[1],
            skew: f[2],
            kurtosis: f[3],
            rms: f[4],
            absmax: f[5],
            nonfinite,
        },
    })
}

/// Little-endian cursor that never reads past its slice.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| "fingerprint is truncated".to_string())?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn f32(&mut self) -> Result<f32, String> {
        Ok(f32::from_bits(self.u32()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Fingerprint {
        let values: Vec<f32> = (0..40)
            .map(|i| ((i * 37 % 17) as f32 - 8.0) * 0.01)
            .collect();
        let mut fp = Fingerprint {
            tensors: vec![TensorPrint {
                name: "bert.encoder.layer.0.attention.self.query.weight".into(),
                role: Role::Attention,
                layer: Some(0),
                shape: vec![8, 10],
                dtype: "F32".into(),
                sample_start: 20,
                stats: SampleStats::of(&values),
                values: super::super::round_to_stored(&values).0,
                scale: super::super::round_to_stored(&values).1,
            }],
            sketch: Vec::new(),
        };
        fp.sketch = fp.make_sketch();
        fp
    }

    #[test]
    fn bytes_round_trip() {
        let fp = sample();
        assert_eq!(Fingerprint::from_bytes(&fp.to_bytes()).unwrap(), fp);
        let sketch = sketch_from_bytes(&fp.sketch_bytes()).unwrap();
        assert_eq!(sketch.len(), SKETCH_DIM);
    }

    #[test]
    fn every_truncation_and_flipped_byte_is_an_error() {
        let bytes = sample().to_bytes();
        for n in 0..bytes.len() {
            assert!(
                Fingerprint::from_bytes(&bytes[..n]).is_err(),
                "truncated to {n}"
            );
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(Fingerprint::from_bytes(&b).is_err(), "byte {i} flipped");
        }
    }

    #[test]
    fn newer_version_says_upgrade() {
        let mut bytes = sample().to_bytes();
        bytes[8] = 9;
        let e = Fingerprint::from_bytes(&bytes).unwrap_err();
        assert_eq!(
            e,
            "fingerprint format version 9 is newer than this weightreel supports (1); upgrade weightreel"
        );
    }
}
