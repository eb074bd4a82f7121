//! [`ReelWriter`]: frames in, one finished `.mkv` out.
//!
//! Frames are encoded as they are pushed and their packets appended to a spill file next to
//! the target (`<path>.packets.tmp`): a record of track (u8), flags (u8), pts (i64 LE), length
//! (u32 LE), side-data length (u32 LE), the packet bytes and the side data (the frame's
//! [`super::record`], on the first packet of each frame on track 0). [`ReelWriter::finish`]
//! then writes the Matroska header with the metadata attachment and copies the packets across,
//! so memory stays at one frame, and nothing per frame is held for the whole reel.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Mutex};

use ffmpeg_next::codec::packet::{side_data, Mut};
use ffmpeg_next::codec::{self, encoder};
use ffmpeg_next::{format, frame, media, Dictionary, Packet, Rational};

use super::envelope::FrameSizes;
use super::reader::open_envelope;
use super::{attachment, configure, envelope, ff, init, planes_crc32, record};
use super::{ReelInfo, ReelSpec, TrackCodec, FRAME_RATE, REEL_FORMAT_VERSION};
use crate::error::{Error, Result};

/// Bytes of a spill record's head: track, flags, pts, length, side-data length.
const SPILL_HEAD: usize = 18;

/// Frames in flight per track before [`ReelWriter::push_frame`] waits for the oldest one.
const IN_FLIGHT: usize = 2;

/// Writes one reel, frame by frame. Dropping it without [`ReelWriter::finish`] removes its
/// temporary files and leaves nothing at the target path.
pub struct ReelWriter {
    path: PathBuf,
    tmp_path: PathBuf,
    spill_path: PathBuf,
    spec: ReelSpec,
    /// Running encoders, started by the first [`ReelWriter::push_frame`].
    tracks: Vec<Track>,
    /// The tracks' FFV1 configuration: from the encoders, or from the first appended part.
    configs: Vec<TrackConfig>,
    /// Pictures sent to the tracks whose packets are not in the spill file yet: the frame
    /// each belongs to, and for a frame's first picture the record its packet carries.
    in_flight: VecDeque<(usize, Option<Vec<u8>>)>,
    /// Pictures in flight before [`ReelWriter::push_frame`] waits: [`IN_FLIGHT`] per encoder
    /// of the track with the most.
    max_in_flight: usize,
    spill: Option<BufWriter<File>>,
    /// Logical size of every frame so far (run-length coded: constant memory).
    sizes: FrameSizes,
    /// Video pictures written so far (a frame larger than a picture takes several).
    pictures: u64,
    /// The tiled frame being pushed, if any.
    open_frame: Option<OpenFrame>,
    /// Format version the envelope will say: 3 once a tiled frame is in, else 2.
    version: u32,
    /// Write Cues (see [`ReelWriter::with_cues`]).
    cues: bool,
}

/// A frame pushed tile by tile that is not complete yet.
struct OpenFrame {
    width: u32,
    height: u32,
    tiles: u32,
    /// The next tile expected.
    next: u32,
    /// CRC32 of its tiles so far.
    crc: crc32fast::Hasher,
    /// Where the spill file and the picture count stood before its first tile.
    spill_len: u64,
    pictures: u64,
}

/// One tile of a frame stored tile by tile (see [`ReelWriter::push_tile`]).
pub struct TileIn<'a> {
    /// Logical size of the whole frame.
    pub width: u32,
    /// Likewise.
    pub height: u32,
    /// Its place among the frame's tiles, counted from 0 in the order they are pushed.
    pub index: u32,
    /// The top-left pixel of the tile in the frame.
    pub x: u32,
    /// Likewise.
    pub y: u32,
    /// The tile's planes, row-major, a whole picture each (the spec's planes).
    pub planes: &'a [&'a [u16]],
    /// The caller's record of this tile.
    pub record: &'a [u8],
    /// The caller's record of the frame: given with the last tile, ignored on the others.
    pub frame_record: &'a [u8],
}

/// An encoded packet on its way from a track's thread to the spill file.
struct Encoded {
    data: Vec<u8>,
    key: bool,
    pts: i64,
}

/// Work for a track's thread.
enum Job {
    /// Encode frame `index`: `bytes` is the track's `width` x `height` samples, row-major.
    Frame {
        index: usize,
        width: u32,
        height: u32,
        bytes: Vec<u8>,
    },
}

/// One video track: one or more encoders, each on its own thread. Pictures go to the
/// encoders in turn and their packets are taken back in the same turn, so they leave in
/// order. Every picture is a keyframe coded from the initial states, so a packet does not
/// depend on the pictures its encoder saw before: any number of encoders writes the packets
/// of a single encoder, and FFV1 (about 15-25 MB/s per core) uses every core.
struct Track {
    workers: Vec<Worker>,
    /// Pictures sent and pictures whose packets were taken back.
    sent: usize,
    received: usize,
}

