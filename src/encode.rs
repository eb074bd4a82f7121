//! Encoding a model into the store: source → selection → frames → reel → registry.
//!
//! The selected values are cut into frames of `chunk_size` values (`--chunk-encoding`) or of the
//! frame cap (batch mode, one frame unless the selection is larger than the cap). Frames are
//! written into *parts*: small complete reels in the store's work directory, each fsynced and
//! renamed when a checkpoint closes it. A crash or Ctrl-C therefore loses at most the frames
//! since the last checkpoint, and re-running the same command resumes after the last complete
//! part without re-reading the values it holds. When every value is encoded, the parts' packets
//! are copied (not re-encoded) into the final reel, and the registry entry with all its frame
//! rows is committed in one transaction.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::frames::{
    self, FrameLayout, FrameMeta, FrameOptions, PixelMode, SegmentSpec, SourceDtype,
};
use crate::progress::{Progress, ProgressMode};
use crate::reel::{self, ReelSpec, ReelWriter, SampleDepth, SampleKind};
use crate::roles::Role;
use crate::selection::Selection;
use crate::source::{Model, TensorInfo};
use crate::store::{EntryRecord, FrameRecord, Settings, Store, Totals};
use crate::stream::{stream, Sink, StreamOptions};

/// Name of the metadata format carried inside every reel.
pub const MANIFEST_FORMAT: &str = "weightreel-reel";
/// Version of that format; readers refuse newer ones.
pub const MANIFEST_VERSION: u32 = 1;

/// Frames per part at most (see [`FrameSink::flush_frame`]).
const MAX_PART_FRAMES: u64 = 256;
/// Values per part at most.
const MAX_PART_VALUES: u64 = 1 << 22;

/// Default values per chunk (the guide's recommended 8,000–12,000 range, rounded to a frame).
pub const DEFAULT_CHUNK_SIZE: u64 = 8192;

/// A tensor as the reel records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReelTensor {
    /// Name as stored in the model.
    pub name: String,
    /// Stored dtype (`F32`, `F16`, `BF16`, …).
    pub dtype: String,
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
    /// The settings.
    pub settings: Settings,
    /// Values in the whole selection.
    pub total_values: u64,
    /// Tensors the selection took, in stream order.
    pub tensors: Vec<ReelTensor>,
    /// Frames in this file, in order.
    pub frames: Vec<ReelFrame>,
    /// Seconds spent encoding the frames of this file (parts) or the whole encode (final reel).
    pub encoding_secs: f64,
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
        Ok(manifest)
    }

    /// Check that frames and segments agree with each other and with the tensor table.
    pub fn check(&self, file: &Path) -> Result<()> {
        for frame in &self.frames {
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
        }
        Ok(())
    }
}

/// How to encode.
#[derive(Debug, Clone)]
pub struct EncodeOptions {
    /// What to take.
    pub selection: Selection,
    /// `--include` as typed (recorded in the settings).
    pub include: Option<String>,
    /// `--exclude` as typed.
    pub exclude: Option<String>,
    /// Values per chunk.
    pub chunk_size: u64,
    /// One frame per chunk (`--chunk-encoding`), else batch.
    pub chunk_encoding: bool,
    /// Pixel mode, frame cap, minimum efficiency, pyramid depth.
    pub frame: FrameOptions,
    /// Also write an H.264 preview here.
    pub preview: Option<PathBuf>,
    /// How to show progress.
    pub progress: ProgressMode,
    /// Close a part (a durable checkpoint) at least this often.
    pub checkpoint_every: Duration,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            selection: Selection::default(),
            include: None,
            exclude: None,
            chunk_size: DEFAULT_CHUNK_SIZE,
            chunk_encoding: false,
            frame: FrameOptions::default(),
            preview: None,
            progress: ProgressMode::Quiet,
            checkpoint_every: Duration::from_secs(2),
        }
    }
}

