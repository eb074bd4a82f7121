//! Locating a model (file, directory, HF cache, Hub) and reading its headers into one ordered
//! list of tensors. No tensor data is read here.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use safetensors::Dtype;
use serde::Serialize;

use super::bytes::{ByteSource, LocalFile, ReadStats};
use super::cache;
use super::header::read_header;
use super::table::{Encoding, FileTable};
use crate::error::{Error, Result};
use crate::roles::{layer_index, Role};

/// The public Hub endpoint, the same default as `huggingface_hub`.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Where to look for a model and how.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Branch, tag or commit for Hub repos.
    pub revision: String,
    /// Never use the network (also set by `HF_HUB_OFFLINE=1`).
    pub offline: bool,
    /// Bearer token for the Hub (else `HF_TOKEN`). Never printed or stored.
    pub token: Option<String>,
    /// Hub endpoint (else `HF_ENDPOINT`, else [`DEFAULT_ENDPOINT`]).
    pub endpoint: Option<String>,
    /// HF cache directory (else from the environment).
    pub cache_dir: Option<PathBuf>,
    /// Connections, timeouts and retries of the Hub client.
    pub hub: HubSettings,
    /// Read only this weight format when a model holds several (`--format`); `None` prefers
    /// safetensors, then PyTorch, then GGUF.
    pub format: Option<WeightFormat>,
}

/// The weight formats weightreel reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    /// `.safetensors` files.
    Safetensors,
    /// PyTorch `torch.save` files: `pytorch_model.bin`, `*.pth`, `*.pt`, `*.ckpt`.
    PyTorch,
    /// `.gguf` files.
    Gguf,
}

impl WeightFormat {
    /// Parse `safetensors`, `bin` (or `pytorch`, `pth`, `pt`) or `gguf`.
    pub fn parse(text: &str) -> Result<WeightFormat> {
        match text.trim().to_ascii_lowercase().as_str() {
            "safetensors" => Ok(WeightFormat::Safetensors),
            "bin" | "pytorch" | "pth" | "pt" => Ok(WeightFormat::PyTorch),
            "gguf" => Ok(WeightFormat::Gguf),
            _ => Err(Error::invalid(
                "--format",
                format!("'{text}'"),
                "safetensors, bin or gguf",
            )),
        }
    }

    /// The format of a file, from its name.
    pub fn of_file(name: &str) -> Option<WeightFormat> {
        let name = name.to_ascii_lowercase();
        if name.ends_with(".safetensors") {
            Some(WeightFormat::Safetensors)
        } else if [".bin", ".pth", ".pt", ".ckpt"]
            .iter()
            .any(|e| name.ends_with(e))
        {
            Some(WeightFormat::PyTorch)
        } else if name.ends_with(".gguf") {
            Some(WeightFormat::Gguf)
        } else {
            None
        }
    }
}

/// Read the tensor table of one file in the format its name says.
pub fn read_table(file: &str, source: &dyn ByteSource) -> Result<FileTable> {
    match WeightFormat::of_file(file) {
        Some(WeightFormat::PyTorch) => super::pytorch::read_pytorch(source),
        Some(WeightFormat::Gguf) => super::gguf::read_gguf(source),
        _ => read_header(source).map(FileTable::from),
    }
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            revision: "main".into(),
            offline: false,
            token: None,
            endpoint: None,
            cache_dir: None,
            hub: HubSettings::default(),
            format: None,
        }
    }
}

/// How the Hub client uses the network. Every field has an environment variable
/// ([`HubSettings::from_env`]); the defaults suit a real link to huggingface.co.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubSettings {
    /// Range requests of one model in flight at once, each on its own keep-alive connection
    /// (`WEIGHTREEL_HUB_CONNECTIONS`, `--hub-connections`).
    pub connections: usize,
    /// Longest wait for a TCP (and TLS) connection (`WEIGHTREEL_HUB_CONNECT_TIMEOUT`, seconds).
    pub connect_timeout: Duration,
    /// Longest wait for a range read to answer (`WEIGHTREEL_HUB_READ_TIMEOUT`, seconds): a read
    /// of `n` bytes must end within this plus `n` / 64 KiB/s, so a stall or a trickle ends it.
    pub read_timeout: Duration,
    /// Longest time for any one request, body included (`WEIGHTREEL_HUB_TIMEOUT`, seconds): the
    /// listing, `config.json`, the index, and the cap of every range read.
    pub request_timeout: Duration,
    /// Further attempts after a `429`, a `5xx`, a timeout or a dropped connection
    /// (`WEIGHTREEL_HUB_RETRIES`), with exponential backoff from [`HubSettings::BACKOFF`].
    pub retries: u32,
}

impl Default for HubSettings {
    fn default() -> Self {
        HubSettings {
            connections: 16,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(300),
            retries: 3,
        }
    }
}

impl HubSettings {
    /// Valid connection counts.
    pub const CONNECTIONS: std::ops::RangeInclusive<usize> = 1..=64;
    /// Valid retry counts.
    pub const RETRIES: std::ops::RangeInclusive<u32> = 0..=10;
    /// Valid timeouts, in seconds.
    pub const TIMEOUT_SECS: std::ops::RangeInclusive<f64> = 0.001..=86_400.0;
    /// Wait before the first retry; it doubles with each further one (a `Retry-After` of up to
    /// a minute is honoured instead).
    pub const BACKOFF: Duration = Duration::from_millis(250);

