//! `weightreel._native`: the Rust library behind the Python package, a thin face like the CLI.
//!
//! Results cross as the CLI's `--json` text (the package parses it), arrays as [`Buffer`]s that
//! numpy wraps through `__array_interface__` without copying. Work runs with the GIL released,
//! on a thread of its own, while this thread checks for Ctrl-C every 100 ms: a
//! `KeyboardInterrupt` stops an encode the way Ctrl-C stops the CLI's (complete frames kept for
//! a resume) and ends a stream at its next piece.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::exceptions::{
    PyFileNotFoundError, PyKeyboardInterrupt, PyOSError, PyPermissionError, PyStopIteration,
    PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use weightreel::encode::{encode as encode_model, EncodeOptions, EncodeOutcome};
use weightreel::error::Error;
use weightreel::frames::{FrameOptions, PixelMode};
use weightreel::progress::ProgressMode;
use weightreel::search::{self, Method, SearchOptions};
use weightreel::selection::{parse_roles, Selection};
use weightreel::source::{Model, OpenOptions, TensorInfo};
use weightreel::store::Store;
use weightreel::stream::{stream, Sink, StreamOptions};

/// The library's error as the Python exception its kind calls for, with the CLI's message.
fn py_err(e: Error) -> PyErr {
    let text = weightreel::text::printable(&e.to_string()).into_owned();
    match &e {
        Error::Invalid { .. } | Error::Ambiguous { .. } => PyValueError::new_err(text),
        Error::Model { .. } => PyFileNotFoundError::new_err(text),
        Error::NotOnHub { .. } => PyFileNotFoundError::new_err(text),
        Error::Http { problem, .. } if problem.contains("401") || problem.contains("403") => {
            PyPermissionError::new_err(text)
        }
        Error::Http { problem, .. } if problem.contains("HTTP 404") => {
            PyFileNotFoundError::new_err(text)
        }
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(text)
        }
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
            PyPermissionError::new_err(text)
        }
        Error::Interrupted => PyKeyboardInterrupt::new_err(text),
        _ => PyOSError::new_err(text),
    }
}

fn open_options(revision: &str, token: Option<String>, offline: bool) -> OpenOptions {
    OpenOptions {
        revision: revision.to_string(),
        token,
        offline,
        ..OpenOptions::default()
    }
    .with_env()
}

fn selection(
    target_layers: Option<Vec<String>>,
    max_total_params: Option<u64>,
) -> PyResult<Selection> {
    if max_total_params == Some(0) {
        return Err(PyValueError::new_err(
            "invalid max_total_params 0 (expected a whole number >= 1, or None)",
        ));
    }
    Ok(Selection {
        roles: parse_roles(&target_layers.unwrap_or_default()).map_err(py_err)?,
        max_params: max_total_params,
        ..Selection::default()
    })
}

