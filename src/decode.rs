//! Decoding a reel back to a `.safetensors` file.
//!
//! Tensors encoded whole come back whole, in their original dtype (F32, F16, BF16; in lossless
//! reels also I8, U8, I16 and U16; other dtypes as F32). Empty tensors (a 0 in the shape) come
//! back empty, in their dtype. Buffers the reel keeps verbatim (`position_ids`) come back as
//! their bytes. The metadata says `format: pt`, as transformers requires. Sampled tensors come back as a 1-D tensor of the sampled values under the tensor's
//! name plus `NAME.sample_indices` (I64), the row-major positions of those values. Lossless
//! reels give back the exact bits; u16 reels are within `(max − min) / 131070` of the source
//! (`/ 131064` in segments holding NaN or ±inf, which come back as NaN and ±inf).
//!
//! One pass over the reel, frame by frame: the output's header is laid out first from the
//! reel's tensor table (names, dtypes, shapes, values held), then each frame's values are
//! written at their place in the file as the frame is decoded. Memory is one frame, whatever
//! the model's or the tensors' size. Frames holding no wanted tensor are not decoded.
//!
//! The output is written to a temporary file beside `out` and renamed over it only when
//! complete, so a failed decode leaves an existing `out` as it was.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use safetensors::Dtype;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::frames;
use crate::reel::{Manifest, ReelFrame, ReelReader, TileRecord};
use crate::source::convert;

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
    /// Buffers written from the bytes the reel keeps verbatim (`position_ids`…).
    pub verbatim: u64,
    /// The model's `config.json` written beside the weights (`--model-dir`), when the reel
    /// holds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<PathBuf>,
    /// Values written.
    pub values: u64,
    /// Frame decodes performed.
    pub frames_read: u64,
    /// An existing file at `out` was replaced (only once the new one was complete).
    pub replaced: bool,
}

/// Where one output tensor's bytes go.
struct Output {
    dtype: Dtype,
    shape: Vec<usize>,
    /// Absolute offset of its data in the output file.
    offset: u64,
    /// Values written so far (for samples: the next position to write).
    written: u64,
    /// Values it must receive.
    expected: u64,
    /// Values go to their element positions (a whole tensor), else in arrival order.
    whole: bool,
    /// A sampled tensor's `NAME.sample_indices` output, by index into the outputs.
    indices: Option<usize>,
    /// For samples: the end of the last element written, to check arrival order.
    last_end: u64,
}

fn elem_bytes(dtype: Dtype) -> u64 {
    (dtype.bitsize() / 8) as u64
}

fn put(dtype: Dtype, value: f32, out: &mut Vec<u8>) {
    match dtype {
        // The exact pattern when there is one (lossless values, NaN payloads included), else
        // the nearest (lossy values).
        Dtype::F16 => {
            let bits = convert::f16_bits(value).unwrap_or_else(|| f16::from_f32(value).to_bits());
            out.extend_from_slice(&bits.to_le_bytes());
        }
        Dtype::BF16 => {
            let bits = convert::bf16_bits(value).unwrap_or_else(|| bf16::from_f32(value).to_bits());
            out.extend_from_slice(&bits.to_le_bytes());
        }
        // Lossless integer tensors: their values are integers of the dtype, exact in f32.
        Dtype::I8 => out.extend_from_slice(&(value as i8).to_le_bytes()),
        Dtype::U8 => out.extend_from_slice(&(value as u8).to_le_bytes()),
        Dtype::I16 => out.extend_from_slice(&(value as i16).to_le_bytes()),
        Dtype::U16 => out.extend_from_slice(&(value as u16).to_le_bytes()),
        _ => out.extend_from_slice(&value.to_le_bytes()),
    }
}

fn parse_dtype(text: &str) -> Option<Dtype> {
    serde_json::from_value(serde_json::Value::String(text.to_string())).ok()
}

/// The output file's tensors, laid out in name order, and its header bytes.
struct Layout {
    /// Indexed like the manifest's tensor table (`None`: not written), then index outputs.
    outputs: Vec<Option<Output>>,
    header: Vec<u8>,
    /// Tensors written whole and as samples.
    whole: u64,
    sampled: u64,
    values: u64,
    /// Verbatim tensors: output index and index into the manifest's verbatim list.
    verbatim: Vec<(usize, usize)>,
}

