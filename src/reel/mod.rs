//! Reels: one lossless video file per encoded model.
//!
//! A reel is a Matroska (`.mkv`) file that `ffprobe`, `ffplay` and VLC open as is:
//!
//! - **Video tracks.** Every track is `gray8`, all of the same fixed resolution: the largest
//!   frame, cut down to [`TILE_SIDE`], 25 pictures per second, every picture intra. A frame
//!   smaller than the picture is placed at the top-left and the rest is filled with 0; its
//!   logical size is recorded. A frame larger than [`TILE_SIDE`] on either side is stored as
//!   several pictures, which bounds the encoder's memory: an encoder's frame (a Hilbert frame
//!   wider than a tile) as its tiles in curve order, each with a *tile record* (format version
//!   3, see [`record`] and [`ReelWriter::push_tile`]), so that it is written and read a tile at
//!   a time; a frame pushed whole, as its tiles in raster order (see [`tiles`]). Version 1 and
//!   2 reels had pictures of up to [`V2_TILE_SIDE`] and still read. Each plane of 16-bit samples is stored as two tracks, its most significant
//!   bytes, then its least significant bytes, and each track is coded as its bytes need
//!   ([`ReelSpec::track_codec`]):
//!
//!   | reel | tracks (titles) | codecs |
//!   |---|---|---|
//!   | u16 levels, 1 plane | `msb`, `lsb` | FFV1 (pictures of ≥ 16384 samples) or raw, raw |
//!   | lossless f16/bf16, 1 plane | `msb`, `lsb` | FFV1 (the exponent), raw |
//!   | lossless f32, 2 planes | `high msb`, `high lsb`, `low msb`, `low lsb` | FFV1 (the exponent), raw, raw, raw |
//!   | u8 levels (preview mode) | `plane` | FFV1 (pictures of ≥ 16384 samples) or raw |
//!
//!   FFV1 is version 3 with slice CRCs, one slice per picture up to 352x288. Raw tracks are
//!   uncompressed video (`rawvideo`, FourCC `Y800`, Matroska `V_UNCOMPRESSED`), which
//!   `ffmpeg`, `ffprobe` and VLC decode like any other; they have no CRC of their own, so the
//!   frame table's CRC32 is what catches their damage. Near-random bytes (a level's low byte,
//!   mantissa bytes) gain nothing from FFV1 — it stores them at 100-101% of their size, at
//!   about 15 MB/s per core — so they are stored as they are.
//!   Track 0 is always a picture of the values: a level's high byte, or a float's exponent
//!   (its magnitude, log2 |v|). Separate tracks rather than one wider picture keep track 0
//!   watchable and each byte's statistics apart for the codec.
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
//! Reading checks the envelope (magic, version, CRCs), the tracks (codec, size) against the
//! spec, the FFV1 slice CRCs (FFmpeg 5.1 reports those only in its log, so [`damage`] watches the log) and
//! each decoded frame against its stored CRC32. Every failure is one line naming the file and,
//! where it applies, the frame. A reel holds at least one frame.

mod attachment;
mod damage;
pub mod envelope;
pub mod manifest;
mod preview;
mod reader;
pub mod record;
pub mod stored;
mod writer;

use std::sync::Once;

use ffmpeg_next::Dictionary;
use serde::Serialize;

pub use manifest::{
    Manifest, PartSummary, ReelFrame, ReelSettings, ReelTensor, SegmentRef, TilePiece, TileRecord,
    VerbatimTensor, MANIFEST_FORMAT, MANIFEST_VERSION, MANIFEST_VERSION_PLAIN, MAX_VERBATIM_BYTES,
    MAX_VERBATIM_TENSOR_BYTES,
};
pub use preview::{
    heat_colour, heat_lut, png_rgb, preview_geometry, write_png_frame_range, write_png_frames,
    write_png_rgb, write_preview_h264, PreviewGeometry, PREVIEW_LEVEL, PREVIEW_MAX,
};
pub use reader::{read_joinable_metadata, read_metadata, ReelReader, TileOut, TiledFrame};
pub use writer::{ReelWriter, TileIn};

