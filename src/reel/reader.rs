//! [`ReelReader`]: open a reel, check its envelope and tracks, decode frames on demand.
//!
//! Reading frames in order decodes each packet once and seeks never. A jump backwards or more
//! than [`SEEK_AHEAD`] frames forward seeks: through the Matroska cues of reels that have them
//! (written before the muxer's `live` mode), else through the index FFmpeg's demuxer builds
//! from the clusters it has read, reading further clusters for a jump ahead of them. Since
//! every frame is intra, the packets between the seek point and the wanted frame are skipped
//! undecoded.
//!
//! A tiled frame (format version 3) is read a tile at a time ([`ReelReader::read_tiles`]);
//! [`ReelReader::read_frame`] assembles its tiles where their records place them.

use std::collections::VecDeque;
use std::ffi::CString;
use std::path::{Path, PathBuf};

use ffmpeg_next::codec::{self, decoder, threading};
use ffmpeg_next::util::mathematics::Rescale;
use ffmpeg_next::{ffi, format, frame, media, Packet, Rational};

use super::envelope::{self, Envelope};
use super::{attachment, damage, init, planes_crc32, record, ReelSpec, FRAME_RATE};
use crate::error::{Error, Result};
use ffmpeg_next::codec::packet::side_data;

/// Forward jumps up to this many frames read through instead of seeking.
pub const SEEK_AHEAD: u64 = 8;

/// Packets held for one track while looking for another track's packet; more means the
/// tracks are not interleaved as written (corrupt file).
const MAX_PENDING: usize = 64;

/// Open a demuxer on `path` without probing packets (`avformat_find_stream_info`): Matroska
/// track headers already say everything the reader checks, and a reel with no frames has no
/// packets to probe.
pub(super) fn open_input(path: &Path) -> std::result::Result<format::context::Input, String> {
    let name = path.to_str().ok_or("the path is not valid UTF-8")?;
    let name = CString::new(name).map_err(|_| "the path contains a NUL byte")?;
    let mut ps: *mut ffi::AVFormatContext = std::ptr::null_mut();
    // SAFETY: `ps` starts null as avformat_open_input requires; on success it owns a context
    // that Input::wrap takes over (and closes on drop); on failure FFmpeg frees it itself.
    unsafe {
        match ffi::avformat_open_input(
            &mut ps,
            name.as_ptr(),
            std::ptr::null(),
            std::ptr::null_mut(),
        ) {
            0 => Ok(format::context::Input::wrap(ps)),
            e => Err(ffmpeg_next::Error::from(e).to_string()),
        }
    }
}

/// A demuxer, with the custom I/O of a stored reel (see [`super::stored`]) when it reads one;
/// the I/O is freed after the demuxer (field order).
pub(super) struct Demuxer {
    input: format::context::Input,
    _io: Option<super::stored::StoredIo>,
}

impl std::ops::Deref for Demuxer {
    type Target = format::context::Input;
    fn deref(&self) -> &Self::Target {
        &self.input
    }
}

impl std::ops::DerefMut for Demuxer {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.input
    }
}

/// Open a demuxer on `path`: a file, or `LOCATION/NAME` of a mounted reel storage.
fn open_demuxer(path: &Path) -> Result<Demuxer> {
    let bad = |problem: String| Error::reel(path, problem);
    if let Some((storage, name)) = super::stored::resolve(path) {
        let (input, io) = super::stored::open(storage, &name)
            .map_err(|e| bad(format!("cannot open it in the reel storage ({e})")))?;
        return Ok(Demuxer {
            input,
            _io: Some(io),
        });
    }
    // A plain open first, so that a missing or unreadable file gets the OS's message.
    std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let input = open_input(path).map_err(|e| bad(format!("not a readable Matroska file ({e})")))?;
    Ok(Demuxer { input, _io: None })
}

/// Open `path` as Matroska and read and verify its metadata envelope (magic, version, CRCs),
/// without opening any decoder.
pub(super) fn open_envelope(path: &Path) -> Result<(Demuxer, Envelope)> {
    init();
    let bad = |problem: String| Error::reel(path, problem);
    let input = open_demuxer(path)?;
    let name = input.format().name().to_string();
    if !name.split(',').any(|n| n == "matroska") {
        return Err(bad(format!("not a Matroska file (it reads as '{name}')")));
    }
    let bytes = attachment::find(&input).ok_or_else(|| {
        bad("has no weightreel metadata attachment (not a reel, or truncated)".into())
    })?;
    let env = envelope::decode(&bytes).map_err(bad)?;
    Ok((input, env))
}