/// An encoder on its own thread, fed pictures in order and answering each with its packets.
struct Worker {
    jobs: Option<mpsc::SyncSender<Job>>,
    done: mpsc::Receiver<std::result::Result<Vec<Encoded>, String>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What a track's thread reports once its encoder is open.
type TrackSetup = std::result::Result<TrackConfig, String>;

/// The codec configuration of one track.
struct TrackConfig {
    /// Codec parameters (with the configuration record) for the muxer.
    parameters: codec::Parameters,
    /// The configuration record (FFV1 extradata; empty for raw tracks).
    extradata: Vec<u8>,
}

/// Most encoder threads of a reel's FFV1 tracks together. Each small-picture FFV1 encoder
/// holds a few MiB, a 512x512 one about 40 MiB, so this also bounds the writer's memory.
const MAX_FFV1_THREADS: usize = 4;

/// Encoders for track `track` of `spec`: FFV1 tracks share the cores (at most
/// [`MAX_FFV1_THREADS`]); a raw track only copies bytes and needs one.
fn workers_for(spec: &ReelSpec, track: u32) -> usize {
    let ffv1 = |t: u32| spec.track_codec(t) == TrackCodec::Ffv1;
    if !ffv1(track) {
        return 1;
    }
    let tracks = (0..spec.tracks()).filter(|&t| ffv1(t)).count().max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores.min(MAX_FFV1_THREADS) / tracks).max(1)
}

impl Track {
    /// Start `count` encoders of track `track`; each opens on its thread and reports the
    /// result.
    fn spawn(
        spec: ReelSpec,
        track: u32,
        count: usize,
    ) -> std::result::Result<(Track, Vec<mpsc::Receiver<TrackSetup>>), String> {
        let mut workers = Vec::new();
        let mut setups = Vec::new();
        for n in 0..count.max(1) {
            let (worker, setup) = Worker::spawn(spec, track, n)?;
            workers.push(worker);
            setups.push(setup);
        }
        let track = Track {
            workers,
            sent: 0,
            received: 0,
        };
        Ok((track, setups))
    }

    fn send(&mut self, job: Job) -> std::result::Result<(), String> {
        let worker = &self.workers[self.sent % self.workers.len()];
        worker
            .jobs
            .as_ref()
            .and_then(|j| j.send(job).ok())
            .ok_or_else(|| "the encoder thread stopped".to_string())?;
        self.sent += 1;
        Ok(())
    }

    fn receive(&mut self) -> std::result::Result<Vec<Encoded>, String> {
        let worker = &self.workers[self.received % self.workers.len()];
        self.received += 1;
        worker
            .done
            .recv()
            .map_err(|_| "the encoder thread stopped".to_string())?
    }
}