    /// The defaults, overridden by the `WEIGHTREEL_HUB_*` variables that are set. A malformed
    /// or out-of-range value is an error naming the variable and the valid range.
    pub fn from_env() -> Result<HubSettings> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let mut settings = HubSettings::default();
        if let Some(v) = var("WEIGHTREEL_HUB_CONNECTIONS") {
            settings.connections =
                parse_count("WEIGHTREEL_HUB_CONNECTIONS", &v, Self::CONNECTIONS)?;
        }
        if let Some(v) = var("WEIGHTREEL_HUB_RETRIES") {
            settings.retries = parse_count("WEIGHTREEL_HUB_RETRIES", &v, Self::RETRIES)?;
        }
        for (name, field) in [
            (
                "WEIGHTREEL_HUB_CONNECT_TIMEOUT",
                &mut settings.connect_timeout,
            ),
            ("WEIGHTREEL_HUB_READ_TIMEOUT", &mut settings.read_timeout),
            ("WEIGHTREEL_HUB_TIMEOUT", &mut settings.request_timeout),
        ] {
            if let Some(v) = var(name) {
                *field = parse_seconds(name, &v)?;
            }
        }
        Ok(settings)
    }

    /// Check every field against its range.
    pub fn validate(&self) -> Result<()> {
        check_count("connections", self.connections, Self::CONNECTIONS)?;
        check_count("retries", self.retries, Self::RETRIES)?;
        for (name, value) in [
            ("connect timeout", self.connect_timeout),
            ("read timeout", self.read_timeout),
            ("request timeout", self.request_timeout),
        ] {
            if !Self::TIMEOUT_SECS.contains(&value.as_secs_f64()) {
                return Err(timeout_error(name, &format!("{:?}", value)));
            }
        }
        Ok(())
    }
}

fn check_count<T: PartialOrd + std::fmt::Display>(
    name: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(Error::invalid(
            name,
            &value,
            format!("{}..={}", range.start(), range.end()),
        ))
    }
}

/// Parse a whole number for `name` within `range`.
pub fn parse_count<T>(name: &str, text: &str, range: std::ops::RangeInclusive<T>) -> Result<T>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    let value: T = text.trim().parse().map_err(|_| {
        Error::invalid(
            name,
            format!("'{text}'"),
            format!("a whole number in {}..={}", range.start(), range.end()),
        )
    })?;
    check_count(name, value, range)
}

fn timeout_error(name: &str, value: &str) -> Error {
    Error::invalid(
        name,
        value,
        format!(
            "seconds in {}..={}",
            HubSettings::TIMEOUT_SECS.start(),
            HubSettings::TIMEOUT_SECS.end()
        ),
    )
}

fn parse_seconds(name: &str, text: &str) -> Result<Duration> {
    match text.trim().parse::<f64>() {
        Ok(secs) if HubSettings::TIMEOUT_SECS.contains(&secs) => Ok(Duration::from_secs_f64(secs)),
        _ => Err(timeout_error(name, &format!("'{text}'"))),
    }
}

impl OpenOptions {
    /// Fill unset fields from the environment like `huggingface_hub` does.
    pub fn with_env(mut self) -> Self {
        if !self.offline {
            self.offline = std::env::var("HF_HUB_OFFLINE")
                .map(|v| {
                    matches!(
                        v.trim().to_ascii_lowercase().as_str(),
                        "1" | "true" | "yes" | "on"
                    )
                })
                .unwrap_or(false);
        }
        if self.token.is_none() {
            self.token = std::env::var("HF_TOKEN")
                .ok()
                .filter(|t| !t.is_empty())
                .or_else(saved_token);
        }
        if self.endpoint.is_none() {
            self.endpoint = std::env::var("HF_ENDPOINT").ok().filter(|t| !t.is_empty());
        }
        if self.cache_dir.is_none() {
            self.cache_dir = cache::cache_dir();
        }
        self
    }
}

/// Where the model was found.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Origin {
    /// A single `.safetensors` file.
    File { path: String },
    /// A directory with `model.safetensors` or shards plus an index.
    Directory { path: String },
    /// A snapshot in the local Hugging Face cache.
    Cache {
        repo: String,
        revision: String,
        commit: String,
        path: String,
    },
    /// The Hub over HTTP.
    Hub {
        endpoint: String,
        repo: String,
        revision: String,
        commit: String,
    },
}

impl Origin {
    /// Short kind name: file, directory, cache, hub.
    pub fn kind(&self) -> &'static str {
        match self {
            Origin::File { .. } => "file",
            Origin::Directory { .. } => "directory",
            Origin::Cache { .. } => "cache",
            Origin::Hub { .. } => "hub",
        }
    }

    /// The resolved commit, for cache and Hub origins.
    pub fn commit(&self) -> Option<&str> {
        match self {
            Origin::Cache { commit, .. } | Origin::Hub { commit, .. } => Some(commit),
            _ => None,
        }
    }

    /// The requested revision, for cache and Hub origins.
    pub fn revision(&self) -> Option<&str> {
        match self {
            Origin::Cache { revision, .. } | Origin::Hub { revision, .. } => Some(revision),
            _ => None,
        }
    }
}

