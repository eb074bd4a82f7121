//! Decoding a reel back to a `.safetensors` file.
//!
//! Tensors encoded whole come back whole, in their original dtype (F32, F16, BF16; other dtypes
//! as F32). Sampled tensors come back as a 1-D tensor of the sampled values under the tensor's
//! name plus `NAME.sample_indices` (I64), the row-major positions of those values. Lossless
//! reels give back the exact bits; u16 reels are within `(max − min) / 131070` of the source.
//!
//! Memory stays bounded by one output tensor plus a few decoded frames: the `safetensors`
//! writer asks for one tensor's bytes at a time, and each is produced only then, decoding just
//! the frames that hold it.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use half::{bf16, f16};
use safetensors::tensor::View;
use safetensors::Dtype;
use serde::Serialize;

use crate::reel::{Manifest, SegmentRef};
use crate::error::{Error, Result};
use crate::frames;
use crate::reel::ReelReader;

/// What a decode produced.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DecodeSummary {
    /// Output file.
    pub out: PathBuf,
    /// Tensors written (not counting index tensors).
    pub tensors: u64,
    /// Tensors written whole.
    pub whole: u64,
    /// Tensors written as samples plus indices.
    pub sampled: u64,
    /// Values written.
    pub values: u64,
    /// Frame decodes performed.
    pub frames_read: u64,
}

/// Decoded frames, a few at a time.
struct FrameCache {
    path: PathBuf,
    reader: ReelReader,
    manifest: Manifest,
    cached: VecDeque<(u64, Rc<Vec<f32>>)>,
    decodes: u64,
    error: Option<Error>,
}

/// Frames kept decoded; a tensor's frames are visited in order, so a few suffice.
const CACHED_FRAMES: usize = 4;

impl FrameCache {
    fn frame(&mut self, index: u64) -> Result<Rc<Vec<f32>>> {
        if let Some((_, values)) = self.cached.iter().find(|(i, _)| *i == index) {
            return Ok(values.clone());
        }
        let frame = self.manifest.frames.get(index as usize).ok_or_else(|| {
            Error::reel(&self.path, format!("frame {index} is not in the manifest"))
        })?;
        let layout = frame.meta.layout;
        let planes = self.reader.read_frame(index, layout.width, layout.height)?;
        let planes: Vec<Vec<u16>> = planes
            .into_iter()
            .take(frame.meta.planes as usize)
            .collect();
        if crate::reel::planes_crc32(&planes) != frame.checksum {
            return Err(Error::reel(
                &self.path,
                format!("frame {index}: pixels do not match the checksum in the metadata"),
            ));
        }
        let values = Rc::new(frames::decode_frame(&frame.meta, &planes)?);
        self.decodes += 1;
        if self.cached.len() == CACHED_FRAMES {
            self.cached.pop_front();
        }
        self.cached.push_back((index, values.clone()));
        Ok(values)
    }
}

/// Which part of a tensor an output view writes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Values,
    Indices,
}

/// One output tensor, produced on demand.
struct LazyTensor {
    cache: Rc<RefCell<FrameCache>>,
    /// (frame, segment) pairs, sorted by element start.
    segments: Vec<(u64, SegmentRef)>,
    dtype: Dtype,
    shape: Vec<usize>,
    part: Part,
    /// Segments tile the whole tensor: values go to their element positions.
    whole: bool,
}

fn elem_bytes(dtype: Dtype) -> usize {
    dtype.bitsize() / 8
}

fn put(dtype: Dtype, value: f32, out: &mut [u8]) {
    match dtype {
        Dtype::F16 => out.copy_from_slice(&f16::from_f32(value).to_le_bytes()),
        Dtype::BF16 => out.copy_from_slice(&bf16::from_f32(value).to_le_bytes()),
        _ => out.copy_from_slice(&value.to_le_bytes()),
    }
}

impl LazyTensor {
    fn produce(&self) -> Result<Vec<u8>> {
        let n: usize = self.shape.iter().product();
        let eb = elem_bytes(self.dtype);
        let mut out = vec![0u8; n * eb];
        let mut at = 0usize;
        for (frame, seg) in &self.segments {
            match self.part {
                Part::Indices => {
                    for k in 0..seg.len {
                        out[at * 8..at * 8 + 8]
                            .copy_from_slice(&((seg.start + k) as i64).to_le_bytes());
                        at += 1;
                    }
                }
                Part::Values => {
                    let values = self.cache.borrow_mut().frame(*frame)?;
                    let from = seg.curve_start as usize;
                    let slice = values.get(from..from + seg.len as usize).ok_or_else(|| {
                        Error::reel(
                            &self.cache.borrow().path,
                            format!("frame {frame}: segment outside the frame"),
                        )
                    })?;
                    // Whole tensors are written at their element positions; samples in order.
                    let base = if self.whole { seg.start as usize } else { at };
                    for (k, v) in slice.iter().enumerate() {
                        put(
                            self.dtype,
                            *v,
                            &mut out[(base + k) * eb..(base + k + 1) * eb],
                        );
                    }
                    at += seg.len as usize;
                }
            }
        }
        Ok(out)
    }
}

