//! [`ReelWriter`]: frames in, one finished `.mkv` out.
//!
//! Frames are encoded as they are pushed and their packets appended to a spill file next to
//! the target (`<path>.packets.tmp`): a record of track (u8), flags (u8), pts (i64 LE), length
//! (u32 LE) and the packet bytes. [`ReelWriter::finish`] then writes the Matroska header with
//! the metadata attachment and copies the packets across, so memory stays at one frame.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use ffmpeg_next::codec::{self, encoder, threading};
use ffmpeg_next::{format, frame, media, Dictionary, Packet, Rational};

use super::reader::open_input;
use super::{attachment, envelope, ff, init, planes_crc32, FrameEntry, ReelInfo, ReelSpec};
use super::{ReelReader, SampleDepth, FRAME_RATE};
use crate::error::{Error, Result};

/// Writes one reel, frame by frame. Dropping it without [`ReelWriter::finish`] removes its
/// temporary files and leaves nothing at the target path.
pub struct ReelWriter {
    path: PathBuf,
    tmp_path: PathBuf,
    spill_path: PathBuf,
    spec: ReelSpec,
    encoders: Vec<encoder::video::Encoder>,
    spill: Option<BufWriter<File>>,
    frames: Vec<FrameEntry>,
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s: OsString = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Open one FFV1 encoder for a track of `spec`.
fn open_encoder(spec: &ReelSpec) -> std::result::Result<encoder::video::Encoder, String> {
    let codec = encoder::find(codec::Id::FFV1).ok_or("this FFmpeg has no FFV1 encoder")?;
    let mut ctx = codec::context::Context::new_with_codec(codec);
    ctx.set_threading(threading::Config {
        kind: threading::Type::Slice,
        ..Default::default()
    });
    let mut enc = ctx.encoder().video().map_err(ff)?;
    enc.set_width(spec.width);
    enc.set_height(spec.height);
    enc.set_format(spec.depth.pixel());
    enc.set_time_base(Rational::new(1, FRAME_RATE));
    enc.set_frame_rate(Some(Rational::new(FRAME_RATE, 1)));
    enc.set_gop(1);
    // Matroska keeps FFV1's configuration record in the track header (CodecPrivate).
    enc.set_flags(codec::Flags::GLOBAL_HEADER);
    let mut opts = Dictionary::new();
    // Version 3 is the one with per-slice CRCs. On weight-like noise the range coder with a
    // custom state table and the small context model compress best (measured with the
    // `reel` bench: the large model adapts too slowly within one intra frame).
    opts.set("level", "3");
    opts.set("slicecrc", "1");
    opts.set("coder", "range_tab");
    opts.set("context", "0");
    enc.open_with(opts).map_err(ff)
}

impl ReelWriter {
    /// Start a reel at `path` with the given shape. Nothing appears at `path` before
    /// [`ReelWriter::finish`].
    pub fn create(path: &Path, spec: ReelSpec) -> Result<ReelWriter> {
        init();
        spec.check().map_err(|e| Error::reel(path, e))?;
        let spill_path = with_suffix(path, ".packets.tmp");
        let spill = File::create(&spill_path).map_err(|e| Error::io(&spill_path, e))?;
        let mut writer = ReelWriter {
            path: path.to_path_buf(),
            tmp_path: with_suffix(path, ".tmp"),
            spill_path,
            spec,
            encoders: Vec::new(),
            spill: Some(BufWriter::with_capacity(1 << 20, spill)),
            frames: Vec::new(),
        };
        for _ in 0..spec.planes {
            let enc = open_encoder(&spec)
                .map_err(|e| Error::reel(path, format!("cannot start FFV1 encoder: {e}")))?;
            writer.encoders.push(enc);
        }
        Ok(writer)
    }

    /// Frames pushed so far.
    pub fn frames(&self) -> u64 {
        self.frames.len() as u64
    }

    /// The shape given at creation.
    pub fn spec(&self) -> ReelSpec {
        self.spec
    }