/// Run `work` on its own thread with the GIL released, checking for Ctrl-C meanwhile; on
/// `KeyboardInterrupt` `cancel` is set and the work's own result (what it kept) is awaited,
/// then the interrupt is raised.
fn run_cancellable<T: Send + 'static>(
    py: Python<'_>,
    cancel: Arc<AtomicBool>,
    work: impl FnOnce(&AtomicBool) -> Result<T, Error> + Send + 'static,
) -> PyResult<T> {
    let (tx, rx) = mpsc::channel();
    let flag = cancel.clone();
    std::thread::spawn(move || {
        let _ = tx.send(work(&flag));
    });
    let rx = std::sync::Mutex::new(rx);
    let mut interrupted: Option<PyErr> = None;
    loop {
        let next = py.detach(|| {
            rx.lock()
                .expect("one waiter")
                .recv_timeout(Duration::from_millis(100))
        });
        match next {
            Ok(result) => {
                if let Some(e) = interrupted {
                    return Err(e);
                }
                return result.map_err(py_err);
            }
            Err(RecvTimeoutError::Timeout) => {
                if interrupted.is_none() {
                    if let Err(e) = py.check_signals() {
                        cancel.store(true, Ordering::SeqCst);
                        interrupted = Some(e);
                    }
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(PyOSError::new_err("weightreel worker thread failed"));
            }
        }
    }
}

/// Stream-encode `model` into the store; returns the CLI's `--json` outcome.
#[pyfunction]
#[pyo3(signature = (model, storage_dir, chunk_size, target_layers=None, max_total_params=None, chunk_encoding=true, mode="u16", progress=true, revision="main", token=None, offline=false))]
#[allow(clippy::too_many_arguments)]
fn encode(
    py: Python<'_>,
    model: String,
    storage_dir: PathBuf,
    chunk_size: u64,
    target_layers: Option<Vec<String>>,
    max_total_params: Option<u64>,
    chunk_encoding: bool,
    mode: &str,
    progress: bool,
    revision: &str,
    token: Option<String>,
    offline: bool,
) -> PyResult<String> {
    let options = EncodeOptions {
        selection: selection(target_layers, max_total_params)?,
        chunk_size,
        chunk_encoding,
        frame: FrameOptions {
            mode: PixelMode::parse(mode).map_err(py_err)?,
            ..FrameOptions::default()
        },
        progress: ProgressMode::detect(!progress),
        ..EncodeOptions::default()
    };
    options.validate().map_err(py_err)?;
    let open = open_options(revision, token, offline);
    let outcome = run_cancellable(py, Arc::new(AtomicBool::new(false)), move |cancel| {
        let mut store = open_store(&storage_dir, true)?;
        let model = Model::open(&model, &open)?;
        encode_model(&mut store, &model, &options, cancel)
    })?;
    if let EncodeOutcome::Interrupted { .. } = outcome {
        return Err(PyKeyboardInterrupt::new_err(
            serde_json::to_string(&outcome).expect("outcome serializes"),
        ));
    }
    Ok(serde_json::to_string(&outcome).expect("outcome serializes"))
}

/// The entries of a store, as `weightreel list --json`.
#[pyfunction]
fn list_models(storage_dir: PathBuf) -> PyResult<String> {
    let store = open_store(&storage_dir, false).map_err(py_err)?;
    let entries = store.list().map_err(py_err)?;
    Ok(serde_json::to_string(&entries).expect("entries serialize"))
}

/// The store's statistics, as `weightreel stats --json`.
#[pyfunction]
fn statistics(storage_dir: PathBuf) -> PyResult<String> {
    let store = open_store(&storage_dir, false).map_err(py_err)?;
    Ok(serde_json::to_string(&store.stats().map_err(py_err)?).expect("stats serialize"))
}

/// A model's tensors and what a selection reads, as `weightreel inspect --json`.
#[pyfunction]
#[pyo3(signature = (model, target_layers=None, max_total_params=None, revision="main", token=None, offline=false))]
fn inspect(
    py: Python<'_>,
    model: String,
    target_layers: Option<Vec<String>>,
    max_total_params: Option<u64>,
    revision: &str,
    token: Option<String>,
    offline: bool,
) -> PyResult<String> {
    let selection = selection(target_layers, max_total_params)?;
    let open = open_options(revision, token, offline);
    run_cancellable(py, Arc::new(AtomicBool::new(false)), move |_| {
        let model = Model::open(&model, &open)?;
        let report = weightreel::inspect::Report::new(&model, &selection);
        Ok(serde_json::to_string(&report).expect("report serializes"))
    })
}

/// Resolve a stored name, else open and fingerprint a source.
fn query_fingerprint(
    store: &Store,
    name: &str,
    open: &OpenOptions,
    cancel: &AtomicBool,
) -> Result<(weightreel::fingerprint::Fingerprint, Option<String>), Error> {
    if let Some(fp) = store.fingerprint(name)? {
        return Ok((fp, Some(name.to_string())));
    }
    let model = Model::open(name, open)?;
    // A source stored under its derived name is left out of its own ranking, as in the CLI.
    let stored = store
        .fingerprint_source(&model.name)?
        .map(|_| model.name.clone());
    Ok((
        weightreel::fingerprint::Fingerprint::compute(&model, Some(cancel))?.0,
        stored,
    ))
}

/// The stored models most related to `model`, as `weightreel search --json`.
#[pyfunction]
#[pyo3(signature = (storage_dir, model, top_k=10, method="hybrid", revision="main", token=None, offline=false))]
#[allow(clippy::too_many_arguments)]
fn search_similar(
    py: Python<'_>,
    storage_dir: PathBuf,
    model: String,
    top_k: usize,
    method: &str,
    revision: &str,
    token: Option<String>,
    offline: bool,
) -> PyResult<String> {
    let method = Method::parse(method).map_err(py_err)?;
    if top_k == 0 {
        return Err(PyValueError::new_err(
            "invalid top_k 0 (expected 1..=10000)",
        ));
    }
    let open = open_options(revision, token, offline);
    run_cancellable(py, Arc::new(AtomicBool::new(false)), move |cancel| {
        let store = open_store(&storage_dir, false)?;
        let index = store.fingerprint_index()?;
        if index.is_empty() {
            return Err(Error::store(
                &storage_dir,
                "holds no fingerprinted models yet (encode or `weightreel fingerprint` some first)",
            ));
        }
        let (fp, stored) = query_fingerprint(&store, &model, &open, cancel)?;
        let result = search::search(
            &store,
            &index,
            &fp,
            SearchOptions {
                top: top_k,
                method,
                exclude: stored.as_deref(),
                roles: &[],
            },
        )?;
        Ok(serde_json::to_string(&result).expect("result serializes"))
    })
}

/// Two models compared: the summary scores and the per-tensor table, as `compare --json`.
#[pyfunction]
#[pyo3(signature = (storage_dir, a, b, revision="main", token=None, offline=false))]
fn compare(
    py: Python<'_>,
    storage_dir: PathBuf,
    a: String,
    b: String,
    revision: &str,
    token: Option<String>,
    offline: bool,
) -> PyResult<String> {
    let open = open_options(revision, token, offline);
    run_cancellable(py, Arc::new(AtomicBool::new(false)), move |cancel| {
        let store = open_store(&storage_dir, false)?;
        let (fa, _) = query_fingerprint(&store, &a, &open, cancel)?;
        let (fb, _) = query_fingerprint(&store, &b, &open, cancel)?;
        let c = search::compare(&fa, &fb);
        // The same document as `weightreel compare --json` and the gallery's `/api/compare`.
        Ok(c.report(&a, &fa, &b, &fb).to_string())
    })
}

/// Bytes that numpy wraps without copying (`numpy.asarray(buffer)`), through
/// `__array_interface__`. The array keeps the buffer alive; the bytes never move.
#[pyclass(frozen, module = "weightreel._native")]
struct Buffer {
    data: Storage,
    typestr: &'static str,
    shape: Vec<usize>,
}

enum Storage {
    F32(Vec<f32>),
    Bytes(Vec<u8>),
}

impl Storage {
    fn ptr_len(&self) -> (usize, usize) {
        match self {
            Storage::F32(v) => (v.as_ptr() as usize, v.len() * 4),
            Storage::Bytes(v) => (v.as_ptr() as usize, v.len()),
        }
    }
}

#[pymethods]
impl Buffer {
    #[getter]
    fn __array_interface__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("version", 3)?;
        d.set_item("shape", PyTuple::new(py, &self.shape)?)?;
        d.set_item("typestr", self.typestr)?;
        // Read-only: the values are the model's, not the caller's to change.
        d.set_item("data", (self.data.ptr_len().0, true))?;
        Ok(d)
    }

    /// Bytes held.
    #[getter]
    fn nbytes(&self) -> usize {
        self.data.ptr_len().1
    }
}