/// Join finished reels (parts of one encode, in order) into one reel at `out` with
/// `metadata_json`, copying their packets without re-encoding; with `cues`, indexed for
/// range reads (see [`ReelWriter::with_cues`]).
pub fn concat(
    parts: &[std::path::PathBuf],
    out: &std::path::Path,
    metadata_json: &[u8],
    cues: bool,
) -> crate::error::Result<ReelInfo> {
    let first = parts
        .first()
        .ok_or_else(|| crate::error::Error::reel(out, "nothing to join: no parts"))?;
    let spec = reader::open_envelope(first)?.1.spec;
    let mut writer = ReelWriter::create(out, spec)?;
    if cues {
        writer = writer.with_cues();
    }
    for part in parts {
        writer.append_reel(part)?;
    }
    writer.finish(metadata_json)
}

/// Version of the reel layout this build writes and the newest it reads. Version 3 stores a
/// frame larger than a tile as its tiles in curve order, each with its own record (see
/// [`record`]); a reel without such frames is written as version 2, which it is byte for byte.
pub const REEL_FORMAT_VERSION: u32 = 3;

/// The version of reels that hold no tiled frame.
pub const UNTILED_FORMAT_VERSION: u32 = 2;

/// Oldest reel layout this build reads. Version 1 (a per-frame table in the header, every
/// track FFV1, lossless samples through an order-preserving transform) still reads.
pub const OLDEST_READABLE_VERSION: u32 = 1;

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

    /// Bytes per sample, which is also the number of 8-bit video tracks per plane.
    pub fn bytes(self) -> u32 {
        self.bits() / 8
    }
}

/// Largest video picture side. A frame wider or taller than this is stored as several
/// pictures (tiles), because FFmpeg 5.1's FFV1 encoder touches about 140 bytes per sample
/// while open — 2 GiB for one 4096×4096 picture, 37 MiB at 512×512 (measured with the
/// `ffmpeg` CLI: 512² +37 MiB, 256² +6 MiB, 1024² +160 MiB over rawvideo). At 128×128 an
/// encoder holds about 2.5 MiB, so the two FFV1 encoders of a track and a tile or two of
/// samples fit beside everything else in 64 MiB; FFV1 stores a float's exponent at 128×128
/// within 1% of its size at 512×512 (MiniLM lossless: 0.934 against 0.925 of the raw size).
/// The frames stage stores tiled frames tile by tile in curve order, see
/// [`crate::frames::TiledFrameEncoder`].
pub const TILE_SIDE: u32 = crate::frames::TILE_SIDE;

/// Picture side of version-1 and version-2 reels, which are still read.
pub const V2_TILE_SIDE: u32 = 512;

/// The tiles of a `width` x `height` frame cut into pictures of at most `pw` x `ph`, in raster
/// order: `(x, y, w, h)` of each.
pub fn tiles(
    width: u32,
    height: u32,
    pw: u32,
    ph: u32,
) -> impl Iterator<Item = (u32, u32, u32, u32)> {
    let (pw, ph) = (pw.max(1), ph.max(1));
    (0..height.div_ceil(ph)).flat_map(move |ty| {
        (0..width.div_ceil(pw)).map(move |tx| {
            let (x, y) = (tx * pw, ty * ph);
            (x, y, pw.min(width - x), ph.min(height - y))
        })
    })
}

/// Smallest video picture side. FFmpeg 5.1's FFV1 does not give back 1x1 and 2x1 pictures
/// exactly (reels of one or two values failed their CRC check); a smaller frame sits at the
/// top-left of a 4x4 picture, padded with zeros.
pub const MIN_PICTURE_SIDE: u32 = 4;

/// Shape of a reel: the resolution of its video tracks, its planes per frame and sample depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReelSpec {
    /// The widest frame (the video pictures are at most [`TILE_SIDE`] of it).
    pub width: u32,
    /// The tallest frame.
    pub height: u32,
    /// Planes per frame: 1, or 2 for lossless f32 (high, low). Each plane is stored as
    /// [`SampleDepth::bytes`] video tracks.
    pub planes: u32,
    /// Bits per sample.
    pub depth: SampleDepth,
    /// What the samples are, which decides how each byte is stored.
    pub samples: SampleKind,
}

/// What a reel's samples are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SampleKind {
    /// Affine quantization levels (u16 and u8 modes).
    Quantized,
    /// Lossless float bit patterns, exponent first (see `frames::quantize::sample32`).
    FloatBits,
}

