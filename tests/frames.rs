//! `frames REEL --png DIR` and its flags (`--frames`, `--tensor`, `--scale`, `--legend`,
//! `--heatmap`) on real MiniLM reels, one untiled (128 × 64 frames) and one tiled (256 × 256
//! frames, stored as 128 × 128 tiles). The PNGs are decoded by the real `ffmpeg` and their
//! pixels checked against the reel's values decoded by the library.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use support::cli::{path, run};
use support::minilm;
use weightreel::frames::FrameLayout;
use weightreel::reel::{heat_lut, Manifest, ReelFrame, ReelReader};

struct Reels {
    /// 5 frames of 8192 values: 128 × 64, not tiled.
    small: PathBuf,
    /// 5 frames of 40000 values: 256 × 256, four tiles each.
    tiled: PathBuf,
}

fn encode(store: &Path, extra: &[&str]) -> PathBuf {
    let model = minilm::safetensors();
    let mut args = vec![
        "encode",
        path(&model),
        "--store",
        path(store),
        "--quiet",
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    PathBuf::from(json[0]["reel"].as_str().unwrap())
}

fn reels() -> &'static Reels {
    static R: OnceLock<Reels> = OnceLock::new();
    R.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("frames-fixture");
        let _ = std::fs::remove_dir_all(&root);
        let chunked = |size: &'static str, params: &'static str| {
            vec![
                "--chunk-encoding",
                "--chunk-size",
                size,
                "--max-params",
                params,
            ]
        };
        Reels {
            small: encode(&root.join("small"), &chunked("8192", "40960")),
            tiled: encode(&root.join("tiled"), &chunked("40000", "200000")),
        }
    })
}

/// Frame `index`'s record and values, decoded by the library.
fn frame(reel: &Path, index: u64) -> (ReelFrame, Vec<f32>, Manifest) {
    let mut reader = ReelReader::open(reel).unwrap();
    let manifest = Manifest::parse(reel, reader.metadata_json()).unwrap();
    let (f, v) = weightreel::decode::frame_values(reel, &mut reader, &manifest, index).unwrap();
    (f, v, manifest)
}

/// A PNG decoded by ffmpeg: width, height, bit depth and colour type from its header, and its
/// pixels as 16-bit grey (big-endian pairs) or 8-bit RGB.
struct Png {
    width: u32,
    height: u32,
    depth: u8,
    colour: u8,
    pixels: Vec<u8>,
}

fn read_png(file: &Path) -> Png {
    let bytes = std::fs::read(file).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", file.display());
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    let (depth, colour) = (bytes[24], bytes[25]);
    let pix_fmt = if colour == 0 { "gray16be" } else { "rgb24" };
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-f", "rawvideo", "-pix_fmt", pix_fmt, "-"])
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg cannot decode {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Png {
        width,
        height,
        depth,
        colour,
        pixels: out.stdout,
    }
}

impl Png {
    fn grey(&self, x: u32, y: u32) -> u16 {
        let at = ((y * self.width + x) * 2) as usize;
        u16::from_be_bytes([self.pixels[at], self.pixels[at + 1]])
    }

    fn rgb(&self, x: u32, y: u32) -> [u8; 3] {
        let at = ((y * self.width + x) * 3) as usize;
        self.pixels[at..at + 3].try_into().unwrap()
    }
}

/// The grey level the values' range gives `v` (what `--scale` promises).
fn level(v: f32, lo: f32, hi: f32) -> u16 {
    if hi > lo {
        1 + ((f64::from((v - lo) / (hi - lo)).clamp(0.0, 1.0)) * 65534.0).round() as u16
    } else {
        32768
    }
}

fn range(v: &[f32]) -> (f32, f32) {
    v.iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        })
}

/// What one case checks about the PNGs written.
#[derive(Clone, Copy)]
enum Expect {
    /// 16-bit grey, every pixel the value's level over the frame's range (padding 0).
    GreyFrameScale,
    /// 16-bit grey, each tensor run's pixels over the run's own range.
    GreyTensorScale,
    /// 8-bit RGB of the frame's size, values through the ramp.
    Heat,
    /// 8-bit RGB wider than the frame: a colour bar on the right, labels in the frame.
    Legend,
    /// Only frames holding a matching tensor, whose boundaries are 65535.
    TensorOutlined(&'static str),
}

struct Case {
    name: &'static str,
    tiled: bool,
    args: &'static [&'static str],
    /// Frame numbers written.
    frames: &'static [u64],
    expect: Expect,
}