/// `model_type` and `architectures` from `config.json`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ModelConfig {
    /// e.g. `bert`, `gpt2`.
    pub model_type: Option<String>,
    /// e.g. `["BertModel"]`.
    pub architectures: Vec<String>,
    /// `_name_or_path`: the repo id (or a path) the model was saved from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name_or_path: Option<String>,
    /// `hidden_size` (`n_embd`, `d_model`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hidden_size: Option<u64>,
    /// `num_hidden_layers` (`n_layer`, `num_layers`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layers: Option<u64>,
    /// `num_attention_heads` (`n_head`, `num_heads`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heads: Option<u64>,
    /// `vocab_size`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vocab_size: Option<u64>,
    /// The file as read (at most [`MAX_KEPT_CONFIG_BYTES`]), so that a decode can write it
    /// back beside the weights.
    #[serde(skip)]
    pub raw: Option<String>,
}

/// Largest `config.json` kept whole for the reel (real ones are a few KB).
pub const MAX_KEPT_CONFIG_BYTES: usize = 256 << 10;

impl ModelConfig {
    /// The fields shown and kept from a `config.json`; `None` when it is not a JSON object.
    pub fn parse(bytes: &[u8]) -> Option<ModelConfig> {
        let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        let number = |keys: &[&str]| keys.iter().find_map(|k| value.get(*k)?.as_u64());
        Some(ModelConfig {
            name_or_path: value
                .get("_name_or_path")
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            hidden_size: number(&["hidden_size", "n_embd", "d_model", "dim"]),
            layers: number(&["num_hidden_layers", "n_layer", "num_layers", "n_layers"]),
            heads: number(&["num_attention_heads", "n_head", "num_heads", "n_heads"]),
            vocab_size: number(&["vocab_size"]),
            raw: (bytes.len() <= MAX_KEPT_CONFIG_BYTES)
                .then(|| String::from_utf8(bytes.to_vec()).ok())
                .flatten(),
            model_type: value
                .get("model_type")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            architectures: value
                .get("architectures")
                .and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

/// One weight file of a model.
pub struct Shard {
    /// File name (relative to the model) as shown to users.
    pub file: String,
    /// Where its bytes come from.
    pub source: Arc<dyn ByteSource>,
    /// Its checked tensor table.
    pub table: FileTable,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("file", &self.file)
            .field("len", &self.source.len())
            .field("tensors", &self.table.tensor_count())
            .finish()
    }
}

/// A tensor that will be streamed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorInfo {
    /// Name as stored.
    pub name: String,
    /// Stored element type.
    #[serde(serialize_with = "ser_dtype")]
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<usize>,
    /// Role from the role table.
    pub role: Role,
    /// Layer index, if the name has one.
    pub layer: Option<u32>,
    /// Index into [`Model::shards`].
    pub shard: usize,
    /// Absolute byte offset in the shard file.
    pub offset: u64,
    /// Byte length.
    pub byte_len: u64,
    /// How the bytes become values (plain elements, or GGML blocks dequantized to F32).
    pub encoding: Encoding,
}

impl TensorInfo {
    /// Values per block and bytes per block (one element for plain data).
    pub fn block(&self) -> (u64, u64) {
        self.encoding.block(self.dtype)
    }

    /// The absolute byte range holding values `start..start + len`: whole blocks.
    pub fn byte_range(&self, start: u64, len: u64) -> (u64, u64) {
        let (values, bytes) = self.block();
        (
            self.offset + start / values * bytes,
            self.offset + (start + len).div_ceil(values) * bytes,
        )
    }

    /// The stored type's name: the dtype, or the GGML quantization (`Q4_1`).
    pub fn stored_type(&self) -> String {
        self.encoding.stored_type(self.dtype)
    }

    /// Decode values `start..start + out.len()` from `raw`, the bytes of
    /// [`TensorInfo::byte_range`]. False for a dtype that has no f32 conversion.
    pub fn decode(&self, raw: &[u8], start: u64, out: &mut [f32]) -> bool {
        match self.encoding {
            Encoding::Plain => super::convert::to_f32(self.dtype, raw, out),
            Encoding::Blocks(t) => {
                let skip = (start % t.block().0) as usize;
                super::dequant::dequantize(t, raw, skip, out);
                true
            }
        }
    }

    /// Number of elements.
    pub fn numel(&self) -> u64 {
        self.shape.iter().map(|&d| d as u64).product()
    }

    /// Bytes per element.
    pub fn elem_bytes(&self) -> u64 {
        (self.dtype.bitsize() / 8) as u64
    }
}

/// A tensor that is listed but not streamed, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SkippedTensor {
    /// Name as stored.
    pub name: String,
    /// Stored type: a dtype (`I64`) or a GGML type (`IQ2_XXS`).
    pub dtype: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Why it is skipped.
    pub reason: String,
    /// Where its plain little-endian bytes are (shard, offset, length), when they are, so
    /// that a reel can keep a small buffer verbatim.
    #[serde(skip)]
    pub stored_at: Option<(usize, u64, u64)>,
}

fn ser_dtype<S: serde::Serializer>(dtype: &Dtype, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{dtype:?}"))
}

/// Element types we convert to f32.
pub fn is_streamable_dtype(dtype: Dtype) -> bool {
    matches!(
        dtype,
        Dtype::F64
            | Dtype::F32
            | Dtype::F16
            | Dtype::BF16
            | Dtype::I8
            | Dtype::U8
            | Dtype::I16
            | Dtype::U16
            | Dtype::I32
            | Dtype::U32
            | Dtype::I64
            | Dtype::U64
    )
}

/// Buffers that hold indices or masks rather than weights, skipped by default.
fn buffer_reason(name: &str, dtype: Dtype, shape: &[usize]) -> Option<String> {
    let last = name.rsplit('.').next().unwrap_or(name);
    if dtype == Dtype::BOOL {
        return Some("bool mask".into());
    }
    if matches!(last, "position_ids" | "token_type_ids" | "input_ids") {
        return Some("index buffer".into());
    }
    if last == "num_batches_tracked" {
        return Some("batch-norm step counter".into());
    }
    if last == "inv_freq" {
        return Some("rotary frequency buffer".into());
    }
    if last == "masked_bias" || (name.ends_with("attn.bias") && shape.len() == 4) {
        return Some("attention mask buffer".into());
    }
    if !is_streamable_dtype(dtype) {
        return Some(format!("dtype {dtype:?} is not supported yet"));
    }
    None
}

/// A located model with all headers read.
#[derive(Debug)]
pub struct Model {
    /// The name as the user gave it (a path, a repo id), for messages.
    pub spec: String,
    /// The name it is stored under: the repo id when known, else the directory or file name
    /// (see [`super::naming`]); `--name` replaces it.
    pub name: String,
    /// Where it was found.
    pub origin: Origin,
    /// `config.json` fields, when present.
    pub config: Option<ModelConfig>,
    /// The safetensors files in shard order.
    pub shards: Vec<Shard>,
    /// Streamable tensors: shard order, then data-offset order.
    pub tensors: Vec<TensorInfo>,
    /// Tensors listed but not streamed.
    pub skipped: Vec<SkippedTensor>,
}

impl Model {
    /// Total elements over streamable tensors.
    pub fn total_params(&self) -> u64 {
        self.tensors.iter().map(TensorInfo::numel).sum()
    }

