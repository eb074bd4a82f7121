//! The reel's manifest: the metadata a reel carries so that it decodes alone — the model, the
//! settings it was encoded with (a snapshot of its own, so that a registry change is not a reel
//! format change), the tensor table and every frame's segment map and quantization.
//!
//! It is JSON inside the checksummed [`super::envelope`]; [`MANIFEST_VERSION`] is read first and
//! a newer one is refused.
//!
//! Version 2 lists no frames: each frame's [`ReelFrame`] is its record in the reel (see
//! [`super::record`]), read with the frame, so neither writing nor reading a reel holds a list
//! of its frames. A part of an unfinished encode says where it starts ([`PartSummary`]).
//! Version 1 manifests list every frame here, and still read.
//!
//! Version 3 adds what a decode needs to give back a loadable model: small buffers the
//! frames do not hold (`position_ids`, an I64 index buffer), their bytes verbatim
//! ([`VerbatimTensor`], base64), and the model's `config.json` as it was read. A manifest
//! without them is written as version 2, which it is byte for byte, so older builds still
//! read the reels that do not need the new fields.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::frames::{FrameMeta, SegmentQuant};
use crate::roles::Role;

/// Name of the metadata format carried inside every reel.
pub const MANIFEST_FORMAT: &str = "weightreel-reel";
/// Version of that format; readers refuse newer ones.
pub const MANIFEST_VERSION: u32 = 3;

/// The version of manifests without verbatim tensors or a config.
pub const MANIFEST_VERSION_PLAIN: u32 = 2;

/// Largest verbatim tensor kept in a manifest.
pub const MAX_VERBATIM_TENSOR_BYTES: u64 = 256 << 10;

/// Largest sum of verbatim tensors kept in one manifest (the manifest is read whole).
pub const MAX_VERBATIM_BYTES: u64 = 1 << 20;

/// A tensor the frames do not hold, kept as its stored bytes (little-endian, the dtype's
/// layout), so that a decode writes it back exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerbatimTensor {
    /// Name as stored in the model.
    pub name: String,
    /// Safetensors dtype name (`I64`, `BOOL`…).
    pub dtype: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// The bytes, base64 (standard alphabet, padded).
    #[serde(with = "base64")]
    pub data: Vec<u8>,
}

/// Standard base64 with padding, for [`VerbatimTensor::data`].
mod base64 {
    use serde::{Deserialize, Deserializer, Serializer};

    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    pub fn decode(text: &str) -> Option<Vec<u8>> {
        let bytes = text.as_bytes();
        if !bytes.len().is_multiple_of(4) {
            return None;
        }
        let value = |c: u8| ALPHABET.iter().position(|&a| a == c).map(|v| v as u32);
        let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
        for (k, quad) in bytes.chunks(4).enumerate() {
            let last = k + 1 == bytes.len() / 4;
            let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
            if pad > 2 || (pad > 0 && !last) {
                return None;
            }
            let mut n = 0u32;
            for &c in &quad[..4 - pad] {
                n = (n << 6) | value(c)?;
            }
            n <<= 6 * pad as u32;
            let got = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            out.extend_from_slice(&got[..3 - pad]);
        }
        Some(out)
    }

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        decode(&text).ok_or_else(|| serde::de::Error::custom("verbatim data is not base64"))
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn round_trips_every_length() {
            for n in 0..40usize {
                let bytes: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
                let text = super::encode(&bytes);
                assert_eq!(super::decode(&text).as_deref(), Some(&bytes[..]), "{n}");
            }
            assert_eq!(super::encode(b"Man"), "TWFu");
            assert_eq!(super::encode(b"Ma"), "TWE=");
            assert_eq!(super::decode("TW=u"), None);
            assert_eq!(super::decode("TWF"), None);
        }
    }
}

