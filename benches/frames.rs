//! Throughput of the frame stage on one core: layout (scatter to raster order) alone, and
//! the full encode (layout + quantization + pyramid + statistics), for chunks of 8192 values
//! and for one 4096 × 4096 frame. Best of several runs, in values per second.
//!
//! Run with `cargo bench --bench frames`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use weightreel::frames::{
    decode_frame, FrameEncoder, FrameLayout, FrameOptions, PixelMode, SegmentSpec, SourceDtype,
    DEFAULT_MAX_FRAME_VALUES,
};

/// Weight-like values: a narrow spread around zero.
fn values(n: usize) -> Vec<f32> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.05
        })
        .collect()
}

/// Best time of `runs` runs of `f`.
fn best(runs: usize, mut f: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn report(label: &str, values: u64, time: Duration) {
    let rate = values as f64 / time.as_secs_f64() / 1e6;
    println!("{label:<48} {rate:>8.1} M values/s");
}

fn main() {
    for (label, chunk, frames, runs) in [
        ("chunk 8192", 8192usize, 2048usize, 7),
        ("4096x4096", 4096 * 4096, 1, 5),
    ] {
        let data = values(chunk);
        let segments = [SegmentSpec {
            curve_start: 0,
            len: chunk as u64,
            dtype: SourceDtype::F32,
        }];
        let total = (chunk * frames) as u64;

        let layout = FrameLayout::for_count(chunk as u64, DEFAULT_MAX_FRAME_VALUES).unwrap();
        let curve: Vec<u16> = data.iter().map(|v| v.to_bits() as u16).collect();
        let mut raster = vec![0u16; layout.area() as usize];
        let time = best(runs, || {
            for _ in 0..frames {
                layout.scatter(black_box(&curve), &mut raster).unwrap();
            }
            black_box(&raster);
        });
        report(&format!("{label}: layout only (scatter)"), total, time);

        for mode in [PixelMode::U16, PixelMode::Lossless, PixelMode::U8] {
            let options = FrameOptions {
                mode,
                ..FrameOptions::default()
            };
            let mut encoder = FrameEncoder::new();
            let mut last = None;
            let time = best(runs, || {
                for _ in 0..frames {
                    last = Some(
                        encoder
                            .encode(black_box(&data), &segments, &options)
                            .unwrap(),
                    );
                }
            });
            report(
                &format!("{label}: encode {mode} (layout+quant+pyramid+stats)"),
                total,
                time,
            );
            if let Some(frame) = last {
                let time = best(runs, || {
                    for _ in 0..frames {
                        black_box(decode_frame(&frame.meta, &frame.planes).unwrap());
                    }
                });
                report(&format!("{label}: decode {mode}"), total, time);
            }
        }
    }
}
