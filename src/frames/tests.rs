//! Encode → decode round trips and the checks of [`super::encode_frame`] and
//! [`super::decode_frame`].

use half::{bf16, f16};
use proptest::prelude::*;

use super::*;

/// Deterministic pseudo-random values: mostly a bell-ish spread of width `scale`, with rare
/// outliers, rounded to `dtype`; `specials` mixes in NaN and infinities.
fn make_values(n: usize, seed: u64, scale: f32, dtype: SourceDtype, specials: bool) -> Vec<f32> {
    let mut state = seed | 1;
    (0..n)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let u = (state >> 40) as f32 / (1u64 << 24) as f32;
            let w = ((state >> 16) & 0xffff) as f32 / 65536.0;
            let mut v = (u + w - 1.0) * scale;
            if i % 1013 == 7 {
                v *= 40.0;
            }
            if specials {
                match i % 211 {
                    3 => v = f32::NAN,
                    4 => v = f32::INFINITY,
                    5 => v = f32::NEG_INFINITY,
                    6 => v = -0.0,
                    _ => {}
                }
            }
            match dtype {
                SourceDtype::F16 => f16::from_f32(v).to_f32(),
                SourceDtype::BF16 => bf16::from_f32(v).to_f32(),
                SourceDtype::F32 | SourceDtype::Other => v,
            }
        })
        .collect()
}

/// Splits `0..n` at the given fractions into segments with the given dtypes.
fn make_segments(n: u64, cuts: &[(u16, SourceDtype)], last: SourceDtype) -> Vec<SegmentSpec> {
    let mut points: Vec<u64> = cuts
        .iter()
        .map(|(c, _)| u64::from(*c) * n / 65536)
        .filter(|&p| p > 0 && p < n)
        .collect();
    points.sort_unstable();
    points.dedup();
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &p) in points.iter().enumerate() {
        out.push(SegmentSpec {
            curve_start: start,
            len: p - start,
            dtype: cuts[i].1,
        });
        start = p;
    }
    out.push(SegmentSpec {
        curve_start: start,
        len: n - start,
        dtype: last,
    });
    out
}

fn dtype_strategy() -> impl Strategy<Value = SourceDtype> {
    prop_oneof![
        Just(SourceDtype::F32),
        Just(SourceDtype::F16),
        Just(SourceDtype::BF16),
        Just(SourceDtype::Other),
    ]
}

fn mode_strategy() -> impl Strategy<Value = PixelMode> {
    prop_oneof![
        Just(PixelMode::U16),
        Just(PixelMode::Lossless),
        Just(PixelMode::U8)
    ]
}