/// The caller's metadata of the reel at `path`, verified like [`ReelReader::open`] does but
/// without setting up decoders: for callers that need only the metadata.
pub fn read_metadata(path: &Path) -> Result<Vec<u8>> {
    Ok(open_envelope(path)?.1.json)
}

/// [`read_metadata`] of a part that a writer of `spec` can join (see
/// [`super::ReelWriter::append_reel`]): `None` for a reel of other pictures, such as a
/// version-2 part of 512×512 pictures left by an older build.
pub fn read_joinable_metadata(path: &Path, spec: &ReelSpec) -> Result<Option<Vec<u8>>> {
    let env = open_envelope(path)?.1;
    let joinable = env.spec == *spec && spec.picture_in(env.version) == spec.picture();
    Ok(joinable.then_some(env.json))
}

/// An open reel.
pub struct ReelReader {
    path: PathBuf,
    input: Demuxer,
    env: Envelope,
    /// One decoder per track, track 0 first.
    decoders: Vec<decoder::Video>,
    /// Input stream index of each track.
    streams: Vec<usize>,
    /// Time base of each track's packets.
    bases: Vec<Rational>,
    /// The picture the demuxer would deliver next when reading in order.
    next: u64,
    /// Packets read ahead, per track, with their frame index.
    pending: Vec<VecDeque<(u64, Packet)>>,
}

impl ReelReader {
    /// Open `path`, verifying the metadata envelope (magic, version, CRC32s) and that its video
    /// tracks match the recorded spec.
    pub fn open(path: &Path) -> Result<ReelReader> {
        let bad = |problem: String| Error::reel(path, problem);
        let (input, env) = open_envelope(path)?;
        // The envelope's decoder checked every frame size against the reel's.
        let spec = env.spec;
        let mut decoders = Vec::new();
        let mut streams = Vec::new();
        let mut bases = Vec::new();
        for st in input
            .streams()
            .filter(|s| s.parameters().medium() == media::Type::Video)
        {
            let track = streams.len();
            let par = st.parameters();
            // Version 1 coded every track with FFV1.
            let want = if env.version < 2 {
                codec::Id::FFV1
            } else {
                spec.track_codec_in(env.version, track as u32).id()
            };
            if par.id() != want {
                return Err(bad(format!(
                    "track {track} is {:?}, not {want:?}",
                    par.id()
                )));
            }
            let mut ctx =
                codec::context::Context::from_parameters(par).map_err(|e| bad(e.to_string()))?;
            ctx.set_threading(threading::Config {
                kind: threading::Type::Slice,
                ..Default::default()
            });
            let mut dec = ctx.decoder();
            // Slice CRCs are only verified when asked; EXPLODE turns damage into an error.
            dec.check(decoder::Check::CRC | decoder::Check::EXPLODE);
            dec.set_packet_time_base(st.time_base());
            let dec = dec.video().map_err(|e| {
                bad(format!(
                    "track {track}: cannot open the {want:?} decoder ({e})"
                ))
            })?;
            // The pixel format is only known once a frame is decoded; `decode` checks it.
            let (pw, ph) = spec.picture_in(env.version);
            if dec.width() != pw || dec.height() != ph {
                return Err(bad(format!(
                    "track {track} is {}x{}, the metadata says {pw}x{ph}",
                    dec.width(),
                    dec.height(),
                )));
            }
            decoders.push(dec);
            streams.push(st.index());
            bases.push(st.time_base());
        }
        if streams.len() != spec.tracks() as usize {
            return Err(bad(format!(
                "has {} video tracks, the metadata says {}",
                streams.len(),
                spec.tracks()
            )));
        }
        let pending = (0..streams.len()).map(|_| VecDeque::new()).collect();
        Ok(ReelReader {
            path: path.to_path_buf(),
            input,
            env,
            decoders,
            streams,
            bases,
            next: 0,
            pending,
        })
    }

    /// The caller's metadata, byte for byte as given to [`super::ReelWriter::finish`].
    pub fn metadata_json(&self) -> &[u8] {
        &self.env.json
    }

