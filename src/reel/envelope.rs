//! The metadata envelope: the bytes of the reel's `weightreel.meta` attachment.
//!
//! All integers are little-endian. The layout, in order:
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `WREELMD1` |
//! | 4 | format version (u32), [`REEL_FORMAT_VERSION`] when written |
//! | 4 | width of the video stream (u32) |
//! | 4 | height of the video stream (u32) |
//! | 4 | planes = video tracks (u32) |
//! | 4 | sample depth: 16 or 8 (u32) |
//! | 4 | sample kind: 0 quantized levels, 1 float bits (u32, from version 2) |
//! | 8 | frame count `n` (u64) |
//! | 8 | JSON length `j` (u64) |
//! | 4 | CRC32 of the JSON (u32) |
//! | 12·n | frame table: logical width, height, CRC32 of the decoded planes (3 × u32) |
//! | j | the caller's JSON, byte for byte |
//! | 4 | CRC32 of every byte above (u32) |
//!
//! The version is read right after the magic and checked before anything else, so that a newer
//! layout is refused with an "upgrade" message rather than reported as corrupt.

use super::{
    FrameEntry, ReelSpec, SampleDepth, SampleKind, OLDEST_READABLE_VERSION, REEL_FORMAT_VERSION,
};

/// First bytes of every envelope.
pub const MAGIC: &[u8; 8] = b"WREELMD1";

/// Size of the fixed header that precedes the frame table.
const HEADER: usize = 8 + 4 * 6 + 8 + 8 + 4;

/// Size of one frame-table entry.
const ENTRY: usize = 12;

/// The decoded contents of an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Shape of the reel's video tracks.
    pub spec: ReelSpec,
    /// One entry per frame, in frame order.
    pub frames: Vec<FrameEntry>,
    /// The caller's metadata, opaque to the reel.
    pub json: Vec<u8>,
}

/// Serialize an envelope (always at [`REEL_FORMAT_VERSION`]).
pub fn encode(spec: &ReelSpec, frames: &[FrameEntry], json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + ENTRY * frames.len() + json.len() + 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&REEL_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&spec.width.to_le_bytes());
    out.extend_from_slice(&spec.height.to_le_bytes());
    out.extend_from_slice(&spec.planes.to_le_bytes());
    out.extend_from_slice(&spec.depth.bits().to_le_bytes());
    out.extend_from_slice(&spec.samples.code().to_le_bytes());
    out.extend_from_slice(&(frames.len() as u64).to_le_bytes());
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(json).to_le_bytes());
    for f in frames {
        out.extend_from_slice(&f.width.to_le_bytes());
        out.extend_from_slice(&f.height.to_le_bytes());
        out.extend_from_slice(&f.crc32.to_le_bytes());
    }
    out.extend_from_slice(json);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Little-endian cursor that never reads past its slice.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| "metadata envelope is truncated".to_string())?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let lo = u64::from(self.u32()?);
        let hi = u64::from(self.u32()?);
        Ok(lo | (hi << 32))
    }
}