/// One tensor's piece of a chunk.
#[pyclass(frozen, get_all, module = "weightreel._native")]
#[derive(Clone)]
struct TensorPiece {
    name: String,
    shape: Vec<usize>,
    role: String,
    layer: Option<u32>,
    /// First element (row-major index in the tensor).
    start: u64,
    /// Values of this tensor in the chunk.
    count: u64,
}

/// What a chunk holds: the tensor pieces it is made of.
#[pyclass(frozen, module = "weightreel._native")]
struct LayerInfo {
    pieces: Vec<TensorPiece>,
}

#[pymethods]
impl LayerInfo {
    /// The tensor pieces, in order.
    #[getter]
    fn tensors(&self) -> Vec<TensorPiece> {
        self.pieces.clone()
    }
    /// Name of the first tensor.
    #[getter]
    fn name(&self) -> String {
        self.pieces
            .first()
            .map(|p| p.name.clone())
            .unwrap_or_default()
    }
    /// Shape of the first tensor.
    #[getter]
    fn shape(&self) -> Vec<usize> {
        self.pieces
            .first()
            .map(|p| p.shape.clone())
            .unwrap_or_default()
    }
    fn __str__(&self) -> String {
        let shown: Vec<String> = self
            .pieces
            .iter()
            .map(|p| {
                let dims: Vec<String> = p.shape.iter().map(|d| d.to_string()).collect();
                format!("{} ({})", p.name, dims.join("×"))
            })
            .collect();
        weightreel::text::printable(&shown.join(" + ")).into_owned()
    }
    fn __repr__(&self) -> String {
        format!("LayerInfo({})", self.__str__())
    }
}