    /// Encode one frame. `planes.len()` must equal the spec's planes; each plane is
    /// `width * height` samples, row-major, with `width`/`height` at most the spec's.
    pub fn push_frame(&mut self, width: u32, height: u32, planes: &[&[u16]]) -> Result<()> {
        let index = self.frames.len();
        self.check_frame(index, width, height, planes)?;
        for (track, plane) in planes.iter().enumerate() {
            let picture = self.picture(index, width, height, plane);
            self.encoders[track].send_frame(&picture).map_err(|e| {
                Error::reel(
                    &self.path,
                    format!("frame {index}: FFV1 encoding failed: {e}"),
                )
            })?;
            self.drain(track)?;
        }
        self.frames.push(FrameEntry {
            width,
            height,
            crc32: planes_crc32(planes),
        });
        Ok(())
    }

    fn check_frame(&self, index: usize, width: u32, height: u32, planes: &[&[u16]]) -> Result<()> {
        let spec = &self.spec;
        let bad =
            |problem: String| Err(Error::reel(&self.path, format!("frame {index}: {problem}")));
        if planes.len() != spec.planes as usize {
            return bad(format!(
                "{} planes given, the reel has {}",
                planes.len(),
                spec.planes
            ));
        }
        if width == 0 || height == 0 || width > spec.width || height > spec.height {
            return bad(format!(
                "size {width}x{height} does not fit the reel's {}x{} (expected 1..={} x 1..={})",
                spec.width, spec.height, spec.width, spec.height
            ));
        }
        let want = width as usize * height as usize;
        for (p, plane) in planes.iter().enumerate() {
            if plane.len() != want {
                return bad(format!(
                    "plane {p} has {} samples, {width}x{height} needs {want}",
                    plane.len()
                ));
            }
            let max = spec.depth.max_value();
            if let Some(v) = plane.iter().find(|&&v| v > max) {
                return bad(format!(
                    "plane {p} has sample {v}, above the 8-bit maximum {max}"
                ));
            }
        }
        Ok(())
    }

    /// A full-size picture with `plane` at the top-left and zeros elsewhere.
    fn picture(&self, index: usize, width: u32, height: u32, plane: &[u16]) -> frame::Video {
        let (w, h) = (width as usize, height as usize);
        let mut picture =
            frame::Video::new(self.spec.depth.pixel(), self.spec.width, self.spec.height);
        let stride = picture.stride(0);
        let data = picture.data_mut(0);
        // Buffers from av_frame_get_buffer are not cleared; the padding must be zero.
        data.fill(0);
        for (y, row) in plane.chunks_exact(w).take(h).enumerate() {
            let out = &mut data[y * stride..];
            match self.spec.depth {
                SampleDepth::Gray16 => {
                    for (o, v) in out.chunks_exact_mut(2).zip(row) {
                        o.copy_from_slice(&v.to_le_bytes());
                    }
                }
                SampleDepth::Gray8 => {
                    for (o, &v) in out.iter_mut().zip(row) {
                        // check_frame refused values above 255.
                        *o = v as u8;
                    }
                }
            }
        }
        picture.set_pts(Some(index as i64));
        picture
    }

    /// Move every packet the encoder of `track` has ready into the spill file.
    fn drain(&mut self, track: usize) -> Result<()> {
        let mut packet = Packet::empty();
        while self.encoders[track].receive_packet(&mut packet).is_ok() {
            let spill = self
                .spill
                .as_mut()
                .ok_or_else(|| Error::reel(&self.path, "writer already finished"))?;
            let data = packet.data().unwrap_or(&[]);
            let len = u32::try_from(data.len())
                .map_err(|_| Error::reel(&self.path, "an encoded frame is larger than 4 GiB"))?;
            let mut head = [0u8; 14];
            head[0] = track as u8;
            head[1] = u8::from(packet.is_key());
            head[2..10].copy_from_slice(&packet.pts().unwrap_or(0).to_le_bytes());
            head[10..14].copy_from_slice(&len.to_le_bytes());
            spill
                .write_all(&head)
                .and_then(|_| spill.write_all(data))
                .map_err(|e| Error::io(&self.spill_path, e))?;
        }
        Ok(())
    }