    /// Bytes read so far from all shards (headers included).
    pub fn read_stats(&self) -> ReadStats {
        self.shards
            .iter()
            .fold(ReadStats::default(), |acc, s| acc + s.source.stats())
    }

    /// "safetensors", "gguf v3", "pytorch zip (N shards)".
    pub fn format(&self) -> String {
        let name = self
            .shards
            .first()
            .map_or("safetensors".into(), |s| s.table.format.name());
        if self.shards.len() == 1 {
            name
        } else {
            format!("{name} ({} shards)", self.shards.len())
        }
    }

    /// Open `spec`: a `.safetensors` path, a directory, or a Hub repo id (cache first, then Hub).
    pub fn open(spec: &str, options: &OpenOptions) -> Result<Model> {
        let path = Path::new(spec);
        if path.exists() {
            return if path.is_dir() {
                open_directory(spec, path, options.format)
            } else {
                let source: Arc<dyn ByteSource> = Arc::new(LocalFile::open(path)?);
                let config = read_local_config(path.parent().unwrap_or(Path::new(".")))?;
                let file = path
                    .file_name()
                    .map_or(spec.to_string(), |f| f.to_string_lossy().into_owned());
                Model::assemble(
                    spec,
                    Origin::File {
                        path: spec.to_string(),
                    },
                    config,
                    vec![(file, source)],
                    None,
                )
            };
        }
        if let Some(hub_ref) = HubRef::parse_url(spec, options.endpoint.as_deref()) {
            // A pasted Hub URL: its revision wins over --revision, its file is the one read.
            let hub_ref = hub_ref?;
            let mut options = options.clone();
            if let Some(revision) = hub_ref.revision {
                options.revision = revision;
            }
            return open_repo(&hub_ref.repo, &options, hub_ref.file.as_deref());
        }
        if looks_like_path(spec) {
            return Err(Error::model(spec, "no such file or directory"));
        }
        open_repo(spec, options, None)
    }