/// Lay out the output: one tensor per wanted tensor of the reel (whole, in its dtype), or for
/// a sampled one its values plus `NAME.sample_indices`; the safetensors header describing
/// them (JSON from serde, the length prefix, spaces to 8-byte alignment, as the format says).
fn layout(reel: &Path, manifest: &Manifest, include: Option<&regex_lite::Regex>) -> Result<Layout> {
    let n = manifest.tensors.len();
    let mut outputs: Vec<Option<Output>> = (0..n).map(|_| None).collect();
    // name -> output index, in name order (the order of the data in the file).
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    let (mut whole, mut sampled, mut values) = (0u64, 0u64, 0u64);
    let lossless = manifest.settings.mode == "lossless";
    for (i, t) in manifest.tensors.iter().enumerate() {
        // An empty tensor (a shape with a 0) holds no value and comes back empty.
        let empty = t.numel() == 0;
        if (t.selected == 0 && !empty) || include.is_some_and(|re| !re.is_match(&t.name)) {
            continue;
        }
        let src = parse_dtype(&t.dtype).unwrap_or(Dtype::F32);
        // Lossless gives every tensor back in its dtype (encode refuses the dtypes f32 does
        // not hold exactly); lossy values of integer tensors are not integers, so F32.
        let dtype = match src {
            _ if empty => src,
            Dtype::F32 | Dtype::F16 | Dtype::BF16 => src,
            Dtype::I8 | Dtype::U8 | Dtype::I16 | Dtype::U16 if lossless => src,
            _ => Dtype::F32,
        };
        values += t.selected;
        let is_whole = t.selected == t.numel();
        let shape = if is_whole {
            t.shape.clone()
        } else {
            vec![t.selected as usize]
        };
        let indices = (!is_whole).then(|| {
            outputs.push(Some(Output {
                dtype: Dtype::I64,
                shape: shape.clone(),
                offset: 0,
                written: 0,
                expected: t.selected,
                whole: false,
                indices: None,
                last_end: 0,
            }));
            names.insert(format!("{}.sample_indices", t.name), outputs.len() - 1);
            outputs.len() - 1
        });
        outputs[i] = Some(Output {
            dtype,
            shape,
            offset: 0,
            written: 0,
            expected: t.selected,
            whole: is_whole,
            indices,
            last_end: 0,
        });
        if names.insert(t.name.clone(), i).is_some() {
            return Err(Error::reel(
                reel,
                format!("tensor '{}' is listed twice", t.name),
            ));
        }
        if is_whole {
            whole += 1;
        } else {
            sampled += 1;
        }
    }
    let mut verbatim = Vec::new();
    for (k, v) in manifest.verbatim.iter().enumerate() {
        if include.is_some_and(|re| !re.is_match(&v.name)) {
            continue;
        }
        let dtype = parse_dtype(&v.dtype).ok_or_else(|| {
            Error::reel(
                reel,
                format!("verbatim tensor '{}': unknown dtype {}", v.name, v.dtype),
            )
        })?;
        let count = v.data.len() as u64 / elem_bytes(dtype).max(1);
        outputs.push(Some(Output {
            dtype,
            shape: v.shape.clone(),
            offset: 0,
            written: count,
            expected: count,
            whole: true,
            indices: None,
            last_end: 0,
        }));
        if names.insert(v.name.clone(), outputs.len() - 1).is_some() {
            return Err(Error::reel(
                reel,
                format!("tensor '{}' is listed twice", v.name),
            ));
        }
        verbatim.push((outputs.len() - 1, k));
    }
    if names.is_empty() {
        return Err(Error::reel(reel, "no tensor of the reel matches --include"));
    }
    let mut json = serde_json::Map::new();
    // `format: pt` is what transformers' loader requires of a safetensors file's metadata.
    json.insert(
        "__metadata__".into(),
        serde_json::json!({
            "format": "pt",
            "weightreel_model": manifest.model,
            "weightreel_mode": manifest.settings.mode,
            "weightreel_reel": reel.display().to_string(),
        }),
    );
    let mut at = 0u64;
    for &o in names.values() {
        let out = outputs[o].as_mut().expect("named outputs exist");
        let len = out
            .expected
            .checked_mul(elem_bytes(out.dtype))
            .ok_or_else(|| Error::reel(reel, "a tensor's size overflows"))?;
        out.offset = at;
        at = at
            .checked_add(len)
            .ok_or_else(|| Error::reel(reel, "the tensors' sizes overflow"))?;
    }
    for (name, &o) in &names {
        let out = outputs[o].as_ref().expect("named outputs exist");
        let len = out.expected * elem_bytes(out.dtype);
        json.insert(
            name.clone(),
            serde_json::json!({
                "dtype": out.dtype,
                "shape": out.shape,
                "data_offsets": [out.offset, out.offset + len],
            }),
        );
    }
    let mut header = serde_json::to_vec(&json).expect("header serializes");
    while !(8 + header.len()).is_multiple_of(8) {
        header.push(b' ');
    }
    let data_start = 8 + header.len() as u64;
    for out in outputs.iter_mut().flatten() {
        out.offset += data_start;
    }
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&header);
    Ok(Layout {
        outputs,
        header: bytes,
        whole,
        sampled,
        values,
        verbatim,
    })
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
    let existing = crate::output::check_file("--out", out)?;
    let same = |a: &Path, b: &Path| {
        a.canonicalize()
            .ok()
            .zip(b.canonicalize().ok())
            .is_some_and(|(a, b)| a == b)
    };
    if same(reel, out) {
        return Err(Error::invalid(
            "--out",
            out.display(),
            "a file other than the reel",
        ));
    }
    let mut reader = ReelReader::open(reel)?;
    let manifest = Manifest::parse(reel, reader.metadata_json())?;
    let v1 = reader.format_version() < 2;
    if v1 && manifest.frames.len() as u64 != reader.frame_count() {
        return Err(Error::reel(
            reel,
            format!(
                "metadata lists {} frames but the video holds {}",
                manifest.frames.len(),
                reader.frame_count()
            ),
        ));
    }
    let mut layout = layout(reel, &manifest, include)?;
    let tmp = temp_path(out);
    let file = create_for_user(&tmp)?;
    // With only some tensors wanted, frames that hold none of them are skipped unread where
    // the settings say where every frame starts (see `FrameSkip`); should a frame read say
    // otherwise, or a tensor come out short, everything is decoded again reading every frame.
    let skip = include.and_then(|_| FrameSkip::new(&manifest, &layout, reader.frame_count()));
    let mut result = write_frames(
        reel,
        &mut reader,
        &manifest,
        &mut layout,
        &file,
        &tmp,
        skip.as_ref(),
    );
    if skip.is_some() && result.is_err() {
        let mut again = ReelReader::open(reel)?;
        layout = self::layout(reel, &manifest, include)?;
        file.set_len(0).map_err(|e| Error::io(&tmp, e))?;
        (&file).rewind().map_err(|e| Error::io(&tmp, e))?;
        result = write_frames(reel, &mut again, &manifest, &mut layout, &file, &tmp, None);
    }
    let result = result.and_then(|frames_read| {
        file.sync_all().map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e))?;
        Ok(frames_read)
    });
    let frames_read = match result {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    Ok(DecodeSummary {
        out: out.to_path_buf(),
        tensors: layout.whole + layout.sampled + layout.verbatim.len() as u64,
        whole: layout.whole,
        sampled: layout.sampled,
        verbatim: layout.verbatim.len() as u64,
        config: None,
        values: layout.values,
        frames_read,
        replaced: existing == crate::output::Existing::File,
    })
}