/// Largest accepted `--chunk-size`.
pub const MAX_CHUNK_SIZE: u64 = frames::DEFAULT_MAX_FRAME_VALUES;

impl EncodeOptions {
    /// Validate, rav1e style: every message states the valid range.
    pub fn validate(&self) -> Result<()> {
        // In batch mode the chunk size only counts chunks; only a chunk-mode frame must fit
        // the frame cap.
        let cap = if self.chunk_encoding {
            self.frame.max_values
        } else {
            u64::MAX
        };
        if self.chunk_size == 0 || self.chunk_size > cap {
            return Err(Error::invalid(
                "--chunk-size",
                self.chunk_size,
                format!("1..={cap}"),
            ));
        }
        if !(0.0..=1.0).contains(&self.frame.min_efficiency) {
            return Err(Error::invalid(
                "--min-efficiency",
                self.frame.min_efficiency,
                "0.0..=1.0",
            ));
        }
        if self.selection.max_params == Some(0) {
            return Err(Error::invalid("--max-params", 0, "a whole number >= 1"));
        }
        Ok(())
    }

    /// The settings these options record, for `model`'s revision.
    pub fn settings(&self, revision: &str) -> Settings {
        Settings {
            revision: revision.to_string(),
            chunk_size: self.chunk_size,
            layers: self.selection.roles_label(),
            include: self.include.clone(),
            exclude: self.exclude.clone(),
            max_params: self.selection.max_params,
            sample: self.selection.sample.as_str().to_string(),
            mode: self.frame.mode.as_str().to_string(),
            method: if self.chunk_encoding {
                "chunk"
            } else {
                "batch"
            }
            .to_string(),
            max_frame_values: self.frame.max_values,
            min_efficiency: self.frame.min_efficiency,
            pyramid_finest: self.frame.pyramid_finest,
        }
    }

    /// Values per frame.
    fn frame_values(&self) -> u64 {
        if self.chunk_encoding {
            self.chunk_size
        } else {
            self.frame.max_values
        }
    }
}

/// How an encode ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum EncodeOutcome {
    /// Everything was encoded and committed.
    Completed {
        /// Registry id.
        id: i64,
        /// The committed entry.
        entry: Box<EntryRecord>,
        /// Absolute path of the reel.
        reel: PathBuf,
        /// An earlier entry with the same settings was replaced.
        replaced: bool,
        /// Values that came from an earlier interrupted run.
        resumed_values: u64,
        /// The selection needed more than one frame in batch mode.
        batch_frames: u64,
    },
    /// Stopped by Ctrl-C; complete frames were kept for a later resume.
    Interrupted {
        /// Frames kept.
        frames: u64,
        /// Values kept.
        values: u64,
        /// Values in the selection.
        total: u64,
        /// Where they are kept.
        work_dir: PathBuf,
    },
}

fn source_dtype(dtype: safetensors::Dtype) -> SourceDtype {
    match dtype {
        safetensors::Dtype::F32 => SourceDtype::F32,
        safetensors::Dtype::F16 => SourceDtype::F16,
        safetensors::Dtype::BF16 => SourceDtype::BF16,
        _ => SourceDtype::Other,
    }
}

/// File-system-safe version of a model name.
fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let s = s.trim_matches('.').to_string();
    if s.len() > 80 {
        s[s.len() - 80..].to_string()
    } else if s.is_empty() {
        "model".into()
    } else {
        s
    }
}

