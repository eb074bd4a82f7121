//! The metadata envelope: the bytes of the reel's `weightreel.meta` attachment.
//!
//! All integers are little-endian. Versions 2 and 3 (written now: 3 when a frame of the reel is
//! stored as tiles in curve order, see [`super::record`], else 2), in order:
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `WREELMD1` |
//! | 4 | format version (u32), [`REEL_FORMAT_VERSION`] when written |
//! | 4 | width of the video stream (u32) |
//! | 4 | height of the video stream (u32) |
//! | 4 | planes (u32) |
//! | 4 | sample depth: 16 or 8 (u32) |
//! | 4 | sample kind: 0 quantized levels, 1 float bits (u32, from version 2) |
//! | 8 | frame count `n` (u64) |
//! | 8 | JSON length `j` (u64) |
//! | 4 | CRC32 of the JSON (u32) |
//! | 8 | size runs `r` (u64) |
//! | 16·r | frame sizes, run-length coded: frames in the run (u64), logical width, height (u32) |
//! | j | the caller's JSON, byte for byte |
//! | 4 | CRC32 of every byte above (u32) |
//!
//! Nothing in it grows with the frame count (an encode's frames share one size, but the last):
//! each frame's CRC32 and the caller's per-frame record travel with the frame itself, in its
//! first packet (see [`super::record`]). Version 1 had, instead of the runs, a table of 12
//! bytes a frame (width, height, CRC32 of the planes); it is still read.
//!
//! The version is read right after the magic and checked before anything else, so that a newer
//! layout is refused with an "upgrade" message rather than reported as corrupt.

use super::{ReelSpec, SampleDepth, SampleKind, OLDEST_READABLE_VERSION, REEL_FORMAT_VERSION};

/// First bytes of every envelope.
pub const MAGIC: &[u8; 8] = b"WREELMD1";

/// Size of the fixed header that precedes the run count (version 2, with the sample kind).
const HEADER: usize = 8 + 4 * 6 + 8 + 8 + 4;

/// Size of version 1's fixed header (no sample kind), which precedes its frame table.
const HEADER_V1: usize = 8 + 4 * 5 + 8 + 8 + 4;

/// Size of one version-1 frame-table entry.
const ENTRY_V1: usize = 12;

/// Size of one size run.
const RUN: usize = 16;

/// Frames of one logical size, in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeRun {
    /// Frames in the run.
    pub count: u64,
    /// Their logical width.
    pub width: u32,
    /// Their logical height.
    pub height: u32,
}

/// The logical sizes of a reel's frames, run-length coded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrameSizes {
    runs: Vec<SizeRun>,
    frames: u64,
}

impl FrameSizes {
    /// Add a frame of `width` x `height` at the end.
    pub fn push(&mut self, width: u32, height: u32) {
        self.push_run(1, width, height);
    }

    /// Add `count` frames of `width` x `height` at the end.
    pub fn push_run(&mut self, count: u64, width: u32, height: u32) {
        if count == 0 {
            return;
        }
        match self.runs.last_mut() {
            Some(last) if (last.width, last.height) == (width, height) => last.count += count,
            _ => self.runs.push(SizeRun {
                count,
                width,
                height,
            }),
        }
        self.frames += count;
    }

    /// Frames in all.
    pub fn len(&self) -> u64 {
        self.frames
    }

    /// True when there are no frames.
    pub fn is_empty(&self) -> bool {
        self.frames == 0
    }

    /// The runs, in frame order.
    pub fn runs(&self) -> &[SizeRun] {
        &self.runs
    }

    /// Logical size of frame `index`.
    pub fn get(&self, index: u64) -> Option<(u32, u32)> {
        let mut first = 0u64;
        for run in &self.runs {
            if index < first + run.count {
                return Some((run.width, run.height));
            }
            first += run.count;
        }
        None
    }

    /// Index of the first video picture of frame `index` (`index == len()` gives the total),
    /// for a reel of `spec` and format `version`.
    pub fn first_picture(&self, spec: &ReelSpec, version: u32, index: u64) -> u64 {
        let mut frame = 0u64;
        let mut picture = 0u64;
        for run in &self.runs {
            let per = spec.pictures_in(version, run.width, run.height);
            let take = run.count.min(index - frame);
            picture += take * per;
            frame += take;
            if frame == index {
                break;
            }
        }
        picture
    }
}