    /// Append every frame of the finished reel `part` by copying its packets (no decoding or
    /// re-encoding). `part` must have this writer's shape and FFV1 configuration; the encoder
    /// is deterministic, so its packets are the ones this writer would have produced.
    pub fn append_reel(&mut self, part: &Path) -> Result<()> {
        let reader = ReelReader::open(part)?;
        if reader.spec() != self.spec {
            return Err(Error::reel(
                part,
                format!(
                    "has shape {:?}, the reel being written has {:?}",
                    reader.spec(),
                    self.spec
                ),
            ));
        }
        let entries: Vec<FrameEntry> = (0..reader.frame_count())
            .filter_map(|i| reader.frame_entry(i))
            .collect();
        drop(reader);
        let input = open_input(part).map_err(|e| Error::reel(part, e))?;
        let tracks: Vec<usize> = input
            .streams()
            .filter(|s| s.parameters().medium() == media::Type::Video)
            .map(|s| s.index())
            .collect();
        for (track, &stream) in tracks.iter().enumerate() {
            let theirs = input
                .stream(stream)
                .map(|s| extradata_of_parameters(&s.parameters()))
                .unwrap_or_default();
            let ours = self
                .encoders
                .get(track)
                .map(extradata_of_encoder)
                .unwrap_or_default();
            if theirs != ours {
                return Err(Error::reel(
                    part,
                    format!("track {track} was encoded with another FFV1 configuration"),
                ));
            }
        }
        let mut input = input;
        let base = self.frames.len() as i64;
        let mut counts = vec![0i64; tracks.len()];
        let spill_path = self.spill_path.clone();
        for (stream, packet) in input.packets() {
            let Some(track) = tracks.iter().position(|&i| i == stream.index()) else {
                continue;
            };
            let spill = self
                .spill
                .as_mut()
                .ok_or_else(|| Error::reel(&self.path, "writer already finished"))?;
            let data = packet.data().unwrap_or(&[]);
            let len = u32::try_from(data.len())
                .map_err(|_| Error::reel(part, "an encoded frame is larger than 4 GiB"))?;
            let mut head = [0u8; 14];
            head[0] = track as u8;
            head[1] = u8::from(packet.is_key());
            head[2..10].copy_from_slice(&(base + counts[track]).to_le_bytes());
            head[10..14].copy_from_slice(&len.to_le_bytes());
            spill
                .write_all(&head)
                .and_then(|_| spill.write_all(data))
                .map_err(|e| Error::io(&spill_path, e))?;
            counts[track] += 1;
        }
        if let Some((track, n)) = counts
            .iter()
            .enumerate()
            .find(|(_, &n)| n as usize != entries.len())
        {
            return Err(Error::reel(
                part,
                format!(
                    "track {track} has {n} packets, the metadata lists {} frames",
                    entries.len()
                ),
            ));
        }
        self.frames.extend(entries);
        Ok(())
    }