/// Peak resident set size of this process, from `/proc/self/status` (0 where unavailable).
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Civil-from-days (Howard Hinnant's algorithm), UTC.
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Encode `model` into `store`. `cancel` is set by a Ctrl-C handler.
pub fn encode(
    store: &mut Store,
    model: &Model,
    options: &EncodeOptions,
    cancel: &AtomicBool,
) -> Result<EncodeOutcome> {
    options.validate()?;
    let started = Instant::now();
    let plan = options.selection.plan(model);
    if plan.total == 0 {
        return Err(Error::model(
            &model.spec,
            format!(
                "the selection matches no parameters (layers: {})",
                options.selection.roles_label()
            ),
        ));
    }
    let frame_values = options.frame_values();
    let frame_count = plan.total.div_ceil(frame_values);
    // Check every frame size up front so a bad setting fails before any work.
    let full_len = frame_values.min(plan.total);
    let last_len = plan.total - (frame_count - 1) * frame_values;
    for len in [full_len, last_len] {
        let layout = FrameLayout::for_count(len, options.frame.max_values)?;
        frames::check_efficiency(len, &layout, options.frame.min_efficiency)?;
    }
    let stream_layout = FrameLayout::for_count(full_len, options.frame.max_values)?;

    // Local files have no revision; "-" keeps the settings key stable for them.
    let revision = model.origin.revision().unwrap_or("-").to_string();
    let settings = options.settings(&revision);
    let key = settings.key();
    let tensors: Vec<ReelTensor> = plan
        .items
        .iter()
        .map(|item| {
            let t = &model.tensors[item.tensor];
            ReelTensor {
                name: t.name.clone(),
                dtype: format!("{:?}", t.dtype),
                shape: t.shape.clone(),
                role: t.role,
                selected: item.len(),
            }
        })
        .collect();
    let template = Manifest {
        format: MANIFEST_FORMAT.into(),
        version: MANIFEST_VERSION,
        model: model.spec.clone(),
        commit: model.origin.commit().map(str::to_string),
        settings_key: key.clone(),
        settings: settings.clone(),
        total_values: plan.total,
        tensors,
        frames: Vec::new(),
        encoding_secs: 0.0,
    };

    let work = store
        .work_dir()
        .join(format!("{}-{key}", sanitize(&model.spec)));
    std::fs::create_dir_all(&work).map_err(|e| Error::io(&work, e))?;
    let lock_path = work.join("lock");
    let lock = File::create(&lock_path).map_err(|e| Error::io(&lock_path, e))?;
    if lock.try_lock().is_err() {
        return Err(Error::store(
            store.dir(),
            format!(
                "another weightreel is encoding '{}' with these settings into this store right now",
                model.spec
            ),
        ));
    }

    let parts = load_parts(&work, &template)?;
    let resumed_values: u64 = parts.iter().map(|p| p.values).sum();
    let resumed_frames: u64 = parts.iter().map(|p| p.frames).sum();
    let resumed_secs: f64 = parts.iter().map(|p| p.secs).sum();

    let spec = ReelSpec {
        width: stream_layout.width,
        height: stream_layout.height,
        // The reel's planes are those of its widest frame: the frames stage decides from the
        // source dtypes of everything selected.
        planes: options.frame.mode.planes_for(
            plan.items
                .iter()
                .map(|i| source_dtype(model.tensors[i.tensor].dtype))
                .collect::<Vec<_>>()
                .iter(),
        ),
        depth: if options.frame.mode == PixelMode::U8 {
            SampleDepth::Gray8
        } else {
            SampleDepth::Gray16
        },
        samples: if options.frame.mode == PixelMode::Lossless {
            SampleKind::FloatBits
        } else {
            SampleKind::Quantized
        },
    };
    let mut progress = Progress::new(options.progress, &model.spec, plan.total);
    let mut sink = FrameSink {
        model,
        options,
        template: &template,
        spec,
        work: &work,
        tensor_index: template
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i as u32))
            .collect(),
        frame_values,
        values: Vec::with_capacity(full_len as usize),
        segments: Vec::new(),
        next_frame: resumed_frames,
        next_value: resumed_values,
        part: None,
        part_index: parts.len() as u64,
        part_started: Instant::now(),
        progress: &mut progress,
        bytes_before: model.read_stats().bytes,
    };
    let summary = stream(
        model,
        &plan,
        &mut sink,
        StreamOptions {
            cancel: Some(cancel),
            skip_values: resumed_values,
        },
    )?;
    if summary.stopped {
        // Keep complete frames only; the partial frame is re-read on resume.
        sink.values.clear();
        sink.segments.clear();
        sink.close_part()?;
        let kept = load_parts(&work, &template)?;
        return Ok(EncodeOutcome::Interrupted {
            frames: kept.iter().map(|p| p.frames).sum(),
            values: kept.iter().map(|p| p.values).sum(),
            total: plan.total,
            work_dir: work,
        });
    }
    sink.flush_frame()?;
    sink.close_part()?;
    drop(sink);
    progress.finish();

    let parts = load_parts(&work, &template)?;
    let frames_total: u64 = parts.iter().map(|p| p.frames).sum();
    let values_total: u64 = parts.iter().map(|p| p.values).sum();
    if values_total != plan.total || frames_total != frame_count {
        return Err(Error::store(
            &work,
            format!("parts hold {values_total} values in {frames_total} frames, expected {} in {frame_count}", plan.total),
        ));
    }

    // The final reel: parts' packets copied, with the manifest of every frame (without the
    // pyramid and statistics, which the registry holds).
    // A new name for every encode (time and process id), so the reel of the entry this one
    // replaces stays intact until the registry has switched over.
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let reel_name = format!(
        "reels/{}-{key}-{millis}-{}.mkv",
        sanitize(&model.spec),
        std::process::id()
    );
    let reel_path = store.dir().join(&reel_name);
    let encoding_secs = resumed_secs + started.elapsed().as_secs_f64();
    let mut manifest = template.clone();
    manifest.encoding_secs = encoding_secs;
    for part in &parts {
        let m = part.manifest()?;
        manifest.frames.extend(m.frames.into_iter().map(slim_frame));
    }
    let manifest_json = serde_json::to_vec(&manifest).expect("manifest serializes");
    let part_paths: Vec<PathBuf> = parts.iter().map(|p| p.path.clone()).collect();
    let info = reel::concat(&part_paths, &reel_path, &manifest_json)?;
    drop(manifest);

    if let Some(preview) = &options.preview {
        reel::write_preview_h264(&reel_path, preview)?;
    }

    let read = model.read_stats();
    let encoding_secs = resumed_secs + started.elapsed().as_secs_f64();
    let entry = EntryRecord {
        name: model.spec.clone(),
        source_kind: model.origin.kind().into(),
        source: match &model.origin {
            crate::source::Origin::File { path } | crate::source::Origin::Directory { path } => {
                path.clone()
            }
            crate::source::Origin::Cache { path, .. } => path.clone(),
            crate::source::Origin::Hub { endpoint, repo, .. } => format!("{endpoint}/{repo}"),
        },
        revision: model.origin.revision().map(str::to_string),
        commit: model.origin.commit().map(str::to_string),
        format: model.format(),
        model_type: model.config.as_ref().and_then(|c| c.model_type.clone()),
        architectures: model
            .config
            .as_ref()
            .map(|c| c.architectures.clone())
            .unwrap_or_default(),
        settings,
        totals: Totals {
            params: plan.total,
            chunks: plan.total.div_ceil(options.chunk_size),
            frames: frames_total,
            bytes_read: read.bytes,
            read_requests: read.requests,
            encoding_secs,
            params_per_sec: plan.total as f64 / encoding_secs.max(1e-9),
            peak_rss_bytes: peak_rss_bytes(),
            reel_file: reel_name,
            reel_bytes: info.bytes,
        },
        created_at: now_rfc3339(),
    };
    let records = parts.iter().flat_map(|part| match part.manifest() {
        Ok(m) => m
            .frames
            .into_iter()
            .map(|f| Ok(frame_record(&f)))
            .collect::<Vec<_>>(),
        Err(e) => vec![Err(e)],
    });
    let (id, replaced) = match store.commit_entry(&entry, records) {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&reel_path);
            return Err(e);
        }
    };
    if let Some(old) = &replaced {
        let _ = std::fs::remove_file(store.dir().join(old));
    }
    drop(lock);
    let _ = std::fs::remove_dir_all(&work);
    Ok(EncodeOutcome::Completed {
        id,
        entry: Box::new(entry),
        reel: reel_path,
        replaced: replaced.is_some(),
        resumed_values,
        batch_frames: if options.chunk_encoding {
            0
        } else {
            frames_total
        },
    })
}