/// The settings a reel was encoded with. The registry records the same (the store is downstream
/// of reels and uses this type); field names are those of version-1 reels, whose JSON reads
/// unchanged. Two encodes of one model with equal [`ReelSettings::key`]s are the same entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReelSettings {
    /// Branch, tag or commit asked for (`-` for local files).
    pub revision: String,
    /// Values per chunk.
    pub chunk_size: u64,
    /// `--layers`, canonical (`all` or `attention,mlp`).
    pub layers: String,
    /// `--include`.
    pub include: Option<String>,
    /// `--exclude`.
    pub exclude: Option<String>,
    /// `--max-params`.
    pub max_params: Option<u64>,
    /// `stratified` or `head`.
    pub sample: String,
    /// Pixel mode: `u16`, `lossless`, `u8`.
    pub mode: String,
    /// `chunk` or `batch`.
    pub method: String,
    /// Largest frame, in values.
    pub max_frame_values: u64,
    /// `--min-efficiency`.
    pub min_efficiency: f64,
    /// Finest pyramid block side.
    pub pyramid_finest: u32,
}

/// Version of [`ReelSettings::key`]'s definition: part of every key, so keys of another
/// definition never compare equal by accident.
///
/// 3: stratified sampling takes its runs in clusters (other positions than before, so an
/// encode interrupted under version 2 must not resume into one of version 3).
pub const SETTINGS_KEY_VERSION: u32 = 3;

impl ReelSettings {
    /// A stable key of the settings that decide what an encode produces: an explicit
    /// function of the fields listed here, not of how the struct serializes, so a new field
    /// changes no key until it is added here (with [`SETTINGS_KEY_VERSION`] raised).
    ///
    /// Format: `v3-` then the CRC32 and the length (mod 2^16) of the canonical text, in hex.
    pub fn key(&self) -> String {
        fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
            v.as_ref()
                .map_or_else(|| "~".to_string(), |v| format!("={v}"))
        }
        // Each field as `name<value>` with the text escaped, so no two settings share a text.
        let escape = |s: &str| s.replace('\\', "\\\\").replace('|', "\\|");
        let canonical = format!(
            "revision={}|chunk_size={}|layers={}|include{}|exclude{}|max_params{}|sample={}|mode={}|method={}|max_frame_values={}|min_efficiency={}|pyramid_finest={}",
            escape(&self.revision),
            self.chunk_size,
            escape(&self.layers),
            opt(&self.include.as_deref().map(escape)),
            opt(&self.exclude.as_deref().map(escape)),
            opt(&self.max_params),
            escape(&self.sample),
            escape(&self.mode),
            escape(&self.method),
            self.max_frame_values,
            // The shortest text that reads back as the same f64.
            self.min_efficiency,
            self.pyramid_finest,
        );
        format!(
            "v{SETTINGS_KEY_VERSION}-{:08x}{:04x}",
            crc32fast::hash(canonical.as_bytes()),
            canonical.len() & 0xffff
        )
    }
}

/// A tensor as the reel records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReelTensor {
    /// Name as stored in the model.
    pub name: String,
    /// Stored dtype (`F32`, `F16`, `BF16`, …): the dtype decode writes.
    pub dtype: String,
    /// The type in the source file when it is not `dtype`: a GGML quantization (`Q4_1`)
    /// whose values were dequantized to F32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_type: Option<String>,
    /// Shape.
    pub shape: Vec<usize>,
    /// Role from the role table.
    pub role: Role,
    /// Values of it the reel holds.
    pub selected: u64,
}

impl ReelTensor {
    /// Elements in the whole tensor.
    pub fn numel(&self) -> u64 {
        // Saturating: a hostile manifest must fail the checks, not overflow.
        self.shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
            .unwrap_or(u64::MAX)
    }
}

/// A contiguous run of one tensor inside a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentRef {
    /// Index into the manifest's tensor table.
    pub tensor: u32,
    /// First element (row-major index in the tensor).
    pub start: u64,
    /// Elements.
    pub len: u64,
    /// Position of the first element along the frame's curve.
    pub curve_start: u64,
}