    /// Finish the reel: flush the encoders, mux header + `metadata_json` attachment + packets
    /// into `<path>.tmp`, fsync it and rename it to `path`. A reel needs at least one frame
    /// (FFmpeg 5.1's Matroska muxer writes an unreadable file without any packets).
    pub fn finish(mut self, metadata_json: &[u8]) -> Result<ReelInfo> {
        if self.frames.is_empty() {
            return Err(Error::reel(
                &self.path,
                "a reel needs at least one frame, none were pushed",
            ));
        }
        for track in 0..self.encoders.len() {
            self.encoders[track]
                .send_eof()
                .map_err(|e| Error::reel(&self.path, format!("FFV1 encoder flush failed: {e}")))?;
            self.drain(track)?;
        }
        let spill = self
            .spill
            .take()
            .ok_or_else(|| Error::reel(&self.path, "writer already finished"))?;
        spill
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_data())
            .map_err(|e| Error::io(&self.spill_path, e))?;
        let env = envelope::encode(&self.spec, &self.frames, metadata_json);
        self.mux(&env).map_err(|e| Error::reel(&self.path, e))?;
        File::open(&self.tmp_path)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(&self.tmp_path, e))?;
        fs::rename(&self.tmp_path, &self.path).map_err(|e| Error::io(&self.path, e))?;
        // Make the rename itself durable; not every platform can open a directory, so a
        // failure here is not an error.
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        let bytes = fs::metadata(&self.path)
            .map_err(|e| Error::io(&self.path, e))?
            .len();
        Ok(ReelInfo {
            path: self.path.clone(),
            bytes,
            frames: self.frames(),
        })
    }

    /// Write the final Matroska file at the temporary path.
    fn mux(&self, env: &[u8]) -> std::result::Result<(), String> {
        let mut octx = format::output_as(&self.tmp_path, "matroska")
            .map_err(|e| format!("cannot create: {e}"))?;
        let codec = encoder::find(codec::Id::FFV1).ok_or("this FFmpeg has no FFV1 encoder")?;
        let titles: &[&str] = if self.encoders.len() == 2 {
            &["high", "low"]
        } else {
            &["plane"]
        };
        for (enc, title) in self.encoders.iter().zip(titles) {
            let mut st = octx.add_stream(codec).map_err(ff)?;
            st.set_parameters(enc);
            // The muxer must not reuse a codec tag from the encoder's context.
            // SAFETY: `st` is a live stream of `octx`; codecpar is allocated by add_stream.
            unsafe { (*(*st.as_mut_ptr()).codecpar).codec_tag = 0 };
            st.set_time_base(Rational::new(1, FRAME_RATE));
            st.set_avg_frame_rate(Rational::new(FRAME_RATE, 1));
            let mut tags = Dictionary::new();
            tags.set("title", title);
            st.set_metadata(tags);
        }
        attachment::add(&mut octx, env)?;
        octx.write_header()
            .map_err(|e| format!("cannot write the header: {e}"))?;
        let bases: Vec<Rational> = (0..self.encoders.len())
            .map(|i| {
                octx.stream(i)
                    .map(|s| s.time_base())
                    .unwrap_or(Rational::new(1, 1000))
            })
            .collect();
        let file = File::open(&self.spill_path)
            .map_err(|e| format!("{}: {e}", self.spill_path.display()))?;
        let mut spill = BufReader::with_capacity(1 << 20, file);
        let mut head = [0u8; 14];
        let mut data = Vec::new();
        loop {
            match spill.read_exact(&mut head) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(format!("{}: {e}", self.spill_path.display())),
            }
            let track = head[0] as usize;
            let pts = i64::from_le_bytes(head[2..10].try_into().unwrap_or_default());
            let len = u32::from_le_bytes(head[10..14].try_into().unwrap_or_default()) as usize;
            data.resize(len, 0);
            spill
                .read_exact(&mut data)
                .map_err(|e| format!("{}: {e}", self.spill_path.display()))?;
            let mut packet = Packet::copy(&data);
            packet.set_stream(track);
            packet.set_pts(Some(pts));
            packet.set_dts(Some(pts));
            packet.set_duration(1);
            if head[1] != 0 {
                packet.set_flags(codec::packet::Flags::KEY);
            }
            let base = bases
                .get(track)
                .copied()
                .ok_or("spill file names an unknown track")?;
            packet.rescale_ts(Rational::new(1, FRAME_RATE), base);
            packet
                .write_interleaved(&mut octx)
                .map_err(|e| format!("cannot write a packet: {e}"))?;
        }
        octx.write_trailer()
            .map_err(|e| format!("cannot write the trailer: {e}"))?;
        Ok(())
    }
}

impl Drop for ReelWriter {
    fn drop(&mut self) {
        // Close the spill file before removing it; both removals may find nothing.
        self.spill = None;
        let _ = fs::remove_file(&self.spill_path);
        let _ = fs::remove_file(&self.tmp_path);
    }
}

/// The codec configuration record (FFV1 extradata) of an encoder.
fn extradata_of_encoder(enc: &encoder::video::Encoder) -> Vec<u8> {
    // SAFETY: the encoder's context is live; extradata is either null or extradata_size bytes.
    unsafe {
        let ctx = enc.as_ptr();
        raw_bytes((*ctx).extradata, (*ctx).extradata_size)
    }
}

/// The codec configuration record of a demuxed stream.
fn extradata_of_parameters(par: &codec::Parameters) -> Vec<u8> {
    // SAFETY: the parameters are live; extradata is either null or extradata_size bytes.
    unsafe {
        let p = par.as_ptr();
        raw_bytes((*p).extradata, (*p).extradata_size)
    }
}

/// Copy `len` bytes at `ptr` (nothing for null or a non-positive length).
///
/// # Safety
/// `ptr` must be null or point at `len` readable bytes.
unsafe fn raw_bytes(ptr: *const u8, len: i32) -> Vec<u8> {
    if ptr.is_null() || len <= 0 {
        return Vec::new();
    }
    // SAFETY: guaranteed by the caller.
    unsafe { std::slice::from_raw_parts(ptr, len as usize).to_vec() }
}
