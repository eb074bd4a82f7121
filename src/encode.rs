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

use serde::Serialize;

use crate::error::{Error, Result};
use crate::fingerprint::{Fingerprint, FingerprintCost};
use crate::frames::{
    self, EncodedTile, FrameCuts, FrameLayout, FrameOptions, PixelMode, SegmentSpec, SourceDtype,
    TiledFrameEncoder,
};
use crate::progress::{Progress, ProgressMode};
use crate::reel::{
    self, Manifest, PartSummary, ReelFrame, ReelSpec, ReelTensor, ReelWriter, SampleDepth,
    SampleKind, SegmentRef, TileIn, TilePiece, TileRecord, MANIFEST_FORMAT, MANIFEST_VERSION,
};
use crate::selection::Selection;
use crate::source::{Model, TensorInfo};
use crate::store::{EntryRecord, FingerprintSource, FrameRecord, Settings, Store, Totals};
use crate::stream::{self, stream, Sink, StreamOptions};

/// Frames per part at most (see [`FrameSink::flush_frame`]).
const MAX_PART_FRAMES: u64 = 256;
/// Values per part at most.
const MAX_PART_VALUES: u64 = 1 << 22;

/// Default values per chunk (the guide's recommended 8,000–12,000 range, rounded to a frame).
pub const DEFAULT_CHUNK_SIZE: u64 = 8192;

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
    /// `frame.mode` is only the fallback: the mode is chosen to fit the source (see
    /// [`EncodeOptions::fitted_to`]). The CLI sets this when `--mode` is not given.
    pub fit_mode_to_source: bool,
    /// A receipt committed with the entry, in its transaction (see [`Store::receipt`]): the
    /// job queue's worker passes its job, so that a worker taking over a job whose entry was
    /// committed by a worker that then died finds it done rather than encoding it again.
    pub receipt: Option<String>,
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
            fit_mode_to_source: false,
            receipt: None,
        }
    }
}

/// Accepted `--checkpoint-every`, in seconds: from 10 ms to a day.
pub const CHECKPOINT_SECS: std::ops::RangeInclusive<f64> = 0.01..=86_400.0;

/// Largest accepted `--chunk-size`.
pub const MAX_CHUNK_SIZE: u64 = frames::DEFAULT_MAX_FRAME_VALUES;