impl SampleKind {
    /// The number the envelope stores.
    pub fn code(self) -> u32 {
        match self {
            SampleKind::Quantized => 0,
            SampleKind::FloatBits => 1,
        }
    }

    /// The kind stored as `code`, if there is one.
    pub fn from_code(code: u32) -> Option<SampleKind> {
        match code {
            0 => Some(SampleKind::Quantized),
            1 => Some(SampleKind::FloatBits),
            _ => None,
        }
    }
}

/// Pictures of at least this many samples store quantized bytes with FFV1; smaller ones store
/// them uncompressed. A chunk is quantized on its own range, so its levels spread over the
/// whole 0..=65535 and even the high byte is close to uniform. FFV1 (untrained, one slice)
/// stores the high byte of MiniLM's u16 levels at 0.994 of its size in 8192-value chunks,
/// 0.948 at 16384, 0.907 at 32768, 0.87 at 65536 and 0.71 in 4096x4096 frames, at about
/// 15-20 MB/s per core against a copy for raw.
pub const MIN_FFV1_QUANTIZED_PICTURE: u64 = 16384;

impl ReelSpec {
    /// Size of the video pictures this build writes: the frame size, cut down to
    /// [`TILE_SIDE`] and raised to [`MIN_PICTURE_SIDE`].
    pub fn picture(&self) -> (u32, u32) {
        self.picture_in(REEL_FORMAT_VERSION)
    }

    /// Size of the video pictures of a reel of format `version`: version 2 cut frames down to
    /// [`V2_TILE_SIDE`], version 1 had no minimum either.
    pub fn picture_in(&self, version: u32) -> (u32, u32) {
        match version {
            1 => (self.width.min(V2_TILE_SIDE), self.height.min(V2_TILE_SIDE)),
            2 => (
                self.width.clamp(MIN_PICTURE_SIDE, V2_TILE_SIDE),
                self.height.clamp(MIN_PICTURE_SIDE, V2_TILE_SIDE),
            ),
            _ => (
                self.width.clamp(MIN_PICTURE_SIDE, TILE_SIDE),
                self.height.clamp(MIN_PICTURE_SIDE, TILE_SIDE),
            ),
        }
    }

    /// Pictures that a `width` x `height` frame of this reel takes.
    pub fn pictures_of(&self, width: u32, height: u32) -> u64 {
        self.pictures_in(REEL_FORMAT_VERSION, width, height)
    }

    /// [`ReelSpec::pictures_of`] in a reel of format `version`.
    pub fn pictures_in(&self, version: u32, width: u32, height: u32) -> u64 {
        let (pw, ph) = self.picture_in(version);
        u64::from(width.div_ceil(pw)) * u64::from(height.div_ceil(ph))
    }

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

    /// Video tracks: one `gray8` track per byte of each plane.
    pub fn tracks(&self) -> u32 {
        self.planes * self.depth.bytes()
    }

    /// Title of video track `track`, as ffprobe shows it.
    pub(crate) fn track_title(&self, track: u32) -> &'static str {
        const TITLES: [&[&str]; 4] = [
            &["plane"],
            &["high", "low"],
            &["msb", "lsb"],
            &["high msb", "high lsb", "low msb", "low lsb"],
        ];
        let set = match (self.depth, self.planes) {
            (SampleDepth::Gray8, 1) => TITLES[0],
            (SampleDepth::Gray8, _) => TITLES[1],
            (SampleDepth::Gray16, 1) => TITLES[2],
            (SampleDepth::Gray16, _) => TITLES[3],
        };
        set.get(track as usize).copied().unwrap_or("plane")
    }

    /// How video track `track` is coded. Measured on all-MiniLM-L6-v2 (see the README): the
    /// least significant byte of a 16-bit sample (the low byte of a u16 level, the mantissa
    /// bytes of a float) is close to uniform noise, which FFV1 stores at 100-101% of its size
    /// at about 15 MB/s per core; stored uncompressed it costs nothing to code. A float's
    /// exponent is skewed, and FFV1 stores it at 0.40 of its size even in 8192-value frames.
    /// A level's high byte pays only in big pictures, see [`MIN_FFV1_QUANTIZED_PICTURE`].
    pub fn track_codec(&self, track: u32) -> TrackCodec {
        self.track_codec_in(REEL_FORMAT_VERSION, track)
    }

    /// [`ReelSpec::track_codec`] in a reel of format `version` (2 or later: version 1 coded
    /// every track with FFV1).
    pub fn track_codec_in(&self, version: u32, track: u32) -> TrackCodec {
        let first_of_plane = track.is_multiple_of(self.depth.bytes());
        let (pw, ph) = self.picture_in(version);
        let big = u64::from(pw) * u64::from(ph) >= MIN_FFV1_QUANTIZED_PICTURE;
        match self.samples {
            // The high plane's first byte is the float's exponent; every other byte holds
            // mantissa bits (and the sign).
            SampleKind::FloatBits if track == 0 => TrackCodec::Ffv1,
            SampleKind::FloatBits => TrackCodec::Raw,
            SampleKind::Quantized if first_of_plane && big => TrackCodec::Ffv1,
            SampleKind::Quantized => TrackCodec::Raw,
        }
    }
}