/// The decoded contents of an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Format version it was written with.
    pub version: u32,
    /// Shape of the reel's video tracks.
    pub spec: ReelSpec,
    /// Logical size of every frame.
    pub sizes: FrameSizes,
    /// Version 1 only: the CRC32 of each frame's planes (version 2 keeps them in the frames'
    /// records).
    pub crcs_v1: Option<Vec<u32>>,
    /// The caller's metadata, opaque to the reel.
    pub json: Vec<u8>,
}

/// Serialize an envelope at [`REEL_FORMAT_VERSION`].
pub fn encode(spec: &ReelSpec, sizes: &FrameSizes, json: &[u8]) -> Vec<u8> {
    encode_version(spec, sizes, json, REEL_FORMAT_VERSION)
}

/// Serialize an envelope saying `version` (2 or 3: their envelopes are laid out alike; 3 says
/// that frames may be stored as tiles in curve order, which version-2 readers cannot read).
pub fn encode_version(spec: &ReelSpec, sizes: &FrameSizes, json: &[u8], version: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + 8 + RUN * sizes.runs.len() + json.len() + 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&spec.width.to_le_bytes());
    out.extend_from_slice(&spec.height.to_le_bytes());
    out.extend_from_slice(&spec.planes.to_le_bytes());
    out.extend_from_slice(&spec.depth.bits().to_le_bytes());
    out.extend_from_slice(&spec.samples.code().to_le_bytes());
    out.extend_from_slice(&sizes.len().to_le_bytes());
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(json).to_le_bytes());
    out.extend_from_slice(&(sizes.runs.len() as u64).to_le_bytes());
    for run in &sizes.runs {
        out.extend_from_slice(&run.count.to_le_bytes());
        out.extend_from_slice(&run.width.to_le_bytes());
        out.extend_from_slice(&run.height.to_le_bytes());
    }
    out.extend_from_slice(json);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Little-endian cursor that never reads past its slice.
