//! Views of a reel for people: an H.264 `.mp4` browsers play, and one PNG per frame.
//!
//! Both show track 0 only (the high half for two-plane reels) and both are lossy or reduced
//! views: the reel itself stays the lossless record. Frames are read through [`ReelReader`],
//! so every frame is CRC-checked on the way.

use std::fs;
use std::path::{Path, PathBuf};

use ffmpeg_next::codec::{self, encoder};
use ffmpeg_next::format::Pixel;
use ffmpeg_next::{format, frame, Dictionary, Packet, Rational};

use super::{ff, ReelReader, SampleDepth, FRAME_RATE};
use crate::error::{Error, Result};

/// The top 8 bits of a sample: what the 8-bit views show.
fn to_u8(depth: SampleDepth, v: u16) -> u8 {
    match depth {
        SampleDepth::Gray16 => (v >> 8) as u8,
        SampleDepth::Gray8 => v.min(255) as u8,
    }
}

/// Largest picture of the previews: what browsers decode at H.264 level 5.1 (36,864
/// macroblocks of 16 × 16 per picture, 25 of them a second).
pub const PREVIEW_MAX: (u32, u32) = (4096, 2304);

/// H.264 level of the previews (`level` of libx264), with the High profile.
pub const PREVIEW_LEVEL: &str = "5.1";

/// How a reel's frames fit a preview's picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PreviewGeometry {
    /// Picture width (even).
    pub width: u32,
    /// Picture height (even).
    pub height: u32,
    /// Frames are shown at 1/`shrink` of their size, each preview pixel the mean of
    /// `shrink` × `shrink` samples (1: full size); a power of two.
    pub shrink: u32,
}

impl PreviewGeometry {
    /// The preview of frames up to `width` × `height`: the smallest power-of-two shrink
    /// that fits [`PREVIEW_MAX`].
    pub fn for_frames(width: u32, height: u32) -> PreviewGeometry {
        let mut shrink = 1u32;
        while width.div_ceil(shrink) > PREVIEW_MAX.0 || height.div_ceil(shrink) > PREVIEW_MAX.1 {
            shrink *= 2;
        }
        let even = |v: u32| (v.div_ceil(shrink) + 1) & !1;
        PreviewGeometry {
            width: even(width),
            height: even(height),
            shrink,
        }
    }

    /// `H.264 High 5.1, 2048x2048, frames downscaled 2x (mean of 2x2 samples) to fit 4096x2304`.
    pub fn describe(&self) -> String {
        let fit = if self.shrink == 1 {
            "frames at full size".to_string()
        } else {
            format!(
                "frames downscaled {s}x (mean of {s}x{s} samples) to fit {}x{}",
                PREVIEW_MAX.0,
                PREVIEW_MAX.1,
                s = self.shrink
            )
        };
        format!(
            "H.264 High {PREVIEW_LEVEL}, {}x{}, {fit}",
            self.width, self.height
        )
    }
}

/// The preview geometry of the reel at `reel`.
pub fn preview_geometry(reel: &Path) -> Result<PreviewGeometry> {
    let reader = ReelReader::open(reel)?;
    let spec = reader.spec();
    Ok(PreviewGeometry::for_frames(spec.width, spec.height))
}