    /// Read every shard header and build the ordered tensor list. `weight_map` (from an index
    /// file) says which shard must hold which tensor.
    fn assemble(
        spec: &str,
        origin: Origin,
        config: Option<ModelConfig>,
        files: Vec<(String, Arc<dyn ByteSource>)>,
        weight_map: Option<&BTreeMap<String, String>>,
    ) -> Result<Model> {
        let mut shards = Vec::with_capacity(files.len());
        let mut tensors = Vec::new();
        let mut skipped = Vec::new();
        let mut seen: HashMap<String, String> = HashMap::new();
        for (shard_index, (file, source)) in files.into_iter().enumerate() {
            let table = read_table(&file, source.as_ref())?;
            skipped.extend(table.skipped.iter().cloned());
            for t in &table.tensors {
                if let Some(previous) = seen.insert(t.name.clone(), file.clone()) {
                    return Err(Error::tensor(
                        source.name(),
                        &t.name,
                        format!("also present in shard {previous}"),
                    ));
                }
                if let Some(map) = weight_map {
                    match map.get(&t.name) {
                        Some(expected) if *expected != file => {
                            return Err(Error::tensor(
                                source.name(),
                                &t.name,
                                format!("the index places it in {expected}"),
                            ))
                        }
                        _ => {}
                    }
                }
                if let Some(reason) = buffer_reason(&t.name, t.dtype, &t.shape) {
                    skipped.push(SkippedTensor {
                        stored_at: (t.encoding == super::table::Encoding::Plain).then_some((
                            shard_index,
                            t.offset,
                            t.byte_len,
                        )),
                        name: t.name.clone(),
                        dtype: t.encoding.stored_type(t.dtype),
                        shape: t.shape.clone(),
                        reason,
                    });
                    continue;
                }
                tensors.push(TensorInfo {
                    name: t.name.clone(),
                    dtype: t.dtype,
                    shape: t.shape.clone(),
                    role: Role::of(&t.name),
                    layer: layer_index(&t.name),
                    shard: shard_index,
                    offset: t.offset,
                    byte_len: t.byte_len,
                    encoding: t.encoding,
                });
            }
            shards.push(Shard {
                file,
                source,
                table,
            });
        }
        if let Some(map) = weight_map {
            if let Some((name, file)) = map.iter().find(|(name, _)| !seen.contains_key(*name)) {
                return Err(Error::tensor(
                    file.as_str(),
                    name.as_str(),
                    "listed in the index but missing from its shard",
                ));
            }
        }
        // A GGUF file names its architecture itself; a config.json next to it still wins.
        let config = config.or_else(|| {
            let arch = shards.first()?.table.metadata.get("general.architecture")?;
            matches!(shards[0].table.format, super::table::FileFormat::Gguf(_)).then(|| {
                ModelConfig {
                    model_type: Some(arch.clone()),
                    ..ModelConfig::default()
                }
            })
        });
        let name = match &origin {
            Origin::Hub { repo, .. } | Origin::Cache { repo, .. } => repo.clone(),
            Origin::File { path } | Origin::Directory { path } => super::naming::local_name(
                Path::new(path),
                config.as_ref().and_then(|c| c.name_or_path.as_deref()),
            ),
        };
        Ok(Model {
            spec: spec.to_string(),
            name,
            origin,
            config,
            shards,
            tensors,
            skipped,
        })
    }
}

/// A repo, revision and file named by a Hub URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubRef {
    /// `org/name` or `name`.
    pub repo: String,
    /// From `/tree/REV`, `/blob/REV/…` or `/resolve/REV/…`.
    pub revision: Option<String>,
    /// From `/blob/REV/FILE` or `/resolve/REV/FILE`.
    pub file: Option<String>,
}

/// Hosts whose URLs name Hub repos, besides the endpoint's own.
const HUB_HOSTS: [&str; 3] = ["huggingface.co", "www.huggingface.co", "hf.co"];

impl HubRef {
    /// Parse `spec` when it is a URL on the Hub (`https://huggingface.co/…`, `hf.co`, or the
    /// host of `endpoint`): `None` when it is not such a URL, an error when it is one but names
    /// no model (a dataset, a space, another page).
    pub fn parse_url(spec: &str, endpoint: Option<&str>) -> Option<Result<HubRef>> {
        let (host, path) = url_host_and_path(spec)?;
        let endpoint_host = url_host_and_path(endpoint.unwrap_or(DEFAULT_ENDPOINT))
            .map(|(h, _)| h.to_ascii_lowercase());
        let host = host.to_ascii_lowercase();
        if !HUB_HOSTS.contains(&host.as_str()) && Some(&host) != endpoint_host.as_ref() {
            return None;
        }
        Some(HubRef::parse_path(spec, path))
    }

    fn parse_path(spec: &str, path: &str) -> Result<HubRef> {
        let path = path.split(['?', '#']).next().unwrap_or("");
        let parts: Vec<String> = path
            .split('/')
            .filter(|p| !p.is_empty())
            .map(percent_decode)
            .collect();
        let refuse = |why: &str| {
            Error::model(
                spec,
                format!("{why} (expected https://huggingface.co/ORG/NAME, with /tree/REV or /blob/REV/FILE)"),
            )
        };
        if matches!(
            parts.first().map(String::as_str),
            Some("datasets" | "spaces")
        ) {
            return Err(refuse("is a dataset or space URL, not a model's"));
        }
        let is_view = |p: &String| matches!(p.as_str(), "tree" | "blob" | "resolve");
        let (repo, rest) = match parts.as_slice() {
            [] => return Err(refuse("names no repo")),
            [name] => (name.clone(), &parts[1..]),
            [name, next, ..] if is_view(next) => (name.clone(), &parts[1..]),
            [org, name, ..] => (format!("{org}/{name}"), &parts[2..]),
        };
        validate_repo_id(&repo)?;
        let (revision, file) = match rest {
            [] => (None, None),
            [view, revision] if view == "tree" => (Some(revision.clone()), None),
            [view, revision, file @ ..] if is_view(view) && !file.is_empty() => {
                let file = file.join("/");
                (Some(revision.clone()), (view != "tree").then_some(file))
            }
            _ => return Err(refuse("is not a model page")),
        };
        if let Some(file) = &file {
            if file.split('/').any(|p| p == "..") {
                return Err(refuse("names a file outside the repo"));
            }
        }
        Ok(HubRef {
            repo,
            revision,
            file,
        })
    }
}

/// The host and the path of an `http(s)://` URL, without userinfo or port.
fn url_host_and_path(text: &str) -> Option<(&str, &str)> {
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))?;
    let end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    Some((host, path))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Open repo `spec` at `options.revision`: the HF cache first, then the Hub. `only` restricts