/// Decode `reel` into the directory `dir` as a model transformers loads: `model.safetensors`
/// and, when the reel holds it, the `config.json` the model was encoded with. `dir` is
/// created if missing; each file is written to a temporary name and renamed.
pub fn decode_model_dir(
    reel: &Path,
    dir: &Path,
    include: Option<&regex_lite::Regex>,
) -> Result<DecodeSummary> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::invalid(
            "--model-dir",
            dir.display(),
            "a directory (this is a file)",
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut summary = decode_reel_matching(reel, &dir.join("model.safetensors"), include)?;
    let reader = ReelReader::open(reel)?;
    let manifest = Manifest::parse(reel, reader.metadata_json())?;
    if let Some(config) = &manifest.config_json {
        let path = dir.join("config.json");
        let tmp = temp_path(&path);
        let written = create_for_user(&tmp).and_then(|mut f| {
            f.write_all(config.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| Error::io(&tmp, e))
        });
        if let Err(e) =
            written.and_then(|()| std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e)))
        {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        summary.config = Some(path);
    }
    Ok(summary)
}

/// Create `path` for writing with the permissions a new file of the user gets (0666 less
/// the umask), as `cp` or Python would: the decoded model is the user's file, not a secret.
fn create_for_user(path: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o666)
        .open(path)
        .map_err(|e| Error::io(path, e))
}