/// One frame of a reel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReelFrame {
    /// Frame number in the reel.
    pub index: u64,
    /// Position of its first value in the selection's value sequence.
    pub first_value: u64,
    /// CRC32 of its planes (little-endian u16 samples, plane after plane).
    pub checksum: u32,
    /// What the frame holds, tensor by tensor.
    pub segments: Vec<SegmentRef>,
    /// Layout, mode, scales, pyramid and statistics.
    pub meta: FrameMeta,
}

/// A tile's piece of one segment of a tiled frame: which tensor's elements it holds, and its
/// curve range, dtype and quantization (lossy pieces have the range of their own values).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TilePiece {
    /// Index into the manifest's tensor table.
    pub tensor: u32,
    /// First element (row-major index in the tensor).
    pub start: u64,
    /// Its place on the frame's curve (`quant.curve_start`, `quant.len`) and its quantization.
    pub quant: SegmentQuant,
}

/// The record of one tile of a tiled frame (reel format version 3): what decoding the tile
/// needs. The frame's [`ReelFrame`] rides on its last tile; its `meta.segments` are empty,
/// the pieces being here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TileRecord {
    /// Frame number in the reel.
    pub frame: u64,
    /// Tile number in the frame, in curve order.
    pub tile: u32,
    /// Its pieces in curve order; none in a tile of padding.
    pub pieces: Vec<TilePiece>,
}

impl TileRecord {
    /// Parse tile `tile` of frame `frame`'s record and check its pieces against `manifest`'s
    /// tensor table.
    pub fn parse(
        file: &Path,
        manifest: &Manifest,
        frame: u64,
        tile: u32,
        bytes: &[u8],
    ) -> Result<TileRecord> {
        let bad = |what: String| Error::reel(file, format!("frame {frame} (tile {tile}): {what}"));
        let record: TileRecord = serde_json::from_slice(bytes)
            .map_err(|e| bad(format!("its record is not a weightreel tile: {e}")))?;
        if (record.frame, record.tile) != (frame, tile) {
            return Err(bad(format!(
                "its record says tile {} of frame {}",
                record.tile, record.frame
            )));
        }
        for piece in &record.pieces {
            let numel = manifest
                .tensors
                .get(piece.tensor as usize)
                .map(ReelTensor::numel)
                .ok_or_else(|| bad(format!("a piece names tensor #{}", piece.tensor)))?;
            if piece
                .start
                .checked_add(piece.quant.len)
                .is_none_or(|e| e > numel)
            {
                return Err(bad("a piece runs past its tensor".into()));
            }
        }
        Ok(record)
    }
}

/// Where the frames of a part belong in the whole encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartSummary {
    /// Index of its first frame.
    pub first_frame: u64,
    /// Position of its first value in the selection's value sequence.
    pub first_value: u64,
    /// Frames in it.
    pub frames: u64,
    /// Values in it.
    pub values: u64,
}

/// The metadata inside a reel: enough to decode it alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    /// [`MANIFEST_VERSION`] of the writer.
    pub version: u32,
    /// Model name as given.
    pub model: String,
    /// Resolved commit, when known.
    pub commit: Option<String>,
    /// Settings key of the encode (identifies parts of one encode).
    pub settings_key: String,
    /// The settings the encode ran with.
    pub settings: ReelSettings,
    /// Values in the whole selection.
    pub total_values: u64,
    /// Tensors the selection took, in stream order.
    pub tensors: Vec<ReelTensor>,
    /// Version 1 only: the frames in this file, in order (version 2 keeps them in the frames'
    /// records).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frames: Vec<ReelFrame>,
    /// In a part of an unfinished encode: where its frames belong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<PartSummary>,
    /// Seconds spent encoding the frames of this file (parts) or the whole encode (final reel).
    pub encoding_secs: f64,
    /// Version 3: tensors kept as their bytes, not in frames (small buffers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verbatim: Vec<VerbatimTensor>,
    /// Version 3: the model's `config.json` as it was read, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_json: Option<String>,
}