impl EncodeOptions {
    /// Validate every setting, rav1e style (each message states the valid range). [`encode`]
    /// calls this before its first side effect, so a bad setting leaves no trace in the store.
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
        self.frame.validate()?;
        if let Some(preview) = &self.preview {
            // The preview is an MP4 (H.264): another extension would name a file players
            // and browsers take for something else.
            let mp4 = preview
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("mp4"));
            if !mp4 {
                return Err(Error::invalid(
                    "--preview",
                    preview.display(),
                    "a file name ending in .mp4",
                ));
            }
            crate::output::check_file("--preview", preview)?;
        }
        let secs = self.checkpoint_every.as_secs_f64();
        if !CHECKPOINT_SECS.contains(&secs) {
            return Err(Error::invalid(
                "--checkpoint-every",
                secs,
                format!(
                    "seconds in {}..={}",
                    CHECKPOINT_SECS.start(),
                    CHECKPOINT_SECS.end()
                ),
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

    /// These options for `model`: with [`EncodeOptions::fit_mode_to_source`], a selection of
    /// F16/BF16 tensors only is encoded `lossless` (there u16 is both lossy and larger: the
    /// 16-bit pattern is stored as is), anything else `u16`. Returns the options and, when the
    /// mode was chosen here, why.
    pub fn fitted_to(&self, model: &Model) -> (EncodeOptions, Option<String>) {
        let mut options = self.clone();
        if !self.fit_mode_to_source {
            return (options, None);
        }
        let plan = self.selection.plan(model);
        let mut dtypes = plan
            .items
            .iter()
            .filter(|i| !i.is_empty())
            .map(|i| model.tensors[i.tensor].dtype);
        let first = dtypes.next();
        let sixteen =
            |d: safetensors::Dtype| matches!(d, safetensors::Dtype::F16 | safetensors::Dtype::BF16);
        let all_16 = first.is_some_and(sixteen) && dtypes.all(sixteen);
        let (mode, why) = if all_16 {
            (
                PixelMode::Lossless,
                "lossless: the selected tensors are 16-bit floats, kept bit-exact at about their size (--mode u16 overrides)",
            )
        } else {
            (
                PixelMode::U16,
                "u16: the default for 32-bit and mixed sources (--mode lossless keeps every bit)",
            )
        };
        options.frame.mode = mode;
        (options, Some(why.to_string()))
    }

    /// How `total` values are cut into frames: chunks, or frames of the cap in batch mode
    /// with the tail split so that it pads less than a tile (see [`FrameCuts`]).
    fn frame_cuts(&self, total: u64) -> FrameCuts {
        if self.chunk_encoding {
            FrameCuts::new(total, self.chunk_size, false)
        } else {
            FrameCuts::new(total, self.frame.max_values, true)
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
        /// NaN and ±inf values encoded (kept in every mode; the registry's frame rows count
        /// them per frame).
        nonfinite: u64,
        /// Width and height of the largest frame.
        frame_size: (u32, u32),
        /// Values over the frames' pixels (1.0: every pixel holds a value).
        efficiency: f64,
        /// The H.264 preview written, if one was asked for.
        #[serde(skip_serializing_if = "Option::is_none")]
        preview: Option<PathBuf>,
        /// Why the mode was chosen, when `--mode` was not given.
        #[serde(skip_serializing_if = "Option::is_none")]
        mode_choice: Option<String>,
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
///
/// The stages: [`plan_encode`] (validate and plan, no side effects), [`WorkDir::lock`] (the
/// encode's work directory and lock), [`load_parts`] (what an interrupted run kept),
/// [`stream_frames`] (read, cut, encode, write parts), [`join_parts`] (the final reel) and
/// [`commit`] (the registry entry, in one transaction).
pub fn encode(
    store: &mut Store,
    model: &Model,
    options: &EncodeOptions,
    cancel: &AtomicBool,
) -> Result<EncodeOutcome> {
    let started = Instant::now();
    let (options, mode_choice) = options.fitted_to(model);
    let options = &options;
    let plan = plan_encode(model, options)?;
    // The display's ticker runs beside the encode, so it is scoped to it.
    std::thread::scope(|scope| {
        let mut progress =
            Progress::start(scope, cancel, options.progress, &model.spec, plan.total);
        let outcome = encode_planned(
            store,
            model,
            (options, mode_choice),
            cancel,
            &plan,
            started,
            &mut progress,
        );
        progress.finish();
        outcome
    })
}

/// The stages of [`encode`] after the plan, showing what they do on `progress`.
fn encode_planned(
    store: &mut Store,
    model: &Model,
    (options, mode_choice): (&EncodeOptions, Option<String>),
    cancel: &AtomicBool,
    plan: &EncodePlan,
    started: Instant,
    progress: &mut Progress,
) -> Result<EncodeOutcome> {
    // The fingerprint reads its own small samples (whatever the selection), so that models
    // encoded with different settings stay comparable; it is committed with the entry.
    progress.phase("fingerprinting");
    let (fingerprint, _) = Fingerprint::compute(model, Some(cancel))?;
    // A reel storage another store owns is refused before anything is written.
    store.check_reels_owner()?;
    // What crashed encodes left behind (and no running encode owns) goes first, so that a
    // full disk from one failed encode does not fail the next.
    store.sweep()?;
    // A reel storage that refuses requests (wrong credentials, no such bucket, no server) is
    // found before anything is encoded or written; the list is the one `put_reel` makes.
    if let Some(storage) = store.reel_storage() {
        storage.list(&reel_stem(model, plan))?;
    }
    let work = WorkDir::lock(store, model, &plan.settings_key)?;
    let parts = load_parts(&work.path, &plan.template, &plan.spec)?;
    let resumed = PartTotals::of(&parts);
    match stream_frames(model, options, plan, &work.path, resumed, cancel, progress)? {
        Streamed::Complete => {}
        Streamed::Interrupted => {
            let kept = PartTotals::of(&load_parts(&work.path, &plan.template, &plan.spec)?);
            return Ok(EncodeOutcome::Interrupted {
                frames: kept.frames,
                values: kept.values,
                total: plan.total,
                work_dir: work.path.clone(),
            });
        }
    }
    let parts = load_parts(&work.path, &plan.template, &plan.spec)?;
    let done = PartTotals::of(&parts);
    if done.values != plan.total || done.frames != plan.frame_count {
        return Err(Error::store(
            &work.path,
            format!(
                "parts hold {} values in {} frames, expected {} in {}",
                done.values, done.frames, plan.total, plan.frame_count
            ),
        ));
    }
    let encoding_secs = resumed.secs + started.elapsed().as_secs_f64();
    progress.phase(&format!(
        "joining {} part{}",
        parts.len(),
        if parts.len() == 1 { "" } else { "s" }
    ));
    let joined = join_parts(store, model, plan, &parts, encoding_secs, &work.path)?;
    if let Some(preview) = &options.preview {
        progress.phase("writing the preview");
        if let Err(e) = reel::write_preview_h264(&joined.path, preview) {
            joined.discard(store);
            return Err(e);
        }
    }
    let encoding_secs = resumed.secs + started.elapsed().as_secs_f64();
    let entry = entry_record(model, options, plan, &joined, done.frames, encoding_secs);
    let print_source = fingerprint_source(model, &entry.created_at);
    progress.phase("committing");
    let (id, replaced, shape) = commit(
        store,
        &entry,
        &joined,
        &plan.template,
        (&print_source, &fingerprint),
        options.receipt.as_deref(),
    )?;
    work.remove();
    Ok(EncodeOutcome::Completed {
        id,
        entry: Box::new(entry),
        reel: store.reel_path(&joined.name),
        replaced,
        resumed_values: resumed.values,
        batch_frames: if options.chunk_encoding {
            0
        } else {
            done.frames
        },
        nonfinite: shape.nonfinite,
        frame_size: shape.largest,
        efficiency: if shape.pixels == 0 {
            0.0
        } else {
            plan.total as f64 / shape.pixels as f64
        },
        preview: options.preview.clone(),
        mode_choice,
    })
}

/// What an encode will do, worked out before anything is written.
struct EncodePlan {
    /// What to read.
    selection: crate::selection::Plan,
    /// Values selected.
    total: u64,
    /// Where frames start and end.
    cuts: FrameCuts,
    /// Frames the encode makes.
    frame_count: u64,
    /// The settings recorded, and their key.
    settings: Settings,
    settings_key: String,
    /// The manifest every part and the final reel start from.
    template: Manifest,
    /// Shape of the reel.
    spec: ReelSpec,
}

/// Lossless is bit-exact, and values travel as f32: a selected tensor whose dtype f32 does not
/// hold exactly (F64, I32, U32, I64, U64) is refused before anything is written, naming it.
fn check_lossless_dtypes(
    model: &Model,
    selection: &crate::selection::Plan,
    mode: PixelMode,
) -> Result<()> {
    if mode != PixelMode::Lossless {
        return Ok(());
    }
    let wide = selection
        .items
        .iter()
        .filter(|item| !item.is_empty())
        .map(|item| &model.tensors[item.tensor])
        .find(|t| !crate::source::convert::exact_in_f32(t.dtype));
    match wide {
        None => Ok(()),
        Some(t) => Err(Error::model(
            &model.spec,
            format!(
                "tensor '{}' is {:?}, which --mode lossless cannot store exactly (it takes F32, F16, BF16, I8, U8, I16, U16); use --mode u16 or --exclude it",
                t.name, t.dtype
            ),
        )),
    }
}

/// Validate the options and plan the encode of `model`: the selection, the frames, the
/// settings key and the reel's shape. Has no side effects, so a bad setting leaves no trace.
fn plan_encode(model: &Model, options: &EncodeOptions) -> Result<EncodePlan> {
    options.validate()?;
    let selection = options.selection.plan(model);
    let total = selection.total;
    if total == 0 {
        return Err(Error::model(
            &model.spec,
            format!(
                "the selection matches no parameters (layers: {})",
                options.selection.roles_label()
            ),
        ));
    }
    check_lossless_dtypes(model, &selection, options.frame.mode)?;
    let cuts = options.frame_cuts(total);
    let frame_count = cuts.count();
    // Check every frame size up front so a bad setting fails before any work.
    let lens = cuts.distinct_lens();
    for &len in &lens {
        let layout = FrameLayout::for_count(len, options.frame.max_values)?;
        frames::check_efficiency(len, &layout, options.frame.min_efficiency)?;
    }
    let full_len = lens[0];
    let stream_layout = FrameLayout::for_count(full_len, options.frame.max_values)?;

    // Local files have no revision; "-" keeps the settings key stable for them.
    let revision = model.origin.revision().unwrap_or("-").to_string();
    let settings = options.settings(&revision);
    let settings_key = settings.key();
    let tensors: Vec<ReelTensor> = selection
        .items
        .iter()
        .map(|item| {
            let t = &model.tensors[item.tensor];
            ReelTensor {
                name: t.name.clone(),
                dtype: format!("{:?}", t.dtype),
                source_type: (t.stored_type() != format!("{:?}", t.dtype)).then(|| t.stored_type()),
                shape: t.shape.clone(),
                role: t.role,
                selected: item.len(),
            }
        })
        .collect();
    let verbatim = verbatim_buffers(model, &options.selection)?;
    let config_json = model.config.as_ref().and_then(|c| c.raw.clone());
    let template = Manifest {
        format: MANIFEST_FORMAT.into(),
        version: if verbatim.is_empty() && config_json.is_none() {
            reel::MANIFEST_VERSION_PLAIN
        } else {
            MANIFEST_VERSION
        },
        model: model.name.clone(),
        commit: model.origin.commit().map(str::to_string),
        settings_key: settings_key.clone(),
        settings: settings.clone(),
        total_values: total,
        tensors,
        frames: Vec::new(),
        part: None,
        encoding_secs: 0.0,
        verbatim,
        config_json,
    };
    let spec = ReelSpec {
        width: stream_layout.width,
        height: stream_layout.height,
        // The reel's planes are those of its widest frame: the frames stage decides from the
        // source dtypes of everything selected.
        planes: options.frame.mode.planes_for(
            selection
                .items
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
    Ok(EncodePlan {
        selection,
        total,
        cuts,
        frame_count,
        settings,
        settings_key,
        template,
        spec,
    })
}

/// The skipped buffers the selection keeps (`position_ids`…) whose bytes are plain and small
/// (each at most [`reel::MAX_VERBATIM_TENSOR_BYTES`], together at most
/// [`reel::MAX_VERBATIM_BYTES`]), read whole for the manifest. Larger ones (GPT-2's causal
/// masks) are left out: models rebuild them.
fn verbatim_buffers(model: &Model, selection: &Selection) -> Result<Vec<reel::VerbatimTensor>> {
    let mut kept = Vec::new();
    let mut ranges = Vec::new();
    let mut total = 0u64;
    for t in &model.skipped {
        let Some((shard, offset, len)) = t.stored_at else {
            continue;
        };
        if len > reel::MAX_VERBATIM_TENSOR_BYTES
            || total + len > reel::MAX_VERBATIM_BYTES
            || shard >= model.shards.len()
            || !selection.keeps_name(&t.name, crate::roles::Role::of(&t.name))
        {
            continue;
        }
        total += len;
        kept.push(t);
        ranges.push((shard, offset, len));
    }
    // All at once: on the Hub, one buffer per layer read one after another cost a round trip
    // each (GPT-2's 12 causal masks: 0.6 s at 50 ms a request).
    let data = stream::read_byte_ranges(model, &ranges)?;
    Ok(kept
        .into_iter()
        .zip(data)
        .map(|(t, data)| reel::VerbatimTensor {
            name: t.name.clone(),
            dtype: t.dtype.clone(),
            shape: t.shape.clone(),
            data,
        })
        .collect())
}

/// The work directory of one model-and-settings encode, locked for this process.
struct WorkDir {
    path: PathBuf,
    _lock: File,
}

impl WorkDir {
    /// Create and lock `work/<model>-<key>`; another encode holding it is an error.
    fn lock(store: &Store, model: &Model, key: &str) -> Result<WorkDir> {
        let path = store
            .work_dir()
            .join(format!("{}-{key}", sanitize(&model.spec)));
        std::fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        let lock_path = path.join("lock");
        let lock = File::create(&lock_path).map_err(|e| Error::io(&lock_path, e))?;
        // Another process's sweep may hold the lock for an instant to see whether an encode
        // runs here; only a lock held for longer is a running encode.
        let mut attempts = 0;
        while lock.try_lock().is_err() {
            attempts += 1;
            if attempts < 50 {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            return Err(Error::store(
                store.dir(),
                format!(
                    "another weightreel is encoding '{}' with these settings into this store right now",
                    model.spec
                ),
            ));
        }
        Ok(WorkDir { path, _lock: lock })
    }

    /// The encode is committed: its parts are no longer needed.
    fn remove(self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Frames, values and seconds held by a run of parts.
#[derive(Debug, Clone, Copy, Default)]
struct PartTotals {
    parts: u64,
    frames: u64,
    values: u64,
    secs: f64,
}

impl PartTotals {
    fn of(parts: &[Part]) -> PartTotals {
        parts.iter().fold(PartTotals::default(), |t, p| PartTotals {
            parts: t.parts + 1,
            frames: t.frames + p.summary.frames,
            values: t.values + p.summary.values,
            secs: t.secs + p.secs,
        })
    }
}

/// Frames at least this large are announced while they are encoded.
const PHASE_FRAME_VALUES: usize = 1 << 20;

/// How streaming ended.
enum Streamed {
    /// Every value is in a part.
    Complete,
    /// Ctrl-C: the complete frames are in parts, the rest is for a resume.
    Interrupted,
}

/// Stream the values after what `resumed` holds, cut them into frames and write them into
/// parts in `work`.
fn stream_frames(
    model: &Model,
    options: &EncodeOptions,
    plan: &EncodePlan,
    work: &Path,
    resumed: PartTotals,
    cancel: &AtomicBool,
    progress: &mut Progress,
) -> Result<Streamed> {
    let mut sink = FrameSink {
        model,
        options,
        template: &plan.template,
        spec: plan.spec,
        work,
        tensor_index: plan
            .template
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i as u32))
            .collect(),
        cuts: plan.cuts,
        values: Vec::new(),
        tiled: None,
        segments: Vec::new(),
        next_frame: resumed.frames,
        next_value: resumed.values,
        part: None,
        // Part files are numbered after the ones kept.
        part_index: resumed.parts,
        part_started: Instant::now(),
        progress,
        bytes_before: model.read_stats().bytes,
    };
    let summary = stream(
        model,
        &plan.selection,
        &mut sink,
        StreamOptions {
            cancel: Some(cancel),
            skip_values: resumed.values,
        },
    )?;
    if summary.stopped {
        // Keep complete frames only; the partial frame is re-read on resume.
        sink.values.clear();
        sink.segments.clear();
        if sink.tiled.take().is_some() {
            if let Some((writer, _)) = sink.part.as_mut() {
                writer.discard_open_frame()?;
            }
        }
        sink.close_part()?;
        return Ok(Streamed::Interrupted);
    }
    if let Some(tiled) = &sink.tiled {
        return Err(Error::model(
            &model.spec,
            format!(
                "the stream ended inside a frame ({} of its values came)",
                tiled.pushed
            ),
        ));
    }
    sink.flush_frame()?;
    sink.close_part()?;
    Ok(Streamed::Complete)
}

/// The final reel, written and renamed into `reels/` (or published in the reel storage) but
/// not yet referenced by the registry.
struct Joined {
    /// A local file holding it: the reel in `reels/`, or the joined file in the work directory
    /// that was uploaded to the reel storage (read back from there for the commit's rows).
    path: PathBuf,
    /// Its name relative to the store (`reels/NAME`).
    name: String,
    info: reel::ReelInfo,
}

impl Joined {
    /// Remove the reel (a failed encode): from `reels/`, or from the reel storage and the work
    /// directory. A reel that cannot be removed is left for `gc`.
    fn discard(&self, store: &Store) {
        if store.reel_storage().is_some() {
            let _ = store.delete_reel(&self.name);
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Copy the parts' packets (no re-encoding) into the final reel, with the manifest: joined
/// inside the locked work directory, then linked into `reels/` under its short name (see
/// [`Store::place_reel`]) or uploaded to the reel storage (`Store::put_reel`), which the
/// registry does not yet reference.
fn join_parts(
    store: &Store,
    model: &Model,
    plan: &EncodePlan,
    parts: &[Part],
    encoding_secs: f64,
    work: &Path,
) -> Result<Joined> {
    let mut manifest = plan.template.clone();
    manifest.encoding_secs = encoding_secs;
    let json = serde_json::to_vec(&manifest).expect("manifest serializes");
    let part_paths: Vec<PathBuf> = parts.iter().map(|p| p.path.clone()).collect();
    let joined = work.join("joined.mkv");
    // Reels read with range requests (from a reel storage) get an index of their packets.
    let info = reel::concat(&part_paths, &joined, &json, store.reel_storage().is_some())?;
    let stem = reel_stem(model, plan);
    let name = store.put_reel(&joined, &stem, work).inspect_err(|_| {
        // The parts stay for a resume; the joined copy is made again from them.
        let _ = std::fs::remove_file(&joined);
    })?;
    let path = if store.reel_storage().is_some() {
        joined
    } else {
        store.dir().join(&name)
    };
    Ok(Joined { path, name, info })
}

/// The reel's name without `-N.mkv`: `<model slug>-<short settings key>`.
fn reel_stem(model: &Model, plan: &EncodePlan) -> String {
    format!(
        "{}-{}",
        crate::source::naming::slug(&model.name),
        crate::store::short_key(&plan.settings_key)
    )
}

/// The registry entry of a finished encode.
fn entry_record(
    model: &Model,
    options: &EncodeOptions,
    plan: &EncodePlan,
    joined: &Joined,
    frames: u64,
    encoding_secs: f64,
) -> EntryRecord {
    let read = model.read_stats();
    EntryRecord {
        name: model.name.clone(),
        source_kind: model.origin.kind().into(),
        source: source_of(model),
        revision: model.origin.revision().map(str::to_string),
        commit: model.origin.commit().map(str::to_string),
        format: model.format(),
        model_type: model.config.as_ref().and_then(|c| c.model_type.clone()),
        architectures: model
            .config
            .as_ref()
            .map(|c| c.architectures.clone())
            .unwrap_or_default(),
        settings: plan.settings.clone(),
        totals: Totals {
            params: plan.total,
            chunks: plan.total.div_ceil(options.chunk_size),
            frames,
            bytes_read: read.bytes,
            read_requests: read.requests,
            encoding_secs,
            params_per_sec: plan.total as f64 / encoding_secs.max(1e-9),
            peak_rss_bytes: peak_rss_bytes(),
            reel_file: joined.name.clone(),
            reel_bytes: joined.info.bytes,
        },
        created_at: now_rfc3339(),
    }
}

/// Where `model` came from, as the registry records it (URLs without credentials).
fn source_of(model: &Model) -> String {
    match &model.origin {
        crate::source::Origin::File { path } | crate::source::Origin::Directory { path } => {
            path.clone()
        }
        crate::source::Origin::Cache { path, .. } => path.clone(),
        crate::source::Origin::Hub { endpoint, repo, .. } => format!("{endpoint}/{repo}"),
    }
}

fn fingerprint_source(model: &Model, created_at: &str) -> FingerprintSource {
    FingerprintSource {
        name: model.name.clone(),
        source: source_of(model),
        revision: model.origin.revision().map(str::to_string),
        model_type: model.config.as_ref().and_then(|c| c.model_type.clone()),
        created_at: created_at.to_string(),
    }
}

/// Fingerprint `model` and store the fingerprint alone (no reel): `weightreel fingerprint`.
/// Replaces the fingerprint stored under the same name.
pub fn store_fingerprint(
    store: &mut Store,
    model: &Model,
    cancel: &AtomicBool,
) -> Result<(Fingerprint, FingerprintCost)> {
    let (fp, cost) = Fingerprint::compute(model, Some(cancel))?;
    store.put_fingerprint(&fingerprint_source(model, &now_rfc3339()), &fp)?;
    Ok((fp, cost))
}

/// What the committed frames add up to, for the encode summary.
#[derive(Debug, Clone, Copy, Default)]
struct FramesShape {
    /// NaN and ±inf values.
    nonfinite: u64,
    /// Width and height of the largest frame.
    largest: (u32, u32),
    /// Pixels of all frames.
    pixels: u64,
}

/// Commit `entry` with one row per frame, read back from the final reel's frame records as
/// the rows are inserted (nothing per frame is held). On failure the new reel is removed;
/// on success the replaced entry's reel is. Returns the id, whether an entry was replaced and
/// what the frames add up to.
fn commit(
    store: &mut Store,
    entry: &EntryRecord,
    joined: &Joined,
    manifest: &Manifest,
    fingerprint: (&FingerprintSource, &Fingerprint),
    receipt: Option<&str>,
) -> Result<(i64, bool, FramesShape)> {
    let mut shape = FramesShape::default();
    let result = reel::ReelReader::open(&joined.path).and_then(|mut reader| {
        let path = joined.path.clone();
        let rows = (0..reader.frame_count()).map(|i| {
            let bytes = reader.frame_record(i)?;
            let row = ReelFrame::parse_record(&path, manifest, i, &bytes).map(|f| frame_record(&f));
            if let Ok(row) = &row {
                shape.nonfinite += row.nonfinite;
                let area = u64::from(row.width) * u64::from(row.height);
                shape.pixels += area;
                if area > u64::from(shape.largest.0) * u64::from(shape.largest.1) {
                    shape.largest = (row.width, row.height);
                }
            }
            row
        });
        store.commit_entry_with(entry, rows, Some(fingerprint), receipt)
    });
    match result {
        Ok((id, replaced)) => {
            if let Some(old) = &replaced {
                // The new reel may have been given the replaced one's name (it was free
                // only if the old file was gone): never remove what the new entry names.
                if *old != joined.name {
                    let _ = store.delete_reel(old);
                }
            }
            Ok((id, replaced.is_some(), shape))
        }
        Err(e) => {
            joined.discard(store);
            Err(e)
        }
    }
}

fn frame_record(frame: &ReelFrame) -> FrameRecord {
    let layout = frame.meta.layout;
    let stats = &frame.meta.stats;
    FrameRecord {
        index: frame.index,
        first_value: frame.first_value,
        count: frame.meta.count,
        width: layout.width,
        height: layout.height,
        checksum: frame.checksum,
        nonfinite: stats.nonfinite,
        min: stats.min,
        max: stats.max,
        mean: stats.mean,
        std: stats.std,
    }
}

/// A completed part on disk.
struct Part {
    path: PathBuf,
    summary: PartSummary,
    secs: f64,
}

/// Read the complete parts of an earlier run, in order. Parts of another encode (other
/// settings or another commit of the model), of pictures this build does not write (an older
/// build's), or out of sequence are stale and removed.
fn load_parts(work: &Path, template: &Manifest, spec: &ReelSpec) -> Result<Vec<Part>> {
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
        // A part this build cannot join (an older build's pictures) is redone.
        let usable = reel::read_joinable_metadata(&path, spec)
            .ok()
            .flatten()
            .and_then(|json| Manifest::parse(&path, &json).ok())
            .filter(|m| {
                m.settings_key == template.settings_key
                    && m.commit == template.commit
                    && m.tensors == template.tensors
            })
            .and_then(|m| Some((m.part?, m.encoding_secs)))
            .filter(|(p, _)| {
                p.first_frame == expected_frame && p.first_value == expected_value && p.frames > 0
            });
        match usable {
            Some((summary, secs)) => {
                expected_frame += summary.frames;
                expected_value += summary.values;
                parts.push(Part {
                    path,
                    summary,
                    secs,
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
    /// Where frames start and end.
    cuts: FrameCuts,
    /// The values of a frame that fits one tile, gathered until it is complete.
    values: Vec<f32>,
    /// A frame larger than a tile, encoded tile by tile as its values come.
    tiled: Option<TiledFrame>,
    /// The open frame's segments, either way.
    segments: Vec<(SegmentRef, SourceDtype)>,
    next_frame: u64,
    next_value: u64,
    /// The open part and where its frames start; nothing per frame is kept.
    part: Option<(ReelWriter, PartSummary)>,
    part_index: u64,
    part_started: Instant,
    progress: &'a mut Progress,
    bytes_before: u64,
}

/// A frame larger than one tile on its way: its encoder, the tile held back (the last one
/// carries the frame's record, known only at the end), and the CRC32 of the tiles written.
struct TiledFrame {
    encoder: TiledFrameEncoder,
    held: Option<EncodedTile>,
    crc: crc32fast::Hasher,
    /// Values it holds, and values pushed so far.
    count: u64,
    pushed: u64,
}

impl FrameSink<'_> {
    /// Values of the frame that starts at `next_value`: a whole frame but at the end.
    fn next_frame_len(&self) -> u64 {
        self.cuts.len_at(self.next_value)
    }

    /// Open a part for the next frame unless one is open.
    fn open_part(&mut self) -> Result<()> {
        if self.part.is_none() {
            let path = self.work.join(format!("part-{:08}.mkv", self.part_index));
            let summary = PartSummary {
                first_frame: self.next_frame,
                first_value: self.next_value,
                frames: 0,
                values: 0,
            };
            self.part = Some((ReelWriter::create(&path, self.spec)?, summary));
            self.part_started = Instant::now();
        }
        Ok(())
    }

    /// Start the frame at `next_value`: tiled when it is larger than a tile, else gathered.
    fn start_frame(&mut self) -> Result<()> {
        let count = self.next_frame_len();
        let layout = FrameLayout::for_count(count.max(1), self.options.frame.max_values)?;
        if frames::is_tiled(&layout) {
            let encoder = TiledFrameEncoder::new(count, self.spec.planes, &self.options.frame)?;
            self.open_part()?;
            self.tiled = Some(TiledFrame {
                encoder,
                held: None,
                crc: crc32fast::Hasher::new(),
                count,
                pushed: 0,
            });
        } else if self.values.capacity() == 0 {
            self.values.reserve_exact(count as usize);
        }
        Ok(())
    }

    /// Values of the open frame so far.
    fn frame_filled(&self) -> u64 {
        self.tiled
            .as_ref()
            .map_or(self.values.len() as u64, |t| t.pushed)
    }

    /// Feed `values` (of one segment) to the open tiled frame, writing each tile that
    /// completes but the last.
    fn push_tiled(
        &mut self,
        mut values: &[f32],
        dtype: SourceDtype,
        new_segment: bool,
    ) -> Result<()> {
        let mut new_segment = new_segment;
        while !values.is_empty() {
            let tiled = self.tiled.as_mut().expect("a tiled frame is open");
            let took = tiled.encoder.push(values, dtype, new_segment)?;
            tiled.pushed += took as u64;
            new_segment = false;
            values = &values[took..];
            while let Some(tile) = self.tiled.as_mut().and_then(|t| t.encoder.take_ready()) {
                self.hold_tile(tile)?;
            }
        }
        Ok(())
    }

    /// Keep `tile` back and write the one held before it.
    fn hold_tile(&mut self, tile: EncodedTile) -> Result<()> {
        let tiled = self.tiled.as_mut().expect("a tiled frame is open");
        let Some(previous) = tiled.held.replace(tile) else {
            return Ok(());
        };
        reel::hash_planes(&mut tiled.crc, &previous.planes);
        let layout = tiled.encoder.layout();
        self.write_tile(layout, &previous, &[])
    }

    /// Write one tile of the tiled frame of `layout` into the part, with its record.
    fn write_tile(
        &mut self,
        layout: FrameLayout,
        tile: &EncodedTile,
        frame_record: &[u8],
    ) -> Result<()> {
        let pieces = tile
            .pieces
            .iter()
            .map(|quant| {
                // Pieces never cross a segment: find the one holding its first position.
                let i = self
                    .segments
                    .partition_point(|(s, _)| s.curve_start <= quant.curve_start)
                    - 1;
                let seg = &self.segments[i].0;
                TilePiece {
                    tensor: seg.tensor,
                    start: seg.start + (quant.curve_start - seg.curve_start),
                    quant: *quant,
                }
            })
            .collect();
        let record = TileRecord {
            frame: self.next_frame,
            tile: tile.index,
            pieces,
        };
        let json = serde_json::to_vec(&record).expect("tile record serializes");
        let planes: Vec<&[u16]> = tile.planes.iter().map(Vec::as_slice).collect();
        let (writer, _) = self.part.as_mut().expect("part is open");
        writer.push_tile(&TileIn {
            width: layout.width,
            height: layout.height,
            index: tile.index,
            x: tile.x,
            y: tile.y,
            planes: &planes,
            record: &json,
            frame_record,
        })?;
        Ok(())
    }

    /// All values of the tiled frame are in: write its remaining tiles, the last with the
    /// frame's record.
    fn finish_tiled(&mut self) -> Result<()> {
        let tiled = self.tiled.as_mut().expect("a tiled frame is open");
        tiled.encoder.close()?;
        loop {
            let tiled = self.tiled.as_mut().expect("a tiled frame is open");
            let next = tiled
                .encoder
                .take_ready()
                .or_else(|| tiled.encoder.next_padding());
            match next {
                Some(tile) => self.hold_tile(tile)?,
                None => break,
            }
        }
        let mut tiled = self.tiled.take().expect("a tiled frame is open");
        let last = tiled.held.take().expect("a frame has tiles");
        let layout = tiled.encoder.layout();
        let meta = tiled.encoder.finish()?;
        // The frame's CRC32 is that of all its tiles' planes, in stored order; the ones
        // before the last were hashed as they were written.
        let mut crc = tiled.crc.clone();
        reel::hash_planes(&mut crc, &last.planes);
        let record = ReelFrame {
            index: self.next_frame,
            first_value: self.next_value,
            checksum: crc.finalize(),
            segments: self.segments.iter().map(|(s, _)| *s).collect(),
            meta,
        };
        let record_json = serde_json::to_vec(&record).expect("frame serializes");
        self.write_tile(layout, &last, &record_json)?;
        self.frame_done(record.meta.count)
    }

    fn flush_frame(&mut self) -> Result<()> {
        if self.tiled.is_some() {
            return self.finish_tiled();
        }
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
        if self.values.len() >= PHASE_FRAME_VALUES {
            // A large frame takes seconds to encode after its last value came in.
            self.progress.phase(&format!(
                "encoding frame {} ({} values)",
                self.next_frame + 1,
                crate::inspect::group(self.values.len() as u64)
            ));
        }
        let frame = frames::encode_frame(&self.values, &specs, &self.options.frame)?;
        self.open_part()?;
        let count = self.values.len() as u64;
        let record = ReelFrame {
            index: self.next_frame,
            first_value: self.next_value,
            checksum: reel::planes_crc32(&frame.planes),
            segments: self.segments.iter().map(|(s, _)| *s).collect(),
            meta: frame.meta,
        }
        .slim();
        let record_json = serde_json::to_vec(&record).expect("frame serializes");
        let (writer, _) = self.part.as_mut().expect("part is open");
        // A lossless frame holding only 16-bit sources has one plane; in a two-plane reel its
        // second plane carries zeros.
        let zeros;
        let mut planes: Vec<&[u16]> = frame.planes.iter().map(Vec::as_slice).collect();
        if (planes.len() as u32) < self.spec.planes {
            zeros = vec![0u16; record.meta.layout.area() as usize];
            planes.resize(self.spec.planes as usize, &zeros);
        }
        let layout = record.meta.layout;
        writer.push_frame_with_record(layout.width, layout.height, &planes, &record_json)?;
        self.frame_done(count)
    }

    /// A frame of `count` values is in the part: count it, and close the part at a checkpoint.
    fn frame_done(&mut self, count: u64) -> Result<()> {
        let (_, summary) = self.part.as_mut().expect("part is open");
        summary.frames += 1;
        summary.values += count;
        self.next_frame += 1;
        self.next_value += count;
        self.values.clear();
        self.segments.clear();
        let (frames_in_part, values_in_part) = (summary.frames, summary.values);
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
        let Some((writer, summary)) = self.part.take() else {
            return Ok(());
        };
        if summary.frames == 0 {
            return Ok(());
        }
        let mut manifest = self.template.clone();
        manifest.encoding_secs = self.part_started.elapsed().as_secs_f64();
        manifest.part = Some(summary);
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
            if self.values.is_empty() && self.tiled.is_none() {
                self.start_frame()?;
            }
            let filled = self.frame_filled();
            let frame_len = self
                .tiled
                .as_ref()
                .map_or_else(|| self.next_frame_len(), |t| t.count);
            let room = (frame_len - filled) as usize;
            let take = room.min(values.len() - offset);
            let elem = start + offset as u64;
            let new_segment = match self.segments.last_mut() {
                Some((last, _)) if last.tensor == index && last.start + last.len == elem => {
                    last.len += take as u64;
                    false
                }
                _ => {
                    self.segments.push((
                        SegmentRef {
                            tensor: index,
                            start: elem,
                            len: take as u64,
                            curve_start: filled,
                        },
                        dtype,
                    ));
                    true
                }
            };
            let piece = &values[offset..offset + take];
            if self.tiled.is_some() {
                self.push_tiled(piece, dtype, new_segment)?;
            } else {
                self.values.extend_from_slice(piece);
            }
            offset += take;
            if filled + take as u64 == frame_len {
                self.flush_frame()?;
            }
        }
        let done = self.next_value + self.frame_filled();
        let bytes = self
            .model
            .read_stats()
            .bytes
            .saturating_sub(self.bytes_before);
        self.progress.update(done, &tensor.name, bytes);
        Ok(true)
    }
}