/// `out` with `.weightreel-tmp` added, in the same directory (so the rename is atomic).
fn temp_path(out: &Path) -> PathBuf {
    let mut name = out
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".{}.weightreel-tmp", std::process::id()));
    out.with_file_name(name)
}

/// Write the header, then every wanted value, frame by frame; returns the frames decoded.
fn write_frames(
    reel: &Path,
    reader: &mut ReelReader,
    manifest: &Manifest,
    layout: &mut Layout,
    file: &File,
    tmp: &Path,
    skip: Option<&FrameSkip>,
) -> Result<u64> {
    let io = |e| Error::io(tmp, e);
    (&*file).write_all(&layout.header).map_err(io)?;
    for &(o, k) in &layout.verbatim {
        let out = layout.outputs[o].as_ref().expect("verbatim outputs exist");
        file.write_all_at(&manifest.verbatim[k].data, out.offset)
            .map_err(io)?;
    }
    let mut decoded = 0u64;
    let mut buf = Vec::new();
    for index in 0..reader.frame_count() {
        if skip.is_some_and(|s| !s.wanted(index)) {
            continue;
        }
        if manifest.frames.is_empty() && reader.is_tiled(index)? {
            decoded += u64::from(write_tiled_frame(
                reel, reader, manifest, layout, file, tmp, index,
            )?);
            continue;
        }
        let frame = if manifest.frames.is_empty() {
            let bytes = reader.frame_record(index)?;
            ReelFrame::parse_record(reel, manifest, index, &bytes)?
        } else {
            manifest.frames[index as usize].clone()
        };
        if let Some(s) = skip {
            s.check(reel, index, frame.first_value)?;
        }
        let wanted = |t: u32| layout.outputs.get(t as usize).is_some_and(Option::is_some);
        if !frame.segments.iter().any(|s| wanted(s.tensor)) {
            continue;
        }
        let size = (frame.meta.layout.width, frame.meta.layout.height);
        if reader.frame_size(index) != Some(size) {
            return Err(Error::reel(
                reel,
                format!("frame {index}: metadata disagrees with the video (size)"),
            ));
        }
        let planes = reader.read_frame(index, size.0, size.1)?;
        let planes: Vec<Vec<u16>> = planes
            .into_iter()
            .take(frame.meta.planes as usize)
            .collect();
        if crate::reel::planes_crc32(&planes) != frame.checksum {
            return Err(Error::reel(
                reel,
                format!("frame {index}: pixels do not match the checksum in the metadata"),
            ));
        }
        let values = frames::decode_frame(&frame.meta, &planes)?;
        decoded += 1;
        for seg in &frame.segments {
            let from = seg.curve_start as usize;
            let slice = values.get(from..from + seg.len as usize).ok_or_else(|| {
                Error::reel(reel, format!("frame {index}: segment outside the frame"))
            })?;
            let run = Run {
                frame: index,
                tensor: seg.tensor,
                start: seg.start,
                values: slice,
            };
            write_run(reel, layout, &run, file, tmp, &mut buf)?;
        }
    }
    if let Some(short) = layout
        .outputs
        .iter()
        .flatten()
        .find(|o| o.written != o.expected)
    {
        return Err(Error::reel(
            reel,
            format!(
                "frames hold {} of a tensor's {} values (corrupt metadata)",
                short.written, short.expected
            ),
        ));
    }
    Ok(decoded)
}

/// Which frames hold a wanted tensor, from where the encode's settings cut the frames
/// (`FrameCuts` of the chunk size, or of the frame cap in batch mode) and the tensors'
/// places in the value stream; read frames are checked against it.
struct FrameSkip {
    /// First value of every frame, and one past the last.
    starts: Vec<u64>,
    /// Stream ranges of the wanted tensors, in order.
    wanted: Vec<std::ops::Range<u64>>,
}