    /// The reel's shape.
    pub fn spec(&self) -> ReelSpec {
        self.env.spec
    }

    /// Size of the reel's video pictures.
    fn picture(&self) -> (u32, u32) {
        self.env.spec.picture_in(self.env.version)
    }

    /// Frames in the reel.
    pub fn frame_count(&self) -> u64 {
        self.env.sizes.len()
    }

    /// Logical size of frame `index`, if it exists.
    pub fn frame_size(&self, index: u64) -> Option<(u32, u32)> {
        self.env.sizes.get(index)
    }

    /// Format version of the reel's layout (1: CRCs in the header table; 2: frame records).
    pub fn format_version(&self) -> u32 {
        self.env.version
    }

    /// The reel's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn no_frame(&self, index: u64) -> Error {
        Error::reel(
            &self.path,
            format!(
                "frame {index} does not exist (the reel has {} frames)",
                self.frame_count()
            ),
        )
    }

    /// Position the demuxer so that the packets of frame `index` come next, and return the
    /// index of its first picture.
    fn position(&mut self, index: u64) -> Result<u64> {
        if index >= self.frame_count() {
            return Err(self.no_frame(index));
        }
        let first = self
            .env
            .sizes
            .first_picture(&self.env.spec, self.env.version, index);
        if first < self.next || first > self.next + SEEK_AHEAD {
            self.seek(first)?;
        }
        // Reading forward: packets of earlier pictures (of tracks a caller skipped, as
        // frame_record does) are not needed again.
        for q in &mut self.pending {
            while q.front().is_some_and(|(i, _)| *i < first) {
                q.pop_front();
            }
        }
        self.next = first;
        Ok(first)
    }

    /// The record of frame `index` (version 2 and 3 reels; empty in version 1 reels, whose
    /// manifest lists the frames), read from its first packet (a tiled frame's: from its last
    /// tile's, reading its tiles' records on the way) without decoding anything.
    pub fn frame_record(&mut self, index: u64) -> Result<Vec<u8>> {
        if self.is_tiled(index)? {
            return Ok(self.read_tiles(index, |_| false, |_| Ok(()))?.record);
        }
        Ok(self.record_of(index)?.record)
    }

    /// Is frame `index` stored as tiles with a record each (see [`super::record`]; version 3
    /// reels)? Reads the frame's first packet, decodes nothing.
    pub fn is_tiled(&mut self, index: u64) -> Result<bool> {
        let (w, h) = self.frame_size(index).ok_or_else(|| self.no_frame(index))?;
        if self.env.version < 3 || self.env.spec.pictures_in(self.env.version, w, h) < 2 {
            return Ok(false);
        }
        let first = self.position(index)?;
        self.fetch(0, first, index)?;
        let packet = &self.pending[0].front().expect("fetched").1;
        Ok(side_of(packet).is_some_and(|side| record::is_tile_record(&side)))
    }

    /// Read the tiled frame `index` (see [`ReelReader::is_tiled`]) tile by tile: each tile's
    /// record is checked, then given to `wanted`; a wanted tile is decoded, checked against
    /// its CRC32 and given to `each`. Only one tile's planes are held at a time. Returns the
    /// frame's record (from its last tile). When every tile was decoded, the CRC32 of all of
    /// them is checked too.
    pub fn read_tiles(
        &mut self,
        index: u64,
        mut wanted: impl FnMut(&[u8]) -> bool,
        mut each: impl FnMut(&TileOut) -> Result<()>,
    ) -> Result<TiledFrame> {
        let (w, h) = self.frame_size(index).ok_or_else(|| self.no_frame(index))?;
        let tiles = self.env.spec.pictures_in(self.env.version, w, h);
        let first = self.position(index)?;
        // Whatever happens below, the demuxer moves past the pictures before this frame.
        self.next = self
            .env
            .sizes
            .first_picture(&self.env.spec, self.env.version, index + 1);
        let bytes = self.env.spec.depth.bytes() as usize;
        let (pw, ph) = self.picture();
        let path = self.path.clone();
        let corrupt = move |what: String| {
            Error::reel(&path, format!("frame {index}: {what} (corrupt metadata)"))
        };
        let mut planes = vec![vec![0u16; pw as usize * ph as usize]; self.env.spec.planes as usize];
        let mut crc = crc32fast::Hasher::new();
        let mut decoded = 0u64;
        let mut frame = None;
        for k in 0..tiles {
            let at = first + k;
            let packet = self.packet_for(0, at, index)?;
            let side = side_of(&packet).unwrap_or_default();
            let r = record::decode_tile(&side)
                .map_err(|e| Error::reel(&self.path, format!("frame {index} (tile {k}): {e}")))?;
            let fits = r.x % pw == 0 && r.y % ph == 0 && r.x + pw <= w && r.y + ph <= h;
            if r.frame != index || u64::from(r.tile) != k || u64::from(r.tiles) != tiles || !fits {
                return Err(corrupt(format!(
                    "tile {k}'s record says tile {} of {} of frame {} at ({}, {})",
                    r.tile, r.tiles, r.frame, r.x, r.y
                )));
            }
            if wanted(&r.record) {
                for plane in &mut planes {
                    plane.fill(0);
                }
                for track in 0..self.streams.len() {
                    let picture = if track == 0 {
                        self.decode(track, index, &packet)?
                    } else {
                        let p = self.packet_for(track, at, index)?;
                        self.decode(track, index, &p)?
                    };
                    let shift = 8 * (bytes - 1 - track % bytes);
                    add_bytes(
                        &mut planes[track / bytes],
                        pw,
                        &picture,
                        (0, 0, pw, ph),
                        shift,
                    );
                }
                if planes_crc32(&planes) != r.crc32 {
                    return Err(Error::reel(
                        &self.path,
                        format!("frame {index} (tile {k}) does not match its stored CRC32 (corrupt data)"),
                    ));
                }
                super::hash_planes(&mut crc, &planes);
                decoded += 1;
                each(&TileOut {
                    index: r.tile,
                    x: r.x,
                    y: r.y,
                    planes: &planes,
                    record: &r.record,
                })?;
            }
            if k + 1 == tiles {
                frame = Some((r.frame_record, r.frame_crc32));
            }
        }
        let (record, stored) = frame.ok_or_else(|| corrupt("no tiles".into()))?;
        if decoded == tiles && crc.finalize() != stored {
            return Err(Error::reel(
                &self.path,
                format!("frame {index} does not match its stored CRC32 (corrupt data)"),
            ));
        }
        Ok(TiledFrame {
            record,
            crc32: stored,
        })
    }

    /// Decode frame `index` and check it against its CRC32(s), holding at most one tile of
    /// a tiled frame: what `check --deep` does.
    pub fn verify_frame(&mut self, index: u64) -> Result<()> {
        if self.is_tiled(index)? {
            self.read_tiles(index, |_| true, |_| Ok(()))?;
            return Ok(());
        }
        let (w, h) = self.frame_size(index).ok_or_else(|| self.no_frame(index))?;
        self.read_frame(index, w, h).map(|_| ())
    }

    /// Frame `index`'s record and stored CRC32.
    fn record_of(&mut self, index: u64) -> Result<record::FrameRecordBytes> {
        let first = self.position(index)?;
        if let Some(crcs) = &self.env.crcs_v1 {
            return Ok(record::FrameRecordBytes {
                index,
                crc32: crcs[index as usize],
                record: Vec::new(),
            });
        }
        self.fetch(0, first, index)?;
        let packet = &self.pending[0].front().expect("fetched").1;
        let side = side_of(packet).unwrap_or_default();
        let r = record::decode(&side)
            .map_err(|e| Error::reel(&self.path, format!("frame {index}: {e}")))?;
        if r.index != index {
            return Err(Error::reel(
                &self.path,
                format!(
                    "frame {index}: its record says frame {} (corrupt file)",
                    r.index
                ),
            ));
        }
        Ok(r)
    }

    /// Decode frame `index` (0-based), cropped to `width` x `height`, which must be the size it
    /// was written with. Returns one `Vec` per plane, row-major. The decoded planes are checked
    /// against the CRC32 stored when the frame was written.
    pub fn read_frame(&mut self, index: u64, width: u32, height: u32) -> Result<Vec<Vec<u16>>> {
        Ok(self.read_frame_record(index, width, height)?.0)
    }

    /// [`ReelReader::read_frame`], and the frame's record as given to
    /// [`super::ReelWriter::push_frame_with_record`].
    pub fn read_frame_record(
        &mut self,
        index: u64,
        width: u32,
        height: u32,
    ) -> Result<(Vec<Vec<u16>>, Vec<u8>)> {
        let (w, h) = self.frame_size(index).ok_or_else(|| self.no_frame(index))?;
        if (w, h) != (width, height) {
            return Err(Error::reel(
                &self.path,
                format!("frame {index} is {w}x{h}, not {width}x{height}"),
            ));
        }
        if self.is_tiled(index)? {
            // The tiles are placed where their records say, into whole planes.
            let mut planes =
                vec![vec![0u16; width as usize * height as usize]; self.env.spec.planes as usize];
            let (pw, ph) = self.picture();
            let frame = self.read_tiles(
                index,
                |_| true,
                |tile| {
                    for (plane, part) in planes.iter_mut().zip(tile.planes) {
                        for (row, src) in
                            part.chunks_exact(pw as usize).enumerate().take(ph as usize)
                        {
                            let at = (tile.y as usize + row) * width as usize + tile.x as usize;
                            plane[at..at + pw as usize].copy_from_slice(src);
                        }
                    }
                    Ok(())
                },
            )?;
            return Ok((planes, frame.record));
        }
        let stored = self.record_of(index)?;
        let first = self.next;
        // Whatever happens below, the demuxer has moved past the pictures before this frame.
        self.next = self
            .env
            .sizes
            .first_picture(&self.env.spec, self.env.version, index + 1);
        let bytes = self.env.spec.depth.bytes() as usize;
        let area = width as usize * height as usize;
        let mut planes = vec![vec![0u16; area]; self.env.spec.planes as usize];
        let (pw, ph) = self.picture();
        for (k, tile) in super::tiles(width, height, pw, ph).enumerate() {
            let at = first + k as u64;
            for track in 0..self.streams.len() {
                let packet = self.packet_for(track, at, index)?;
                let picture = self.decode(track, index, &packet)?;
                // Tracks of a plane come most significant byte first.
                let shift = 8 * (bytes - 1 - track % bytes);
                add_bytes(&mut planes[track / bytes], width, &picture, tile, shift);
            }
        }
        if planes_crc32(&planes) != stored.crc32 {
            return Err(Error::reel(
                &self.path,
                format!("frame {index} does not match its stored CRC32 (corrupt data)"),
            ));
        }
        Ok((planes, stored.record))
    }

    /// Reposition the demuxer at or before picture `index`.
    fn seek(&mut self, index: u64) -> Result<()> {
        let micros =
            (index as i64).rescale(Rational::new(1, FRAME_RATE), Rational::new(1, 1_000_000));
        self.input
            // ffmpeg-next passes a `..end` range as max_ts, so this lands at or before `micros`.
            .seek(micros, ..micros)
            .map_err(|e| Error::reel(&self.path, format!("frame {index}: cannot seek ({e})")))?;
        for q in &mut self.pending {
            q.clear();
        }
        for d in &mut self.decoders {
            d.flush();
        }
        Ok(())
    }

    /// The packet of picture `index` (part of frame `frame`) on `track`, reading ahead as
    /// needed. Messages name the frame.
    fn packet_for(&mut self, track: usize, index: u64, frame: u64) -> Result<Packet> {
        self.fetch(track, index, frame)?;
        Ok(self.pending[track].pop_front().expect("fetched").1)
    }

    /// Read ahead until the packet of picture `index` on `track` is first in its queue.
    fn fetch(&mut self, track: usize, index: u64, frame: u64) -> Result<()> {
        loop {
            let q = &mut self.pending[track];
            while q.front().is_some_and(|(i, _)| *i < index) {
                q.pop_front();
            }
            if let Some((i, _)) = q.front() {
                if *i > index {
                    return Err(Error::reel(
                        &self.path,
                        format!("frame {frame} is missing from track {track}"),
                    ));
                }
                return Ok(());
            }
            let mut packet = Packet::empty();
            match packet.read(&mut self.input) {
                Ok(()) => {}
                Err(ffmpeg_next::Error::Eof) => {
                    return Err(Error::reel(
                        &self.path,
                        format!("frame {frame} is missing (truncated reel?)"),
                    ));
                }
                Err(e) => {
                    return Err(Error::reel(
                        &self.path,
                        format!("frame {frame}: cannot read the file ({e})"),
                    ))
                }
            }
            let Some(t) = self.streams.iter().position(|&s| s == packet.stream()) else {
                continue;
            };
            let pts = packet.pts().or(packet.dts()).ok_or_else(|| {
                Error::reel(
                    &self.path,
                    format!("frame {frame}: a packet on track {t} has no timestamp"),
                )
            })?;
            let at = pts.rescale(self.bases[t], Rational::new(1, FRAME_RATE));
            let Ok(at) = u64::try_from(at) else { continue };
            if at < index {
                continue;
            }
            if self.pending[t].len() >= MAX_PENDING {
                return Err(Error::reel(
                    &self.path,
                    format!("frame {frame}: track {t} is out of step (corrupt file)"),
                ));
            }
            self.pending[t].push_back((at, packet));
        }
    }

    /// Decode one packet of `track` into its picture.
    fn decode(&mut self, track: usize, index: u64, packet: &Packet) -> Result<frame::Video> {
        let path = &self.path;
        let failed = |e: ffmpeg_next::Error| {
            let why = match e {
                ffmpeg_next::Error::InvalidData => {
                    "failed its slice CRC check (corrupt data)".to_string()
                }
                e => format!("could not be decoded ({e})"),
            };
            Error::reel(path, format!("frame {index} (track {track}) {why}"))
        };
        let dec = &mut self.decoders[track];
        // SAFETY: only the address is taken, as a key for the log watcher.
        let ctx = unsafe { dec.as_ptr() } as usize;
        damage::clear(ctx);
        dec.send_packet(packet).map_err(failed)?;
        let mut picture = frame::Video::empty();
        dec.receive_frame(&mut picture).map_err(failed)?;
        // SAFETY: `picture` holds a frame the decoder just returned.
        let flagged = unsafe {
            let f = picture.as_ptr();
            (*f).decode_error_flags != 0
                || ((*f).flags & ffmpeg_next::ffi::AV_FRAME_FLAG_CORRUPT) != 0
        };
        if damage::take(ctx) || flagged {
            return Err(failed(ffmpeg_next::Error::InvalidData));
        }
        let (pw, ph) = self.picture();
        if picture.width() != pw
            || picture.height() != ph
            || picture.format() != format::Pixel::GRAY8
        {
            return Err(Error::reel(
                path,
                format!(
                    "frame {index} (track {track}) decoded as {}x{} {:?}, not {}x{} GRAY8",
                    picture.width(),
                    picture.height(),
                    picture.format(),
                    pw,
                    ph,
                ),
            ));
        }
        Ok(picture)
    }
}

