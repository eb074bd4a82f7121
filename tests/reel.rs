//! Reels through real FFmpeg: bit-exact round trips, what ffprobe sees, corruption of every
//! kind giving a one-line error, previews, and atomic finishing.

use std::path::{Path, PathBuf};
use std::process::Command;

use weightreel::reel::{
    write_png_frame_range, write_png_frames, write_preview_h264, ReelReader, ReelSpec, ReelWriter,
    SampleDepth, SampleKind, TileIn, REEL_FORMAT_VERSION,
};

/// splitmix64: deterministic test data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn plane(&mut self, n: usize, max: u16) -> Vec<u16> {
        (0..n)
            .map(|_| (self.next() % (u64::from(max) + 1)) as u16)
            .collect()
    }
}

/// One frame as written: logical size and planes.
struct Frame {
    width: u32,
    height: u32,
    planes: Vec<Vec<u16>>,
}

const SIZES: [(u32, u32); 3] = [(128, 64), (64, 64), (1, 1)];
const JSON: &[u8] =
    br#"{"format":1,"frames":[{"layout":"hilbert","scale":0.125}],"note":"caf\u00e9 \u2603"}"#;

fn frames(seed: u64, planes: u32, depth: SampleDepth, sizes: &[(u32, u32)]) -> Vec<Frame> {
    let mut rng = Rng(seed);
    sizes
        .iter()
        .map(|&(width, height)| Frame {
            width,
            height,
            planes: (0..planes)
                .map(|_| rng.plane((width * height) as usize, depth.max_value()))
                .collect(),
        })
        .collect()
}

fn write(path: &Path, spec: ReelSpec, frames: &[Frame], json: &[u8]) -> weightreel::reel::ReelInfo {
    let mut w = ReelWriter::create(path, spec).unwrap();
    for f in frames {
        let planes: Vec<&[u16]> = f.planes.iter().map(|p| p.as_slice()).collect();
        w.push_frame(f.width, f.height, &planes).unwrap();
    }
    assert_eq!(w.frames(), frames.len() as u64);
    w.finish(json).unwrap()
}

/// A 128x64 reel: 16-bit samples are float bits (an FFV1 track first), 8-bit ones quantized.
fn spec(planes: u32, depth: SampleDepth) -> ReelSpec {
    let samples = match depth {
        SampleDepth::Gray16 => SampleKind::FloatBits,
        SampleDepth::Gray8 => SampleKind::Quantized,
    };
    sized(128, 64, planes, depth, samples)
}

fn sized(
    width: u32,
    height: u32,
    planes: u32,
    depth: SampleDepth,
    samples: SampleKind,
) -> ReelSpec {
    ReelSpec {
        width,
        height,
        planes,
        depth,
        samples,
    }
}

fn round_trip(planes: u32, depth: SampleDepth) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.mkv");
    let written = frames(planes as u64 * 31 + depth as u64, planes, depth, &SIZES);
    let info = write(&path, spec(planes, depth), &written, JSON);
    assert_eq!(info.frames, 3);
    assert_eq!(info.bytes, std::fs::metadata(&path).unwrap().len());
    let mut r = ReelReader::open(&path).unwrap();
    assert_eq!(r.metadata_json(), JSON);
    assert_eq!(r.spec(), spec(planes, depth));
    assert_eq!(r.frame_count(), 3);
    // In order, then out of order (seeks backwards and forwards).
    for i in [0u64, 1, 2, 2, 0, 2, 1, 0] {
        let f = &written[i as usize];
        let got = r.read_frame(i, f.width, f.height).unwrap();
        assert_eq!(got, f.planes, "frame {i}");
    }
}

#[test]
fn ffv1_round_trip_gray16_one_plane() {
    round_trip(1, SampleDepth::Gray16);
}

#[test]
fn ffv1_round_trip_gray16_two_planes() {
    round_trip(2, SampleDepth::Gray16);
}

#[test]
fn ffv1_round_trip_gray8() {
    round_trip(1, SampleDepth::Gray8);
    round_trip(2, SampleDepth::Gray8);
}