pub(super) struct Cursor<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) at: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| "metadata envelope is truncated".to_string())?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    pub(super) fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(super) fn u64(&mut self) -> Result<u64, String> {
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
            "format version {version} is older than this weightreel reads \
             ({OLDEST_READABLE_VERSION}..={REEL_FORMAT_VERSION})"
        ));
    }
    let header = if version == 1 { HEADER_V1 } else { HEADER };
    // The trailing CRC covers the whole envelope, so check it before trusting any length.
    let body = bytes
        .len()
        .checked_sub(4)
        .filter(|&n| n >= header)
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
    // Version 1 had no sample kind: its reels are read by their own rules (every track FFV1,
    // see the reader), for which the kind does not matter.
    let samples = if version == 1 {
        SampleKind::Quantized
    } else {
        let kind = c.u32()?;
        SampleKind::from_code(kind)
            .ok_or_else(|| format!("metadata envelope has unknown sample kind {kind}"))?
    };
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
    let lengths_wrong = || "metadata envelope lengths do not add up (corrupt metadata)".to_string();
    let mut sizes = FrameSizes::default();
    let mut crcs_v1 = None;
    if version == 1 {
        let table_len = count
            .checked_mul(ENTRY_V1 as u64)
            .and_then(|t| t.checked_add(json_len))
            .and_then(|t| t.checked_add(HEADER_V1 as u64));
        if table_len != Some(body as u64) {
            return Err(lengths_wrong());
        }
        let mut crcs = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let (w, h, crc32) = (c.u32()?, c.u32()?, c.u32()?);
            sizes.push(w, h);
            crcs.push(crc32);
        }
        crcs_v1 = Some(crcs);
    } else {
        let runs = c.u64()?;
        let total = runs
            .checked_mul(RUN as u64)
            .and_then(|t| t.checked_add(json_len))
            .and_then(|t| t.checked_add(HEADER as u64 + 8));
        if total != Some(body as u64) {
            return Err(lengths_wrong());
        }
        for _ in 0..runs {
            let (n, w, h) = (c.u64()?, c.u32()?, c.u32()?);
            if n == 0 || sizes.len().checked_add(n).is_none() {
                return Err("metadata envelope has an empty or overflowing size run".into());
            }
            sizes.push_run(n, w, h);
        }
        if sizes.len() != count {
            return Err(format!(
                "metadata envelope's size runs cover {} frames, it says {count}",
                sizes.len()
            ));
        }
    }
    for (i, run) in sizes.runs().iter().enumerate() {
        if run.width == 0 || run.height == 0 || run.width > spec.width || run.height > spec.height {
            return Err(format!(
                "metadata envelope's size run {i} is {}x{}, outside the reel's {}x{}",
                run.width, run.height, spec.width, spec.height
            ));
        }
    }
    let json = c.take(json_len as usize)?.to_vec();
    if crc32fast::hash(&json) != json_crc {
        return Err("metadata JSON failed its CRC32 check (corrupt metadata)".into());
    }
    Ok(Envelope {
        version,
        spec,
        sizes,
        crcs_v1,
        json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ReelSpec {
        ReelSpec {
            width: 4,
            height: 2,
            planes: 2,
            depth: SampleDepth::Gray16,
            samples: SampleKind::FloatBits,
        }
    }

    fn sample() -> Vec<u8> {
        let mut sizes = FrameSizes::default();
        sizes.push(4, 2);
        sizes.push(4, 2);
        sizes.push(1, 1);
        encode(&spec(), &sizes, br#"{"a":1}"#)
    }

    #[test]
    fn round_trip() {
        let env = decode(&sample()).unwrap();
        assert_eq!(env.json, br#"{"a":1}"#);
        assert_eq!(env.version, REEL_FORMAT_VERSION);
        assert_eq!(env.sizes.len(), 3);
        assert_eq!(env.sizes.runs().len(), 2, "equal sizes share a run");
        assert_eq!(env.sizes.get(1), Some((4, 2)));
        assert_eq!(env.sizes.get(2), Some((1, 1)));
        assert_eq!(env.sizes.get(3), None);
        assert_eq!(env.spec.planes, 2);
        assert!(env.crcs_v1.is_none());
    }

    #[test]
    fn first_pictures_count_tiles() {
        let spec = ReelSpec {
            width: 1024,
            height: 1024,
            planes: 1,
            depth: SampleDepth::Gray16,
            samples: SampleKind::Quantized,
        };
        let mut sizes = FrameSizes::default();
        sizes.push_run(3, 1024, 1024); // 4 tiles of 512x512 each
        sizes.push(512, 256); // 1 tile
        assert_eq!(
            (0..=4)
                .map(|i| sizes.first_picture(&spec, 2, i))
                .collect::<Vec<_>>(),
            vec![0, 4, 8, 12, 13]
        );
        // Version 3 pictures are 128x128: 64 for each 1024x1024 frame, 8 for 512x256.
        assert_eq!(
            (0..=4)
                .map(|i| sizes.first_picture(&spec, 3, i))
                .collect::<Vec<_>>(),
            vec![0, 64, 128, 192, 200]
        );
    }

    #[test]
    fn version_1_envelopes_still_read() {
        // Written field by field as version 1 laid them out.
        let json = br#"{"v":1}"#;
        let mut v1 = Vec::new();
        v1.extend_from_slice(MAGIC);
        for v in [1u32, 4, 2, 2, 16] {
            v1.extend_from_slice(&v.to_le_bytes());
        }
        v1.extend_from_slice(&2u64.to_le_bytes());
        v1.extend_from_slice(&(json.len() as u64).to_le_bytes());
        v1.extend_from_slice(&crc32fast::hash(json).to_le_bytes());
        for (w, h, crc) in [(4u32, 2u32, 7u32), (1, 1, 9)] {
            for v in [w, h, crc] {
                v1.extend_from_slice(&v.to_le_bytes());
            }
        }
        v1.extend_from_slice(json);
        let crc = crc32fast::hash(&v1);
        v1.extend_from_slice(&crc.to_le_bytes());
        let env = decode(&v1).unwrap();
        assert_eq!(env.version, 1);
        assert_eq!(env.crcs_v1, Some(vec![7, 9]));
        assert_eq!(env.sizes.get(1), Some((1, 1)));
        assert_eq!(env.json, json);
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
        let newer = REEL_FORMAT_VERSION + 1;
        bad[8..12].copy_from_slice(&newer.to_le_bytes());
        let e = decode(&bad).unwrap_err();
        assert_eq!(
            e,
            format!("format version {newer} is newer than this weightreel supports ({REEL_FORMAT_VERSION}); upgrade weightreel")
        );
    }
}
