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
//! A frame stored as several tiles in curve order (reel format version 3, see
//! [`super::REEL_FORMAT_VERSION`]) carries a *tile record* on every tile's packet on track 0
//! instead, so that each tile decodes as soon as it is read. Its bytes, little-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic `WRTL` |
//! | 4 | record version (u32), [`TILE_RECORD_VERSION`] |
//! | 8 | frame index in the reel (u64) |
//! | 4 | tile index in the frame (u32) |
//! | 4 | tiles in the frame (u32) |
//! | 4 × 2 | the tile's top-left pixel in the frame: x, y (u32) |
//! | 4 | CRC32 of the tile's decoded planes (u32), see [`super::planes_crc32`] |
//! | 4 | on the last tile, CRC32 of all the frame's tiles' planes in stored order; else 0 |
//! | 4 | length `k` of the caller's tile record (u32) |
//! | k | the caller's tile record (the encoder's JSON: the tile's segment pieces) |
//! | 4 | length `f` of the caller's frame record: 0 but on the last tile (u32) |
//! | f | the caller's frame record (the frame's summary, written once its statistics are known) |
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

/// Version of the tile record layout this build writes and the newest it reads.
pub const TILE_RECORD_VERSION: u32 = 1;

const TILE_MAGIC: &[u8; 4] = b"WRTL";

/// A tile's record, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileRecordBytes {
    /// Frame index in the reel.
    pub frame: u64,
    /// Tile index in the frame, and tiles in the frame.
    pub tile: u32,
    /// Tiles in the frame.
    pub tiles: u32,
    /// The tile's top-left pixel in the frame.
    pub x: u32,
    /// Likewise.
    pub y: u32,
    /// CRC32 of the tile's planes.
    pub crc32: u32,
    /// On the last tile: CRC32 of all the frame's tiles; else 0.
    pub frame_crc32: u32,
    /// The caller's tile record.
    pub record: Vec<u8>,
    /// The caller's frame record (on the last tile; else empty).
    pub frame_record: Vec<u8>,
}

/// Is this side data a tile record (rather than a frame record)? Nothing is verified.
pub fn is_tile_record(side: &[u8]) -> bool {
    side.len() >= 12 && side[..8] == BLOCK_ADD_ID.to_be_bytes() && &side[8..12] == TILE_MAGIC
}

/// The side data of a tile: the 8-byte `BlockAddID`, then the tile record.
pub fn encode_tile(tile: &TileRecordBytes) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 52 + tile.record.len() + tile.frame_record.len());
    out.extend_from_slice(&BLOCK_ADD_ID.to_be_bytes());
    out.extend_from_slice(TILE_MAGIC);
    out.extend_from_slice(&TILE_RECORD_VERSION.to_le_bytes());
    out.extend_from_slice(&tile.frame.to_le_bytes());
    for v in [
        tile.tile,
        tile.tiles,
        tile.x,
        tile.y,
        tile.crc32,
        tile.frame_crc32,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&(tile.record.len() as u32).to_le_bytes());
    out.extend_from_slice(&tile.record);
    out.extend_from_slice(&(tile.frame_record.len() as u32).to_le_bytes());
    out.extend_from_slice(&tile.frame_record);
    seal(out)
}

/// Appends the CRC32 of everything after the `BlockAddID`: the side data is complete.
fn seal(mut out: Vec<u8>) -> Vec<u8> {
    let crc = crc32fast::hash(&out[8..]);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Checks side data's `BlockAddID`, length (at least `min` bytes after it), CRC32, `magic`
/// and version (at most `newest`); returns a cursor on what follows the version, which
/// ends before the CRC32. `what` names the record in messages.
fn open<'a>(
    side: &'a [u8],
    what: &str,
    magic: &[u8; 4],
    min: usize,
    newest: u32,
) -> Result<Cursor<'a>, String> {
    let corrupt = |problem: &str| format!("its {what} {problem} (corrupt metadata)");
    if side.len() < 8 + min || side[..8] != BLOCK_ADD_ID.to_be_bytes() {
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
    if c.take(4)? != magic {
        return Err(corrupt("has a bad magic"));
    }
    let version = c.u32()?;
    if version > newest {
        return Err(format!(
            "{what} version {version} is newer than this weightreel supports ({newest}); upgrade weightreel"
        ));
    }
    Ok(c)
}

/// Parse and verify side data written by [`encode_tile`]. The error is the problem only.
pub fn decode_tile(side: &[u8]) -> Result<TileRecordBytes, String> {
    let corrupt = |what: &str| format!("its tile record {what} (corrupt metadata)");
    let mut c = open(side, "tile record", TILE_MAGIC, 52, TILE_RECORD_VERSION)?;
    let frame = c.u64()?;
    let (tile, tiles, x, y, crc32, frame_crc32) =
        (c.u32()?, c.u32()?, c.u32()?, c.u32()?, c.u32()?, c.u32()?);
    let blob = |c: &mut Cursor| -> Result<Vec<u8>, String> {
        let len = c.u32()? as usize;
        if len > MAX_RECORD {
            return Err(corrupt("has lengths that do not add up"));
        }
        Ok(c.take(len)?.to_vec())
    };
    let record = blob(&mut c)?;
    let frame_record = blob(&mut c)?;
    if c.at != c.bytes.len() || tile >= tiles {
        return Err(corrupt("has lengths that do not add up"));
    }
    Ok(TileRecordBytes {
        frame,
        tile,
        tiles,
        x,
        y,
        crc32,
        frame_crc32,
        record,
        frame_record,
    })
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
    seal(out)
}

/// Parse and verify side data written by [`encode`]. The error is the problem only.
pub fn decode(side: &[u8]) -> Result<FrameRecordBytes, String> {
    let corrupt = |what: &str| format!("its frame record {what} (corrupt metadata)");
    let mut c = open(side, "frame record", MAGIC, 28, RECORD_VERSION)?;
    let index = c.u64()?;
    let crc32 = c.u32()?;
    let len = c.u32()? as usize;
    if len > MAX_RECORD || c.at + len != c.bytes.len() {
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

    fn tile() -> TileRecordBytes {
        TileRecordBytes {
            frame: 2,
            tile: 3,
            tiles: 4,
            x: 512,
            y: 1024,
            crc32: 7,
            frame_crc32: 9,
            record: b"{\"pieces\":[]}".to_vec(),
            frame_record: b"{}".to_vec(),
        }
    }

    #[test]
    fn tile_round_trip() {
        let side = encode_tile(&tile());
        assert!(is_tile_record(&side));
        assert!(!is_tile_record(&encode(0, 0, b"")));
        assert_eq!(decode_tile(&side).unwrap(), tile());
    }

    #[test]
    fn every_flipped_byte_and_truncation_of_a_tile_record_is_refused() {
        let good = encode_tile(&tile());
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x04;
            assert!(decode_tile(&bad).is_err(), "flip at {i} accepted");
            assert!(
                decode_tile(&good[..i]).is_err(),
                "truncation at {i} accepted"
            );
        }
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
