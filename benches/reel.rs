//! Reel throughput and compression, timed with `Instant` (no harness).
//!
//! `cargo bench --bench reel` writes and reads back:
//! - 64 frames of 128x64 (8192 values each) of quantized Gaussian u16 noise, and
//! - one 2048x2048 frame of the same,
//!
//! then reports the compressed size ratio (raw bytes / reel bytes) for quantized Gaussian u16
//! and for lossless f32 of N(0, 0.05) split into high and low 16-bit planes after the
//! lossless sample transform (the bits rotated left by one, so the exponent comes first).

use std::path::Path;
use std::time::Instant;

use weightreel::reel::{ReelReader, ReelSpec, ReelWriter, SampleDepth, SampleKind};

/// splitmix64 with Box-Muller: Gaussian samples without a dependency.
struct Gauss(u64);

impl Gauss {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
    /// N(0,1) clipped to ±4σ, quantized linearly onto 0..=65535, like a per-frame scale would.
    fn quantized(&mut self, n: usize) -> Vec<u16> {
        (0..n)
            .map(|_| {
                let x = self.normal().clamp(-4.0, 4.0);
                ((x / 8.0 + 0.5) * 65535.0).round() as u16
            })
            .collect()
    }
    /// f32 N(0, sd) as lossless samples (exponent first), split into (high, low) planes.
    fn float_planes(&mut self, n: usize, sd: f64) -> (Vec<u16>, Vec<u16>) {
        let (mut hi, mut lo) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for _ in 0..n {
            let key = ((self.normal() * sd) as f32).to_bits().rotate_left(1);
            hi.push((key >> 16) as u16);
            lo.push(key as u16);
        }
        (hi, lo)
    }
}

struct Timing {
    write_s: f64,
    read_s: f64,
    bytes: u64,
}

/// Write `frames` (each a list of planes) at `w`x`h` and read them all back in order.
fn run(path: &Path, w: u32, h: u32, frames: &[Vec<Vec<u16>>]) -> Timing {
    let planes = frames[0].len() as u32;
    let spec = ReelSpec {
        width: w,
        height: h,
        planes,
        depth: SampleDepth::Gray16,
        // The benchmark's two-plane frames are f32 bits; its one-plane frames quantized levels.
        samples: if planes == 2 {
            SampleKind::FloatBits
        } else {
            SampleKind::Quantized
        },
    };
    let t = Instant::now();
    let mut writer = ReelWriter::create(path, spec).expect("create");
    for f in frames {
        let refs: Vec<&[u16]> = f.iter().map(|p| p.as_slice()).collect();
        writer.push_frame(w, h, &refs).expect("push");
    }
    let info = writer.finish(b"{\"bench\":true}").expect("finish");
    let write_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut reader = ReelReader::open(path).expect("open");
    for (i, f) in frames.iter().enumerate() {
        let got = reader.read_frame(i as u64, w, h).expect("read");
        assert!(got == *f, "frame {i} did not round-trip");
    }
    Timing {
        write_s,
        read_s: t.elapsed().as_secs_f64(),
        bytes: info.bytes,
    }
}

fn report(name: &str, frames: usize, raw: u64, t: &Timing) {
    let mb = raw as f64 / 1e6;
    println!(
        "{name}: write {:.1} MB/s {:.1} frames/s | read {:.1} MB/s {:.1} frames/s | {:.3} ratio ({} -> {} bytes)",
        mb / t.write_s,
        frames as f64 / t.write_s,
        mb / t.read_s,
        frames as f64 / t.read_s,
        raw as f64 / t.bytes as f64,
        raw,
        t.bytes
    );
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut g = Gauss(42);

    let small: Vec<Vec<Vec<u16>>> = (0..64).map(|_| vec![g.quantized(128 * 64)]).collect();
    let t = run(&dir.path().join("small.mkv"), 128, 64, &small);
    report("64 x 128x64 quantized-gaussian u16", 64, 64 * 8192 * 2, &t);

    let big = vec![vec![g.quantized(2048 * 2048)]];
    let t = run(&dir.path().join("big.mkv"), 2048, 2048, &big);
    report(
        "1 x 2048x2048 quantized-gaussian u16",
        1,
        2048 * 2048 * 2,
        &t,
    );

    let (hi, lo) = g.float_planes(2048 * 2048, 0.05);
    let hi_only = vec![vec![hi.clone()]];
    let both = vec![vec![hi, lo]];
    let t = run(&dir.path().join("f32.mkv"), 2048, 2048, &both);
    report(
        "1 x 2048x2048 f32 N(0,0.05) high+low planes",
        1,
        2048 * 2048 * 4,
        &t,
    );
    let t = run(&dir.path().join("f32hi.mkv"), 2048, 2048, &hi_only);
    report("  of which the high plane alone", 1, 2048 * 2048 * 2, &t);
}