/// Encodes, round-trips the metadata through JSON, decodes, and checks the result against
/// the mode's guarantee.
fn check_round_trip(values: &[f32], segments: &[SegmentSpec], mode: PixelMode) {
    let options = FrameOptions {
        mode,
        ..FrameOptions::default()
    };
    let frame = encode_frame(values, segments, &options).unwrap();
    let area = frame.meta.layout.area() as usize;
    assert!(frame.planes.iter().all(|p| p.len() == area));
    let json = serde_json::to_string(&frame.meta).unwrap();
    let meta: FrameMeta = serde_json::from_str(&json).unwrap();
    assert_eq!(meta, frame.meta);
    let decoded = decode_frame(&meta, &frame.planes).unwrap();
    assert_eq!(decoded.len(), values.len());

    // Padding is 0 in every plane.
    for plane in &frame.planes {
        for d in values.len() as u64..frame.meta.layout.area() {
            let (x, y) = frame.meta.layout.xy(d);
            assert_eq!(
                plane[y as usize * frame.meta.layout.width as usize + x as usize],
                0
            );
        }
    }

    for seg in &meta.segments {
        let range = seg.curve_start as usize..(seg.curve_start + seg.len) as usize;
        let (orig, back) = (&values[range.clone()], &decoded[range]);
        match mode {
            PixelMode::Lossless => {
                for (a, b) in orig.iter().zip(back) {
                    assert_eq!(a.to_bits(), b.to_bits(), "{a} decoded as {b}");
                }
            }
            PixelMode::U16 | PixelMode::U8 => {
                let finite: Vec<f32> = orig.iter().copied().filter(|v| v.is_finite()).collect();
                let lo = finite.iter().copied().fold(f32::INFINITY, f32::min);
                let hi = finite.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let span = f64::from(hi) - f64::from(lo);
                // A segment holding NaN or ±inf gives 3 levels to them.
                let reserved = if seg.specials { 3.0 } else { 0.0 };
                let steps = 2.0 * (f64::from(mode.levels().unwrap()) - reserved);
                assert_eq!(seg.specials, finite.len() < orig.len());
                for (a, b) in orig.iter().zip(back) {
                    if !a.is_finite() {
                        assert!(a.is_nan() && b.is_nan() || a == b, "{a} decoded as {b}");
                        continue;
                    }
                    // The bound plus f32 rounding of the scale, the span and the result.
                    let slack = span * 2f64.powi(-21) + f64::from(a.abs()) * 2f64.powi(-23);
                    let err = (f64::from(*a) - f64::from(*b)).abs();
                    assert!(
                        err <= span / steps + slack,
                        "{a} decoded as {b}, span {span}"
                    );
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn round_trip_holds_for_every_mode(
        n in 1usize..=70_000,
        seed in any::<u64>(),
        exponent in -4i32..=3,
        mode in mode_strategy(),
        cuts in proptest::collection::vec((any::<u16>(), dtype_strategy()), 0..4),
        last in dtype_strategy(),
        specials in any::<bool>(),
    ) {
        let segments = make_segments(n as u64, &cuts, last);
        let scale = 10f32.powi(exponent);
        let mut values = Vec::with_capacity(n);
        for (i, seg) in segments.iter().enumerate() {
            values.extend(make_values(seg.len as usize, seed ^ i as u64, scale, seg.dtype, specials));
        }
        check_round_trip(&values, &segments, mode);
    }
}

#[test]
fn constant_and_tiny_frames_round_trip() {
    for mode in [PixelMode::U16, PixelMode::Lossless, PixelMode::U8] {
        for n in [1usize, 2, 3, 5, 17] {
            let values = vec![0.25f32; n];
            let segments = [SegmentSpec {
                curve_start: 0,
                len: n as u64,
                dtype: SourceDtype::F32,
            }];
            check_round_trip(&values, &segments, mode);
            let frame = encode_frame(
                &values,
                &segments,
                &FrameOptions {
                    mode,
                    ..Default::default()
                },
            )
            .unwrap();
            assert_eq!(frame.meta.segments[0].scale, 0.0);
        }
    }
}

#[test]
fn plane_counts_follow_the_sources() {
    let values = make_values(100, 3, 1.0, SourceDtype::BF16, false);
    let bf16_only = [SegmentSpec {
        curve_start: 0,
        len: 100,
        dtype: SourceDtype::BF16,
    }];
    let lossless = FrameOptions {
        mode: PixelMode::Lossless,
        ..Default::default()
    };
    assert_eq!(
        encode_frame(&values, &bf16_only, &lossless)
            .unwrap()
            .planes
            .len(),
        1
    );
    let mixed = make_segments(100, &[(30000, SourceDtype::BF16)], SourceDtype::F32);
    let frame = encode_frame(&values, &mixed, &lossless).unwrap();
    assert_eq!((frame.planes.len(), frame.meta.planes), (2, 2));
    // A 16-bit segment leaves 0 in plane 1.
    let (x, y) = frame.meta.layout.xy(0);
    assert_eq!(
        frame.planes[1][y as usize * frame.meta.layout.width as usize + x as usize],
        0
    );
    let frame = encode_frame(&values, &mixed, &FrameOptions::default()).unwrap();
    assert_eq!(frame.planes.len(), 1);
}

#[test]
fn samples_follow_the_values_along_the_curve() {
    let values: Vec<f32> = (0..1000).map(|i| i as f32 / 10.0 - 50.0).collect();
    let segments = [SegmentSpec {
        curve_start: 0,
        len: 1000,
        dtype: SourceDtype::F32,
    }];
    for mode in [PixelMode::U16, PixelMode::Lossless, PixelMode::U8] {
        let frame = encode_frame(
            &values,
            &segments,
            &FrameOptions {
                mode,
                ..Default::default()
            },
        )
        .unwrap();
        let mut curve = vec![0u16; 1000];
        frame
            .meta
            .layout
            .gather(&frame.planes[0], &mut curve)
            .unwrap();
        if mode == PixelMode::Lossless {
            // Lossless samples start with the float's exponent, whatever the sign.
            for (v, sample) in values.iter().zip(&curve) {
                assert_eq!(u32::from(sample >> 8), (v.to_bits() >> 23) & 0xff, "{v}");
            }
            continue;
        }
        assert!(curve.windows(2).all(|w| w[0] <= w[1]), "{mode}");
        let top = mode.levels().unwrap();
        assert_eq!((curve[0], curve[999]), (0, top), "{mode}");
    }
}

#[test]
fn bad_segments_are_refused() {
    let values = vec![1.0f32; 10];
    let seg = |curve_start, len| SegmentSpec {
        curve_start,
        len,
        dtype: SourceDtype::F32,
    };
    let options = FrameOptions::default();
    for segments in [
        vec![],
        vec![seg(0, 9)],
        vec![seg(0, 11)],
        vec![seg(1, 9)],
        vec![seg(0, 5), seg(4, 6)],
        vec![seg(0, 5), seg(6, 4)],
        vec![seg(0, 10), seg(10, 0)],
        vec![seg(0, 5), seg(5, u64::MAX)],
    ] {
        let err = encode_frame(&values, &segments, &options).unwrap_err();
        assert!(matches!(err, Error::Frame(_)), "{segments:?}: {err}");
    }
    let err = encode_frame(&[], &[], &options).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid chunk of 0 values (expected 1..=16777216)"
    );
}

#[test]
fn bad_options_are_refused() {
    let values = vec![1.0f32; 5000];
    let segments = [SegmentSpec {
        curve_start: 0,
        len: 5000,
        dtype: SourceDtype::F32,
    }];
    let strict = FrameOptions {
        min_efficiency: 0.7,
        ..Default::default()
    };
    let err = encode_frame(&values, &segments, &strict).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Efficiency ratio 0.61 is below minimum 0.7"
    );
    let small = FrameOptions {
        max_values: 4096,
        ..Default::default()
    };
    let err = encode_frame(&values, &segments, &small).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid chunk of 5000 values (expected 1..=4096)"
    );
    let odd = FrameOptions {
        pyramid_finest: 6,
        ..Default::default()
    };
    assert!(encode_frame(&values, &segments, &odd).is_err());
}

#[test]
fn mismatched_planes_and_metadata_are_errors() {
    let values = make_values(3000, 9, 1.0, SourceDtype::F32, false);
    let segments = make_segments(3000, &[(20000, SourceDtype::F32)], SourceDtype::F32);
    let options = FrameOptions {
        mode: PixelMode::Lossless,
        ..Default::default()
    };
    let frame = encode_frame(&values, &segments, &options).unwrap();
    let meta = &frame.meta;
    assert!(decode_frame(meta, &frame.planes[..1]).is_err());
    let mut short = frame.planes.clone();
    short[1].pop();
    assert!(decode_frame(meta, &short).is_err());

    let mut bad = meta.clone();
    bad.planes = 1;
    assert!(decode_frame(&bad, &frame.planes).is_err());
    let mut bad = meta.clone();
    bad.count = meta.layout.area() + 1;
    assert!(decode_frame(&bad, &frame.planes).is_err());
    let mut bad = meta.clone();
    bad.segments[1].len += 1;
    assert!(decode_frame(&bad, &frame.planes).is_err());
    let mut bad = meta.clone();
    bad.layout.width = 3;
    assert!(decode_frame(&bad, &frame.planes).is_err());
    let mut bad = meta.clone();
    bad.segments[0].curve_start = u64::MAX;
    assert!(decode_frame(&bad, &frame.planes).is_err());
    let mut bad = meta.clone();
    bad.mode = PixelMode::U16;
    assert!(decode_frame(&bad, &frame.planes).is_err());
}

#[test]
fn encoder_reuse_matches_fresh_encoding() {
    let mut encoder = FrameEncoder::new();
    for (n, mode) in [
        (8192usize, PixelMode::U16),
        (3000, PixelMode::Lossless),
        (8192, PixelMode::Lossless),
        (100, PixelMode::U8),
    ] {
        let values = make_values(n, n as u64, 0.1, SourceDtype::F32, true);
        let segments = make_segments(n as u64, &[(12345, SourceDtype::F32)], SourceDtype::F32);
        let options = FrameOptions {
            mode,
            ..Default::default()
        };
        let reused = encoder.encode(&values, &segments, &options).unwrap();
        let fresh = encode_frame(&values, &segments, &options).unwrap();
        assert_eq!(reused, fresh);
    }
}