#[test]
fn frames_png_flags() {
    let cases = [
        Case {
            name: "default grey, every frame, untiled",
            tiled: false,
            args: &[],
            frames: &[0, 1, 2, 3, 4],
            expect: Expect::GreyFrameScale,
        },
        Case {
            name: "default grey, a range, tiled",
            tiled: true,
            args: &["--frames", "1-2"],
            frames: &[1, 2],
            expect: Expect::GreyFrameScale,
        },
        Case {
            name: "scale tensor, tiled",
            tiled: true,
            args: &["--scale", "tensor", "--frames", "0"],
            frames: &[0],
            expect: Expect::GreyTensorScale,
        },
        Case {
            name: "scale tensor, untiled",
            tiled: false,
            args: &["--scale", "tensor", "--frames", "3-"],
            frames: &[3, 4],
            expect: Expect::GreyTensorScale,
        },
        Case {
            name: "heatmap, tiled",
            tiled: true,
            args: &["--heatmap", "--frames", "4"],
            frames: &[4],
            expect: Expect::Heat,
        },
        Case {
            name: "legend, tiled",
            tiled: true,
            args: &["--legend", "--frames", "0-1"],
            frames: &[0, 1],
            expect: Expect::Legend,
        },
        Case {
            name: "legend, untiled",
            tiled: false,
            args: &["--legend", "--frames", "2"],
            frames: &[2],
            expect: Expect::Legend,
        },
        Case {
            name: "tensor picks frames, untiled",
            tiled: false,
            args: &["--tensor", r"layer\.0\.attention\.self\.query\.weight"],
            frames: &[],
            expect: Expect::TensorOutlined(r"layer\.0\.attention\.self\.query\.weight"),
        },
        Case {
            name: "tensor picks frames, tiled",
            tiled: true,
            args: &["--tensor", "embeddings"],
            frames: &[],
            expect: Expect::TensorOutlined("embeddings"),
        },
    ];
    let tmp = tempfile::tempdir().unwrap();
    for (k, case) in cases.iter().enumerate() {
        let reel = if case.tiled {
            &reels().tiled
        } else {
            &reels().small
        };
        let dir = tmp.path().join(format!("case{k}"));
        let mut args = vec!["frames", path(reel), "--png", path(&dir)];
        args.extend_from_slice(case.args);
        let out = run(&args);
        let name = case.name;
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let wanted: Vec<u64> = match case.expect {
            Expect::TensorOutlined(pattern) => {
                let re = regex_lite::Regex::new(pattern).unwrap();
                let reader = ReelReader::open(reel).unwrap();
                let n = reader.frame_count();
                let holding: Vec<u64> = (0..n)
                    .filter(|&i| {
                        let (f, _, m) = frame(reel, i);
                        f.segments
                            .iter()
                            .any(|s| re.is_match(&m.tensors[s.tensor as usize].name))
                    })
                    .collect();
                assert!(
                    !holding.is_empty() && (holding.len() as u64) < n,
                    "{name}: the pattern should pick some frames, not all"
                );
                holding
            }
            _ => case.frames.to_vec(),
        };
        let expected: Vec<String> = wanted.iter().map(|i| format!("frame_{i:06}.png")).collect();
        assert_eq!(files, expected, "{name}: files written");
        assert!(
            String::from_utf8_lossy(&out.stdout)
                .contains(&format!("Wrote {} PNG frames", wanted.len())),
            "{name}"
        );
        for &index in &wanted {
            let png = read_png(&dir.join(format!("frame_{index:06}.png")));
            let (f, values, manifest) = frame(reel, index);
            let layout: FrameLayout = f.meta.layout;
            let (w, h) = (layout.width, layout.height);
            assert_eq!(layout.width > 128, case.tiled, "{name}: fixture");
            let (lo, hi) = range(&values);
            let run_of = |d: u64| f.segments.iter().rposition(|s| s.curve_start <= d).unwrap();
            match case.expect {
                Expect::GreyFrameScale | Expect::GreyTensorScale => {
                    assert_eq!(
                        (png.width, png.height, png.depth, png.colour),
                        (w, h, 16, 0),
                        "{name}: header"
                    );
                    for y in 0..h {
                        for x in 0..w {
                            let d = layout.index(x, y);
                            let want = if d >= f.meta.count {
                                0
                            } else if matches!(case.expect, Expect::GreyFrameScale) {
                                level(values[d as usize], lo, hi)
                            } else {
                                let s = &f.segments[run_of(d)];
                                let from = s.curve_start as usize;
                                let (a, b) = range(&values[from..from + s.len as usize]);
                                level(values[d as usize], a, b)
                            };
                            assert_eq!(
                                png.grey(x, y),
                                want,
                                "{name}: frame {index} pixel ({x}, {y})"
                            );
                        }
                    }
                }
                Expect::Heat => {
                    assert_eq!(
                        (png.width, png.height, png.depth, png.colour),
                        (w, h, 8, 2),
                        "{name}: header"
                    );
                    let lut = heat_lut();
                    for (x, y) in [(0, 0), (w / 2, h / 3), (w - 1, h - 1), (3, h / 2)] {
                        let d = layout.index(x, y);
                        if d < f.meta.count {
                            let t = f64::from((values[d as usize] - lo) / (hi - lo));
                            let want = lut[(t * 255.0).round() as usize];
                            assert_eq!(png.rgb(x, y), want, "{name}: pixel ({x}, {y})");
                        } else {
                            assert!(
                                weightreel::picture::PADDING.contains(&png.rgb(x, y)),
                                "{name}: padding at ({x}, {y})"
                            );
                        }
                    }
                }
                Expect::Legend => {
                    assert_eq!((png.depth, png.colour), (8, 2), "{name}: 8-bit RGB");
                    assert!(
                        png.width > w + 20 && png.height >= h,
                        "{name}: {}x{} for a {w}x{h} frame",
                        png.width,
                        png.height
                    );
                    // The colour bar: the top of the ramp near the top, its bottom near the
                    // bottom, in one column right of the frame.
                    let lut = heat_lut();
                    let column: Vec<[u8; 3]> = (0..png.height).map(|y| png.rgb(w + 6, y)).collect();
                    let top = column
                        .iter()
                        .position(|c| *c == lut[255])
                        .expect("the bar's top colour");
                    let bottom = column
                        .iter()
                        .rposition(|c| *c == lut[0])
                        .expect("the bar's bottom colour");
                    assert!(
                        top < png.height as usize / 4 && bottom > png.height as usize * 3 / 4,
                        "{name}: bar {top}..{bottom}"
                    );
                    // Text beside the bar and labels in the frame: white ink on the dark box.
                    let white = |x0: u32, x1: u32| {
                        (0..png.height).any(|y| (x0..x1).any(|x| png.rgb(x, y) == [255, 255, 255]))
                    };
                    assert!(white(w + 12, png.width), "{name}: the bar's numbers");
                    let boxes = (0..h)
                        .flat_map(|y| (0..w).map(move |x| (x, y)))
                        .filter(|&(x, y)| png.rgb(x, y) == weightreel::picture::BACKGROUND)
                        .count();
                    assert!(boxes > 20, "{name}: label boxes drawn ({boxes} pixels)");
                    let _ = manifest;
                }
                Expect::TensorOutlined(pattern) => {
                    let re = regex_lite::Regex::new(pattern).unwrap();
                    assert_eq!(
                        (png.width, png.height, png.depth),
                        (w, h, 16),
                        "{name}: header"
                    );
                    let matching = |d: u64| {
                        d < f.meta.count
                            && re.is_match(
                                &manifest.tensors[f.segments[run_of(d)].tensor as usize].name,
                            )
                    };
                    let mut outlined = 0;
                    for y in 0..h {
                        for x in 0..w {
                            let d = layout.index(x, y);
                            if png.grey(x, y) == 65535
                                && level(
                                    values.get(d as usize).copied().unwrap_or(f32::NAN),
                                    lo,
                                    hi,
                                ) != 65535
                            {
                                assert!(matching(d), "{name}: frame {index} ({x}, {y}) outlined but not a matching tensor");
                                outlined += 1;
                            }
                        }
                    }
                    assert!(outlined > 0, "{name}: frame {index}: no outline");
                }
            }
        }
    }
}