impl Worker {
    /// Start encoder `n` of track `track`.
    fn spawn(
        spec: ReelSpec,
        track: u32,
        n: usize,
    ) -> std::result::Result<(Worker, mpsc::Receiver<TrackSetup>), String> {
        let (jobs, job_rx) = mpsc::sync_channel::<Job>(IN_FLIGHT);
        let (done_tx, done) = mpsc::sync_channel(IN_FLIGHT + 1);
        let (setup_tx, setup) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("reel-track-{track}-{n}"))
            .spawn(move || {
                let (w, h) = spec.picture();
                let key = PoolKey {
                    width: w,
                    height: h,
                    codec: spec.track_codec(track),
                };
                let mut healthy = true;
                let big = u64::from(w) * u64::from(h) > BIG_PICTURE;
                let open = || pool_take(key).map_or_else(|| open_encoder(&spec, track), Ok);
                let mut enc = match open() {
                    Ok(enc) => {
                        let config = TrackConfig {
                            parameters: codec::Parameters::from(&*enc),
                            extradata: extradata_of_encoder(&enc),
                        };
                        let _ = setup_tx.send(Ok(config));
                        // A big picture's encoder is opened for each frame, see below.
                        (!big).then_some(enc)
                    }
                    Err(e) => {
                        let _ = setup_tx.send(Err(e));
                        return;
                    }
                };
                for job in job_rx {
                    let Job::Frame {
                        index,
                        width,
                        height,
                        bytes,
                    } = job;
                    let picture = picture(w, h, index, width, height, &bytes);
                    // FFV1 in FFmpeg 5.1 keeps a worst-case packet buffer of up to 148 bytes
                    // per sample for as long as the encoder is open (2 GiB at 4096x4096). Big
                    // pictures therefore take turns with a freshly opened encoder that is
                    // closed right after, so that one such buffer exists at a time. Opening
                    // costs about 0.1 s, little next to a big picture.
                    let _turn = big.then(|| BIG_TURN.lock().unwrap_or_else(|e| e.into_inner()));
                    let result = match enc.take().map_or_else(open, Ok) {
                        Ok(mut e) => {
                            let r = e.send_frame(&picture).map_err(ff).map(|()| receive(&mut e));
                            if !big {
                                enc = Some(e);
                            }
                            r
                        }
                        Err(e) => Err(e),
                    };
                    healthy &= result.is_ok();
                    if done_tx.send(result).is_err() {
                        break;
                    }
                }
                if let Some(mut enc) = enc.filter(|_| healthy) {
                    // Nothing is left inside: every packet was taken right after its frame.
                    receive(&mut enc);
                    pool_put(key, enc);
                }
            })
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        let worker = Worker {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
        };
        Ok((worker, setup))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing the job channel ends the thread once it has answered what it holds.
        // Taking its answers until it hangs up means it never waits on a full channel.
        self.jobs = None;
        while self.done.recv().is_ok() {}
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Every packet `enc` has ready.
fn receive(enc: &mut encoder::video::Encoder) -> Vec<Encoded> {
    let mut out = Vec::new();
    let mut packet = Packet::empty();
    while enc.receive_packet(&mut packet).is_ok() {
        out.push(Encoded {
            data: packet.data().unwrap_or(&[]).to_vec(),
            key: packet.is_key(),
            pts: packet.pts().unwrap_or(0),
        });
    }
    out
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s: OsString = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Pictures above this many samples are encoded one at a time, see [`BIG_TURN`].
const BIG_PICTURE: u64 = 1 << 20;

/// Held while a big picture is encoded.
static BIG_TURN: Mutex<()> = Mutex::new(());

/// What makes two track encoders interchangeable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PoolKey {
    width: u32,
    height: u32,
    codec: TrackCodec,
}

/// Idle encoders kept for the next writer of the same shape, at most this many.
const POOL_SIZE: usize = 8;

/// Idle open encoders. Opening one with trained states is slow (FFV1 searches its state
/// tables, about 0.1 s), and an encode writes a part every few seconds. Every frame is a
/// keyframe that starts from the initial states, so a used encoder writes exactly the packets
/// of a fresh one.
static POOL: Mutex<Vec<(PoolKey, encoder::video::Encoder)>> = Mutex::new(Vec::new());

fn pool_take(key: PoolKey) -> Option<encoder::video::Encoder> {
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    let i = pool.iter().position(|(k, _)| *k == key)?;
    Some(pool.swap_remove(i).1)
}

fn pool_put(key: PoolKey, enc: encoder::video::Encoder) {
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if pool.len() >= POOL_SIZE {
        pool.remove(0);
    }
    pool.push((key, enc));
}

/// Open the encoder of video track `track` of `spec`: FFV1 or raw `gray8`.
///
/// FFV1 starts without trained states: it can carry them in its configuration record (its
/// two-pass mode), which saves about 9% of a chunk reel's FFV1 track, but FFmpeg 5.1 searches
/// its state tables (`find_best_state`, about 1 s of CPU on this machine) in every
/// `avcodec_open2` that is given statistics, wherever they come from. That is one search per
/// encoder per process, more than the whole encode of a small model.
fn open_encoder(
    spec: &ReelSpec,
    track: u32,
) -> std::result::Result<encoder::video::Encoder, String> {
    let kind = spec.track_codec(track);
    let id = kind.id();
    let codec = encoder::find(id).ok_or_else(|| format!("this FFmpeg has no {id:?} encoder"))?;
    let ctx = codec::context::Context::new_with_codec(codec);
    let mut enc = ctx.encoder().video().map_err(ff)?;
    let (w, h) = spec.picture();
    enc.set_width(w);
    enc.set_height(h);
    let opts = configure(&mut enc, kind, w, h);
    // Matroska keeps FFV1's configuration record in the track header (CodecPrivate); the raw
    // encoder sets the FourCC (Y800) that Matroska stores as the track's colour space.
    enc.set_flags(codec::Flags::GLOBAL_HEADER);
    enc.open_with(opts).map_err(ff)
}

/// A `w` x `h` `gray8` picture with `bytes` (`width` x `height`) at the top-left and zeros
/// elsewhere.
fn picture(w: u32, h: u32, index: usize, width: u32, height: u32, bytes: &[u8]) -> frame::Video {
    let mut picture = frame::Video::new(ffmpeg_next::format::Pixel::GRAY8, w, h);
    let stride = picture.stride(0);
    let data = picture.data_mut(0);
    // Buffers from av_frame_get_buffer are not cleared; the padding must be zero.
    data.fill(0);
    for (y, row) in bytes
        .chunks_exact(width as usize)
        .take(height as usize)
        .enumerate()
    {
        data[y * stride..y * stride + row.len()].copy_from_slice(row);
    }
    picture.set_pts(Some(index as i64));
    picture
}

impl ReelWriter {
    /// Start a reel at `path` with the given shape. Nothing appears at `path` before
    /// [`ReelWriter::finish`].
    pub fn create(path: &Path, spec: ReelSpec) -> Result<ReelWriter> {
        init();
        spec.check().map_err(|e| Error::reel(path, e))?;
        let spill_path = with_suffix(path, ".packets.tmp");
        let spill = File::create(&spill_path).map_err(|e| Error::io(&spill_path, e))?;
        Ok(ReelWriter {
            path: path.to_path_buf(),
            tmp_path: with_suffix(path, ".tmp"),
            spill_path,
            spec,
            tracks: Vec::new(),
            configs: Vec::new(),
            in_flight: VecDeque::new(),
            max_in_flight: IN_FLIGHT,
            spill: Some(BufWriter::with_capacity(1 << 20, spill)),
            sizes: FrameSizes::default(),
            pictures: 0,
            open_frame: None,
            version: super::UNTILED_FORMAT_VERSION,
            cues: false,
        })
    }

    /// Write a Cues element (an index of every packet) at the end, as for reels read with
    /// range requests from object storage: a reader then seeks to a frame without reading the
    /// clusters before it. The muxer holds ~100 bytes a frame for it until the trailer.
    pub fn with_cues(mut self) -> ReelWriter {
        self.cues = true;
        self
    }

    /// Frames pushed so far.
    pub fn frames(&self) -> u64 {
        self.sizes.len()
    }