#[test]
fn long_reel_reads_in_order_and_by_seeking() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.mkv");
    let sizes: Vec<(u32, u32)> = (0..40).map(|i| (16 + i % 3, 8)).collect();
    let written = frames(7, 2, SampleDepth::Gray16, &sizes);
    let spec = ReelSpec {
        width: 18,
        height: 8,
        planes: 2,
        depth: SampleDepth::Gray16,
        samples: SampleKind::FloatBits,
    };
    write(&path, spec, &written, b"{}");
    let mut r = ReelReader::open(&path).unwrap();
    for (i, f) in written.iter().enumerate() {
        assert_eq!(r.read_frame(i as u64, f.width, f.height).unwrap(), f.planes);
    }
    for i in [39u64, 3, 25, 24, 0, 38, 12] {
        let f = &written[i as usize];
        assert_eq!(
            r.read_frame(i, f.width, f.height).unwrap(),
            f.planes,
            "frame {i}"
        );
    }
    let e = r.read_frame(40, 16, 8).unwrap_err().to_string();
    assert!(e.contains("frame 40 does not exist"), "{e}");
    let e = r.read_frame(1, 16, 8).unwrap_err().to_string();
    assert!(e.contains("frame 1 is 17x8, not 16x8"), "{e}");
}

#[test]
fn a_reel_without_frames_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.mkv");
    let w = ReelWriter::create(&path, spec(1, SampleDepth::Gray16)).unwrap();
    let e = w.finish(b"{}").unwrap_err().to_string();
    assert!(e.contains("at least one frame"), "{e}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn bad_frames_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.mkv");
    let mut w = ReelWriter::create(&path, spec(2, SampleDepth::Gray8)).unwrap();
    let p = vec![0u16; 4];
    let e = w.push_frame(2, 2, &[&p]).unwrap_err().to_string();
    assert!(e.contains("frame 0: 1 planes given, the reel has 2"), "{e}");
    let e = w.push_frame(129, 1, &[&p, &p]).unwrap_err().to_string();
    assert!(e.contains("does not fit"), "{e}");
    let e = w.push_frame(2, 3, &[&p, &p]).unwrap_err().to_string();
    assert!(e.contains("plane 0 has 4 samples, 2x3 needs 6"), "{e}");
    let big = vec![256u16; 4];
    let e = w.push_frame(2, 2, &[&p, &big]).unwrap_err().to_string();
    assert!(e.contains("plane 1 has sample 256"), "{e}");
    assert_eq!(w.frames(), 0);
    let e = ReelWriter::create(
        &path,
        ReelSpec {
            width: 0,
            height: 1,
            planes: 1,
            depth: SampleDepth::Gray16,
            samples: SampleKind::Quantized,
        },
    );
    assert!(e.is_err());
    let e = ReelWriter::create(
        &path,
        ReelSpec {
            width: 1,
            height: 1,
            planes: 3,
            depth: SampleDepth::Gray16,
            samples: SampleKind::FloatBits,
        },
    );
    assert!(e.is_err());
}

fn ffprobe(args: &[&str], file: &Path) -> serde_json::Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error"])
        .args(args)
        .args(["-of", "json"])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffprobe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn ffprobe_reads_the_reel() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("probe.mkv");
    write(
        &path,
        spec(2, SampleDepth::Gray16),
        &frames(3, 2, SampleDepth::Gray16, &SIZES),
        JSON,
    );
    let v = ffprobe(&["-count_frames", "-show_streams"], &path);
    let streams = v["streams"].as_array().unwrap();
    let video: Vec<_> = streams
        .iter()
        .filter(|s| s["codec_type"] == "video")
        .collect();
    // Each 16-bit plane is two 8-bit tracks, most significant byte first; only the float's
    // exponent (the high plane's msb) is FFV1, the mantissa bytes are uncompressed.
    assert_eq!(video.len(), 4);
    for (s, (title, codec)) in video.iter().zip([
        ("high msb", "ffv1"),
        ("high lsb", "rawvideo"),
        ("low msb", "rawvideo"),
        ("low lsb", "rawvideo"),
    ]) {
        assert_eq!(s["codec_name"], codec);
        assert_eq!(s["pix_fmt"], "gray");
        assert_eq!(s["width"], 128);
        assert_eq!(s["height"], 64);
        assert_eq!(s["nb_read_frames"], "3");
        assert_eq!(s["tags"]["title"], title);
    }
    let att: Vec<_> = streams
        .iter()
        .filter(|s| s["codec_type"] == "attachment")
        .collect();
    assert_eq!(att.len(), 1);
    assert_eq!(att[0]["tags"]["filename"], "weightreel.meta");
    assert_eq!(att[0]["tags"]["mimetype"], "application/x-weightreel-meta");
}