#[test]
fn frames_png_refusals() {
    struct Refusal {
        name: &'static str,
        args: &'static [&'static str],
        says: &'static str,
    }
    let cases = [
        Refusal {
            name: "no tensor matches",
            args: &["--tensor", "no_such_tensor"],
            says: "--tensor",
        },
        Refusal {
            name: "matching tensors lie in other frames",
            args: &["--tensor", "pooler", "--frames", "0"],
            says: "other frames",
        },
        Refusal {
            name: "not a regular expression",
            args: &["--tensor", "(query"],
            says: "not a regular expression",
        },
        Refusal {
            name: "unknown scale",
            args: &["--scale", "layer"],
            says: "layer",
        },
        Refusal {
            name: "range past the end",
            args: &["--frames", "9-12"],
            says: "--frames",
        },
    ];
    let tmp = tempfile::tempdir().unwrap();
    let reel = &reels().small;
    for case in &cases {
        let dir = tmp.path().join("never");
        let mut args = vec!["frames", path(reel), "--png", path(&dir)];
        args.extend_from_slice(case.args);
        let out = run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {err}", case.name);
        assert!(err.contains(case.says), "{}: {err}", case.name);
        assert!(!dir.exists(), "{}: nothing written", case.name);
    }
}

/// ffprobe's view of a video's first stream: codec, profile, level, width, height, frames.
fn probe(file: &Path) -> (String, String, i64, u32, u32, u64) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-show_streams",
            "-of",
            "json",
        ])
        .arg(file)
        .output()
        .expect("run ffprobe");
    assert!(out.status.success(), "ffprobe {}", file.display());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &json["streams"][0];
    (
        s["codec_name"].as_str().unwrap().to_string(),
        s["profile"].as_str().unwrap().to_string(),
        s["level"].as_i64().unwrap(),
        s["width"].as_u64().unwrap() as u32,
        s["height"].as_u64().unwrap() as u32,
        s["nb_read_frames"].as_str().unwrap().parse().unwrap(),
    )
}