    /// The shape given at creation.
    pub fn spec(&self) -> ReelSpec {
        self.spec
    }

    /// Encode one frame. `planes.len()` must equal the spec's planes; each plane is
    /// `width * height` samples, row-major, with `width`/`height` at most the spec's.
    ///
    /// The tracks encode in parallel and a couple of frames behind: an encoding failure may
    /// be reported by a later call or by [`ReelWriter::finish`].
    pub fn push_frame(&mut self, width: u32, height: u32, planes: &[&[u16]]) -> Result<()> {
        self.push_frame_with_record(width, height, planes, &[])
    }

    /// [`ReelWriter::push_frame`], with `record` (the caller's metadata of this frame, at most
    /// [`record::MAX_RECORD`] bytes) stored with the frame; [`super::ReelReader::read_frame_record`]
    /// gives it back.
    pub fn push_frame_with_record(
        &mut self,
        width: u32,
        height: u32,
        planes: &[&[u16]],
        record: &[u8],
    ) -> Result<()> {
        let index = self.sizes.len() as usize;
        self.check_no_open_frame(index)?;
        self.check_frame(index, width, height, planes)?;
        if record.len() > record::MAX_RECORD {
            return Err(Error::reel(
                &self.path,
                format!(
                    "frame {index}: record of {} bytes (expected at most {})",
                    record.len(),
                    record::MAX_RECORD
                ),
            ));
        }
        let mut side = Some(record::encode(index as u64, planes_crc32(planes), record));
        if self.tracks.is_empty() {
            self.start_tracks()?;
        }
        let bytes = self.spec.depth.bytes() as usize;
        let (pw, ph) = self.spec.picture();
        for (x0, y0, tw, th) in super::tiles(width, height, pw, ph) {
            self.send_picture(index, side.take(), tw, th, |track| {
                let plane = planes[track / bytes];
                // Track 0 of a plane holds its most significant byte.
                let shift = 8 * (bytes - 1 - track % bytes);
                let mut tile = Vec::with_capacity(tw as usize * th as usize);
                for row in plane
                    .chunks_exact(width as usize)
                    .skip(y0 as usize)
                    .take(th as usize)
                {
                    tile.extend(
                        row[x0 as usize..(x0 + tw) as usize]
                            .iter()
                            .map(|&v| (v >> shift) as u8),
                    );
                }
                tile
            })?;
        }
        self.sizes.push(width, height);
        Ok(())
    }

    /// Send one picture of frame `index` to every track (`bytes(track)` gives its `tw` x `th`
    /// bytes), with the record its track-0 packet carries.
    fn send_picture(
        &mut self,
        index: usize,
        side: Option<Vec<u8>>,
        tw: u32,
        th: u32,
        bytes: impl Fn(usize) -> Vec<u8>,
    ) -> Result<()> {
        while self.in_flight.len() >= self.max_in_flight {
            self.collect()?;
        }
        let picture = self.pictures as usize;
        let failed =
            |e: String| Error::reel(&self.path, format!("frame {index}: encoding failed: {e}"));
        for (track, t) in self.tracks.iter_mut().enumerate() {
            let job = Job::Frame {
                index: picture,
                width: tw,
                height: th,
                bytes: bytes(track),
            };
            t.send(job).map_err(failed)?;
        }
        self.in_flight.push_back((index, side));
        self.pictures += 1;
        Ok(())
    }

    fn check_no_open_frame(&self, index: usize) -> Result<()> {
        match &self.open_frame {
            Some(open) => Err(Error::reel(
                &self.path,
                format!(
                    "frame {index}: a frame is pushed while frame {index} waits for tile {} of {}",
                    open.next, open.tiles
                ),
            )),
            None => Ok(()),
        }
    }