impl FrameSkip {
    /// `None` when the settings' cuts do not give `frames` frames (a reel of other cuts).
    fn new(manifest: &Manifest, layout: &Layout, frames: u64) -> Option<FrameSkip> {
        let s = &manifest.settings;
        let total = manifest.total_values;
        let cuts = match s.method.as_str() {
            "chunk" => frames::FrameCuts::new(total, s.chunk_size, false),
            "batch" => frames::FrameCuts::new(total, s.max_frame_values, true),
            _ => return None,
        };
        let mut starts = vec![0u64];
        let mut at = 0u64;
        while at < total {
            let len = cuts.len_at(at);
            if len == 0 || starts.len() as u64 > frames {
                return None;
            }
            at += len;
            starts.push(at);
        }
        if starts.len() as u64 != frames + 1 {
            return None;
        }
        let mut wanted = Vec::new();
        let mut first = 0u64;
        for (i, t) in manifest.tensors.iter().enumerate() {
            if layout.outputs.get(i).is_some_and(Option::is_some) && t.selected > 0 {
                wanted.push(first..first + t.selected);
            }
            first = first.checked_add(t.selected)?;
        }
        (first == total).then_some(FrameSkip { starts, wanted })
    }

    /// Whether frame `index` holds values of a wanted tensor.
    fn wanted(&self, index: u64) -> bool {
        let i = index as usize;
        let (Some(&from), Some(&to)) = (self.starts.get(i), self.starts.get(i + 1)) else {
            return true;
        };
        self.wanted.iter().any(|r| r.start < to && from < r.end)
    }

    /// A frame read must start where the cuts say.
    fn check(&self, reel: &Path, index: u64, first_value: u64) -> Result<()> {
        match self.starts.get(index as usize) {
            Some(&s) if s == first_value => Ok(()),
            _ => Err(Error::reel(
                reel,
                format!(
                    "frame {index} starts at value {first_value}, not where the settings cut it"
                ),
            )),
        }
    }
}

/// Values of one tensor decoded from a frame, to be written at their place.
struct Run<'a> {
    frame: u64,
    tensor: u32,
    /// Element of the tensor of the first value.
    start: u64,
    values: &'a [f32],
}

/// Write `run` into its tensor's output (and a sampled tensor's indices); nothing for a
/// tensor that is not written.
fn write_run(
    reel: &Path,
    layout: &mut Layout,
    run: &Run,
    file: &File,
    tmp: &Path,
    buf: &mut Vec<u8>,
) -> Result<()> {
    let io = |e| Error::io(tmp, e);
    let index = run.frame;
    let len = run.values.len() as u64;
    let Some(Some(out)) = layout.outputs.get_mut(run.tensor as usize) else {
        return Ok(());
    };
    let eb = elem_bytes(out.dtype);
    let at = if out.whole {
        run.start
    } else {
        if run.start < out.last_end {
            return Err(Error::reel(
                reel,
                format!("frame {index}: sampled values arrive out of order"),
            ));
        }
        out.last_end = run.start + len;
        out.written
    };
    if at + len > out.expected {
        return Err(Error::reel(
            reel,
            format!("frame {index}: a segment runs past its tensor"),
        ));
    }
    buf.clear();
    for &v in run.values {
        put(out.dtype, v, buf);
    }
    file.write_all_at(buf, out.offset + at * eb).map_err(io)?;
    out.written += len;
    if let Some(ix) = out.indices {
        let idx_out = layout.outputs[ix].as_mut().expect("index output exists");
        buf.clear();
        for k in 0..len {
            buf.extend_from_slice(&((run.start + k) as i64).to_le_bytes());
        }
        file.write_all_at(buf, idx_out.offset + at * 8)
            .map_err(io)?;
        idx_out.written += len;
    }
    Ok(())
}