/// Where a stream stands.
#[pyclass(frozen, get_all, module = "weightreel._native")]
struct Progress {
    model_name: String,
    /// Values the selection takes (exact, from the headers).
    total_parameters: u64,
    /// Parameters of the whole model.
    model_parameters: u64,
    processed_parameters: u64,
    current_layer: String,
    chunks_encoded: u64,
    encoding_time: f64,
    progress_percent: f64,
}

#[pymethods]
impl Progress {
    fn __repr__(&self) -> String {
        format!(
            "Progress({}: {} of {} values, {:.1}%)",
            weightreel::text::printable(&self.model_name),
            self.processed_parameters,
            self.total_parameters,
            self.progress_percent
        )
    }
}

enum Message {
    Start {
        total: u64,
        model_params: u64,
    },
    Chunk {
        values: Vec<f32>,
        pieces: Vec<TensorPiece>,
    },
    End(Result<(), Error>),
}

/// Cuts the stream into chunks of `chunk_size` values and sends them; a closed receiver (the
/// Python generator was dropped) stops the stream.
struct ChunkSink {
    chunk_size: usize,
    values: Vec<f32>,
    pieces: Vec<TensorPiece>,
    tx: SyncSender<Message>,
    cancel: Arc<AtomicBool>,
}

impl ChunkSink {
    fn send_chunk(&mut self) -> bool {
        if self.values.is_empty() {
            return true;
        }
        let values = std::mem::replace(&mut self.values, Vec::with_capacity(self.chunk_size));
        let pieces = std::mem::take(&mut self.pieces);
        self.tx.send(Message::Chunk { values, pieces }).is_ok()
            && !self.cancel.load(Ordering::SeqCst)
    }
}

impl Sink for ChunkSink {
    fn values(
        &mut self,
        tensor: &TensorInfo,
        start: u64,
        mut values: &[f32],
    ) -> weightreel::Result<bool> {
        let mut at = start;
        while !values.is_empty() {
            let room = self.chunk_size - self.values.len();
            let take = room.min(values.len());
            self.values.extend_from_slice(&values[..take]);
            match self.pieces.last_mut() {
                Some(p) if p.name == tensor.name && p.start + p.count == at => {
                    p.count += take as u64
                }
                _ => self.pieces.push(TensorPiece {
                    name: tensor.name.clone(),
                    shape: tensor.shape.clone(),
                    role: tensor.role.as_str().to_string(),
                    layer: tensor.layer,
                    start: at,
                    count: take as u64,
                }),
            }
            at += take as u64;
            values = &values[take..];
            if self.values.len() == self.chunk_size && !self.send_chunk() {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The iterator behind `stream_model_parameters`: `(Buffer, LayerInfo, Progress)` per chunk.
#[pyclass(module = "weightreel._native")]
struct ChunkStream {
    rx: std::sync::Mutex<Option<Receiver<Message>>>,
    cancel: Arc<AtomicBool>,
    model_name: String,
    total: u64,
    model_params: u64,
    processed: u64,
    chunks: u64,
    started: Instant,
}

#[pymethods]
impl ChunkStream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        loop {
            let rx = &self.rx;
            let message = py.detach(|| {
                rx.lock()
                    .expect("one reader")
                    .as_ref()
                    .map(|rx| rx.recv_timeout(Duration::from_millis(100)))
            });
            let Some(message) = message else {
                return Err(PyStopIteration::new_err(()));
            };
            match message {
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(e) = py.check_signals() {
                        self.close();
                        return Err(e);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.close();
                    return Err(PyOSError::new_err("weightreel stream thread failed"));
                }
                Ok(Message::Start {
                    total,
                    model_params,
                }) => {
                    self.total = total;
                    self.model_params = model_params;
                }
                Ok(Message::End(result)) => {
                    *self.rx.lock().expect("one reader") = None;
                    result.map_err(py_err)?;
                    return Err(PyStopIteration::new_err(()));
                }
                Ok(Message::Chunk { values, pieces }) => {
                    self.processed += values.len() as u64;
                    self.chunks += 1;
                    let progress = Progress {
                        model_name: self.model_name.clone(),
                        total_parameters: self.total,
                        model_parameters: self.model_params,
                        processed_parameters: self.processed,
                        current_layer: pieces.last().map(|p| p.name.clone()).unwrap_or_default(),
                        chunks_encoded: self.chunks,
                        encoding_time: self.started.elapsed().as_secs_f64(),
                        progress_percent: if self.total > 0 {
                            self.processed as f64 * 100.0 / self.total as f64
                        } else {
                            100.0
                        },
                    };
                    let shape = vec![values.len()];
                    let buffer = Buffer {
                        data: Storage::F32(values),
                        typestr: "<f4",
                        shape,
                    };
                    return PyTuple::new(
                        py,
                        [
                            Bound::new(py, buffer)?.into_any(),
                            Bound::new(py, LayerInfo { pieces })?.into_any(),
                            Bound::new(py, progress)?.into_any(),
                        ],
                    );
                }
            }
        }
    }

    /// Stop reading (also when the generator is closed or dropped).
    fn close(&mut self) {
        self.cancel.store(true, Ordering::SeqCst);
        *self.rx.lock().expect("one reader") = None;
    }
}

impl Drop for ChunkStream {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::SeqCst);
    }
}