impl View for LazyTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        match self.produce() {
            Ok(bytes) => Cow::Owned(bytes),
            Err(e) => {
                // The writer cannot take an error: remember it, write zeros, and fail afterwards.
                let mut cache = self.cache.borrow_mut();
                if cache.error.is_none() {
                    cache.error = Some(e);
                }
                Cow::Owned(vec![0u8; self.data_len()])
            }
        }
    }

    fn data_len(&self) -> usize {
        self.shape.iter().product::<usize>() * elem_bytes(self.dtype)
    }
}

fn parse_dtype(text: &str) -> Option<Dtype> {
    serde_json::from_value(serde_json::Value::String(text.to_string())).ok()
}

/// Decode `reel` into the safetensors file `out` (written to a temporary name and renamed).
pub fn decode_reel(reel: &Path, out: &Path) -> Result<DecodeSummary> {
    decode_reel_matching(reel, out, None)
}

/// Like [`decode_reel`], but only tensors whose name matches `include`; frames holding none of
/// them are never decoded.
pub fn decode_reel_matching(
    reel: &Path,
    out: &Path,
    include: Option<&regex_lite::Regex>,
) -> Result<DecodeSummary> {
    let reader = ReelReader::open(reel)?;
    let manifest = Manifest::parse(reel, reader.metadata_json())?;
    if manifest.frames.len() as u64 != reader.frame_count() {
        return Err(Error::reel(
            reel,
            format!(
                "metadata lists {} frames but the video holds {}",
                manifest.frames.len(),
                reader.frame_count()
            ),
        ));
    }
    for (i, f) in manifest.frames.iter().enumerate() {
        let spec = reader.spec();
        if f.index != i as u64
            || f.meta.layout.width > spec.width
            || f.meta.layout.height > spec.height
        {
            return Err(Error::reel(
                reel,
                format!("frame {i}: metadata disagrees with the video (index or size)"),
            ));
        }
    }
    let mut by_tensor: HashMap<u32, Vec<(u64, SegmentRef)>> = HashMap::new();
    for f in &manifest.frames {
        for s in &f.segments {
            by_tensor.entry(s.tensor).or_default().push((f.index, *s));
        }
    }
    let tensors = manifest.tensors.clone();
    let cache = Rc::new(RefCell::new(FrameCache {
        path: reel.to_path_buf(),
        reader,
        manifest,
        cached: VecDeque::new(),
        decodes: 0,
        error: None,
    }));
    let mut views: BTreeMap<String, LazyTensor> = BTreeMap::new();
    let (mut whole, mut sampled, mut values) = (0u64, 0u64, 0u64);
    for (i, t) in tensors.iter().enumerate() {
        if include.is_some_and(|re| !re.is_match(&t.name)) {
            continue;
        }
        let mut segments = by_tensor.remove(&(i as u32)).unwrap_or_default();
        segments.sort_by_key(|(_, s)| s.start);
        let count: u64 = segments.iter().map(|(_, s)| s.len).sum();
        if count == 0 {
            continue;
        }
        let src = parse_dtype(&t.dtype).unwrap_or(Dtype::F32);
        let dtype = match src {
            Dtype::F32 | Dtype::F16 | Dtype::BF16 => src,
            _ => Dtype::F32,
        };
        let tiles = {
            let mut next = 0;
            segments.iter().all(|(_, s)| {
                let ok = s.start == next;
                next += s.len;
                ok
            }) && next == t.numel()
        };
        values += count;
        let view = |segments, dtype, shape, part, whole| LazyTensor {
            cache: cache.clone(),
            segments,
            dtype,
            shape,
            part,
            whole,
        };
        if tiles {
            whole += 1;
            views.insert(
                t.name.clone(),
                view(segments, dtype, t.shape.clone(), Part::Values, true),
            );
        } else {
            sampled += 1;
            let shape = vec![count as usize];
            views.insert(
                format!("{}.sample_indices", t.name),
                view(
                    segments.clone(),
                    Dtype::I64,
                    shape.clone(),
                    Part::Indices,
                    false,
                ),
            );
            views.insert(
                t.name.clone(),
                view(segments, dtype, shape, Part::Values, false),
            );
        }
    }
    if views.is_empty() {
        return Err(Error::reel(reel, "no tensor of the reel matches --include"));
    }
    let mut info = HashMap::new();
    {
        let c = cache.borrow();
        info.insert("weightreel_model".to_string(), c.manifest.model.clone());
        info.insert(
            "weightreel_mode".to_string(),
            c.manifest.settings.mode.clone(),
        );
        info.insert("weightreel_reel".to_string(), reel.display().to_string());
    }
    let result = safetensors::serialize_to_file(views, Some(info), out);
    let mut c = cache.borrow_mut();
    if let Some(e) = c.error.take() {
        let _ = std::fs::remove_file(out);
        return Err(e);
    }
    result.map_err(|e| Error::io(out, std::io::Error::other(e.to_string())))?;
    Ok(DecodeSummary {
        out: out.to_path_buf(),
        tensors: whole + sampled,
        whole,
        sampled,
        values,
        frames_read: c.decodes,
    })
}