#[test]
fn previews_stay_within_high_5_1_and_4096x2304() {
    let tmp = tempfile::tempdir().unwrap();
    // A 4096 x 4096 frame (9M values in one batch frame) is taller than 2304.
    let big_store = tmp.path().join("big");
    let big_mp4 = tmp.path().join("big.mp4");
    let model = minilm::safetensors();
    let out = run(&[
        "encode",
        path(&model),
        "--store",
        path(&big_store),
        "--max-params",
        "9000000",
        "--preview",
        path(&big_mp4),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Preview: ")
            && text
                .contains("2048x2048, frames downscaled 2x (mean of 2x2 samples) to fit 4096x2304"),
        "{text}"
    );
    struct PreviewCase {
        name: &'static str,
        mp4: PathBuf,
        size: (u32, u32),
        frames: u64,
    }
    let small_mp4 = tmp.path().join("small.mp4");
    let tiled_mp4 = tmp.path().join("tiled.mp4");
    let g = weightreel::reel::write_preview_h264(&reels().small, &small_mp4).unwrap();
    assert_eq!(g.shrink, 1);
    let g = weightreel::reel::write_preview_h264(&reels().tiled, &tiled_mp4).unwrap();
    assert_eq!(g.shrink, 1);
    let cases = [
        PreviewCase {
            name: "4096x4096 frame, downscaled",
            mp4: big_mp4,
            size: (2048, 2048),
            frames: 1,
        },
        PreviewCase {
            name: "128x64 frames, full size",
            mp4: small_mp4,
            size: (128, 64),
            frames: 5,
        },
        PreviewCase {
            name: "256x256 tiled frames, full size",
            mp4: tiled_mp4,
            size: (256, 256),
            frames: 5,
        },
    ];
    for case in &cases {
        let (codec, profile, level, w, h, frames) = probe(&case.mp4);
        let name = case.name;
        assert_eq!(codec, "h264", "{name}");
        assert_eq!(profile, "High", "{name}");
        assert!(level > 0 && level <= 51, "{name}: level {level}");
        assert!(w <= 4096 && h <= 2304, "{name}: {w}x{h}");
        assert_eq!((w, h), case.size, "{name}");
        assert_eq!(frames, case.frames, "{name}");
    }
}