/// the weights read to one file of the repo.
fn open_repo(spec: &str, options: &OpenOptions, only: Option<&str>) -> Result<Model> {
    validate_repo_id(spec)?;
    validate_revision(&options.revision)?;
    if let Some(root) = &options.cache_dir {
        if let Some(snapshot) = cache::find_snapshot(root, spec, &options.revision) {
            let files = restrict(
                spec,
                list_dir(&snapshot.dir)?,
                only,
                &snapshot.dir.display().to_string(),
            )?;
            if files.iter().any(|f| is_weight_file(f)) {
                // A cached snapshot that cannot be read is reported, not silently replaced by a
                // download: the user may be offline on purpose, or the cache may need repair.
                return open_snapshot(spec, options, &snapshot, only);
            }
            // Only config.json and the like were cached (a `hf download` of configs, a
            // transformers run that stopped early): the weights come from the Hub.
            if options.offline {
                return Err(Error::model(
                    spec,
                    format!(
                        "the Hugging Face cache holds no weights for it at revision '{}' ({} has only {}) and offline mode is on (HF_HUB_OFFLINE or --offline)",
                        options.revision,
                        snapshot.dir.display(),
                        if files.is_empty() { "nothing".to_string() } else { files.join(", ") }
                    ),
                ));
            }
            return open_hub(spec, options, only);
        }
    }
    if options.offline {
        let searched = match &options.cache_dir {
            Some(root) => format!(
                "looked in {}",
                root.join(cache::repo_folder(spec)).display()
            ),
            None => "no cache directory: set HF_HUB_CACHE or HF_HOME".to_string(),
        };
        return Err(Error::model(
            spec,
            format!(
                "not in the Hugging Face cache at revision '{}' ({searched}) and offline mode is on (HF_HUB_OFFLINE or --offline)",
                options.revision
            ),
        ));
    }
    open_hub(spec, options, only)
}

/// A file that holds weights (not a training checkpoint's optimizer or RNG state).
fn is_weight_file(name: &str) -> bool {
    !name.contains('/')
        && WeightFormat::of_file(name).is_some()
        && !NOT_WEIGHTS.contains(&name)
        && !name.starts_with("rng_state")
}

/// `files` kept to `only` when it is given; an error naming `place` when it is not there.
fn restrict(
    spec: &str,
    files: Vec<String>,
    only: Option<&str>,
    place: &str,
) -> Result<Vec<String>> {
    let Some(only) = only else { return Ok(files) };
    if files.iter().any(|f| f == only) {
        Ok(vec![only.to_string()])
    } else {
        Err(Error::model(
            spec,
            format!("has no file '{only}' ({place})"),
        ))
    }
}

fn looks_like_path(spec: &str) -> bool {
    spec.starts_with('/')
        || spec.starts_with("./")
        || spec.starts_with("../")
        || spec.starts_with('~')
        || WeightFormat::of_file(spec).is_some()
        || spec.matches('/').count() > 1
}

/// Accept `name` or `org/name` with the characters the Hub allows; refuse anything that could
/// escape a directory or a URL path (`..`, leading dots, backslashes, empty parts).
pub fn validate_repo_id(repo: &str) -> Result<()> {
    let problem = if repo.is_empty() {
        Some("is empty")
    } else if repo.len() > 96 {
        Some("is longer than 96 characters")
    } else if repo.contains("..") || repo.contains("--") {
        Some("contains '..' or '--', which repo ids may not")
    } else if repo.split('/').count() > 2 {
        Some("has more than one '/' (expected 'name' or 'org/name')")
    } else if repo.split('/').any(|part| {
        part.is_empty()
            || part.starts_with('.')
            || part.starts_with('-')
            || !part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    }) {
        Some("is not a valid repo id (expected 'name' or 'org/name' of letters, digits, '-', '_', '.')")
    } else {
        None
    };
    match problem {
        Some(p) => Err(Error::model(repo, p)),
        None => Ok(()),
    }
}

/// Revisions are branch names, tags or commits; refuse path tricks.
pub fn validate_revision(revision: &str) -> Result<()> {
    let bad = revision.is_empty()
        || revision.contains("..")
        || revision.starts_with('/')
        || revision.contains('\\')
        || revision
            .bytes()
            .any(|b| b.is_ascii_control() || b == b' ' || b == b'?' || b == b'#' || b == b'%');
    if bad {
        return Err(Error::invalid(
            "--revision",
            format!("'{revision}'"),
            "a branch, tag or commit without '..', spaces, '?', '#' or '%'",
        ));
    }
    Ok(())
}

/// Largest `config.json` read: real ones are a few KB.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Largest `model.safetensors.index.json` read: a weight map of 100,000 tensors is ~10 MB.
pub const MAX_INDEX_BYTES: u64 = 64 << 20;

/// `config.json` of a local model directory: none when there is none (or it does not parse),
/// an error when it is not a regular file or larger than [`MAX_CONFIG_BYTES`].
fn read_local_config(dir: &Path) -> Result<Option<ModelConfig>> {
    let path = dir.join("config.json");
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(None);
    }
    let bytes = super::bytes::read_small_file(&path, MAX_CONFIG_BYTES)?;
    Ok(ModelConfig::parse(&bytes))
}