/// Codec names of the video tracks of a reel of `spec` with one frame filling it, after a
/// bit-exact round trip.
fn track_codecs(spec: ReelSpec) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("codecs.mkv");
    let written = frames(9, spec.planes, spec.depth, &[(spec.width, spec.height)]);
    write(&path, spec, &written, JSON);
    let mut r = ReelReader::open(&path).unwrap();
    assert_eq!(
        r.read_frame(0, spec.width, spec.height).unwrap(),
        written[0].planes
    );
    let v = ffprobe(&["-show_streams"], &path);
    v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["codec_type"] == "video")
        .map(|s| s["codec_name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn quantized_chunks_are_stored_uncompressed() {
    let spec = sized(128, 64, 1, SampleDepth::Gray16, SampleKind::Quantized);
    assert_eq!(track_codecs(spec), ["rawvideo", "rawvideo"]);
}

#[test]
fn quantized_high_bytes_of_big_pictures_are_ffv1() {
    let spec = sized(256, 128, 1, SampleDepth::Gray16, SampleKind::Quantized);
    assert_eq!(track_codecs(spec), ["ffv1", "rawvideo"]);
}

#[test]
fn quantized_8_bit_big_pictures_are_ffv1() {
    let spec = sized(128, 128, 1, SampleDepth::Gray8, SampleKind::Quantized);
    assert_eq!(track_codecs(spec), ["ffv1"]);
}

#[test]
fn float_exponents_are_ffv1_and_mantissas_raw() {
    let spec = sized(64, 32, 1, SampleDepth::Gray16, SampleKind::FloatBits);
    assert_eq!(track_codecs(spec), ["ffv1", "rawvideo"]);
}

#[test]
fn ffmpeg_decodes_every_track_bit_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exact.mkv");
    let written = frames(5, 2, SampleDepth::Gray16, &[(128, 64); 3]);
    write(&path, spec(2, SampleDepth::Gray16), &written, JSON);
    for track in 0..4usize {
        let out = Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&path)
            .args([
                "-map",
                &format!("0:v:{track}"),
                "-f",
                "rawvideo",
                "-pix_fmt",
                "gray",
                "-",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Track 2p holds plane p's most significant bytes, track 2p+1 its least.
        let shift = if track % 2 == 0 { 8 } else { 0 };
        let expected: Vec<u8> = written
            .iter()
            .flat_map(|f| f.planes[track / 2].iter().map(move |&v| (v >> shift) as u8))
            .collect();
        assert!(out.stdout == expected, "track {track} differs");
    }
}

/// A reel of bigger frames, so that the packets dominate the file.
fn corruptible(dir: &Path) -> (PathBuf, Vec<Frame>) {
    let path = dir.join("victim.mkv");
    let written = frames(11, 1, SampleDepth::Gray16, &[(128, 64); 4]);
    write(&path, spec(1, SampleDepth::Gray16), &written, JSON);
    (path, written)
}

/// Open `path` and read every frame; the first error, if any.
fn read_all(path: &Path, written: &[Frame]) -> Result<(), String> {
    let mut r = ReelReader::open(path).map_err(|e| e.to_string())?;
    for (i, f) in written.iter().enumerate() {
        r.read_frame(i as u64, f.width, f.height)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x5A;
    std::fs::write(path, bytes).unwrap();
}

fn envelope_offset(path: &Path) -> usize {
    let bytes = std::fs::read(path).unwrap();
    bytes.windows(8).position(|w| w == b"WREELMD1").unwrap()
}

#[test]
fn truncated_reels_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, written) = corruptible(dir.path());
    let full = std::fs::read(&path).unwrap();
    for frac in [0.02, 0.3, 0.5, 0.75, 0.9] {
        let cut = (full.len() as f64 * frac) as usize;
        std::fs::write(&path, &full[..cut]).unwrap();
        let e = read_all(&path, &written).unwrap_err();
        assert!(e.starts_with("reel ") && e.contains("victim.mkv"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }
}

/// Flip bytes inside the packet of frame 2 on video stream `stream` of a one-plane 16-bit
/// reel; reading must give frames 0, 1 and 3 exactly and fail frame 2 with `expected`.
fn flipped_bytes_in_frame_2_fail_it(stream: u64, expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (path, written) = corruptible(dir.path());
    let packets = ffprobe(&["-show_packets"], &path);
    let p = packets["packets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["stream_index"] == stream && p["pts"] == 80)
        .unwrap()
        .clone();
    let pos: usize = p["pos"].as_str().unwrap().parse().unwrap();
    let size = p["size"].as_str().unwrap().parse::<usize>().unwrap();
    for at in [pos + size / 2, pos + size / 3, pos + size - 3] {
        let original = std::fs::read(&path).unwrap();
        flip(&path, at);
        let mut r = ReelReader::open(&path).unwrap();
        assert_eq!(r.read_frame(0, 128, 64).unwrap(), written[0].planes);
        assert_eq!(r.read_frame(1, 128, 64).unwrap(), written[1].planes);
        let e = r.read_frame(2, 128, 64).unwrap_err().to_string();
        assert!(e.contains(&format!("victim.mkv: {expected}")), "{e}");
        assert_eq!(r.read_frame(3, 128, 64).unwrap(), written[3].planes);
        std::fs::write(&path, original).unwrap();
    }
}

#[test]
fn flipped_bytes_in_an_ffv1_track_fail_the_slice_crc_naming_the_frame() {
    flipped_bytes_in_frame_2_fail_it(0, "frame 2 (track 0) failed its slice CRC check");
}

#[test]
fn flipped_bytes_in_a_raw_track_fail_the_frame_crc_naming_the_frame() {
    // Uncompressed tracks have no slice CRC: the frame table's CRC32 catches the damage.
    flipped_bytes_in_frame_2_fail_it(1, "frame 2 does not match its stored CRC32 (corrupt data)");
}

#[test]
fn flipped_byte_in_the_metadata_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, written) = corruptible(dir.path());
    let at = envelope_offset(&path);
    let original = std::fs::read(&path).unwrap();
    // In the frame-size runs (one run: the four frames share a size), in the JSON, in the
    // trailing CRC.
    for off in [62, 52 + 8 + 16 + 5, 52 + 8 + 16 + JSON.len() + 1] {
        flip(&path, at + off);
        let e = read_all(&path, &written).unwrap_err();
        assert!(e.contains("victim.mkv") && e.contains("CRC"), "{e}");
        std::fs::write(&path, &original).unwrap();
    }
}

#[test]
fn flipped_byte_in_a_frame_record_names_the_frame() {
    let dir = tempfile::tempdir().unwrap();
    let (path, written) = corruptible(dir.path());
    let bytes = std::fs::read(&path).unwrap();
    // Each frame's record starts with the magic `WRFR`, in frame order.
    let records: Vec<usize> = bytes
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == b"WRFR")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(records.len(), written.len(), "one record per frame");
    // In the frame index, the stored CRC32 of the planes, and the record's own CRC.
    for off in [9, 17, 24] {
        flip(&path, records[1] + off);
        let mut r = ReelReader::open(&path).unwrap();
        assert_eq!(r.read_frame(0, 128, 64).unwrap(), written[0].planes);
        let e = r.read_frame(1, 128, 64).unwrap_err().to_string();
        assert!(e.contains("victim.mkv: frame 1"), "{e}");
        assert!(e.contains("CRC32") || e.contains("says frame"), "{e}");
        assert_eq!(r.read_frame(2, 128, 64).unwrap(), written[2].planes);
        std::fs::write(&path, &bytes).unwrap();
    }
}