/// Write an 8-bit H.264 preview (libx264, High profile at level [`PREVIEW_LEVEL`], yuv420p)
/// of track 0 of `reel` to `out_mp4`. Each frame is shown in the top-left corner of the
/// picture, on black; frames too large for [`PREVIEW_MAX`] are downscaled by a power of two
/// (see [`PreviewGeometry`]), never tiled, so that one picture is one frame. A tiled frame is
/// read a tile at a time. The file appears at `out_mp4` only when complete.
pub fn write_preview_h264(reel: &Path, out_mp4: &Path) -> Result<PreviewGeometry> {
    crate::output::check_file("--preview", out_mp4)?;
    let mut reader = ReelReader::open(reel)?;
    let tmp = {
        let mut s = out_mp4.as_os_str().to_owned();
        s.push(".tmp");
        PathBuf::from(s)
    };
    let result = encode_h264(&mut reader, &tmp, out_mp4);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn encode_h264(reader: &mut ReelReader, tmp: &Path, out_mp4: &Path) -> Result<PreviewGeometry> {
    let spec = reader.spec();
    let bad = |problem: String| Error::reel(out_mp4, problem);
    let geometry = PreviewGeometry::for_frames(spec.width, spec.height);
    let (w, h, shrink) = (geometry.width, geometry.height, geometry.shrink);
    let codec = encoder::find_by_name("libx264")
        .ok_or_else(|| bad("this FFmpeg has no libx264 encoder".into()))?;
    let mut octx =
        format::output_as(&tmp, "mp4").map_err(|e| bad(format!("cannot create ({e})")))?;
    let global = octx.format().flags().contains(format::Flags::GLOBAL_HEADER);
    let mut enc = codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(|e| bad(ff(e)))?;
    enc.set_width(w);
    enc.set_height(h);
    enc.set_format(Pixel::YUV420P);
    enc.set_time_base(Rational::new(1, FRAME_RATE));
    enc.set_frame_rate(Some(Rational::new(FRAME_RATE, 1)));
    if global {
        enc.set_flags(codec::Flags::GLOBAL_HEADER);
    }
    let mut opts = Dictionary::new();
    opts.set("preset", "veryfast");
    opts.set("crf", "18");
    // Without these libx264 picks the level from the picture size (6.0 for 4096x4096),
    // which many browsers refuse.
    opts.set("profile", "high");
    opts.set("level", PREVIEW_LEVEL);
    let mut enc = enc
        .open_with(opts)
        .map_err(|e| bad(format!("cannot start libx264 ({e})")))?;
    {
        let mut st = octx.add_stream(codec).map_err(|e| bad(ff(e)))?;
        st.set_parameters(&enc);
        st.set_time_base(Rational::new(1, FRAME_RATE));
    }
    let mut opts = Dictionary::new();
    // The index up front lets a browser start playing before the whole file has arrived.
    opts.set("movflags", "+faststart");
    octx.write_header_with(opts)
        .map_err(|e| bad(format!("cannot write the header ({e})")))?;
    let base = octx
        .stream(0)
        .map(|s| s.time_base())
        .unwrap_or(Rational::new(1, 1000));
    let write =
        |enc: &mut encoder::video::Encoder, octx: &mut format::context::Output| -> Result<()> {
            let mut packet = Packet::empty();
            while enc.receive_packet(&mut packet).is_ok() {
                packet.set_stream(0);
                // libx264 leaves durations unset; without them mp4's edit list drops the last frame.
                packet.set_duration(1);
                packet.rescale_ts(Rational::new(1, FRAME_RATE), base);
                packet
                    .write_interleaved(octx)
                    .map_err(|e| bad(format!("cannot write a packet ({e})")))?;
            }
            Ok(())
        };
    let limited = |v: u32| 16 + ((v * 219 + 127) / 255) as u8;
    // Sums of the 8-bit samples of each preview pixel, and how many were added.
    let (wu, hu) = (w as usize, h as usize);
    let mut sums = vec![0u32; wu * hu];
    let mut counts = vec![0u32; wu * hu];
    for index in 0..reader.frame_count() {
        let Some((width, height)) = reader.frame_size(index) else {
            break;
        };
        sums.fill(0);
        counts.fill(0);
        let mut add = |x0: u32, y0: u32, pw: u32, plane: &[u16]| {
            for (y, row) in plane.chunks_exact(pw as usize).enumerate() {
                let py = (y0 + y as u32) / shrink;
                for (x, &v) in row.iter().enumerate() {
                    let at = py as usize * wu + ((x0 + x as u32) / shrink) as usize;
                    sums[at] += u32::from(to_u8(spec.depth, v));
                    counts[at] += 1;
                }
            }
        };
        if reader.is_tiled(index)? {
            reader.read_tiles(
                index,
                |_| true,
                |tile| {
                    let pw = tile.planes[0].len() as u32 / crate::frames::TILE_SIDE;
                    add(tile.x, tile.y, pw, &tile.planes[0]);
                    Ok(())
                },
            )?;
        } else {
            let planes = reader.read_frame(index, width, height)?;
            add(0, 0, width, &planes[0]);
        }
        let mut picture = frame::Video::new(Pixel::YUV420P, w, h);
        // Limited-range luma: 16 is black, 235 white; chroma 128 is grey.
        picture.data_mut(0).fill(16);
        picture.data_mut(1).fill(128);
        picture.data_mut(2).fill(128);
        let stride = picture.stride(0);
        let luma = picture.data_mut(0);
        for y in 0..hu {
            for x in 0..wu {
                let n = counts[y * wu + x];
                // Pixels no sample reached (beyond a smaller frame) stay black.
                if let Some(mean) = (sums[y * wu + x] + n / 2).checked_div(n) {
                    luma[y * stride + x] = limited(mean);
                }
            }
        }
        picture.set_pts(Some(index as i64));
        enc.send_frame(&picture)
            .map_err(|e| bad(format!("frame {index}: libx264 failed ({e})")))?;
        write(&mut enc, &mut octx)?;
    }
    enc.send_eof()
        .map_err(|e| bad(format!("libx264 flush failed ({e})")))?;
    write(&mut enc, &mut octx)?;
    octx.write_trailer()
        .map_err(|e| bad(format!("cannot write the trailer ({e})")))?;
    drop(octx);
    fs::rename(tmp, out_mp4).map_err(|e| Error::io(out_mp4, e))?;
    Ok(geometry)
}

/// Viridis-like colour ramp: linear between nine anchors of matplotlib's viridis; entry `i` is the
/// colour of `i / 255`.
pub fn heat_lut() -> [[u8; 3]; 256] {
    const ANCHORS: [[f32; 3]; 9] = [
        [68.0, 1.0, 84.0],
        [71.0, 45.0, 123.0],
        [59.0, 82.0, 139.0],
        [44.0, 114.0, 142.0],
        [33.0, 145.0, 140.0],
        [40.0, 174.0, 128.0],
        [94.0, 201.0, 98.0],
        [173.0, 220.0, 48.0],
        [253.0, 231.0, 37.0],
    ];
    let mut lut = [[0u8; 3]; 256];
    for (i, out) in lut.iter_mut().enumerate() {
        let t = i as f32 / 255.0 * 8.0;
        let k = (t as usize).min(7);
        let f = t - k as f32;
        for c in 0..3 {
            let v = ANCHORS[k][c] + (ANCHORS[k + 1][c] - ANCHORS[k][c]) * f;
            out[c] = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    lut
}

/// Write one PNG per frame of track 0 of `reel` into `dir` (created if needed), named
/// `frame_000000.png` and so on, at each frame's logical size. Plain PNGs are 16-bit grayscale
/// (8-bit reels are scaled by 257 to span the range); with `heatmap` they are 8-bit RGB through
/// a viridis-like colour ramp of the top 8 bits. Returns the files written, in frame order.
pub fn write_png_frames(reel: &Path, dir: &Path, heatmap: bool) -> Result<Vec<PathBuf>> {
    write_png_frame_range(reel, dir, heatmap, 0..u64::MAX)
}

/// [`write_png_frames`] for the frames numbered in `frames` only (cut at the reel's end); a
/// range that starts past the last frame is refused before anything is written.
pub fn write_png_frame_range(
    reel: &Path,
    dir: &Path,
    heatmap: bool,
    frames: std::ops::Range<u64>,
) -> Result<Vec<PathBuf>> {
    crate::output::check_dir("--png", dir)?;
    let mut reader = ReelReader::open(reel)?;
    let depth = reader.spec().depth;
    let count = reader.frame_count();
    if frames.start >= count || frames.is_empty() {
        return Err(Error::invalid(
            "--frames",
            format!("{}-{}", frames.start, frames.end.saturating_sub(1)),
            format!(
                "frames of the reel, which has {count} (0-{})",
                count.saturating_sub(1)
            ),
        ));
    }
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let lut = heat_lut();
    let mut written = Vec::new();
    for index in frames.start..frames.end.min(count) {
        let Some((width, height)) = reader.frame_size(index) else {
            break;
        };
        let planes = reader.read_frame(index, width, height)?;
        let out = dir.join(format!("frame_{index:06}.png"));
        let pixel = if heatmap {
            Pixel::RGB24
        } else {
            Pixel::GRAY16BE
        };
        encode_png(&out, width, height, pixel, |data, stride| {
            for (y, row) in planes[0].chunks_exact(width as usize).enumerate() {
                let line = &mut data[y * stride..];
                if heatmap {
                    for (o, &v) in line.chunks_exact_mut(3).zip(row) {
                        o.copy_from_slice(&lut[usize::from(to_u8(depth, v))]);
                    }
                } else {
                    for (o, &v) in line.chunks_exact_mut(2).zip(row) {
                        let v = if depth == SampleDepth::Gray8 {
                            v.saturating_mul(257)
                        } else {
                            v
                        };
                        o.copy_from_slice(&v.to_be_bytes());
                    }
                }
            }
        })?;
        written.push(out);
    }
    Ok(written)
}

/// An 8-bit RGB image (`width * height * 3` bytes, row-major) as a PNG file at `out`,
/// written beside it and renamed. Colours for values in `0..=1` come from [`heat_colour`].
pub fn write_png_rgb(out: &Path, width: u32, height: u32, rgb: &[u8]) -> Result<()> {
    let bytes = png_rgb(width, height, rgb).map_err(|e| Error::reel(out, e))?;
    write_beside(out, &bytes)
}

/// The heat-map colour of `v` in `0..=1` (clamped), as `frames --heatmap` draws it.
pub fn heat_colour(v: f64) -> [u8; 3] {
    let lut = heat_lut();
    lut[(v.clamp(0.0, 1.0) * 255.0).round() as usize]
}

/// An 8-bit RGB image (`width * height * 3` bytes, row-major) as PNG bytes in memory, for
/// callers that serve or embed the picture rather than write it.
pub fn png_rgb(width: u32, height: u32, rgb: &[u8]) -> std::result::Result<Vec<u8>, String> {
    if rgb.len() != width as usize * height as usize * 3 || width == 0 || height == 0 {
        return Err(format!(
            "{} bytes for a {width}x{height} RGB image",
            rgb.len()
        ));
    }
    png_bytes(width, height, Pixel::RGB24, |data, stride| {
        for (y, row) in rgb.chunks_exact(width as usize * 3).enumerate() {
            data[y * stride..y * stride + row.len()].copy_from_slice(row);
        }
    })
}

/// Encode one picture of `pixel` format, filled by `fill(data, stride)`, as PNG bytes.
fn png_bytes(
    width: u32,
    height: u32,
    pixel: Pixel,
    fill: impl FnOnce(&mut [u8], usize),
) -> std::result::Result<Vec<u8>, String> {
    super::init();
    let codec = encoder::find(codec::Id::PNG).ok_or("this FFmpeg has no PNG encoder")?;
    let mut enc = codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(ff)?;
    enc.set_width(width);
    enc.set_height(height);
    enc.set_format(pixel);
    enc.set_time_base(Rational::new(1, FRAME_RATE));
    let mut enc = enc
        .open()
        .map_err(|e| format!("cannot start the PNG encoder ({e})"))?;
    let mut picture = frame::Video::new(pixel, width, height);
    let stride = picture.stride(0);
    fill(picture.data_mut(0), stride);
    picture.set_pts(Some(0));
    enc.send_frame(&picture)
        .map_err(|e| format!("PNG encoding failed ({e})"))?;
    enc.send_eof()
        .map_err(|e| format!("PNG encoding failed ({e})"))?;
    let mut packet = Packet::empty();
    enc.receive_packet(&mut packet)
        .map_err(|e| format!("PNG encoding failed ({e})"))?;
    Ok(packet.data().unwrap_or(&[]).to_vec())
}

/// Encode one picture of `pixel` format, filled by `fill(data, stride)`, as a PNG at `out`.
fn encode_png(
    out: &Path,
    width: u32,
    height: u32,
    pixel: Pixel,
    fill: impl FnOnce(&mut [u8], usize),
) -> Result<()> {
    let bytes = png_bytes(width, height, pixel, fill).map_err(|e| Error::reel(out, e))?;
    write_beside(out, &bytes)
}

/// Write `bytes` beside `out`, then rename: an existing file stays whole until replaced.
fn write_beside(out: &Path, bytes: &[u8]) -> Result<()> {
    let dir = out.parent().unwrap_or(Path::new("."));
    let file = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file}.{}.tmp", std::process::id()));
    fs::write(&tmp, bytes)
        .and_then(|()| fs::rename(&tmp, out))
        .map_err(|e| {
            let _ = fs::remove_file(&tmp);
            Error::io(out, e)
        })
}