/// Decode the tiled frame `index` tile by tile (one tile's planes and values at a time) and
/// write its values; tiles holding no wanted tensor are not decoded. Returns whether any
/// tile was decoded.
fn write_tiled_frame(
    reel: &Path,
    reader: &mut ReelReader,
    manifest: &Manifest,
    layout: &mut Layout,
    file: &File,
    tmp: &Path,
    index: u64,
) -> Result<bool> {
    let wanted_tensors: Vec<bool> = layout.outputs.iter().map(Option::is_some).collect();
    // A record that does not parse is decoded, so that its error is reported.
    let wanted = |bytes: &[u8]| {
        serde_json::from_slice::<TileRecord>(bytes).map_or(true, |r| {
            r.pieces
                .iter()
                .any(|p| wanted_tensors.get(p.tensor as usize) == Some(&true))
        })
    };
    let mut buf = Vec::new();
    let mut decoded = false;
    for_each_tile(
        reel,
        reader,
        manifest,
        index,
        wanted,
        |record, base, values| {
            decoded = true;
            for p in &record.pieces {
                let from = (p.quant.curve_start - base) as usize;
                let run = Run {
                    frame: index,
                    tensor: p.tensor,
                    start: p.start,
                    values: &values[from..from + p.quant.len as usize],
                };
                write_run(reel, layout, &run, file, tmp, &mut buf)?;
            }
            Ok(())
        },
    )?;
    Ok(decoded)
}

/// Read the tiled frame `index` tile by tile: each wanted tile's record is checked and its
/// values decoded and given to `each` with the curve position of the tile's first value;
/// then the frame's summary (its last tile's record) is checked against the tiles and
/// returned. One tile's planes and values are held at a time.
fn for_each_tile(
    reel: &Path,
    reader: &mut ReelReader,
    manifest: &Manifest,
    index: u64,
    wanted: impl FnMut(&[u8]) -> bool,
    mut each: impl FnMut(&TileRecord, u64, &[f32]) -> Result<()>,
) -> Result<ReelFrame> {
    let (width, height) = reader
        .frame_size(index)
        .ok_or_else(|| Error::reel(reel, format!("frame {index} is not in the reel")))?;
    let frame_layout = frames::FrameLayout { width, height };
    let mode = frames::PixelMode::parse(&manifest.settings.mode)
        .map_err(|e| Error::reel(reel, format!("the manifest's mode: {e}")))?;
    let mut values = Vec::new();
    let mut pieces = Vec::new();
    let frame = reader.read_tiles(index, wanted, |tile| {
        let record = TileRecord::parse(reel, manifest, index, tile.index, tile.record)?;
        pieces.clear();
        pieces.extend(record.pieces.iter().map(|p| p.quant));
        let planes: Vec<&[u16]> = tile.planes.iter().map(Vec::as_slice).collect();
        frames::decode_tile(
            &frame_layout,
            tile.index,
            mode,
            frames::SampleOrder::Rotated,
            &planes,
            &pieces,
            &mut values,
        )
        .map_err(|e| Error::reel(reel, format!("frame {index} (tile {}): {e}", tile.index)))?;
        each(
            &record,
            u64::from(tile.index) * frames::TILE_VALUES,
            &values,
        )
    })?;
    let summary = ReelFrame::parse_record(reel, manifest, index, &frame.record)?;
    if summary.checksum != frame.crc32
        || summary.meta.layout != frame_layout
        || summary.meta.mode != mode
    {
        return Err(Error::reel(
            reel,
            format!("frame {index}: its record disagrees with its tiles (corrupt metadata)"),
        ));
    }
    Ok(summary)
}

/// Read every value of `reel`, frame by frame (a tiled frame tile by tile), giving `each` the
/// manifest's tensor index and a run of that tensor's values in stream order. Memory is one
/// frame that fits a tile, or one tile. Returns the manifest.
pub fn scan_values(reel: &Path, mut each: impl FnMut(u32, &[f32])) -> Result<Manifest> {
    let mut reader = ReelReader::open(reel)?;
    let manifest = Manifest::parse(reel, reader.metadata_json())?;
    for index in 0..reader.frame_count() {
        if manifest.frames.is_empty() && reader.is_tiled(index)? {
            for_each_tile(
                reel,
                &mut reader,
                &manifest,
                index,
                |_| true,
                |record, base, values| {
                    for p in &record.pieces {
                        let from = (p.quant.curve_start - base) as usize;
                        let run =
                            values
                                .get(from..from + p.quant.len as usize)
                                .ok_or_else(|| {
                                    Error::reel(
                                        reel,
                                        format!("frame {index}: piece outside its tile"),
                                    )
                                })?;
                        each(p.tensor, run);
                    }
                    Ok(())
                },
            )?;
            continue;
        }
        let (frame, values) = frame_values(reel, &mut reader, &manifest, index)?;
        for seg in &frame.segments {
            let from = seg.curve_start as usize;
            let run = values.get(from..from + seg.len as usize).ok_or_else(|| {
                Error::reel(reel, format!("frame {index}: segment outside the frame"))
            })?;
            each(seg.tensor, run);
        }
    }
    Ok(manifest)
}