/// Stream a model's selected values in chunks of `chunk_size`.
#[pyfunction]
#[pyo3(signature = (model, chunk_size, target_layers=None, max_total_params=None, revision="main", token=None, offline=false))]
fn stream_parameters(
    model: String,
    chunk_size: usize,
    target_layers: Option<Vec<String>>,
    max_total_params: Option<u64>,
    revision: &str,
    token: Option<String>,
    offline: bool,
) -> PyResult<ChunkStream> {
    if chunk_size == 0 || chunk_size > 1 << 24 {
        return Err(PyValueError::new_err(format!(
            "invalid chunk_size {chunk_size} (expected 1..=16777216)"
        )));
    }
    let selection = selection(target_layers, max_total_params)?;
    let open = open_options(revision, token, offline);
    // Two chunks in flight at most: memory stays a few chunks whatever the model.
    let (tx, rx) = mpsc::sync_channel(2);
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    let name = model.clone();
    std::thread::spawn(move || {
        let run = || -> Result<(), Error> {
            let model = Model::open(&name, &open)?;
            let plan = selection.plan(&model);
            if tx
                .send(Message::Start {
                    total: plan.total,
                    model_params: model.total_params(),
                })
                .is_err()
            {
                return Ok(());
            }
            let mut sink = ChunkSink {
                chunk_size,
                values: Vec::with_capacity(chunk_size),
                pieces: Vec::new(),
                tx: tx.clone(),
                cancel: flag.clone(),
            };
            let summary = stream(
                &model,
                &plan,
                &mut sink,
                StreamOptions {
                    cancel: Some(&flag),
                    skip_values: 0,
                },
            )?;
            if !summary.stopped {
                sink.send_chunk();
            }
            Ok(())
        };
        let result = run();
        let _ = tx.send(Message::End(result));
    });
    Ok(ChunkStream {
        rx: std::sync::Mutex::new(Some(rx)),
        cancel,
        model_name: model,
        total: 0,
        model_params: 0,
        processed: 0,
        chunks: 0,
        started: Instant::now(),
    })
}

/// For the benchmark: the Rust side of `stream_parameters` alone (the same chunking sink, the
/// chunks dropped in Rust). Returns the values streamed and the seconds taken.
#[pyfunction]
fn _bench_stream(py: Python<'_>, model: String, chunk_size: usize) -> PyResult<(u64, f64)> {
    let open = open_options("main", None, false);
    run_cancellable(py, Arc::new(AtomicBool::new(false)), move |cancel| {
        let model = Model::open(&model, &open)?;
        let plan = Selection::default().plan(&model);
        let (tx, rx) = mpsc::sync_channel(2);
        let drain = std::thread::spawn(move || rx.into_iter().count());
        let started = Instant::now();
        let mut sink = ChunkSink {
            chunk_size,
            values: Vec::with_capacity(chunk_size),
            pieces: Vec::new(),
            tx,
            cancel: Arc::new(AtomicBool::new(false)),
        };
        let summary = stream(
            &model,
            &plan,
            &mut sink,
            StreamOptions {
                cancel: Some(cancel),
                skip_values: 0,
            },
        )?;
        sink.send_chunk();
        drop(sink);
        let _ = drain.join();
        Ok((summary.values, started.elapsed().as_secs_f64()))
    })
}

