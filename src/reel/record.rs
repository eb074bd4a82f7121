//! Frame records: what a reel knows about one frame, carried with the frame itself.
//!
//! Each frame's first video packet on track 0 carries a Matroska `BlockAdditional`
//! (`BlockAddID` 1; FFmpeg's `AV_PKT_DATA_MATROSKA_BLOCKADDITIONAL` side data, which its muxer
//! writes and its demuxer reads back). Players ignore it. Its bytes, little-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic `WRFR` |
//! | 4 | record version (u32), [`RECORD_VERSION`] |
//! | 8 | frame index in the reel (u64) |
//! | 4 | CRC32 of the frame's decoded planes (u32), see [`super::planes_crc32`] |
//! | 4 | length `k` of the caller's record (u32) |
//! | k | the caller's record (the encoder's per-frame JSON), byte for byte |
//! | 4 | CRC32 of every byte above (u32) |
//!
//! Keeping per-frame facts here rather than in the header attachment means that writing,
//! joining and reading a reel holds no per-frame table: memory does not grow with the frame
//! count, whatever the model's size.

use super::envelope::Cursor;

/// Version of the record layout this build writes and the newest it reads.
pub const RECORD_VERSION: u32 = 1;

const MAGIC: &[u8; 4] = b"WRFR";

/// The `BlockAddID` the records use: 1, the only one FFmpeg 5.1's muxer writes.
const BLOCK_ADD_ID: u64 = 1;

/// Largest caller record accepted when reading: far above what an encoder writes (a few
/// hundred bytes), small enough that a hostile length allocates nothing much.
pub const MAX_RECORD: usize = 1 << 24;

/// A frame's record, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameRecordBytes {
    /// Frame index in the reel.
    pub index: u64,
    /// CRC32 of the frame's decoded planes.
    pub crc32: u32,
    /// The caller's bytes.
    pub record: Vec<u8>,
}

/// The side data for frame `index`: the 8-byte `BlockAddID` FFmpeg expects, then the record.
pub fn encode(index: u64, crc32: u32, record: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 28 + record.len());
    out.extend_from_slice(&BLOCK_ADD_ID.to_be_bytes());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&RECORD_VERSION.to_le_bytes());
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(&crc32.to_le_bytes());
    out.extend_from_slice(&(record.len() as u32).to_le_bytes());
    out.extend_from_slice(record);
    let crc = crc32fast::hash(&out[8..]);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Parse and verify side data written by [`encode`]. The error is the problem only.
pub fn decode(side: &[u8]) -> Result<FrameRecordBytes, String> {
    let corrupt = |what: &str| format!("its frame record {what} (corrupt metadata)");
    if side.len() < 8 + 28 || side[..8] != BLOCK_ADD_ID.to_be_bytes() {
        return Err(corrupt("is missing or truncated"));
    }
    let body = &side[8..];
    let (content, stored) = body.split_at(body.len() - 4);
    if crc32fast::hash(content).to_le_bytes() != stored {
        return Err(corrupt("failed its CRC32 check"));
    }
    let mut c = Cursor {
        bytes: content,
        at: 0,
    };
    if c.take(4)? != MAGIC {
        return Err(corrupt("has a bad magic"));
    }
    let version = c.u32()?;
    if version > RECORD_VERSION {
        return Err(format!(
            "frame record version {version} is newer than this weightreel supports ({RECORD_VERSION}); upgrade weightreel"
        ));
    }
    let index = c.u64()?;
    let crc32 = c.u32()?;
    let len = c.u32()? as usize;
    if len > MAX_RECORD || c.at + len != content.len() {
        return Err(corrupt("has lengths that do not add up"));
    }
    let record = c.take(len)?.to_vec();
    Ok(FrameRecordBytes {
        index,
        crc32,
        record,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let side = encode(7, 0xdead_beef, b"{\"x\":1}");
        assert_eq!(
            decode(&side).unwrap(),
            FrameRecordBytes {
                index: 7,
                crc32: 0xdead_beef,
                record: b"{\"x\":1}".to_vec()
            }
        );
    }

    #[test]
    fn every_flipped_byte_and_truncation_is_refused() {
        let good = encode(3, 42, b"abc");
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x04;
            assert!(decode(&bad).is_err(), "flip at {i} accepted");
            assert!(decode(&good[..i]).is_err(), "truncation at {i} accepted");
        }
    }
}
