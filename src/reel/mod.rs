//! Reels: one lossless video file per encoded model.
//!
//! A reel is a Matroska (`.mkv`) file that `ffprobe`, `ffplay` and VLC open as is:
//!
//! - **Video tracks.** One FFV1 track per plane, all of the same fixed resolution (the largest
//!   frame), pixel format `gray16le` (or `gray8` in 8-bit preview mode). FFV1 version 3, every
//!   frame intra (GOP 1), slice CRCs on, 25 frames per second. A frame smaller than the track is
//!   placed at the top-left and the rest is filled with 0; its logical size is recorded.
//!   Two-plane frames (lossless f32) put the high 16 bits in track 0 (titled `high`, which plays
//!   as a bf16 view) and the low 16 bits in track 1 (`low`). Separate tracks rather than one
//!   wider picture keep track 0 watchable and each plane's statistics apart for the codec.
//! - **Metadata.** One attachment, `weightreel.meta` (`application/x-weightreel-meta`), holds the
//!   [`envelope`]: a magic, [`REEL_FORMAT_VERSION`], the spec, a table with each frame's logical
//!   size and the CRC32 of its decoded planes, and the caller's JSON with its own CRC32. The
//!   reel therefore decodes alone. `ffmpeg -dump_attachment:t "" -i reel.mkv` extracts it.
//!
//! Matroska writes attachments in its header, but the metadata is only known after the last
//! frame. The [`ReelWriter`] therefore spills encoded packets to a side file while frames are
//! pushed (bounded memory: one frame at a time), and [`ReelWriter::finish`] muxes header,
//! attachment and the spilled packets (stream copy) into `path.tmp`, fsyncs it and renames it
//! to `path`. A crash leaves either no reel or the previous one, never half of one.
//!
//! Reading checks the envelope (magic, version, CRCs), the tracks against the spec, the FFV1
//! slice CRCs (FFmpeg 5.1 reports those only in its log, so [`damage`] watches the log) and
//! each decoded frame against its stored CRC32. Every failure is one line naming the file and,
//! where it applies, the frame. A reel holds at least one frame.

mod attachment;
mod damage;
pub mod envelope;
mod preview;
mod reader;
mod writer;

use std::sync::Once;

use serde::Serialize;

pub use preview::{write_png_frames, write_preview_h264};
pub use reader::ReelReader;
pub use writer::ReelWriter;

/// Join finished reels (parts of one encode, in order) into one reel at `out` with
/// `metadata_json`, copying their packets without re-encoding.
pub fn concat(
    parts: &[std::path::PathBuf],
    out: &std::path::Path,
    metadata_json: &[u8],
) -> crate::error::Result<ReelInfo> {
    let first = parts
        .first()
        .ok_or_else(|| crate::error::Error::reel(out, "nothing to join: no parts"))?;
    let spec = ReelReader::open(first)?.spec();
    let mut writer = ReelWriter::create(out, spec)?;
    for part in parts {
        writer.append_reel(part)?;
    }
    writer.finish(metadata_json)
}

/// Version of the reel layout this build writes and the newest it reads.
pub const REEL_FORMAT_VERSION: u32 = 1;

/// Largest width or height of a reel, in samples.
pub const MAX_SIDE: u32 = 16384;

/// Frames per second of the video tracks (only matters for playback).
pub const FRAME_RATE: i32 = 25;

/// File name of the metadata attachment.
pub const ATTACHMENT_NAME: &str = "weightreel.meta";

/// MIME type of the metadata attachment.
pub const ATTACHMENT_MIME: &str = "application/x-weightreel-meta";

/// Bits per stored sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SampleDepth {
    /// 16-bit samples, `gray16le`: the lossless format.
    Gray16,
    /// 8-bit samples, `gray8`: preview mode; pushed values must be at most 255.
    Gray8,
}

impl SampleDepth {
    /// Bits per sample: 16 or 8.
    pub fn bits(self) -> u32 {
        match self {
            SampleDepth::Gray16 => 16,
            SampleDepth::Gray8 => 8,
        }
    }

    /// The depth with `bits` bits per sample, if there is one.
    pub fn from_bits(bits: u32) -> Option<SampleDepth> {
        match bits {
            16 => Some(SampleDepth::Gray16),
            8 => Some(SampleDepth::Gray8),
            _ => None,
        }
    }

    /// Largest sample value.
    pub fn max_value(self) -> u16 {
        match self {
            SampleDepth::Gray16 => u16::MAX,
            SampleDepth::Gray8 => 255,
        }
    }

    fn pixel(self) -> ffmpeg_next::format::Pixel {
        match self {
            SampleDepth::Gray16 => ffmpeg_next::format::Pixel::GRAY16LE,
            SampleDepth::Gray8 => ffmpeg_next::format::Pixel::GRAY8,
        }
    }
}

/// Shape of a reel: the resolution of its video tracks, its planes per frame and sample depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReelSpec {
    /// Track width: the widest frame.
    pub width: u32,
    /// Track height: the tallest frame.
    pub height: u32,
    /// Planes per frame, one video track each: 1, or 2 for lossless f32 (high, low).
    pub planes: u32,
    /// Bits per sample.
    pub depth: SampleDepth,
}

impl ReelSpec {
    /// Check the ranges; the error names the offending field and the valid range.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=MAX_SIDE).contains(&self.width) {
            return Err(format!(
                "invalid width {} (expected 1..={MAX_SIDE})",
                self.width
            ));
        }
        if !(1..=MAX_SIDE).contains(&self.height) {
            return Err(format!(
                "invalid height {} (expected 1..={MAX_SIDE})",
                self.height
            ));
        }
        if !(1..=2).contains(&self.planes) {
            return Err(format!("invalid planes {} (expected 1 or 2)", self.planes));
        }
        Ok(())
    }
}

/// What a reel records about one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FrameEntry {
    /// Logical width (at most the track width).
    pub width: u32,
    /// Logical height (at most the track height).
    pub height: u32,
    /// CRC32 of the frame's planes cropped to the logical size, each sample as u16
    /// little-endian, plane after plane.
    pub crc32: u32,
}

/// A finished reel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReelInfo {
    /// Where the reel is.
    pub path: std::path::PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Frames in it.
    pub frames: u64,
}

/// CRC32 of cropped planes, as stored in the frame table.
pub(crate) fn planes_crc32<P: AsRef<[u16]>>(planes: &[P]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    let mut buf = Vec::new();
    for p in planes {
        // Hash through a byte buffer so the value does not depend on the host's endianness.
        for chunk in p.as_ref().chunks(4096) {
            buf.clear();
            buf.extend(chunk.iter().flat_map(|v| v.to_le_bytes()));
            h.update(&buf);
        }
    }
    h.finalize()
}

/// Initialise FFmpeg once: register formats and replace its logging with [`damage`]'s
/// silent watcher, so that our one-line errors are the only output.
pub(crate) fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // An init failure surfaces later as a clear error when a codec or format is missing.
        let _ = ffmpeg_next::init();
        ffmpeg_next::util::log::set_level(ffmpeg_next::util::log::Level::Quiet);
        damage::install();
    });
}

/// Short text of an FFmpeg error, for messages.
pub(crate) fn ff(e: ffmpeg_next::Error) -> String {
    e.to_string()
}