/// The record a packet carries (Matroska `BlockAdditional`), if any.
fn side_of(packet: &Packet) -> Option<Vec<u8>> {
    packet
        .side_data()
        .find(|d| d.kind() == side_data::Type::MatroskaBlockAdditional)
        .map(|d| d.data().to_vec())
}

/// One decoded tile of a tiled frame, as [`ReelReader::read_tiles`] gives it.
pub struct TileOut<'a> {
    /// Its place among the frame's tiles.
    pub index: u32,
    /// Its top-left pixel in the frame.
    pub x: u32,
    /// Likewise.
    pub y: u32,
    /// Its planes, row-major, one picture each.
    pub planes: &'a [Vec<u16>],
    /// The caller's record of the tile.
    pub record: &'a [u8],
}

/// What [`ReelReader::read_tiles`] found besides the tiles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TiledFrame {
    /// The caller's record of the frame (from its last tile).
    pub record: Vec<u8>,
    /// The stored CRC32 of all its tiles' planes.
    pub crc32: u32,
}

/// Add the top-left `w` x `h` bytes of `picture`, shifted left by `shift` bits, to the samples
/// of `plane` (a frame `width` samples wide) at `(x, y)`.
fn add_bytes(
    plane: &mut [u16],
    width: u32,
    picture: &frame::Video,
    (x, y, w, h): (u32, u32, u32, u32),
    shift: usize,
) {
    let (x, y, w, h, width) = (
        x as usize,
        y as usize,
        w as usize,
        h as usize,
        width as usize,
    );
    let stride = picture.stride(0);
    let data = picture.data(0);
    for (row, out) in plane.chunks_exact_mut(width).skip(y).take(h).enumerate() {
        let src = &data[row * stride..row * stride + w];
        for (o, &b) in out[x..x + w].iter_mut().zip(src) {
            *o |= u16::from(b) << shift;
        }
    }
}