/// The reel manifest keeps what decoding needs; the pyramid and statistics live in the registry.
fn slim_frame(mut frame: ReelFrame) -> ReelFrame {
    frame.meta.pyramid = Default::default();
    frame.meta.stats = Default::default();
    frame
}

fn frame_record(frame: &ReelFrame) -> FrameRecord {
    let layout = frame.meta.layout;
    FrameRecord {
        index: frame.index,
        width: layout.width,
        height: layout.height,
        count: frame.meta.count,
        efficiency: frame.meta.count as f64 / (layout.width as f64 * layout.height as f64),
        checksum: frame.checksum,
        meta_json: serde_json::to_string(frame).expect("frame serializes"),
    }
}

/// A completed part on disk.
struct Part {
    path: PathBuf,
    frames: u64,
    values: u64,
    secs: f64,
}

impl Part {
    fn manifest(&self) -> Result<Manifest> {
        Manifest::parse(&self.path, &reel::read_metadata(&self.path)?)
    }
}

/// Read the complete parts of an earlier run, in order. Parts of another encode (other
/// settings or another commit of the model) are stale and removed.
fn load_parts(work: &Path, template: &Manifest) -> Result<Vec<Part>> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(work)
        .map_err(|e| Error::io(work, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "mkv")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("part-"))
        })
        .collect();
    names.sort();
    let mut parts = Vec::new();
    let mut expected_frame = 0u64;
    let mut expected_value = 0u64;
    for path in names {
        let usable = reel::read_metadata(&path)
            .and_then(|json| Manifest::parse(&path, &json))
            .ok()
            .filter(|m| {
                m.settings_key == template.settings_key
                    && m.commit == template.commit
                    && m.tensors == template.tensors
                    && m.frames.first().is_some_and(|f| {
                        f.index == expected_frame && f.first_value == expected_value
                    })
            });
        match usable {
            Some(m) => {
                let values: u64 = m.frames.iter().map(|f| f.meta.count).sum();
                expected_frame += m.frames.len() as u64;
                expected_value += values;
                parts.push(Part {
                    path,
                    frames: m.frames.len() as u64,
                    values,
                    secs: m.encoding_secs,
                });
            }
            None => {
                // Not part of this encode, or out of sequence: everything from here is redone.
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    Ok(parts)
}

/// Receives the stream, cuts frames, encodes them and writes parts.
struct FrameSink<'a> {
    model: &'a Model,
    options: &'a EncodeOptions,
    template: &'a Manifest,
    spec: ReelSpec,
    work: &'a Path,
    tensor_index: HashMap<String, u32>,
    frame_values: u64,
    values: Vec<f32>,
    segments: Vec<(SegmentRef, SourceDtype)>,
    next_frame: u64,
    next_value: u64,
    part: Option<(ReelWriter, Vec<ReelFrame>)>,
    part_index: u64,
    part_started: Instant,
    progress: &'a mut Progress,
    bytes_before: u64,
}

impl FrameSink<'_> {
    fn flush_frame(&mut self) -> Result<()> {
        if self.values.is_empty() {
            return Ok(());
        }
        let specs: Vec<SegmentSpec> = self
            .segments
            .iter()
            .map(|(s, dtype)| SegmentSpec {
                curve_start: s.curve_start,
                len: s.len,
                dtype: *dtype,
            })
            .collect();
        let frame = frames::encode_frame(&self.values, &specs, &self.options.frame)?;
        if self.part.is_none() {
            let path = self.work.join(format!("part-{:08}.mkv", self.part_index));
            self.part = Some((ReelWriter::create(&path, self.spec)?, Vec::new()));
            self.part_started = Instant::now();
        }
        let (writer, frames) = self.part.as_mut().expect("part is open");
        // A lossless frame holding only 16-bit sources has one plane; in a two-plane reel its
        // second plane carries zeros.
        let zeros;
        let mut planes: Vec<&[u16]> = frame.planes.iter().map(Vec::as_slice).collect();
        if (planes.len() as u32) < self.spec.planes {
            zeros = vec![0u16; frame.meta.layout.area() as usize];
            planes.resize(self.spec.planes as usize, &zeros);
        }
        writer.push_frame(frame.meta.layout.width, frame.meta.layout.height, &planes)?;
        let count = self.values.len() as u64;
        frames.push(ReelFrame {
            index: self.next_frame,
            first_value: self.next_value,
            checksum: reel::planes_crc32(&frame.planes),
            segments: self.segments.iter().map(|(s, _)| *s).collect(),
            meta: frame.meta,
        });
        self.next_frame += 1;
        self.next_value += count;
        self.values.clear();
        self.segments.clear();
        // A part's frame metadata (with pyramids) is held until the part closes, and parsed
        // whole when parts are joined: bounding the part bounds that memory too.
        let (frames_in_part, values_in_part) = self.part.as_ref().map_or((0, 0), |(_, f)| {
            (f.len() as u64, f.iter().map(|f| f.meta.count).sum::<u64>())
        });
        if self.part_started.elapsed() >= self.options.checkpoint_every
            || frames_in_part >= MAX_PART_FRAMES
            || values_in_part >= MAX_PART_VALUES
        {
            self.close_part()?;
        }
        Ok(())
    }

    /// Finish the open part: write it durably under its final name.
    fn close_part(&mut self) -> Result<()> {
        let Some((writer, frames)) = self.part.take() else {
            return Ok(());
        };
        if frames.is_empty() {
            return Ok(());
        }
        let mut manifest = self.template.clone();
        manifest.encoding_secs = self.part_started.elapsed().as_secs_f64();
        manifest.frames = frames;
        let json = serde_json::to_vec(&manifest).expect("manifest serializes");
        writer.finish(&json)?;
        self.part_index += 1;
        Ok(())
    }
}