#[test]
fn newer_format_version_asks_for_an_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = corruptible(dir.path());
    let at = envelope_offset(&path) + 8;
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[at..at + 4].copy_from_slice(&(REEL_FORMAT_VERSION + 1).to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    let e = ReelReader::open(&path).err().unwrap().to_string();
    assert_eq!(
        e,
        format!(
            "reel {}: format version {} is newer than this weightreel supports ({}); upgrade weightreel",
            path.display(),
            REEL_FORMAT_VERSION + 1,
            REEL_FORMAT_VERSION
        )
    );
}

#[test]
fn other_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8]); 4] = [
        ("empty.mkv", b""),
        ("text.mkv", b"hello, this is not a video file at all\n"),
        ("zeros.mkv", &[0u8; 4096]),
        ("ebml.mkv", &[0x1A, 0x45, 0xDF, 0xA3, 0x80]),
    ];
    for (name, bytes) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let e = ReelReader::open(&path).err().unwrap().to_string();
        assert!(e.contains(name) && !e.contains('\n'), "{e}");
    }
    let e = ReelReader::open(&dir.path().join("missing.mkv"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("missing.mkv"), "{e}");
    // A valid video that is not a reel: the H.264 preview of one.
    let (path, _) = corruptible(dir.path());
    let mp4 = dir.path().join("preview.mp4");
    write_preview_h264(&path, &mp4).unwrap();
    let e = ReelReader::open(&mp4).err().unwrap().to_string();
    assert!(e.contains("not a Matroska file"), "{e}");
}