/// Frame `index` of a reel whole: its record and its values in curve order (`count` of them),
/// from a tiled frame's tiles or an untiled frame's planes. For viewers (`serve`), which show
/// one frame: memory is the frame's values, at most the frame cap.
pub fn frame_values(
    reel: &Path,
    reader: &mut ReelReader,
    manifest: &Manifest,
    index: u64,
) -> Result<(ReelFrame, Vec<f32>)> {
    if !manifest.frames.is_empty() || !reader.is_tiled(index)? {
        let frame = if manifest.frames.is_empty() {
            let bytes = reader.frame_record(index)?;
            ReelFrame::parse_record(reel, manifest, index, &bytes)?
        } else {
            manifest
                .frames
                .get(index as usize)
                .cloned()
                .ok_or_else(|| Error::reel(reel, format!("frame {index} does not exist")))?
        };
        let size = (frame.meta.layout.width, frame.meta.layout.height);
        let planes: Vec<Vec<u16>> = reader
            .read_frame(index, size.0, size.1)?
            .into_iter()
            .take(frame.meta.planes as usize)
            .collect();
        let values = frames::decode_frame(&frame.meta, &planes)?;
        return Ok((frame, values));
    }
    let mut all = Vec::new();
    let summary = for_each_tile(
        reel,
        reader,
        manifest,
        index,
        |_| true,
        |_, base, values| {
            // Padding tiles decode to nothing; value tiles continue the curve.
            if !values.is_empty() {
                all.resize(base as usize, 0.0);
                all.extend_from_slice(values);
            }
            Ok(())
        },
    )?;
    all.truncate(summary.meta.count as usize);
    if all.len() as u64 != summary.meta.count {
        return Err(Error::reel(
            reel,
            format!(
                "frame {index}: its tiles hold {} of its {} values",
                all.len(),
                summary.meta.count
            ),
        ));
    }
    Ok((summary, all))
}

/// Frame `index`'s record (its segments, layout and statistics) without decoding any picture:
/// a tiled frame's tile records are read and skipped.
pub fn frame_record(
    reel: &Path,
    reader: &mut ReelReader,
    manifest: &Manifest,
    index: u64,
) -> Result<ReelFrame> {
    if let Some(frame) = manifest.frames.get(index as usize) {
        return Ok(frame.clone());
    }
    if reader.is_tiled(index)? {
        let frame = reader.read_tiles(index, |_| false, |_| Ok(()))?;
        return ReelFrame::parse_record(reel, manifest, index, &frame.record);
    }
    let bytes = reader.frame_record(index)?;
    ReelFrame::parse_record(reel, manifest, index, &bytes)
}

/// Frame `index`'s values in runs along the curve: `each(curve position of the first value,
/// values)`. A tiled frame gives one run per decoded tile, and only tiles for which
/// `wanted_tile(tile number)` holds are decoded (one tile held at a time); an untiled frame
/// gives all its values as one run. Returns the frame's record.
pub fn for_each_run(
    reel: &Path,
    reader: &mut ReelReader,
    manifest: &Manifest,
    index: u64,
    mut wanted_tile: impl FnMut(u32) -> bool,
    mut each: impl FnMut(u64, &[f32]) -> Result<()>,
) -> Result<ReelFrame> {
    if !manifest.frames.is_empty() || !reader.is_tiled(index)? {
        let (frame, values) = frame_values(reel, reader, manifest, index)?;
        each(0, &values)?;
        return Ok(frame);
    }
    // A record that does not parse is decoded, so that its error is reported.
    let wanted = |bytes: &[u8]| {
        serde_json::from_slice::<TileRecord>(bytes).map_or(true, |r| wanted_tile(r.tile))
    };
    for_each_tile(reel, reader, manifest, index, wanted, |_, base, values| {
        if values.is_empty() {
            Ok(())
        } else {
            each(base, values)
        }
    })
}