    /// Encode one tile of a frame stored tile by tile (reel format version 3): the frame is
    /// `tile.width` x `tile.height`, larger than a picture, and its
    /// [`ReelSpec::pictures_of`] tiles are pushed one after another, each a whole picture,
    /// in the order its reader wants them (the encoder's is the Hilbert curve's). Each tile's
    /// packet carries its record; the last one also the frame's record and the CRC32 of all
    /// its tiles, which this returns then (else `None`). The frame counts once its last tile
    /// is in; [`ReelWriter::discard_open_frame`] drops a frame that will not be completed.
    pub fn push_tile(&mut self, tile: &TileIn) -> Result<Option<u32>> {
        let index = self.sizes.len() as usize;
        let (pw, ph) = self.spec.picture();
        let tiles = self.spec.pictures_of(tile.width, tile.height);
        let bad =
            |problem: String| Err(Error::reel(&self.path, format!("frame {index}: {problem}")));
        if tiles < 2 || tiles > u64::from(u32::MAX) {
            return bad(format!(
                "a {}x{} frame is one picture of this reel; push it whole",
                tile.width, tile.height
            ));
        }
        let tiles = tiles as u32;
        let expected = self.open_frame.as_ref().map_or(0, |o| o.next);
        let same_frame = self
            .open_frame
            .as_ref()
            .is_none_or(|o| (o.width, o.height) == (tile.width, tile.height));
        if tile.index != expected || !same_frame {
            return bad(format!(
                "tile {} of a {}x{} frame pushed where tile {expected} was expected",
                tile.index, tile.width, tile.height
            ));
        }
        if !tile.x.is_multiple_of(pw)
            || !tile.y.is_multiple_of(ph)
            || tile.x + pw > tile.width
            || tile.y + ph > tile.height
        {
            return bad(format!(
                "tile at ({}, {}) is not a {pw}x{ph} tile of the {}x{} frame",
                tile.x, tile.y, tile.width, tile.height
            ));
        }
        self.check_frame(index, pw, ph, tile.planes)?;
        if tile.width > self.spec.width || tile.height > self.spec.height {
            return bad(format!(
                "size {}x{} does not fit the reel's {}x{}",
                tile.width, tile.height, self.spec.width, self.spec.height
            ));
        }
        let last = tile.index + 1 == tiles;
        let over = |n: usize| n > record::MAX_RECORD;
        if over(tile.record.len()) || (last && over(tile.frame_record.len())) {
            return bad(format!("record of more than {} bytes", record::MAX_RECORD));
        }
        if self.tracks.is_empty() {
            self.start_tracks()?;
        }
        if self.open_frame.is_none() {
            // Everything before this frame goes to the spill file first, so that a frame
            // that is not completed can be cut off it.
            while !self.in_flight.is_empty() {
                self.collect()?;
            }
            let spill_len = self.spill_len()?;
            self.open_frame = Some(OpenFrame {
                width: tile.width,
                height: tile.height,
                tiles,
                next: 0,
                crc: crc32fast::Hasher::new(),
                spill_len,
                pictures: self.pictures,
            });
        }
        let open = self.open_frame.as_mut().expect("opened above");
        super::hash_planes(&mut open.crc, tile.planes);
        open.next += 1;
        let frame_crc = last.then(|| open.crc.clone().finalize());
        let side = record::encode_tile(&record::TileRecordBytes {
            frame: index as u64,
            tile: tile.index,
            tiles,
            x: tile.x,
            y: tile.y,
            crc32: planes_crc32(tile.planes),
            frame_crc32: frame_crc.unwrap_or(0),
            record: tile.record.to_vec(),
            frame_record: if last {
                tile.frame_record.to_vec()
            } else {
                Vec::new()
            },
        });
        let bytes = self.spec.depth.bytes() as usize;
        let planes = tile.planes;
        self.send_picture(index, Some(side), pw, ph, |track| {
            let shift = 8 * (bytes - 1 - track % bytes);
            planes[track / bytes]
                .iter()
                .map(|&v| (v >> shift) as u8)
                .collect()
        })?;
        if last {
            self.open_frame = None;
            self.sizes.push(tile.width, tile.height);
            self.version = REEL_FORMAT_VERSION;
        }
        Ok(frame_crc)
    }

    /// Drop the tiles of a frame pushed with [`ReelWriter::push_tile`] and not completed (an
    /// interrupted encode keeps complete frames only). Nothing happens without one.
    pub fn discard_open_frame(&mut self) -> Result<()> {
        let Some(open) = self.open_frame.take() else {
            return Ok(());
        };
        while !self.in_flight.is_empty() {
            self.collect()?;
        }
        let spill = self
            .spill
            .as_mut()
            .ok_or_else(|| Error::reel(&self.path, "writer already finished"))?;
        spill.flush().map_err(|e| Error::io(&self.spill_path, e))?;
        let file = spill.get_mut();
        file.set_len(open.spill_len)
            .and_then(|()| file.seek(SeekFrom::Start(open.spill_len)).map(|_| ()))
            .map_err(|e| Error::io(&self.spill_path, e))?;
        self.pictures = open.pictures;
        Ok(())
    }

    /// Bytes in the spill file so far (everything collected is flushed first).
    fn spill_len(&mut self) -> Result<u64> {
        let spill = self
            .spill
            .as_mut()
            .ok_or_else(|| Error::reel(&self.path, "writer already finished"))?;
        spill
            .stream_position()
            .map_err(|e| Error::io(&self.spill_path, e))
    }

    /// Start the encoders (opening them is slow, so they open in parallel, on their threads)
    /// and check them against the configuration of parts appended before.
    fn start_tracks(&mut self) -> Result<()> {
        let failed = |e: String| Error::reel(&self.path, format!("cannot start an encoder: {e}"));
        let mut setups = Vec::new();
        for track in 0..self.spec.tracks() {
            let count = workers_for(&self.spec, track);
            let (t, setup) = Track::spawn(self.spec, track, count).map_err(failed)?;
            self.max_in_flight = self.max_in_flight.max(IN_FLIGHT * t.workers.len());
            self.tracks.push(t);
            setups.push(setup);
        }
        let mut configs = Vec::new();
        for track_setups in setups {
            // The encoders of one track are configured alike; the first one speaks for all.
            let mut first = None;
            for setup in track_setups {
                let config = setup
                    .recv()
                    .map_err(|_| "the encoder thread stopped".to_string())
                    .and_then(|r| r)
                    .map_err(failed);
                match config {
                    Ok(c) => {
                        first.get_or_insert(c);
                    }
                    Err(e) => {
                        self.tracks.clear();
                        return Err(e);
                    }
                }
            }
            configs.extend(first);
        }
        if self.configs.is_empty() {
            self.configs = configs;
        } else if let Some(track) = (0..configs.len())
            .find(|&t| trim_zeros(&configs[t].extradata) != trim_zeros(&self.configs[t].extradata))
        {
            self.tracks.clear();
            return Err(Error::reel(
                &self.path,
                format!("track {track}: this FFmpeg encodes with another FFV1 configuration than the appended reels"),
            ));
        }
        Ok(())
    }