#[test]
fn h264_preview_plays() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("odd.mkv");
    let sizes = [(37, 21), (10, 5)];
    let spec = ReelSpec {
        width: 37,
        height: 21,
        planes: 2,
        depth: SampleDepth::Gray16,
        samples: SampleKind::FloatBits,
    };
    write(
        &path,
        spec,
        &frames(5, 2, SampleDepth::Gray16, &sizes),
        JSON,
    );
    let mp4 = dir.path().join("odd.mp4");
    write_preview_h264(&path, &mp4).unwrap();
    let v = ffprobe(&["-count_frames", "-show_streams"], &mp4);
    let s = &v["streams"][0];
    assert_eq!(s["codec_name"], "h264");
    assert_eq!(s["pix_fmt"], "yuv420p");
    assert_eq!(
        (s["width"].as_u64(), s["height"].as_u64()),
        (Some(38), Some(22))
    );
    assert_eq!(s["nb_read_frames"], "2");
    assert!(!dir.path().join("odd.mp4.tmp").exists());
}

fn ihdr(path: &Path) -> (u32, u32, u8, u8) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&b[12..16], b"IHDR");
    let be = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    (be(16), be(20), b[24], b[25])
}

#[test]
fn png_frames_have_the_logical_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("png.mkv");
    write(
        &path,
        spec(2, SampleDepth::Gray16),
        &frames(9, 2, SampleDepth::Gray16, &SIZES),
        JSON,
    );
    let out = write_png_frames(&path, &dir.path().join("gray"), false).unwrap();
    assert_eq!(out.len(), 3);
    for (p, &(w, h)) in out.iter().zip(&SIZES) {
        // Colour type 0: grayscale.
        assert_eq!(ihdr(p), (w, h, 16, 0), "{}", p.display());
    }
    let out = write_png_frames(&path, &dir.path().join("heat"), true).unwrap();
    for (p, &(w, h)) in out.iter().zip(&SIZES) {
        // Colour type 2: RGB.
        assert_eq!(ihdr(p), (w, h, 8, 2), "{}", p.display());
    }
}

#[test]
fn png_frame_range_writes_only_the_frames_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("png.mkv");
    write(
        &path,
        spec(2, SampleDepth::Gray16),
        &frames(9, 2, SampleDepth::Gray16, &SIZES),
        JSON,
    );
    let out = write_png_frame_range(&path, &dir.path().join("some"), false, 1..9).unwrap();
    let names: Vec<_> = out
        .iter()
        .map(|p| p.file_name().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["frame_000001.png", "frame_000002.png"]);
    assert_eq!(ihdr(&out[0]), (SIZES[1].0, SIZES[1].1, 16, 0));
    let past = dir.path().join("past");
    let e = write_png_frame_range(&path, &past, false, 3..5)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--frames") && e.contains("has 3"), "{e}");
    assert!(!past.exists(), "nothing written for a refused range");
}