/// What to read from a listing of repo files: the weight files in shard order and the
/// index's weight map, or an explanation of why nothing can be read.
pub(crate) enum FilePlan {
    /// One file.
    Single(String),
    /// Shards named by this index file (`model.safetensors.index.json`,
    /// `pytorch_model.bin.index.json`).
    Indexed(String),
    /// Several safetensors files without an index, read in name order.
    Several(Vec<String>),
}

/// PyTorch files in training checkpoints that hold no model weights.
const NOT_WEIGHTS: [&str; 5] = [
    "training_args.bin",
    "optimizer.pt",
    "scheduler.pt",
    "scaler.pt",
    "rng_state.pth",
];

/// The plan for one format, if `files` hold any of it.
fn plan_format(spec: &str, files: &[String], format: WeightFormat) -> Result<Option<FilePlan>> {
    let (single, index) = match format {
        WeightFormat::Safetensors => ("model.safetensors", "model.safetensors.index.json"),
        WeightFormat::PyTorch => ("pytorch_model.bin", "pytorch_model.bin.index.json"),
        WeightFormat::Gguf => ("", ""),
    };
    if files.iter().any(|f| f == single) {
        return Ok(Some(FilePlan::Single(single.into())));
    }
    if files.iter().any(|f| f == index) {
        return Ok(Some(FilePlan::Indexed(index.into())));
    }
    let mut found: Vec<String> = files
        .iter()
        .filter(|f| {
            !f.contains('/')
                && WeightFormat::of_file(f) == Some(format)
                && !NOT_WEIGHTS.contains(&f.as_str())
                && !f.starts_with("rng_state")
        })
        .cloned()
        .collect();
    found.sort();
    Ok(match found.len() {
        0 => None,
        1 => Some(FilePlan::Single(found.remove(0))),
        _ if format == WeightFormat::Safetensors => Some(FilePlan::Several(found)),
        _ => {
            return Err(Error::model(
                spec,
                format!(
                    "holds several {} files and no index ({}): open one of them by its path",
                    if format == WeightFormat::Gguf {
                        "GGUF"
                    } else {
                        "PyTorch"
                    },
                    found.join(", ")
                ),
            ))
        }
    })
}

/// Choose which files to read among `files` (relative names): safetensors first, then PyTorch,
/// then GGUF, unless `format` asks for one.
pub(crate) fn plan_files(
    spec: &str,
    files: &[String],
    format: Option<WeightFormat>,
) -> Result<FilePlan> {
    let order = match format {
        Some(f) => vec![f],
        None => vec![
            WeightFormat::Safetensors,
            WeightFormat::PyTorch,
            WeightFormat::Gguf,
        ],
    };
    for f in order {
        if let Some(plan) = plan_format(spec, files, f)? {
            return Ok(plan);
        }
    }
    let weights: Vec<&str> = files
        .iter()
        .map(String::as_str)
        .filter(|f| {
            WeightFormat::of_file(f).is_some()
                || [".h5", ".msgpack", ".onnx"]
                    .iter()
                    .any(|ext| f.ends_with(ext))
        })
        .collect();
    if let (Some(f), false) = (format, weights.is_empty()) {
        let name = match f {
            WeightFormat::Safetensors => "safetensors",
            WeightFormat::PyTorch => "PyTorch (.bin, .pth, .pt)",
            WeightFormat::Gguf => "GGUF",
        };
        return Err(Error::model(
            spec,
            format!(
                "--format asks for {name} weights but it has only {}",
                weights.join(", ")
            ),
        ));
    }
    if weights.is_empty() {
        Err(Error::model(
            spec,
            "no model weights found (no .safetensors, .bin, .pth or .gguf file)",
        ))
    } else {
        Err(Error::model(
            spec,
            format!(
                "found only {} — these formats are not supported yet; weightreel reads safetensors, PyTorch and GGUF",
                weights.join(", ")
            ),
        ))
    }
}

/// Parse an index file into its weight map and the shard names in order.
pub(crate) fn parse_index(
    file: &str,
    bytes: &[u8],
) -> Result<(BTreeMap<String, String>, Vec<String>)> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: BTreeMap<String, String>,
    }
    let index: Index = serde_json::from_slice(bytes)
        .map_err(|e| Error::header(file, format!("invalid index: {e}")))?;
    let mut shards: Vec<String> = index.weight_map.values().cloned().collect();
    shards.sort();
    shards.dedup();
    for shard in &shards {
        if shard.contains("..") || shard.starts_with('/') || shard.contains('\\') {
            return Err(Error::header(
                file,
                format!("shard name '{shard}' escapes the model directory"),
            ));
        }
    }
    Ok((index.weight_map, shards))
}

fn list_dir(dir: &Path) -> Result<Vec<String>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        files.push(entry.file_name().to_string_lossy().into_owned());
    }
    files.sort();
    Ok(files)
}