impl Sink for FrameSink<'_> {
    fn values(&mut self, tensor: &TensorInfo, start: u64, values: &[f32]) -> Result<bool> {
        let index = *self.tensor_index.get(&tensor.name).ok_or_else(|| {
            Error::tensor(
                &self.model.spec,
                &tensor.name,
                "streamed but not in the plan",
            )
        })?;
        let dtype = source_dtype(tensor.dtype);
        let mut offset = 0usize;
        while offset < values.len() {
            let room = (self.frame_values as usize) - self.values.len();
            let take = room.min(values.len() - offset);
            let curve_start = self.values.len() as u64;
            let elem = start + offset as u64;
            match self.segments.last_mut() {
                Some((last, _)) if last.tensor == index && last.start + last.len == elem => {
                    last.len += take as u64
                }
                _ => self.segments.push((
                    SegmentRef {
                        tensor: index,
                        start: elem,
                        len: take as u64,
                        curve_start,
                    },
                    dtype,
                )),
            }
            self.values
                .extend_from_slice(&values[offset..offset + take]);
            offset += take;
            if self.values.len() as u64 == self.frame_values {
                self.flush_frame()?;
            }
        }
        let done = self.next_value + self.values.len() as u64;
        let bytes = self
            .model
            .read_stats()
            .bytes
            .saturating_sub(self.bytes_before);
        self.progress.update(done, &tensor.name, bytes);
        Ok(true)
    }
}