/// How one video track is coded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackCodec {
    /// FFV1 version 3 with slice CRCs.
    Ffv1,
    /// Uncompressed `gray8` (Matroska `V_UNCOMPRESSED`, FourCC `Y800`): no slice CRC, so the
    /// frame table's CRC32 is what catches damage.
    Raw,
}

impl TrackCodec {
    /// FFmpeg's codec for the track.
    pub(crate) fn id(self) -> ffmpeg_next::codec::Id {
        match self {
            TrackCodec::Ffv1 => ffmpeg_next::codec::Id::FFV1,
            TrackCodec::Raw => ffmpeg_next::codec::Id::RAWVIDEO,
        }
    }
}

/// Set the options of a reel track of codec `kind` on `enc` (a `width` x `height` `gray8`
/// track); returns the private options for opening it.
///
/// FFV1: version 3 is the one with per-slice CRCs. One slice per picture where FFmpeg allows
/// it (up to 352x288): every slice restarts the context model, which small frames cannot
/// afford. The range coder with a custom state table and the small context model compress
/// weight bytes best. Small pictures encode single-threaded; the writer runs several encoders
/// per track instead.
fn configure(
    enc: &mut ffmpeg_next::encoder::video::Video,
    kind: TrackCodec,
    width: u32,
    height: u32,
) -> Dictionary<'static> {
    use ffmpeg_next::Rational;
    enc.set_format(ffmpeg_next::format::Pixel::GRAY8);
    enc.set_time_base(Rational::new(1, FRAME_RATE));
    enc.set_frame_rate(Some(Rational::new(FRAME_RATE, 1)));
    enc.set_gop(1);
    if kind == TrackCodec::Raw {
        return Dictionary::new();
    }
    let mut opts = Dictionary::new();
    opts.set("level", "3");
    opts.set("slicecrc", "1");
    opts.set("coder", "range_tab");
    opts.set("context", "0");
    let one_slice = width <= 352 && height <= 288;
    opts.set("slices", if one_slice { "1" } else { "0" });
    // Big pictures are encoded one track at a time (see the writer), their slices in
    // parallel; the slice count does not depend on the threads, so neither do the packets.
    opts.set("threads", if one_slice { "1" } else { "0" });
    opts
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

/// CRC32 of planes (samples as little-endian u16, plane after plane), as stored in the frame
/// table and in reel manifests.
pub fn planes_crc32<P: AsRef<[u16]>>(planes: &[P]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    hash_planes(&mut h, planes);
    h.finalize()
}

/// Adds planes to `h` as [`planes_crc32`] hashes them: a tiled frame's CRC32 is that of its
/// tiles' planes, tile after tile in stored order.
pub fn hash_planes<P: AsRef<[u16]>>(h: &mut crc32fast::Hasher, planes: &[P]) {
    let mut buf = Vec::new();
    for p in planes {
        // Hash through a byte buffer so the value does not depend on the host's endianness.
        for chunk in p.as_ref().chunks(4096) {
            buf.clear();
            buf.extend(chunk.iter().flat_map(|v| v.to_le_bytes()));
            h.update(&buf);
        }
    }
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