/// Parse and verify an envelope. The error is the problem only; the caller adds the file name.
pub fn decode(bytes: &[u8]) -> Result<Envelope, String> {
    let mut c = Cursor { bytes, at: 0 };
    if c.take(MAGIC.len()).ok() != Some(&MAGIC[..]) {
        return Err("metadata attachment is not a weightreel envelope (bad magic)".into());
    }
    let version = c.u32()?;
    if version > REEL_FORMAT_VERSION {
        return Err(format!(
            "format version {version} is newer than this weightreel supports \
             ({REEL_FORMAT_VERSION}); upgrade weightreel"
        ));
    }
    if version == 0 {
        return Err("metadata envelope has format version 0 (corrupt)".into());
    }
    if version < OLDEST_READABLE_VERSION {
        return Err(format!(
            "format version {version} was written by an older weightreel, which stored every \
             byte with FFV1 and lossless samples in another order; this one reads versions \
             {OLDEST_READABLE_VERSION}..={REEL_FORMAT_VERSION}: encode the model again"
        ));
    }
    // The trailing CRC covers the whole envelope, so check it before trusting any length.
    let body = bytes
        .len()
        .checked_sub(4)
        .filter(|&n| n >= HEADER)
        .ok_or("metadata envelope is truncated")?;
    let stored = u32::from_le_bytes([
        bytes[body],
        bytes[body + 1],
        bytes[body + 2],
        bytes[body + 3],
    ]);
    if crc32fast::hash(&bytes[..body]) != stored {
        return Err("metadata envelope failed its CRC32 check (corrupt metadata)".into());
    }
    let (width, height, planes, bits) = (c.u32()?, c.u32()?, c.u32()?, c.u32()?);
    let depth = SampleDepth::from_bits(bits)
        .ok_or_else(|| format!("metadata envelope has unknown sample depth {bits}"))?;
    let kind = c.u32()?;
    let samples = SampleKind::from_code(kind)
        .ok_or_else(|| format!("metadata envelope has unknown sample kind {kind}"))?;
    let spec = ReelSpec {
        width,
        height,
        planes,
        depth,
        samples,
    };
    spec.check()
        .map_err(|e| format!("metadata envelope has {e}"))?;
    let count = c.u64()?;
    let json_len = c.u64()?;
    let json_crc = c.u32()?;
    let table_len = count
        .checked_mul(ENTRY as u64)
        .and_then(|t| t.checked_add(json_len))
        .and_then(|t| t.checked_add(HEADER as u64));
    if table_len != Some(body as u64) {
        return Err("metadata envelope lengths do not add up (corrupt metadata)".into());
    }
    let mut frames = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let (w, h, crc32) = (c.u32()?, c.u32()?, c.u32()?);
        frames.push(FrameEntry {
            width: w,
            height: h,
            crc32,
        });
    }
    let json = c.take(json_len as usize)?.to_vec();
    if crc32fast::hash(&json) != json_crc {
        return Err("metadata JSON failed its CRC32 check (corrupt metadata)".into());
    }
    Ok(Envelope { spec, frames, json })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let spec = ReelSpec {
            width: 4,
            height: 2,
            planes: 2,
            depth: SampleDepth::Gray16,
            samples: SampleKind::FloatBits,
        };
        let frames = [
            FrameEntry {
                width: 4,
                height: 2,
                crc32: 7,
            },
            FrameEntry {
                width: 1,
                height: 1,
                crc32: 9,
            },
        ];
        encode(&spec, &frames, br#"{"a":1}"#)
    }

    #[test]
    fn round_trip() {
        let env = decode(&sample()).unwrap();
        assert_eq!(env.json, br#"{"a":1}"#);
        assert_eq!(env.frames.len(), 2);
        assert_eq!(
            env.frames[1],
            FrameEntry {
                width: 1,
                height: 1,
                crc32: 9
            }
        );
        assert_eq!(env.spec.planes, 2);
    }

    #[test]
    fn every_flipped_byte_and_truncation_is_refused() {
        let good = sample();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x10;
            assert!(decode(&bad).is_err(), "flip at {i} accepted");
            assert!(decode(&good[..i]).is_err(), "truncation at {i} accepted");
        }
    }

    #[test]
    fn newer_version_asks_for_an_upgrade() {
        let mut bad = sample();
        bad[8..12].copy_from_slice(&3u32.to_le_bytes());
        let e = decode(&bad).unwrap_err();
        assert_eq!(
            e,
            "format version 3 is newer than this weightreel supports (2); upgrade weightreel"
        );
    }

    #[test]
    fn version_1_asks_for_a_new_encode() {
        let mut old = sample();
        old[8..12].copy_from_slice(&1u32.to_le_bytes());
        let e = decode(&old).unwrap_err();
        assert_eq!(
            e,
            "format version 1 was written by an older weightreel, which stored every byte with \
             FFV1 and lossless samples in another order; this one reads versions 2..=2: encode \
             the model again"
        );
    }
}