#[test]
fn dropping_a_writer_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dropped.mkv");
    let mut w = ReelWriter::create(&path, spec(1, SampleDepth::Gray16)).unwrap();
    let f = &frames(1, 1, SampleDepth::Gray16, &SIZES)[0];
    w.push_frame(f.width, f.height, &[&f.planes[0]]).unwrap();
    drop(w);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn finishing_replaces_an_old_reel_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("again.mkv");
    write(
        &path,
        spec(1, SampleDepth::Gray16),
        &frames(1, 1, SampleDepth::Gray16, &SIZES),
        b"{\"v\":1}",
    );
    write(
        &path,
        spec(1, SampleDepth::Gray16),
        &frames(2, 1, SampleDepth::Gray16, &SIZES[..1]),
        b"{\"v\":2}",
    );
    let r = ReelReader::open(&path).unwrap();
    assert_eq!((r.metadata_json(), r.frame_count()), (&b"{\"v\":2}"[..], 1));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn flips_anywhere_never_panic_and_never_return_wrong_data() {
    let dir = tempfile::tempdir().unwrap();
    let (path, written) = corruptible(dir.path());
    let original = std::fs::read(&path).unwrap();
    for k in 0..60 {
        let at = (original.len() * k / 60 + 7) % original.len();
        let mut bytes = original.clone();
        bytes[at] ^= 0xFF;
        std::fs::write(&path, &bytes).unwrap();
        // Either an error, or every frame exactly as written (a flip in padding or an index).
        if let Ok(mut r) = ReelReader::open(&path) {
            for (i, f) in written.iter().enumerate() {
                if let Ok(planes) = r.read_frame(i as u64, f.width, f.height) {
                    assert_eq!(
                        planes, f.planes,
                        "flip at {at}: frame {i} came back different"
                    );
                }
            }
        }
    }
}

/// The packets of every video track, as `ffmpeg -f framemd5` lists them.
fn packet_md5s(file: &Path) -> String {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-map", "0:v", "-c", "copy", "-f", "framemd5", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn writers_of_one_shape_write_identical_packets() {
    // The second writer reuses the first one's encoders (and a third opens fresh ones while
    // the pooled ones are busy): all three must write the same packets, or resumed encodes
    // would differ from uninterrupted ones.
    let dir = tempfile::tempdir().unwrap();
    let written = frames(5, 2, SampleDepth::Gray16, &SIZES);
    let a = dir.path().join("a.mkv");
    write(&a, spec(2, SampleDepth::Gray16), &written, b"{}");
    let b = dir.path().join("b.mkv");
    let c = dir.path().join("c.mkv");
    let mut wb = ReelWriter::create(&b, spec(2, SampleDepth::Gray16)).unwrap();
    let mut wc = ReelWriter::create(&c, spec(2, SampleDepth::Gray16)).unwrap();
    for f in &written {
        let planes: Vec<&[u16]> = f.planes.iter().map(|p| p.as_slice()).collect();
        wb.push_frame(f.width, f.height, &planes).unwrap();
        wc.push_frame(f.width, f.height, &planes).unwrap();
    }
    wb.finish(b"{}").unwrap();
    wc.finish(b"{}").unwrap();
    let want = packet_md5s(&a);
    assert_eq!(want.lines().count(), 4 * written.len());
    assert_eq!(packet_md5s(&b), want);
    assert_eq!(packet_md5s(&c), want);
}

#[test]
fn frames_larger_than_a_picture_are_tiled_and_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiled.mkv");
    // 1030×600 needs 9×5 pictures of at most 128×128 (the last column and row partial); the
    // small frame after it takes one; read out of order too.
    let sizes = [(1030, 600), (64, 32), (600, 513)];
    let written = frames(41, 2, SampleDepth::Gray16, &sizes);
    let spec = ReelSpec {
        width: 1030,
        height: 600,
        planes: 2,
        depth: SampleDepth::Gray16,
        samples: SampleKind::FloatBits,
    };
    assert_eq!(
        spec.picture(),
        (weightreel::reel::TILE_SIDE, weightreel::reel::TILE_SIDE)
    );
    write(&path, spec, &written, JSON);
    let mut reader = ReelReader::open(&path).unwrap();
    for i in [0usize, 1, 2, 0, 2] {
        let f = &written[i];
        let planes = reader.read_frame(i as u64, f.width, f.height).unwrap();
        assert!(planes == f.planes, "frame {i} differs");
    }
    // The video holds 45 + 1 + 25 pictures of 128×128 per track (pictures were 512×512 up to
    // reel format version 2).
    let probe = ffprobe(&["-count_frames", "-show_streams"], &path);
    let video = probe["streams"][0].clone();
    assert_eq!(video["width"], 128);
    assert_eq!(video["nb_read_frames"], "71");
}