fn open_local_files(
    spec: &str,
    dir: &Path,
    origin: Origin,
    format: Option<WeightFormat>,
    only: Option<&str>,
) -> Result<Model> {
    let files = restrict(spec, list_dir(dir)?, only, &dir.display().to_string())?;
    let config = read_local_config(dir)?;
    let open = |name: &str| -> Result<(String, Arc<dyn ByteSource>)> {
        let path = dir.join(name);
        if !path.exists() {
            return Err(Error::model(
                spec,
                format!("missing shard {}", path.display()),
            ));
        }
        Ok((
            name.to_string(),
            Arc::new(LocalFile::open(&path)?) as Arc<dyn ByteSource>,
        ))
    };
    match plan_files(spec, &files, format)? {
        FilePlan::Single(name) => Model::assemble(spec, origin, config, vec![open(&name)?], None),
        FilePlan::Several(names) => {
            let files = names.iter().map(|n| open(n)).collect::<Result<Vec<_>>>()?;
            Model::assemble(spec, origin, config, files, None)
        }
        FilePlan::Indexed(index) => {
            let index_path = dir.join(index);
            let bytes = super::bytes::read_small_file(&index_path, MAX_INDEX_BYTES)?;
            let (map, shards) = parse_index(&index_path.display().to_string(), &bytes)?;
            let files = shards.iter().map(|n| open(n)).collect::<Result<Vec<_>>>()?;
            Model::assemble(spec, origin, config, files, Some(&map))
        }
    }
}

fn open_directory(spec: &str, dir: &Path, format: Option<WeightFormat>) -> Result<Model> {
    open_local_files(
        spec,
        dir,
        Origin::Directory {
            path: spec.to_string(),
        },
        format,
        None,
    )
}

fn open_snapshot(
    spec: &str,
    options: &OpenOptions,
    snapshot: &cache::CachedSnapshot,
    only: Option<&str>,
) -> Result<Model> {
    open_local_files(
        spec,
        &snapshot.dir,
        Origin::Cache {
            repo: spec.to_string(),
            revision: options.revision.clone(),
            commit: snapshot.commit.clone(),
            path: snapshot.dir.display().to_string(),
        },
        options.format,
        only,
    )
}

#[cfg(feature = "hub")]
fn open_hub(spec: &str, options: &OpenOptions, only: Option<&str>) -> Result<Model> {
    use super::hub::{in_parallel, HubClient};
    let endpoint = options.endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT);
    let client = HubClient::new(endpoint, options.token.clone(), options.hub)?;
    let listing = client.list(spec, &options.revision)?;
    let wanted = restrict(
        spec,
        listing.files.clone(),
        only,
        &format!("at revision '{}' on the Hub", options.revision),
    )?;
    let commit = listing.commit.clone();
    let origin = Origin::Hub {
        endpoint: client.endpoint().to_string(),
        repo: spec.to_string(),
        revision: options.revision.clone(),
        commit: commit.clone(),
    };
    let has = |name: &str| listing.files.iter().any(|f| f == name);
    let plan = plan_files(spec, &wanted, options.format)?;
    // Everything after the listing is fetched at once: the config, the index (whose shard
    // names gate the shard opens, so it goes first among them) and every shard's header.
    let fetch_config = || {
        has("config.json")
            .then(|| {
                client
                    .fetch_small(spec, &commit, "config.json", 1 << 20)
                    .ok()
            })
            .flatten()
            .and_then(|b| ModelConfig::parse(&b))
    };
    let open_all = |names: &[String]| -> Result<Vec<(String, Arc<dyn ByteSource>)>> {
        if let Some(name) = names.iter().find(|n| !has(n)) {
            return Err(Error::model(
                spec,
                format!("missing shard {name} (not in the repo listing)"),
            ));
        }
        in_parallel(names, options.hub.connections, |name| {
            let file = client.open(spec, &commit, name)?;
            Ok((name.clone(), Arc::new(file) as Arc<dyn ByteSource>))
        })
        .into_iter()
        .collect()
    };
    let (config, opened) = std::thread::scope(|scope| {
        let config = scope.spawn(fetch_config);
        let opened = match &plan {
            FilePlan::Single(name) => open_all(std::slice::from_ref(name)).map(|f| (f, None)),
            FilePlan::Several(names) => open_all(names).map(|f| (f, None)),
            FilePlan::Indexed(index) => client
                .fetch_small(spec, &commit, index, 64 << 20)
                .and_then(|bytes| parse_index(index, &bytes))
                .and_then(|(map, shards)| open_all(&shards).map(|f| (f, Some(map)))),
        };
        (config.join().unwrap_or(None), opened)
    });
    let (files, map) = opened?;
    Model::assemble(spec, origin, config, files, map.as_ref())
}

#[cfg(not(feature = "hub"))]
fn open_hub(spec: &str, _options: &OpenOptions, _only: Option<&str>) -> Result<Model> {
    Err(Error::model(
        spec,
        "not found locally, and this build has no Hub client (rebuild with the 'hub' feature)",
    ))
}

/// The token `hf auth login` saved: `$HF_TOKEN_PATH`, else `$HF_HOME/token`, else
/// `~/.cache/huggingface/token` (huggingface_hub's order). Its first line, trimmed.
fn saved_token() -> Option<String> {
    let path = std::env::var_os("HF_TOKEN_PATH")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HF_HOME")
                .filter(|p| !p.is_empty())
                .map(|h| PathBuf::from(h).join("token"))
        })
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/token"))
        })?;
    let meta = std::fs::metadata(&path).ok()?;
    // A token file is a line; anything large or odd is not one.
    if !meta.is_file() || meta.len() > 4096 {
        return None;
    }
    let text = std::fs::read_to_string(&path).ok()?;
    text.lines()
        .next()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}