impl Manifest {
    /// Parse and check a manifest read from `file`.
    pub fn parse(file: &Path, json: &[u8]) -> Result<Manifest> {
        #[derive(Deserialize)]
        struct Head {
            format: String,
            version: u32,
        }
        let head: Head = serde_json::from_slice(json).map_err(|e| {
            Error::reel(file, format!("metadata is not a weightreel manifest: {e}"))
        })?;
        if head.format != MANIFEST_FORMAT {
            return Err(Error::reel(
                file,
                format!(
                    "metadata format '{}' is not '{MANIFEST_FORMAT}'",
                    head.format
                ),
            ));
        }
        if head.version > MANIFEST_VERSION {
            return Err(Error::reel(
                file,
                format!(
                    "manifest version {} is newer than this weightreel supports ({MANIFEST_VERSION}); upgrade weightreel",
                    head.version
                ),
            ));
        }
        let manifest: Manifest = serde_json::from_slice(json)
            .map_err(|e| Error::reel(file, format!("metadata is invalid: {e}")))?;
        manifest.check(file)?;
        for v in &manifest.verbatim {
            let numel = v
                .shape
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
            let bits = serde_json::from_value::<safetensors::Dtype>(serde_json::Value::String(
                v.dtype.clone(),
            ))
            .map(|d| d.bitsize() as u64)
            .ok();
            let expected = numel
                .zip(bits)
                .and_then(|(n, b)| n.checked_mul(b))
                .map(|b| b.div_ceil(8));
            if expected != Some(v.data.len() as u64) {
                return Err(Error::reel(
                    file,
                    format!(
                        "verbatim tensor '{}' holds {} bytes, which its dtype {} and shape {:?} do not give",
                        v.name,
                        v.data.len(),
                        v.dtype,
                        v.shape
                    ),
                ));
            }
        }
        Ok(manifest)
    }

    /// Check that the listed frames (version 1) agree with the tensor table.
    pub fn check(&self, file: &Path) -> Result<()> {
        for frame in &self.frames {
            self.check_frame(file, frame)?;
        }
        Ok(())
    }

    /// Check that `frame`'s segments tile its values and lie inside their tensors.
    pub fn check_frame(&self, file: &Path, frame: &ReelFrame) -> Result<()> {
        let mut curve = 0u64;
        for seg in &frame.segments {
            let tensor = self.tensors.get(seg.tensor as usize).ok_or_else(|| {
                Error::reel(
                    file,
                    format!(
                        "frame {} names tensor #{} but the reel has {}",
                        frame.index,
                        seg.tensor,
                        self.tensors.len()
                    ),
                )
            })?;
            let end = seg.start.checked_add(seg.len);
            if seg.curve_start != curve || end.is_none_or(|e| e > tensor.numel()) {
                return Err(Error::reel(
                    file,
                    format!("frame {}: segment of '{}' disagrees with the frame layout or the tensor's shape", frame.index, tensor.name),
                ));
            }
            curve += seg.len;
        }
        if curve != frame.meta.count {
            return Err(Error::reel(
                file,
                format!(
                    "frame {}: segments cover {curve} values but the frame holds {}",
                    frame.index, frame.meta.count
                ),
            ));
        }
        Ok(())
    }
}

impl ReelFrame {
    /// Parse a frame's record (version-2 reels) and check it against `manifest`.
    pub fn parse_record(
        file: &Path,
        manifest: &Manifest,
        index: u64,
        bytes: &[u8],
    ) -> Result<ReelFrame> {
        let frame: ReelFrame = serde_json::from_slice(bytes).map_err(|e| {
            Error::reel(
                file,
                format!("frame {index}: its record is not a weightreel frame: {e}"),
            )
        })?;
        if frame.index != index {
            return Err(Error::reel(
                file,
                format!("frame {index}: its record says frame {}", frame.index),
            ));
        }
        manifest.check_frame(file, &frame)?;
        Ok(frame)
    }

    /// This frame as its record keeps it: what decoding needs and the summary statistics.
    /// Block means and the histogram are derived data, computed from the decoded frame when
    /// asked for; keeping them would make the record ten times larger.
    pub fn slim(mut self) -> ReelFrame {
        self.meta.pyramid = Default::default();
        self.meta.stats.histogram = Vec::new();
        self
    }
}