/// A 256×256 frame pushed as its four 128×128 tiles in curve order, each with a record: what
/// the reader gives back tile by tile and whole, and what survives a join.
fn push_tiled(w: &mut ReelWriter, tiles: &[Vec<u16>], tag: &str) -> Option<u32> {
    let origins = [(0, 0), (0, 128), (128, 128), (128, 0)];
    let mut crc = None;
    for (k, ((x, y), plane)) in origins.iter().zip(tiles).enumerate() {
        let record = format!("{tag} tile {k}");
        crc = w
            .push_tile(&TileIn {
                width: 256,
                height: 256,
                index: k as u32,
                x: *x,
                y: *y,
                planes: &[plane.as_slice()],
                record: record.as_bytes(),
                frame_record: format!("{tag} frame").as_bytes(),
            })
            .unwrap();
    }
    crc
}

#[test]
fn tiled_frames_read_back_tile_by_tile_and_join() {
    let dir = tempfile::tempdir().unwrap();
    let spec = sized(256, 256, 1, SampleDepth::Gray16, SampleKind::Quantized);
    let mut rng = Rng(77);
    let tiles: Vec<Vec<u16>> = (0..4).map(|_| rng.plane(128 * 128, u16::MAX)).collect();
    let small = rng.plane(64 * 32, u16::MAX);
    let part = dir.path().join("part.mkv");
    let mut w = ReelWriter::create(&part, spec).unwrap();
    let crc = push_tiled(&mut w, &tiles, "a").unwrap();
    // A frame that is not completed leaves nothing behind.
    w.push_tile(&TileIn {
        width: 256,
        height: 256,
        index: 0,
        x: 0,
        y: 0,
        planes: &[tiles[3].as_slice()],
        record: b"dropped",
        frame_record: b"",
    })
    .unwrap();
    let err = w.push_frame(64, 32, &[small.as_slice()]).unwrap_err();
    assert!(err.to_string().contains("waits for tile 1 of 4"), "{err}");
    w.discard_open_frame().unwrap();
    w.push_frame(64, 32, &[small.as_slice()]).unwrap();
    assert_eq!(w.frames(), 2);
    w.finish(JSON).unwrap();

    let mut whole = vec![0u16; 256 * 256];
    for (tile, (x, y)) in tiles.iter().zip([(0, 0), (0, 128), (128, 128), (128, 0)]) {
        for (row, src) in tile.chunks_exact(128).enumerate() {
            let at = (y + row) * 256 + x;
            whole[at..at + 128].copy_from_slice(src);
        }
    }
    let joined = dir.path().join("joined.mkv");
    weightreel::reel::concat(&[part.clone(), part.clone()], &joined, JSON, false).unwrap();
    for path in [&part, &joined] {
        let mut r = ReelReader::open(path).unwrap();
        assert_eq!(r.format_version(), REEL_FORMAT_VERSION);
        assert_eq!(r.frame_count() as usize, if path == &part { 2 } else { 4 });
        for frame in (0..r.frame_count()).step_by(2) {
            assert!(r.is_tiled(frame).unwrap());
            assert!(!r.is_tiled(frame + 1).unwrap());
            let mut seen = Vec::new();
            let out = r
                .read_tiles(
                    frame,
                    |_| true,
                    |t| {
                        seen.push((
                            t.index,
                            t.x,
                            t.y,
                            String::from_utf8_lossy(t.record).to_string(),
                        ));
                        assert!(t.planes[0] == tiles[t.index as usize], "tile {}", t.index);
                        Ok(())
                    },
                )
                .unwrap();
            assert_eq!(out.record, b"a frame");
            assert_eq!(out.crc32, crc);
            assert_eq!(seen[2], (2, 128, 128, "a tile 2".to_string()));
            assert_eq!(r.frame_record(frame).unwrap(), b"a frame");
            assert!(r.read_frame(frame, 256, 256).unwrap()[0] == whole);
            r.verify_frame(frame).unwrap();
            assert!(r.read_frame(frame + 1, 64, 32).unwrap()[0] == small);
        }
    }
}

#[test]
fn reels_without_tiled_frames_are_version_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.mkv");
    write(
        &path,
        spec(1, SampleDepth::Gray16),
        &frames(3, 1, SampleDepth::Gray16, &SIZES),
        JSON,
    );
    assert_eq!(ReelReader::open(&path).unwrap().format_version(), 2);
}
