//! Trained starting states for the FFV1 range coder.
//!
//! Every reel frame is an intra frame, and FFV1 resets its context states at every keyframe.
//! A chunk-sized frame (8192 samples) is far too short for FFV1's hundreds of contexts to
//! learn the statistics from the neutral starting state; on weight data that costs about 0.7
//! bits per byte. FFV1 version 3 can instead carry trained initial states (and a tuned state
//! transition table) in its configuration record, which is what its two-pass mode does.
//!
//! We run that first pass once per process, per kind of track, on fixed synthetic data that
//! looks like the bytes the track will hold (a quantized Gaussian, or the order-preserving key
//! of Gaussian f32), and hand the statistics to every encoder as its second-pass input. The
//! data is generated from a fixed seed, so the statistics, the configuration record and every
//! packet are the same in every run: parts of one encode can be joined, and a resumed encode
//! gives the same reel. Decoders need nothing special: the states travel in the record.

use std::ffi::CString;
use std::sync::OnceLock;

use ffmpeg_next::codec::{self, encoder};
use ffmpeg_next::{frame, Packet};

use super::{configure, ff};

/// What a track holds, which decides the data its coder is trained on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Prior {
    /// 8-bit quantized values (preview reels).
    Quantized8,
    /// Most significant byte of 16-bit quantized values.
    Quantized16Msb,
    /// Least significant byte of 16-bit quantized values (close to uniform noise).
    Quantized16Lsb,
    /// Byte `n` (3 = most significant) of the order-preserving key of an f32.
    FloatByte(u8),
}

impl Prior {
    fn slot(self) -> usize {
        match self {
            Prior::Quantized8 => 0,
            Prior::Quantized16Msb => 1,
            Prior::Quantized16Lsb => 2,
            Prior::FloatByte(n) => 3 + usize::from(n.min(3)),
        }
    }

    /// `n` training bytes.
    fn samples(self, n: usize) -> Vec<u8> {
        let mut g = Gauss(0x5EED_0000 + self.slot() as u64);
        (0..n)
            .map(|_| match self {
                Prior::Quantized8 => g.quantized(255.0) as u8,
                Prior::Quantized16Msb => (g.quantized(65535.0) >> 8) as u8,
                Prior::Quantized16Lsb => g.quantized(65535.0) as u8,
                Prior::FloatByte(b) => {
                    let bits = ((g.normal() * 0.05) as f32).to_bits();
                    let key = if bits & 0x8000_0000 != 0 {
                        !bits
                    } else {
                        bits | 0x8000_0000
                    };
                    (key >> (8 * u32::from(b.min(3)))) as u8
                }
            })
            .collect()
    }
}

/// Training picture size and count: chunk-sized frames, about 260 k samples in all.
const TRAIN_WIDTH: u32 = 128;
const TRAIN_HEIGHT: u32 = 64;
const TRAIN_FRAMES: usize = 32;

/// First-pass statistics for `prior`, computed once per process.
pub(super) fn stats(prior: Prior) -> Result<&'static CString, String> {
    static SLOTS: [OnceLock<Result<CString, String>>; 7] = [const { OnceLock::new() }; 7];
    SLOTS[prior.slot()]
        .get_or_init(|| train(prior))
        .as_ref()
        .map_err(Clone::clone)
}

/// Run FFV1's first pass over the synthetic data of `prior` and return its statistics.
fn train(prior: Prior) -> Result<CString, String> {
    let codec = encoder::find(codec::Id::FFV1).ok_or("this FFmpeg has no FFV1 encoder")?;
    let ctx = codec::context::Context::new_with_codec(codec);
    let mut enc = ctx.encoder().video().map_err(ff)?;
    enc.set_width(TRAIN_WIDTH);
    enc.set_height(TRAIN_HEIGHT);
    let opts = configure(&mut enc, TRAIN_WIDTH, TRAIN_HEIGHT);
    enc.set_flags(codec::Flags::GLOBAL_HEADER | codec::Flags::PASS1);
    let mut enc = enc.open_with(opts).map_err(ff)?;
    let area = (TRAIN_WIDTH * TRAIN_HEIGHT) as usize;
    let data = prior.samples(area * TRAIN_FRAMES);
    let mut packet = Packet::empty();
    for (i, chunk) in data.chunks_exact(area).enumerate() {
        let mut picture =
            frame::Video::new(ffmpeg_next::format::Pixel::GRAY8, TRAIN_WIDTH, TRAIN_HEIGHT);
        let stride = picture.stride(0);
        let out = picture.data_mut(0);
        for (y, row) in chunk.chunks_exact(TRAIN_WIDTH as usize).enumerate() {
            out[y * stride..y * stride + row.len()].copy_from_slice(row);
        }
        picture.set_pts(Some(i as i64));
        enc.send_frame(&picture).map_err(ff)?;
        while enc.receive_packet(&mut packet).is_ok() {}
    }
    enc.send_eof().map_err(ff)?;
    while enc.receive_packet(&mut packet).is_ok() {}
    // SAFETY: the encoder is open; with PASS1, FFV1 keeps a NUL-terminated text buffer in
    // stats_out, filled when it is flushed.
    let text = unsafe {
        let p = (*enc.as_ptr()).stats_out;
        if p.is_null() {
            return Err("FFV1 gave no first-pass statistics".into());
        }
        std::ffi::CStr::from_ptr(p).to_owned()
    };
    if text.as_bytes().is_empty() {
        return Err("FFV1 gave empty first-pass statistics".into());
    }
    Ok(text)
}

/// splitmix64: deterministic near-Gaussian samples without a dependency.
struct Gauss(u64);

impl Gauss {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Approximately N(0,1): the sum of 12 uniforms, centred (Irwin-Hall). Integer arithmetic
    /// and one exact conversion, so the samples do not depend on the platform's libm.
    fn normal(&mut self) -> f64 {
        let sum: i64 = (0..12).map(|_| (self.next_u64() >> 44) as i64).sum();
        (sum - 6 * (1 << 20)) as f64 / f64::from(1u32 << 20)
    }
    /// N(0,1) clipped to ±4σ, mapped linearly onto 0..=`max`.
    fn quantized(&mut self, max: f64) -> u16 {
        let x = self.normal().clamp(-4.0, 4.0);
        ((x / 8.0 + 0.5) * max).round() as u16
    }
}