/// Decode a reel (a path, or a stored model's name) to `(name, typestr, shape, Buffer)` per
/// tensor. Lossless reels give the stored bits back; BF16 tensors come as float32 (exact:
/// numpy has no bfloat16).
#[pyfunction]
#[pyo3(signature = (reel_or_name, storage_dir))]
fn decode(
    py: Python<'_>,
    reel_or_name: String,
    storage_dir: PathBuf,
) -> PyResult<Vec<(String, Py<Buffer>)>> {
    let arrays = run_cancellable(py, Arc::new(AtomicBool::new(false)), move |_| {
        let reel = reel_path(&reel_or_name, &storage_dir)?;
        let tmp = std::env::temp_dir().join(format!(
            "weightreel-decode-{}-{}.safetensors",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        weightreel::decode::decode_reel_matching(&reel, &tmp, None)?;
        let bytes = std::fs::read(&tmp).map_err(|e| Error::io(&tmp, e));
        let _ = std::fs::remove_file(&tmp);
        let bytes = bytes?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| Error::header(tmp.display().to_string(), e.to_string()))?;
        let mut out = Vec::new();
        for (name, view) in st.tensors() {
            out.push((
                name,
                to_storage(view.dtype(), view.data()),
                view.shape().to_vec(),
            ));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    })?;
    arrays
        .into_iter()
        .map(|(name, (typestr, data), shape)| {
            Ok((
                name,
                Py::new(
                    py,
                    Buffer {
                        data,
                        typestr,
                        shape,
                    },
                )?,
            ))
        })
        .collect()
}

fn to_storage(dtype: safetensors::Dtype, data: &[u8]) -> (&'static str, Storage) {
    use safetensors::Dtype as D;
    let typestr = match dtype {
        D::F64 => "<f8",
        D::F32 => "<f4",
        D::F16 => "<f2",
        D::BF16 => {
            let values = data
                .chunks_exact(2)
                .map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16))
                .collect();
            return ("<f4", Storage::F32(values));
        }
        D::I64 => "<i8",
        D::I32 => "<i4",
        D::I16 => "<i2",
        D::I8 => "|i1",
        D::U64 => "<u8",
        D::U32 => "<u4",
        D::U16 => "<u2",
        D::U8 => "|u1",
        D::BOOL => "|b1",
        _ => "|u1",
    };
    (typestr, Storage::Bytes(data.to_vec()))
}

/// The store at `storage_dir` (a directory, or a `postgres://` URL) with its reels where
/// `$WEIGHTREEL_REELS` says, else where the store recorded them, as the CLI opens it.
fn open_store(storage_dir: &Path, writable: bool) -> Result<Store, Error> {
    let store = if writable {
        Store::open(storage_dir)?
    } else {
        Store::open_read_only(storage_dir)?
    };
    store.with_reels(None)
}

/// A reel path as given, else the reel of the stored model of that name (the newest entry).
fn reel_path(reel_or_name: &str, storage_dir: &Path) -> Result<PathBuf, Error> {
    let path = Path::new(reel_or_name);
    if path.extension().is_some_and(|e| e == "mkv") && path.exists() {
        return Ok(path.to_path_buf());
    }
    let store = open_store(storage_dir, false)?;
    // A stored name, or the source it was encoded from.
    let entry = store
        .matching(reel_or_name, None)?
        .into_iter()
        .last()
        .ok_or_else(|| {
            Error::model(
                reel_or_name,
                format!(
                    "no reel file and no stored model of this name in {}",
                    storage_dir.display()
                ),
            )
        })?;
    Ok(store.reel_path(&entry.record.totals.reel_file))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(encode, m)?)?;
    m.add_function(wrap_pyfunction!(list_models, m)?)?;
    m.add_function(wrap_pyfunction!(statistics, m)?)?;
    m.add_function(wrap_pyfunction!(inspect, m)?)?;
    m.add_function(wrap_pyfunction!(search_similar, m)?)?;
    m.add_function(wrap_pyfunction!(compare, m)?)?;
    m.add_function(wrap_pyfunction!(stream_parameters, m)?)?;
    m.add_function(wrap_pyfunction!(decode, m)?)?;
    m.add_function(wrap_pyfunction!(_bench_stream, m)?)?;
    m.add_class::<Buffer>()?;
    m.add_class::<LayerInfo>()?;
    m.add_class::<TensorPiece>()?;
    m.add_class::<Progress>()?;
    m.add_class::<ChunkStream>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