    fn failed(&self, index: usize, e: String) -> Error {
        Error::reel(&self.path, format!("frame {index}: encoding failed: {e}"))
    }

    /// Move the packets of the oldest frame in flight into the spill file, track by track.
    fn collect(&mut self) -> Result<()> {
        let Some((index, side)) = self.in_flight.pop_front() else {
            return Ok(());
        };
        for track in 0..self.tracks.len() {
            let packets = self.tracks[track]
                .receive()
                .map_err(|e| self.failed(index, e))?;
            if packets.len() != 1 {
                return Err(self.failed(
                    index,
                    format!("the encoder gave {} packets for one picture", packets.len()),
                ));
            }
            let side = if track == 0 { side.as_deref() } else { None };
            let p = &packets[0];
            self.spill_packet(track, p.key, p.pts, &p.data, side.unwrap_or(&[]))?;
        }
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

    /// Append one packet of `track`, with its side data (empty for none), to the spill file.
    fn spill_packet(
        &mut self,
        track: usize,
        key: bool,
        pts: i64,
        data: &[u8],
        side: &[u8],
    ) -> Result<()> {
        let spill = self
            .spill
            .as_mut()
            .ok_or_else(|| Error::reel(&self.path, "writer already finished"))?;
        let too_big = || Error::reel(&self.path, "an encoded frame is larger than 4 GiB");
        let len = u32::try_from(data.len()).map_err(|_| too_big())?;
        let side_len = u32::try_from(side.len()).map_err(|_| too_big())?;
        let mut head = [0u8; SPILL_HEAD];
        head[0] = track as u8;
        head[1] = u8::from(key);
        head[2..10].copy_from_slice(&pts.to_le_bytes());
        head[10..14].copy_from_slice(&len.to_le_bytes());
        head[14..18].copy_from_slice(&side_len.to_le_bytes());
        spill
            .write_all(&head)
            .and_then(|_| spill.write_all(data))
            .and_then(|_| spill.write_all(side))
            .map_err(|e| Error::io(&self.spill_path, e))
    }

    /// Append every frame of the finished reel `part` by copying its packets (no decoding or
    /// re-encoding). `part` must have this writer's shape and FFV1 configuration; the encoder
    /// is deterministic, so its packets are the ones this writer would have produced.
    pub fn append_reel(&mut self, part: &Path) -> Result<()> {
        // One open serves both: the verified envelope and the packets to copy.
        let (input, envelope) = open_envelope(part)?;
        if envelope.spec != self.spec {
            return Err(Error::reel(
                part,
                format!(
                    "has shape {:?}, the reel being written has {:?}",
                    envelope.spec, self.spec
                ),
            ));
        }
        self.check_no_open_frame(self.sizes.len() as usize)?;
        if envelope.version < 2 {
            return Err(Error::reel(
                part,
                format!(
                    "is a version-{} reel; only version 2 and 3 reels can be joined",
                    envelope.version
                ),
            ));
        }
        let sizes = envelope.sizes;
        // Packets already in flight come first.
        while !self.in_flight.is_empty() {
            self.collect()?;
        }
        let tracks: Vec<usize> = input
            .streams()
            .filter(|s| s.parameters().medium() == media::Type::Video)
            .map(|s| s.index())
            .collect();
        let mut configs = Vec::new();
        for &stream in &tracks {
            let parameters = input
                .stream(stream)
                .map(|s| s.parameters())
                .ok_or_else(|| Error::reel(part, "a video track vanished"))?;
            let extradata = extradata_of_parameters(&parameters);
            configs.push(TrackConfig {
                parameters,
                extradata,
            });
        }
        if self.configs.is_empty() {
            self.configs = configs;
        } else {
            // A Matroska round trip may pad the record with a zero byte; FFV1 ignores it (the
            // CRC32 of the record followed by zeros stays zero).
            let differs = self
                .configs
                .iter()
                .zip(&configs)
                .position(|(ours, theirs)| {
                    trim_zeros(&ours.extradata) != trim_zeros(&theirs.extradata)
                });
            if let Some(track) = differs {
                return Err(Error::reel(
                    part,
                    format!("track {track} was encoded with another FFV1 configuration"),
                ));
            }
        }
        let mut input = input;
        let base = self.pictures as i64;
        let base_frame = self.sizes.len();
        if self.spec.picture_in(envelope.version) != self.spec.picture() {
            return Err(Error::reel(
                part,
                format!(
                    "is a version-{} reel of {:?} pictures; this weightreel writes {:?} pictures and cannot join it (encode again)",
                    envelope.version,
                    self.spec.picture_in(envelope.version),
                    self.spec.picture()
                ),
            ));
        }
        let pictures = sizes.first_picture(&self.spec, envelope.version, sizes.len());
        let mut counts = vec![0i64; tracks.len()];
        let mut records = 0u64;
        for (stream, packet) in input.packets() {
            let Some(track) = tracks.iter().position(|&i| i == stream.index()) else {
                continue;
            };
            // A frame or tile record is renumbered for its place in this reel (its CRC is
            // rebuilt).
            let side = match packet
                .side_data()
                .find(|d| d.kind() == side_data::Type::MatroskaBlockAdditional)
            {
                Some(d) if track == 0 && record::is_tile_record(d.data()) => {
                    let mut r = record::decode_tile(d.data())
                        .map_err(|e| Error::reel(part, format!("frame {records}: {e}")))?;
                    if r.frame != records {
                        return Err(Error::reel(
                            part,
                            format!("frame {records}: its tile record says frame {}", r.frame),
                        ));
                    }
                    if r.tile + 1 == r.tiles {
                        records += 1;
                    }
                    r.frame += base_frame;
                    record::encode_tile(&r)
                }
                Some(d) if track == 0 => {
                    let r = record::decode(d.data())
                        .map_err(|e| Error::reel(part, format!("frame {records}: {e}")))?;
                    if r.index != records {
                        return Err(Error::reel(
                            part,
                            format!("frame {records}: its record says frame {}", r.index),
                        ));
                    }
                    records += 1;
                    record::encode(base_frame + r.index, r.crc32, &r.record)
                }
                _ => Vec::new(),
            };
            let data = packet.data().unwrap_or(&[]);
            self.spill_packet(track, packet.is_key(), base + counts[track], data, &side)
                .map_err(|e| match e {
                    Error::Reel { .. } => {
                        Error::reel(part, "an encoded frame is larger than 4 GiB")
                    }
                    e => e,
                })?;
            counts[track] += 1;
        }
        if let Some((track, n)) = counts
            .iter()
            .enumerate()
            .find(|(_, &n)| n as u64 != pictures)
        {
            return Err(Error::reel(
                part,
                format!(
                    "track {track} has {n} packets, the metadata lists {} frames in {pictures} pictures",
                    sizes.len()
                ),
            ));
        }
        if records != sizes.len() {
            return Err(Error::reel(
                part,
                format!(
                    "has {records} frame records, the metadata lists {} frames",
                    sizes.len()
                ),
            ));
        }
        for run in sizes.runs() {
            self.sizes.push_run(run.count, run.width, run.height);
        }
        self.version = self.version.max(envelope.version);
        self.pictures += pictures;
        Ok(())
    }

    /// Finish the reel: flush the encoders, mux header + `metadata_json` attachment + packets
    /// into `<path>.tmp`, fsync it and rename it to `path`. A reel needs at least one frame
    /// (FFmpeg 5.1's Matroska muxer writes an unreadable file without any packets).
    pub fn finish(mut self, metadata_json: &[u8]) -> Result<ReelInfo> {
        if self.sizes.is_empty() {
            return Err(Error::reel(
                &self.path,
                "a reel needs at least one frame, none were pushed",
            ));
        }
        // FFV1 without a first pass holds nothing back: each frame's packet leaves with it,
        // so there is no flush, and the open encoders go back to the pool when the tracks stop.
        while !self.in_flight.is_empty() {
            self.collect()?;
        }
        let spill = self
            .spill
            .take()
            .ok_or_else(|| Error::reel(&self.path, "writer already finished"))?;
        // Flushed, not fsynced: the spill file is read back right away and deleted; only the
        // reel made from it must survive a crash, and that is fsynced below.
        spill
            .into_inner()
            .map_err(|e| Error::io(&self.spill_path, e.into_error()))?;
        if let Some(open) = &self.open_frame {
            return Err(Error::reel(
                &self.path,
                format!(
                    "frame {}: finished with {} of its {} tiles",
                    self.sizes.len(),
                    open.next,
                    open.tiles
                ),
            ));
        }
        // A reel whose pictures version 2 would cut alike, without tiled frames, is a
        // version-2 reel byte for byte.
        let version = if self.spec.picture_in(super::UNTILED_FORMAT_VERSION) == self.spec.picture()
        {
            self.version
        } else {
            REEL_FORMAT_VERSION
        };
        let env = envelope::encode_version(&self.spec, &self.sizes, metadata_json, version);
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
        if self.configs.len() != self.spec.tracks() as usize {
            return Err("no codec configuration for the tracks".into());
        }
        for (i, config) in self.configs.iter().enumerate() {
            let id = self.spec.track_codec(i as u32).id();
            let codec =
                encoder::find(id).ok_or_else(|| format!("this FFmpeg has no {id:?} encoder"))?;
            let mut st = octx.add_stream(codec).map_err(ff)?;
            st.set_parameters(config.parameters.clone());
            if id == codec::Id::FFV1 {
                // The muxer must not reuse a codec tag from the encoder's context (a raw
                // track keeps its FourCC: Matroska stores it as the colour space).
                // SAFETY: `st` is a live stream of `octx`; codecpar is allocated by add_stream.
                unsafe { (*(*st.as_mut_ptr()).codecpar).codec_tag = 0 };
            }
            st.set_time_base(Rational::new(1, FRAME_RATE));
            st.set_avg_frame_rate(Rational::new(FRAME_RATE, 1));
            let mut tags = Dictionary::new();
            tags.set("title", self.spec.track_title(i as u32));
            st.set_metadata(tags);
        }
        attachment::add(&mut octx, env)?;
        // No Matroska CRC-32 elements: every frame carries a CRC32 in the envelope and every
        // FFV1 slice its own, so they would only be a second pass over all bytes (7% of a
        // u16 encode's main thread).
        let mut muxer = Dictionary::new();
        muxer.set("write_crc32", "0");
        // Live mode: the muxer keeps no cue point per key packet (every packet of every
        // track is one) until the trailer — ~100 bytes a frame, 13 MiB at 134,284 frames —
        // and writes no Cues element; every picture is intra, so the reader and players seek
        // without them (see the reader).
        if !self.cues {
            muxer.set("live", "1");
        }
        octx.write_header_with(muxer)
            .map_err(|e| format!("cannot write the header: {e}"))?;
        let bases: Vec<Rational> = (0..self.configs.len())
            .map(|i| {
                octx.stream(i)
                    .map(|s| s.time_base())
                    .unwrap_or(Rational::new(1, 1000))
            })
            .collect();
        let file = File::open(&self.spill_path)
            .map_err(|e| format!("{}: {e}", self.spill_path.display()))?;
        let mut spill = BufReader::with_capacity(1 << 20, file);
        let mut head = [0u8; SPILL_HEAD];
        let mut data = Vec::new();
        let mut side = Vec::new();
        loop {
            match spill.read_exact(&mut head) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(format!("{}: {e}", self.spill_path.display())),
            }
            let track = head[0] as usize;
            let pts = i64::from_le_bytes(head[2..10].try_into().unwrap_or_default());
            let len = u32::from_le_bytes(head[10..14].try_into().unwrap_or_default()) as usize;
            let side_len = u32::from_le_bytes(head[14..18].try_into().unwrap_or_default()) as usize;
            data.resize(len, 0);
            side.resize(side_len, 0);
            spill
                .read_exact(&mut data)
                .and_then(|_| spill.read_exact(&mut side))
                .map_err(|e| format!("{}: {e}", self.spill_path.display()))?;
            let mut packet = Packet::copy(&data);
            if !side.is_empty() {
                add_side_data(&mut packet, &side)?;
            }
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
        // Stop the encoder threads, close the spill file before removing it; both removals
        // may find nothing.
        self.tracks.clear();
        self.spill = None;
        let _ = fs::remove_file(&self.spill_path);
        let _ = fs::remove_file(&self.tmp_path);
    }
}

/// Attach `bytes` to `packet` as Matroska `BlockAdditional` side data.
fn add_side_data(packet: &mut Packet, bytes: &[u8]) -> std::result::Result<(), String> {
    // SAFETY: the packet is live; av_packet_new_side_data returns null or a buffer of
    // `bytes.len()` bytes owned by the packet, which we fill completely.
    unsafe {
        let dst = ffmpeg_next::ffi::av_packet_new_side_data(
            packet.as_mut_ptr(),
            ffmpeg_next::ffi::AVPacketSideDataType::AV_PKT_DATA_MATROSKA_BLOCKADDITIONAL,
            bytes.len(),
        );
        if dst.is_null() {
            return Err("out of memory for a frame record".into());
        }
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len());
    }
    Ok(())
}

/// The codec configuration record (FFV1 extradata) of an encoder.
fn extradata_of_encoder(enc: &encoder::video::Encoder) -> Vec<u8> {
    // SAFETY: the encoder's context is live; extradata is either null or extradata_size bytes.
    unsafe {
        let ctx = enc.as_ptr();
        raw_bytes((*ctx).extradata, (*ctx).extradata_size)
    }
}

/// `bytes` without trailing zeros.
fn trim_zeros(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    &bytes[..end]
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reel::{SampleDepth, SampleKind};

    /// The packets of `pictures` encoded by one track of `spec` with `count` encoders.
    fn packets(spec: ReelSpec, count: usize, pictures: &[Vec<u8>]) -> Vec<Vec<u8>> {
        init();
        let (mut track, setups) = Track::spawn(spec, 0, count).unwrap();
        for setup in setups {
            setup.recv().unwrap().unwrap();
        }
        let (w, h) = spec.picture();
        let mut out = Vec::new();
        for (index, bytes) in pictures.iter().enumerate() {
            let job = Job::Frame {
                index,
                width: w,
                height: h,
                bytes: bytes.clone(),
            };
            track.send(job).unwrap();
            out.extend(track.receive().unwrap().into_iter().map(|p| p.data));
        }
        out
    }

    #[test]
    fn ffv1_packets_do_not_depend_on_the_number_of_encoders() {
        let spec = ReelSpec {
            width: 64,
            height: 32,
            planes: 1,
            depth: SampleDepth::Gray16,
            samples: SampleKind::FloatBits,
        };
        assert_eq!(spec.track_codec(0), TrackCodec::Ffv1);
        // Pictures unlike each other, so that an encoder's history would show if it mattered.
        let pictures: Vec<Vec<u8>> = (0..7u32)
            .map(|p| {
                (0..64 * 32u32)
                    .map(|i| (i.wrapping_mul(p * 37 + 11) >> (p % 5)) as u8)
                    .collect()
            })
            .collect();
        let one = packets(spec, 1, &pictures);
        assert_eq!(one.len(), pictures.len());
        assert_eq!(packets(spec, 3, &pictures), one);
    }
}
