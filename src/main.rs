//! The `weightreel` command line: a thin layer over the library.
//!
//! Two forms call the same code: subcommands (`weightreel encode MODEL`, `inspect`, `list`,
//! `stats`, `decode`, `frames`, `rm`) and the user guide's flag form (`weightreel --model M
//! --stream …`, `--list-models`, `--statistics`, `--models A B …`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[cfg(feature = "queue")]
mod cli_queue;
mod cli_related;

use weightreel::encode::{
    encode, EncodeOptions, EncodeOutcome, CHECKPOINT_SECS, DEFAULT_CHUNK_SIZE,
};
use weightreel::error::{Error, Result};
use weightreel::frames::{FrameCuts, FrameOptions, PixelMode, DEFAULT_MAX_FRAME_VALUES};
use weightreel::inspect::{group, Report};
use weightreel::progress::ProgressMode;
use weightreel::report::{models_table, statistics_block};
use weightreel::selection::{parse_regex, parse_roles, SampleMode, Selection};
use weightreel::source::{HubSettings, Model, OpenOptions};
use weightreel::store::{reels_location, store_dir, Store};

/// Shown after `--help`: examples and the environment read.
const AFTER_HELP: &str = "\
Examples:
  weightreel inspect gpt2 --layers attention mlp --max-params 40000
  weightreel --model gpt2 --stream --max-params 40000 --chunk-size 8000
  weightreel encode https://huggingface.co/openai-community/gpt2/tree/main --mode lossless
  weightreel encode ./my-model-dir --store my_store
  weightreel list --store my_store
  weightreel decode my_store/reels/REEL.mkv --out back.safetensors
  weightreel search gpt2 --store my_store
  weightreel completions bash > ~/.local/share/bash-completion/completions/weightreel

MODEL is a .safetensors/.bin/.gguf file, a model directory, a Hub repo id (org/name) or a Hub
URL (https://huggingface.co/org/name[/tree/REV | /blob/REV/FILE]).

Environment:
  HF_ENDPOINT        Hub endpoint (default https://huggingface.co)
  HF_HUB_CACHE       Hugging Face cache (default $HF_HOME/hub)
  HF_HOME            Hugging Face home (default ~/.cache/huggingface)
  HF_TOKEN           Hub token (else the one `hf auth login` saved)
  HF_TOKEN_PATH      where `hf auth login` saved the token (default $HF_HOME/token)
  HF_HUB_OFFLINE     1: never use the network (like --offline)
  WEIGHTREEL_STORE   store directory or postgres:// registry URL (default ./weightreel_store)
  WEIGHTREEL_REELS   where reels live: s3://BUCKET[/PREFIX], file:///DIR or a directory
                     (for a store that has not recorded another place at its first encode)
  WEIGHTREEL_WORK    local work directory of a PostgreSQL store (default ~/.cache/weightreel/work)
  WEIGHTREEL_S3_ENDPOINT (or AWS_ENDPOINT_URL), AWS_REGION, AWS_ACCESS_KEY_ID,
  AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
                     S3-compatible server and credentials for s3:// reels
  WEIGHTREEL_QUEUE   the job queue's PostgreSQL URL (queue, worker)
  WEIGHTREEL_HUB_CONNECTIONS, WEIGHTREEL_HUB_CONNECT_TIMEOUT, WEIGHTREEL_HUB_READ_TIMEOUT,
  WEIGHTREEL_HUB_TIMEOUT, WEIGHTREEL_HUB_RETRIES
                     Hub connections, timeouts (seconds) and retries (see the README)";

#[derive(Parser, Debug)]
#[command(
    name = "weightreel",
    version,
    about = "Stream Hugging Face model weights into lossless Hilbert-curve video reels",
    args_conflicts_with_subcommands = true,
    after_help = AFTER_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    guide: GuideArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Report a model's tensors, dtypes, roles and layers, and what a selection would read (headers only)
    Inspect {
        /// A weight file, a model directory, a Hub repo id (org/name) or a Hub URL
        model: String,
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        select: SelectArgs,
        /// List every tensor (name, dtype, shape, role, layer), repeated skipped buffers once
        #[arg(long)]
        tensors: bool,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Stream-encode models into the store
    Encode {
        /// Files, directories, Hub repo ids or Hub URLs
        #[arg(required = true)]
        models: Vec<String>,
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        select: SelectArgs,
        #[command(flatten)]
        encode: EncodeArgs,
    },
    /// List the models in the store
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print the store's statistics, or with MODEL what `show MODEL` prints
    Stats {
        /// A stored model: show its analysis instead of the store's statistics
        model: Option<String>,
        /// With MODEL: only the entry with this settings key (full or short, as `list` shows)
        #[arg(long, value_name = "KEY", requires = "model")]
        settings_key: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Show a stored model's analysis: statistics per role and per layer, a histogram, its tensors
    Show {
        /// A stored model name as listed (or its source)
        model: String,
        /// Only the entry with this settings key (full or short, as `list` shows)
        #[arg(long, value_name = "KEY")]
        settings_key: Option<String>,
        /// Histogram bins
        #[arg(long, default_value_t = 20, value_name = "N", value_parser = parse_bins)]
        bins: usize,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Decode a stored model (or a reel file) back to a .safetensors file or a model directory
    Decode {
        /// A stored model name as listed (or its source), or a reel file (.mkv)
        model: String,
        /// Output .safetensors file
        #[arg(
            long,
            value_name = "FILE",
            required_unless_present = "model_dir",
            conflicts_with = "model_dir"
        )]
        out: Option<PathBuf>,
        /// Output directory: model.safetensors plus the original config.json (when it was read)
        #[arg(long, value_name = "DIR")]
        model_dir: Option<PathBuf>,
        #[command(flatten)]
        entry: EntryArgs,
        /// Only tensors whose name matches this regular expression (only their frames are decoded)
        #[arg(long, value_name = "REGEX")]
        include: Option<String>,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Write a reel's frames as 16-bit PNG images
    Frames {
        /// A stored model name as listed (or its source), or a reel file (.mkv)
        model: String,
        #[command(flatten)]
        entry: EntryArgs,
        /// Directory for the PNG files
        #[arg(long, value_name = "DIR")]
        png: PathBuf,
        /// Colour the frames with a heat map (8-bit RGB) instead of 16-bit grey
        #[arg(long)]
        heatmap: bool,
        /// Only these frames: N, A-B (inclusive) or A- (to the end)
        #[arg(long, value_name = "RANGE", value_parser = parse_frame_range)]
        frames: Option<std::ops::Range<u64>>,
        /// Only frames holding a tensor whose name matches this regular expression (those tensors outlined)
        #[arg(long, value_name = "REGEX", value_parser = parse_tensor_regex)]
        tensor: Option<regex_lite::Regex>,
        /// One value range for the whole frame, or one per tensor
        #[arg(long, value_name = "SCALE", default_value = "frame", value_parser = ["frame", "tensor"])]
        scale: String,
        /// 8-bit colour with a colour bar, tensor outlines and labels
        #[arg(long)]
        legend: bool,
    },
    /// Serve a local web gallery of the store (models, frames, statistics, comparisons, families)
    #[cfg(feature = "serve")]
    Serve {
        /// Store directory or postgres:// registry URL (default: $WEIGHTREEL_STORE, else ./weightreel_store)
        #[arg(long, visible_alias = "store", value_name = "DIR")]
        storage_dir: Option<PathBuf>,
        /// Where reels live: s3://BUCKET[/PREFIX], file:///DIR or a directory (default: where the store recorded them at its first encode, else $WEIGHTREEL_REELS, else its reels/)
        #[arg(long, value_name = "URL")]
        reels: Option<String>,
        /// Port to listen on (0: any free port)
        #[arg(long, default_value_t = weightreel::serve::DEFAULT_PORT, value_name = "P", value_parser = parse_port)]
        port: u16,
        /// Listen on this address instead of 127.0.0.1 (0.0.0.0 makes the gallery reachable from the network)
        #[arg(long, value_name = "ADDR")]
        bind: Option<String>,
        /// Open the gallery in the desktop's browser (xdg-open)
        #[arg(long)]
        open: bool,
        /// Bound of the in-memory PNG cache, in MiB
        #[arg(long, default_value_t = 64, value_name = "MIB")]
        cache_mib: usize,
        /// Show this job queue's progress on /queue (a PostgreSQL URL; default:
        /// $WEIGHTREEL_QUEUE)
        #[arg(long, value_name = "URL")]
        queue: Option<String>,
    },
    /// Remove what interrupted or crashed encodes left behind (reporting the bytes freed)
    Gc {
        /// Only list what would be removed, and what is kept and why
        #[arg(long)]
        dry_run: bool,
        /// In a reel storage (--reels), remove only what is older than this: 0, or a whole
        /// number with a unit s, m, h or d (30m, 24h, 7d)
        #[arg(long, value_name = "DURATION", default_value = weightreel::store::DEFAULT_MIN_AGE)]
        min_age: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Check that the registry and the reels agree (changes nothing)
    Check {
        /// Also decode every frame and verify it against its CRC32
        #[arg(long)]
        deep: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Store a model's fingerprint (no reel): the cheap way to index many models for search
    Fingerprint {
        /// Files, directories or Hub repo ids
        models: Vec<String>,
        /// Also fingerprint every stored model that has none (encoded before fingerprints existed), from its source
        #[arg(long)]
        missing: bool,
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Rank the stored models by how related they are to MODEL (a stored name or any source)
    Search {
        /// A stored model name, or a file, directory or Hub repo id (fingerprinted, not stored)
        model: String,
        /// Results to show
        #[arg(long, default_value_t = 10, value_name = "K", value_parser = parse_top)]
        top: usize,
        /// exact, features, hierarchical or hybrid (see the README for what each score means)
        #[arg(long, default_value = "hybrid", value_name = "METHOD")]
        method: String,
        /// Compare only tensors of these roles
        #[arg(long, num_args = 1.., value_name = "ROLE")]
        layers: Vec<String>,
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Compare two models tensor by tensor (stored names or any sources)
    Compare {
        /// First model
        a: String,
        /// Second model
        b: String,
        /// Also write the per-layer similarity as a heat-map PNG
        #[arg(long, value_name = "FILE")]
        png: Option<PathBuf>,
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Group the stored models into families and draw each as a tree, parent to child
    Tree {
        /// Also write the families as a Graphviz DOT file
        #[arg(long, value_name = "FILE")]
        dot: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print shell completions: bash, zsh or fish
    Completions {
        /// bash, zsh or fish
        #[arg(value_name = "SHELL", value_parser = parse_shell)]
        shell: clap_complete::Shell,
    },
    /// Jobs for workers, kept in PostgreSQL: `queue add MODEL… [encode settings]`, `queue status`
    #[cfg(feature = "queue")]
    Queue {
        #[command(subcommand)]
        action: QueueAction,
    },
    /// Claim jobs from the queue and run them into the store, until stopped (Ctrl-C gives the
    /// running jobs back) or, with --exit-when-empty, until no job is left
    #[cfg(feature = "queue")]
    Worker {
        /// The queue: a PostgreSQL URL (default: $WEIGHTREEL_QUEUE)
        #[arg(long, value_name = "URL")]
        queue: Option<String>,
        /// Jobs run at once, 1..=64
        #[arg(long, default_value_t = 1, value_name = "N", value_parser = parse_concurrency)]
        concurrency: usize,
        /// Stop when no job is queued or running anywhere
        #[arg(long)]
        exit_when_empty: bool,
        /// Seconds a claimed job stays this worker's without a heartbeat (one every third of
        /// it); a worker that dies loses its jobs after this long
        #[arg(long, default_value_t = 30.0, value_name = "SECS", value_parser = parse_lease)]
        lease: f64,
        /// Seconds between looks at an empty queue
        #[arg(long, default_value_t = 1.0, value_name = "SECS", value_parser = parse_seconds)]
        poll: f64,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Remove a model (all its entries, or one settings key) and its reels from the store
    Rm {
        /// Model name as listed
        name: String,
        /// Only the entry with this settings key
        #[arg(long, value_name = "KEY")]
        settings_key: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[cfg(feature = "queue")]
#[derive(Subcommand, Debug)]
enum QueueAction {
    /// Queue models: `queue add MODEL… [encode settings] [--fingerprint-only] [--from-file F]`
    /// (the flags may come anywhere; the settings are the encode command's)
    Add {
        /// The queue: a PostgreSQL URL (default: $WEIGHTREEL_QUEUE)
        #[arg(long, value_name = "URL")]
        queue: Option<String>,
        /// Models to add, one per line (`#` starts a comment)
        #[arg(long, value_name = "FILE")]
        from_file: Option<PathBuf>,
        /// Only fingerprint the models (for search); store no reel
        #[arg(long)]
        fingerprint_only: bool,
        #[arg(long)]
        json: bool,
        /// Models, then any encode settings (--mode, --chunk-size, --layers, …)
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "MODEL|SETTING"
        )]
        words: Vec<String>,
    },
    /// Jobs queued, running, done and parked, with the rate and the parked jobs' errors
    Status {
        /// The queue: a PostgreSQL URL (default: $WEIGHTREEL_QUEUE)
        #[arg(long, value_name = "URL")]
        queue: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

/// The user guide's flag form.
#[derive(Args, Debug)]
struct GuideArgs {
    /// Model to stream-encode (file, directory, Hub repo id or Hub URL)
    #[arg(long, value_name = "MODEL")]
    model: Option<String>,
    /// Several models to encode with the same settings
    #[arg(long, num_args = 1.., value_name = "MODEL", conflicts_with = "model")]
    models: Vec<String>,
    /// Stream the model tensor by tensor (weightreel always streams; accepted for the guide's commands)
    #[arg(long)]
    stream: bool,
    /// List the models in the store (with --statistics: the list, then the statistics)
    #[arg(long)]
    list_models: bool,
    /// Print the store's statistics
    #[arg(long)]
    statistics: bool,
    /// Rank the stored models by how related they are to MODEL (as `weightreel search MODEL`)
    #[arg(long, value_name = "MODEL")]
    search_similar: Option<String>,
    /// Results of --search-similar
    #[arg(long, default_value_t = 10, value_name = "K", value_parser = parse_top)]
    top: usize,
    /// Method of --search-similar: exact, features, hierarchical or hybrid
    #[arg(long, default_value = "hybrid", value_name = "METHOD")]
    method: String,
    #[command(flatten)]
    source: SourceArgs,
    #[command(flatten)]
    select: SelectArgs,
    #[command(flatten)]
    encode: EncodeArgs,
}

#[derive(Args, Debug, Clone)]
struct SourceArgs {
    /// Branch, tag or commit of a Hub repo
    #[arg(long, default_value = "main", value_name = "REV")]
    revision: String,
    /// Never use the network (like HF_HUB_OFFLINE=1)
    #[arg(long)]
    offline: bool,
    /// Hub token (default: $HF_TOKEN, else the token `hf auth login` saved); never printed or stored
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    /// Range requests in flight at once per model, 1..=64 (default: $WEIGHTREEL_HUB_CONNECTIONS, else 16)
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    hub_connections: Option<String>,
    /// Weight format to read when a model has several: safetensors, bin (PyTorch) or gguf (default: safetensors, then bin, then gguf)
    #[arg(long, value_name = "FORMAT")]
    format: Option<String>,
}

impl SourceArgs {
    /// Where and how to open models; checks the Hub settings (flags and environment).
    fn options(&self) -> Result<OpenOptions> {
        let mut hub = HubSettings::from_env()?;
        if let Some(n) = &self.hub_connections {
            hub.connections = weightreel::source::model::parse_count(
                "--hub-connections",
                n,
                HubSettings::CONNECTIONS,
            )?;
        }
        hub.validate()?;
        Ok(OpenOptions {
            revision: self.revision.clone(),
            offline: self.offline,
            token: self.token.clone(),
            hub,
            format: self
                .format
                .as_deref()
                .map(weightreel::source::WeightFormat::parse)
                .transpose()?,
            ..OpenOptions::default()
        }
        .with_env())
    }
}

#[derive(Args, Debug, Clone)]
struct SelectArgs {
    /// Roles to take: embedding, attention, mlp, norm, head, other, all (aliases: attn, ffn, embeddings, layernorm…)
    #[arg(long, num_args = 1.., value_name = "ROLE")]
    layers: Vec<String>,
    /// Take only tensors whose name matches this regular expression
    #[arg(long, value_name = "REGEX")]
    include: Option<String>,
    /// Drop tensors whose name matches this regular expression
    #[arg(long, value_name = "REGEX")]
    exclude: Option<String>,
    /// Take exactly N values (all, if fewer are selected)
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = parse_positive)]
    max_params: Option<u64>,
    /// How --max-params picks values: stratified (spread over all tensors) or head (first N)
    #[arg(long, default_value = "stratified", value_name = "HOW")]
    sample: String,
}

impl SelectArgs {
    fn selection(&self) -> Result<Selection> {
        Ok(Selection {
            roles: parse_roles(&self.layers)?,
            include: self
                .include
                .as_deref()
                .map(|p| parse_regex("--include", p))
                .transpose()?,
            exclude: self
                .exclude
                .as_deref()
                .map(|p| parse_regex("--exclude", p))
                .transpose()?,
            max_params: self.max_params,
            sample: SampleMode::parse(&self.sample)?,
        })
    }
}

/// Which stored entry a command reads: the store and, when a model has several, the key.
#[derive(Args, Debug, Clone)]
struct EntryArgs {
    /// Store directory or postgres:// registry URL (default: $WEIGHTREEL_STORE, else ./weightreel_store)
    #[arg(long, visible_alias = "store", value_name = "DIR")]
    storage_dir: Option<PathBuf>,
    /// Where reels live: s3://BUCKET[/PREFIX], file:///DIR or a directory (default: where the store recorded them at its first encode, else $WEIGHTREEL_REELS, else its reels/)
    #[arg(long, value_name = "URL")]
    reels: Option<String>,
    /// The entry with this settings key (full or short, as `list` shows), when the model has several
    #[arg(long, value_name = "KEY")]
    settings_key: Option<String>,
}

impl EntryArgs {
    /// The reel `model` names: an existing reel file, else the stored entry's reel.
    fn reel(&self, model: &str) -> Result<PathBuf> {
        let path = std::path::Path::new(model);
        if path.is_file() && path.extension().is_some_and(|x| x == "mkv") {
            return Ok(path.to_path_buf());
        }
        let store = Store::open_existing(&store_dir(self.storage_dir.as_deref()))?
            .with_reels(reels_location(self.reels.as_deref())?.as_ref())?;
        let entry = store.resolve(model, self.settings_key.as_deref())?;
        let reel = store.reel_path(&entry.record.totals.reel_file);
        if store.reel_storage().is_none() && !reel.exists() {
            // The likeliest cause: the store's reels were written with --reels.
            return Err(Error::store(
                store.dir(),
                format!(
                    "entry #{} names reel '{}', which is not in the store's reels/ (if this store keeps its reels elsewhere, give --reels URL or $WEIGHTREEL_REELS)",
                    entry.id, entry.record.totals.reel_file
                ),
            ));
        }
        Ok(reel)
    }
}

#[derive(Args, Debug, Clone)]
struct StoreArgs {
    /// Store directory or postgres:// registry URL (default: $WEIGHTREEL_STORE, else ./weightreel_store)
    #[arg(long, visible_alias = "store", value_name = "DIR")]
    storage_dir: Option<PathBuf>,
    /// Where reels live: s3://BUCKET[/PREFIX], file:///DIR or a directory (default: where the store recorded them at its first encode, else $WEIGHTREEL_REELS, else its reels/)
    #[arg(long, value_name = "URL")]
    reels: Option<String>,
    /// Print JSON instead of text
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug, Clone)]
struct EncodeArgs {
    /// Values per chunk
    #[arg(long, default_value_t = DEFAULT_CHUNK_SIZE, value_name = "N", allow_hyphen_values = true, value_parser = parse_positive)]
    chunk_size: u64,
    /// Encode every chunk as its own frame (default: batch, all values in one frame)
    #[arg(long)]
    chunk_encoding: bool,
    /// Pixel mode: u16 (quantized), lossless (bit-exact), u8 (preview quality); default: lossless for F16/BF16 models, u16 otherwise
    #[arg(long, value_name = "MODE")]
    mode: Option<String>,
    /// Store the model under this name (default: its repo id, else its directory or file name)
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Refuse frames filled below this ratio
    #[arg(
        long,
        default_value_t = 0.5,
        value_name = "R",
        allow_hyphen_values = true
    )]
    min_efficiency: f64,
    /// Largest frame, in values, 1024..=1073741824 (default 4096×4096)
    #[arg(long, default_value_t = DEFAULT_MAX_FRAME_VALUES, value_name = "N", value_parser = parse_positive)]
    max_frame_values: u64,
    /// Finest pyramid block side (a power of two)
    #[arg(long, default_value_t = 8, value_name = "SIDE")]
    pyramid_finest: u32,
    /// Also write an 8-bit H.264 preview of the reel
    #[arg(long, value_name = "FILE.mp4")]
    preview: Option<PathBuf>,
    /// Continue an interrupted encode (re-running the same command does too)
    #[arg(long)]
    resume: bool,
    /// Make completed frames durable (a resume point) at least this often, in seconds
    #[arg(long, default_value_t = 2.0, value_name = "SECS", value_parser = parse_seconds)]
    checkpoint_every: f64,
    /// No progress display
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    store: StoreArgs,
}

impl EncodeArgs {
    fn options(&self, select: &SelectArgs) -> Result<EncodeOptions> {
        Ok(EncodeOptions {
            selection: select.selection()?,
            include: select.include.clone(),
            exclude: select.exclude.clone(),
            chunk_size: self.chunk_size,
            chunk_encoding: self.chunk_encoding,
            fit_mode_to_source: self.mode.is_none(),
            receipt: None,
            frame: FrameOptions {
                mode: PixelMode::parse(self.mode.as_deref().unwrap_or("u16"))?,
                max_values: self.max_frame_values,
                min_efficiency: self.min_efficiency,
                pyramid_finest: self.pyramid_finest,
            },
            preview: self.preview.clone(),
            progress: ProgressMode::detect(self.quiet || self.store.json),
            checkpoint_every: Duration::from_secs_f64(self.checkpoint_every),
        })
    }
}

/// A whole number ≥ 1, with a message that states the valid range.
fn parse_positive(text: &str) -> std::result::Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(0) => Err("0 is out of range (expected a whole number >= 1)".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{text}' is not a whole number >= 1")),
    }
}

/// A result count in 1..=10000.
#[cfg(feature = "queue")]
fn parse_concurrency(text: &str) -> std::result::Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=64).contains(&n) => Ok(n),
        _ => Err(format!("invalid value '{text}' (expected 1..=64)")),
    }
}

#[cfg(feature = "queue")]
fn parse_lease(text: &str) -> std::result::Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if (1.0..=3600.0).contains(&s) => Ok(s),
        _ => Err(format!(
            "invalid value '{text}' (expected 1..=3600 seconds)"
        )),
    }
}

fn parse_top(text: &str) -> std::result::Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=10_000).contains(&n) => Ok(n),
        _ => Err(format!(
            "'{text}' is out of range (expected a whole number in 1..=10000)"
        )),
    }
}

/// Seconds in [`CHECKPOINT_SECS`] (checked here so that clap reports it as a usage error).
fn parse_seconds(text: &str) -> std::result::Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if CHECKPOINT_SECS.contains(&v) => Ok(v),
        _ => Err(format!(
            "'{text}' is out of range (expected seconds in {}..={})",
            CHECKPOINT_SECS.start(),
            CHECKPOINT_SECS.end()
        )),
    }
}

/// Set by Ctrl-C; the encoder stops at the next piece and keeps what is complete.
fn cancel_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let handler_flag = flag.clone();
    // If a handler cannot be installed (another one exists), Ctrl-C just kills the process,
    // which the store survives too.
    let _ = ctrlc::set_handler(move || {
        if handler_flag.swap(true, Ordering::SeqCst) {
            // Second Ctrl-C: leave at once.
            std::process::exit(130);
        }
    });
    flag
}

/// Exit status of an interrupted encode, as shells report Ctrl-C.
const EXIT_INTERRUPTED: u8 = 130;

fn run_encode(
    models: &[String],
    source: &SourceArgs,
    select: &SelectArgs,
    args: &EncodeArgs,
) -> Result<ExitCode> {
    let options = args.options(select)?;
    options.validate()?;
    if let Some(name) = &args.name {
        weightreel::source::naming::check_name(name)?;
        if models.len() > 1 {
            return Err(Error::invalid(
                "--name",
                name,
                "one model to name (several were given)",
            ));
        }
    }
    let open = source.options()?;
    let dir = store_dir(args.store.storage_dir.as_deref());
    let mut store =
        Store::open(&dir)?.with_reels(reels_location(args.store.reels.as_deref())?.as_ref())?;
    let cancel = cancel_flag();
    let mut outcomes = Vec::new();
    for name in models {
        let mut model = Model::open(name, &open)?;
        if let Some(name) = &args.name {
            model.name = name.clone();
        }
        let outcome = encode(&mut store, &model, &options, &cancel)?;
        if !args.store.json {
            print_outcome(&outcome, &options);
        }
        let interrupted = matches!(outcome, EncodeOutcome::Interrupted { .. });
        outcomes.push(outcome);
        if interrupted {
            break;
        }
    }
    if args.store.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&outcomes).expect("outcomes serialize")
        );
    }
    if outcomes
        .iter()
        .any(|o| matches!(o, EncodeOutcome::Interrupted { .. }))
    {
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_outcome(outcome: &EncodeOutcome, options: &EncodeOptions) {
    match outcome {
        EncodeOutcome::Completed {
            entry,
            reel,
            replaced,
            resumed_values,
            batch_frames,
            nonfinite,
            frame_size,
            efficiency,
            preview,
            mode_choice,
            ..
        } => {
            let t = &entry.totals;
            println!("✅ Encoded {}", weightreel::text::printable(&entry.name));
            println!("Total Parameters: {}", group(t.params));
            if entry.settings.method == "chunk" {
                println!(
                    "Chunks: {} of {} values ({} frame{}, chunk mode)",
                    group(t.chunks),
                    group(options.chunk_size),
                    group(t.frames),
                    if t.frames == 1 { "" } else { "s" },
                );
            } else if *batch_frames > 1 {
                // Full frames of the cap, then the rest in smaller frames.
                let cuts = FrameCuts::new(t.params, options.frame.max_values, true);
                let full = cuts.full_frames();
                let rest = t.params - full * options.frame.max_values;
                let tail = cuts.count() - full;
                let tail_text = if tail == 0 {
                    String::new()
                } else {
                    format!(
                        ", then the other {} in {} smaller frame{}",
                        group(rest),
                        group(tail),
                        if tail == 1 { "" } else { "s" }
                    )
                };
                println!(
                    "Frames: {} frames: {} of {} values{} (batch mode: {} values exceed the frame cap)",
                    group(t.frames),
                    group(full),
                    group(options.frame.max_values),
                    tail_text,
                    group(t.params),
                );
            } else {
                println!("Frames: 1 frame of {} values (batch mode)", group(t.params));
            }
            let (size, whose) = if t.frames > 1 && entry.settings.method != "chunk" {
                ("up to ", "the frames'")
            } else if t.frames > 1 {
                ("", "the frames'")
            } else {
                ("", "its")
            };
            println!(
                "Frame Size: {size}{}x{} ({:.1}% of {whose} pixels hold values)",
                frame_size.0,
                frame_size.1,
                efficiency * 100.0
            );
            println!(
                "Mode: {}",
                mode_choice
                    .clone()
                    .unwrap_or_else(|| format!("{} (--mode)", entry.settings.mode))
            );
            println!("Encoding Time: {:.2}s", t.encoding_secs);
            println!(
                "Processing Rate: {} params/s",
                group(t.params_per_sec as u64)
            );
            if *nonfinite > 0 {
                println!(
                    "Non-finite: {} NaN/±Inf values, kept as they are",
                    group(*nonfinite)
                );
            }
            if *resumed_values > 0 {
                println!(
                    "Resumed: {} values came from the interrupted run",
                    group(*resumed_values)
                );
            }
            println!(
                "Reel: {} ({} bytes){}",
                reel.display(),
                group(t.reel_bytes),
                if *replaced {
                    ", replacing the earlier entry with the same settings"
                } else {
                    ""
                }
            );
            if let Some(p) = preview {
                match weightreel::reel::preview_geometry(reel) {
                    Ok(geometry) => println!("Preview: {} ({})", p.display(), geometry.describe()),
                    Err(_) => println!("Preview: {}", p.display()),
                }
            }
        }
        EncodeOutcome::Interrupted {
            frames,
            values,
            total,
            work_dir,
        } => {
            eprintln!(
                "Interrupted: kept {} of {} values ({} complete frames) in {}; run the same command again (or add --resume) to continue",
                group(*values),
                group(*total),
                frames,
                work_dir.display()
            );
        }
    }
}

/// Print `value` as pretty JSON, or as the text `render` makes of it.
fn emit<T: serde::Serialize>(json: bool, value: &T, render: impl FnOnce(&T) -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).expect("output serializes")
        );
    } else {
        // Names and values from files and servers may hold control characters.
        print!("{}", weightreel::text::printable_lines(&render(value)));
    }
}

/// Read commands open the store read-only: they work on read-only mounts and for users who
/// may not write it, and never create or migrate anything.
fn run_list(args: &StoreArgs) -> Result<()> {
    let store = Store::open_existing(&store_dir(args.storage_dir.as_deref()))?
        .with_reels(reels_location(args.reels.as_deref())?.as_ref())?;
    let listing = store.listing()?;
    warn_unreadable(&store, &listing.unreadable);
    emit(args.json, &listing.entries, |e| models_table(e));
    if !args.json {
        for l in store.interrupted()? {
            eprintln!(
                "note: interrupted encode kept in {} ({} bytes): re-run the same command to resume it, or `weightreel gc` to remove it",
                l.path.display(),
                group(l.bytes)
            );
        }
    }
    Ok(())
}

/// `--frames`: `N`, `A-B` (inclusive) or `A-`, as a half-open range.
fn parse_frame_range(text: &str) -> std::result::Result<std::ops::Range<u64>, String> {
    let bad = || format!("'{text}' is not a frame range (N, A-B or A-)");
    let number = |t: &str| t.trim().parse::<u64>().map_err(|_| bad());
    match text.split_once('-') {
        None => {
            let n = number(text)?;
            Ok(n..n.saturating_add(1))
        }
        Some((a, "")) => Ok(number(a)?..u64::MAX),
        Some((a, b)) => {
            let (a, b) = (number(a)?, number(b)?);
            if b < a {
                return Err(format!("'{text}': the range ends before it starts"));
            }
            Ok(a..b.saturating_add(1))
        }
    }
}

/// `--tensor`: a regular expression.
fn parse_tensor_regex(text: &str) -> std::result::Result<regex_lite::Regex, String> {
    regex_lite::Regex::new(text).map_err(|e| format!("'{text}' is not a regular expression ({e})"))
}

/// `--port`: a port number only; another address needs `--bind`.
#[cfg(feature = "serve")]
fn parse_port(text: &str) -> std::result::Result<u16, String> {
    text.parse::<u16>().map_err(|_| {
        if text.contains(':') || text.contains('.') {
            format!("'{text}' is not a port number; the gallery listens on 127.0.0.1 unless --bind ADDR names another address")
        } else {
            format!("'{text}' is not a port number (0 to 65535)")
        }
    })
}

#[cfg(feature = "serve")]
fn run_serve(
    dir: Option<&std::path::Path>,
    reels: Option<&str>,
    port: u16,
    bind: Option<&str>,
    open: bool,
    cache_mib: usize,
    queue: Option<String>,
) -> Result<()> {
    let addr = weightreel::serve::listen_address(bind, port)?;
    let gallery = weightreel::serve::Gallery::open(&store_dir(dir), cache_mib << 20)?
        .with_reels(reels_location(reels)?.as_ref())?
        .with_queue(queue);
    weightreel::serve::run(gallery, addr, |bound| {
        let url = if bound.ip().is_unspecified() {
            format!("http://127.0.0.1:{}/", bound.port())
        } else {
            format!("http://{bound}/")
        };
        println!("weightreel gallery: {url}");
        if bound.ip().is_loopback() {
            eprintln!("listening on {bound} only (this machine); --bind ADDR listens elsewhere");
        } else {
            eprintln!("warning: listening on {bound}: anyone who can reach this machine can read the store");
        }
        if open
            && std::process::Command::new("xdg-open")
                .arg(&url)
                .spawn()
                .is_err()
        {
            eprintln!("note: could not start xdg-open; open {url} yourself");
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
    })
}

/// `--list-models --statistics --json`: `{"models": […], "statistics": {…}}`.
fn run_list_and_stats_json(args: &StoreArgs) -> Result<()> {
    let store = Store::open_existing(&store_dir(args.storage_dir.as_deref()))?
        .with_reels(reels_location(args.reels.as_deref())?.as_ref())?;
    let listing = store.listing()?;
    warn_unreadable(&store, &listing.unreadable);
    let both = serde_json::json!({
        "models": listing.entries,
        "statistics": store.stats()?,
    });
    emit(true, &both, |_| String::new());
    Ok(())
}

/// `weightreel completions SHELL`.
fn parse_shell(text: &str) -> std::result::Result<clap_complete::Shell, String> {
    match text {
        "bash" => Ok(clap_complete::Shell::Bash),
        "zsh" => Ok(clap_complete::Shell::Zsh),
        "fish" => Ok(clap_complete::Shell::Fish),
        _ => Err(format!(
            "'{text}' is not a supported shell (expected bash, zsh or fish)"
        )),
    }
}

/// `show MODEL` (and `stats MODEL`).
fn run_show(model: &str, settings_key: Option<&str>, bins: usize, args: &StoreArgs) -> Result<()> {
    let analysis = weightreel::analysis::analyse(
        &store_dir(args.storage_dir.as_deref()),
        model,
        settings_key,
        bins,
        reels_location(args.reels.as_deref())?.as_ref(),
    )?;
    emit(
        args.json,
        &analysis,
        weightreel::analysis::Analysis::to_text,
    );
    Ok(())
}

/// Histogram bins in 1..=200.
fn parse_bins(text: &str) -> std::result::Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=200).contains(&n) => Ok(n),
        _ => Err(format!(
            "'{text}' is out of range (expected a whole number in 1..=200)"
        )),
    }
}

fn run_stats(args: &StoreArgs) -> Result<()> {
    let store = Store::open_existing(&store_dir(args.storage_dir.as_deref()))?
        .with_reels(reels_location(args.reels.as_deref())?.as_ref())?;
    warn_unreadable(&store, &store.listing()?.unreadable);
    emit(args.json, &store.stats()?, statistics_block);
    Ok(())
}

/// One stderr line per registry row that could not be read (and was left out).
fn warn_unreadable(store: &Store, rows: &[(i64, String)]) {
    for (id, why) in rows {
        eprintln!(
            "warning: {}: registry entry #{id} cannot be read and is left out ({}); `weightreel check` reports on the store",
            store.location(),
            weightreel::text::printable(why)
        );
    }
}

fn run_check(args: &StoreArgs, deep: bool) -> Result<ExitCode> {
    let store = Store::open_existing(&store_dir(args.storage_dir.as_deref()))?
        .with_reels(reels_location(args.reels.as_deref())?.as_ref())?;
    let report = store.check(deep)?;
    emit(args.json, &report, |r| {
        let mut out = String::new();
        for ok in &r.ok {
            out.push_str(&format!("ok: {}\n", weightreel::text::printable(ok)));
        }
        for p in &r.problems {
            out.push_str(&format!("problem: {}\n", weightreel::text::printable(p)));
        }
        for p in &r.orphan_reels {
            out.push_str(&format!(
                "orphan reel (no entry names it): {}\n",
                p.display()
            ));
        }
        for p in &r.interrupted {
            out.push_str(&format!(
                "interrupted encode: {} (re-run the same command to resume, or remove the directory)\n",
                p.display()
            ));
        }
        out.push_str(&format!(
            "{} entries ok, {} problems\n",
            r.ok.len(),
            r.problems.len()
        ));
        out
    });
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Some(Command::Inspect {
            model,
            source,
            select,
            tensors,
            json,
        }) => {
            let selection = select.selection()?;
            let model = Model::open(&model, &source.options()?)?;
            let mut report = Report::new(&model, &selection);
            if tensors {
                report = report.with_tensors(&model);
            }
            emit(json, &report, Report::to_text);
        }
        Some(Command::Encode {
            models,
            source,
            select,
            encode,
        }) => return run_encode(&models, &source, &select, &encode),
        Some(Command::List { store }) => run_list(&store)?,
        #[cfg(feature = "queue")]
        Some(Command::Queue { action }) => match action {
            QueueAction::Add {
                queue,
                from_file,
                fingerprint_only,
                json,
                words,
            } => cli_queue::run_queue_add(
                words,
                cli_queue::AddFlags {
                    queue,
                    from_file,
                    fingerprint_only,
                    json,
                },
            )?,
            QueueAction::Status { queue, json } => {
                cli_queue::run_queue_status(&cli_queue::queue_url(queue.as_deref())?, json)?
            }
        },
        #[cfg(feature = "queue")]
        Some(Command::Worker {
            queue,
            concurrency,
            exit_when_empty,
            lease,
            poll,
            store,
        }) => {
            let url = cli_queue::queue_url(queue.as_deref())?;
            let dir = store_dir(store.storage_dir.as_deref());
            return cli_queue::run_worker(
                &cli_queue::WorkerArgs {
                    url: &url,
                    store: &dir,
                    reels: reels_location(store.reels.as_deref())?,
                    concurrency,
                    exit_when_empty,
                    lease: Duration::from_secs_f64(lease),
                    poll: Duration::from_secs_f64(poll),
                },
                cancel_flag(),
            );
        }
        #[cfg(feature = "serve")]
        Some(Command::Serve {
            storage_dir,
            reels,
            port,
            bind,
            open,
            cache_mib,
            queue,
        }) => run_serve(
            storage_dir.as_deref(),
            reels.as_deref(),
            port,
            bind.as_deref(),
            open,
            cache_mib,
            queue.or_else(|| {
                std::env::var("WEIGHTREEL_QUEUE")
                    .ok()
                    .filter(|v| !v.is_empty())
            }),
        )?,
        Some(Command::Stats {
            model: Some(model),
            settings_key,
            store,
        }) => run_show(&model, settings_key.as_deref(), 20, &store)?,
        Some(Command::Stats { store, .. }) => run_stats(&store)?,
        Some(Command::Show {
            model,
            settings_key,
            bins,
            store,
        }) => run_show(&model, settings_key.as_deref(), bins, &store)?,
        Some(Command::Decode {
            model,
            out,
            model_dir,
            entry,
            include,
            json,
        }) => {
            let include = include
                .as_deref()
                .map(|p| parse_regex("--include", p))
                .transpose()?;
            let reel = entry.reel(&model)?;
            let summary = match (&out, &model_dir) {
                (Some(out), _) => {
                    weightreel::decode::decode_reel_matching(&reel, out, include.as_ref())?
                }
                (None, Some(dir)) => {
                    weightreel::decode::decode_model_dir(&reel, dir, include.as_ref())?
                }
                (None, None) => unreachable!("clap requires --out or --model-dir"),
            };
            emit(json, &summary, |s| {
                let mut text = format!(
                    "Decoded {} tensors ({} whole, {} sampled, {} kept verbatim) with {} values from {} frames into {}{}\n",
                    s.tensors,
                    s.whole,
                    s.sampled,
                    s.verbatim,
                    group(s.values),
                    group(s.frames_read),
                    s.out.display(),
                    if s.replaced { " (replaced the file that was there)" } else { "" }
                );
                match (&s.config, &model_dir) {
                    (Some(c), _) => text.push_str(&format!("Config: {}\n", c.display())),
                    (None, Some(_)) => text.push_str(
                        "Config: none (the reel holds no config.json: it was encoded without one, or by an older weightreel)\n",
                    ),
                    _ => {}
                }
                text
            });
        }
        Some(Command::Frames {
            model,
            entry,
            png,
            heatmap,
            frames,
            tensor,
            scale,
            legend,
        }) => {
            use weightreel::picture::{Colour, PictureOptions, Scale};
            let options = PictureOptions {
                scale: Scale::parse(&scale).unwrap_or(Scale::Frame),
                colour: if heatmap {
                    Colour::Heat
                } else {
                    Colour::Grey16
                },
                legend,
                tensor,
            };
            let frames = frames.unwrap_or(0..u64::MAX);
            let reel = entry.reel(&model)?;
            let files = weightreel::picture::write_pictures(&reel, &png, frames, &options)?;
            println!("Wrote {} PNG frames into {}", files.len(), png.display());
        }
        Some(Command::Check { deep, store }) => return run_check(&store, deep),
        Some(Command::Gc {
            dry_run,
            min_age,
            store,
        }) => {
            let min_age = weightreel::store::parse_min_age(&min_age)?;
            let s = Store::open(&store_dir(store.storage_dir.as_deref()))?
                .with_reels(reels_location(store.reels.as_deref())?.as_ref())?;
            let report = s.collect_garbage(dry_run, min_age)?;
            emit(store.json, &report, |r| {
                let age = |l: &weightreel::store::Leftover| match l.age_seconds {
                    Some(a) => format!(
                        ", age {}",
                        weightreel::store::age_text(std::time::Duration::from_secs(a))
                    ),
                    None => String::new(),
                };
                let mut out = String::new();
                for l in &r.removed {
                    out.push_str(&format!(
                        "{} {}: {} ({} bytes{})\n",
                        if r.dry_run { "would remove" } else { "removed" },
                        l.kind,
                        l.path.display(),
                        group(l.bytes),
                        age(l)
                    ));
                }
                for k in &r.kept {
                    let l = &k.leftover;
                    out.push_str(&format!(
                        "kept {}: {} ({} bytes{}): {}\n",
                        l.kind,
                        l.path.display(),
                        group(l.bytes),
                        age(l),
                        k.reason
                    ));
                }
                out.push_str(&format!(
                    "{} {} items, {} bytes\n",
                    if r.dry_run { "Would free" } else { "Freed" },
                    r.removed.len(),
                    group(r.bytes)
                ));
                if !r.kept.is_empty() {
                    out.push_str(&format!(
                        "Kept {} items in the reel storage\n",
                        r.kept.len()
                    ));
                }
                out
            });
        }
        Some(Command::Fingerprint {
            models,
            missing,
            source,
            store,
        }) => {
            let open = source.options()?;
            let mut s = Store::open(&store_dir(store.storage_dir.as_deref()))?
                .with_reels(reels_location(store.reels.as_deref())?.as_ref())?;
            let cancel = cancel_flag();
            cli_related::run_fingerprint(&mut s, &models, missing, &open, &cancel, store.json)?;
        }
        Some(Command::Search {
            model,
            top,
            method,
            layers,
            source,
            store,
        }) => {
            let args = cli_related::SearchArgs {
                top,
                method: weightreel::search::Method::parse(&method)?,
                roles: &parse_roles(&layers)?,
                json: store.json,
            };
            let open = source.options()?;
            let s = Store::open_existing(&store_dir(store.storage_dir.as_deref()))?
                .with_reels(reels_location(store.reels.as_deref())?.as_ref())?;
            cli_related::run_search(&s, &model, &args, &open, &cancel_flag())?;
        }
        Some(Command::Compare {
            a,
            b,
            png,
            source,
            store,
        }) => {
            let open = source.options()?;
            let s = Store::open_existing(&store_dir(store.storage_dir.as_deref()))?
                .with_reels(reels_location(store.reels.as_deref())?.as_ref())?;
            cli_related::run_compare(
                &s,
                &a,
                &b,
                png.as_deref(),
                &open,
                &cancel_flag(),
                store.json,
            )?;
        }
        Some(Command::Tree { dot, store }) => {
            let s = Store::open_existing(&store_dir(store.storage_dir.as_deref()))?
                .with_reels(reels_location(store.reels.as_deref())?.as_ref())?;
            cli_related::run_tree(&s, store.json, dot.as_deref())?;
        }
        Some(Command::Rm {
            name,
            settings_key,
            store,
        }) => {
            let mut s = Store::open(&store_dir(store.storage_dir.as_deref()))?
                .with_reels(reels_location(store.reels.as_deref())?.as_ref())?;
            // A source path or a short key names the entries as `list` shows them.
            let matched = s.matching(&name, settings_key.as_deref())?;
            let stored_name = s.stored_name_of(&name)?.unwrap_or(name.clone());
            let removed = if matched.is_empty() {
                // A model only fingerprinted (no entry) goes with `rm NAME`.
                if settings_key.is_some() {
                    0
                } else {
                    s.remove(&stored_name, None)?
                }
            } else {
                let mut n = 0;
                for e in &matched {
                    n += s.remove(&e.record.name, Some(&e.record.settings.key()))?;
                }
                n
            };
            if removed == 0 {
                // Says why: an unknown key (listing the keys), or no such model.
                s.resolve(&name, settings_key.as_deref())?;
                return Err(Error::store(s.dir(), format!("no model named '{name}'")));
            }
            let name = stored_name;
            println!(
                "Removed {removed} entr{} of {name}",
                if removed == 1 { "y" } else { "ies" }
            );
        }
        Some(Command::Completions { shell }) => {
            use clap::CommandFactory;
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "weightreel", &mut std::io::stdout());
        }
        None => return run_guide(cli.guide),
    }
    Ok(ExitCode::SUCCESS)
}

fn run_guide(guide: GuideArgs) -> Result<ExitCode> {
    if let Some(model) = &guide.search_similar {
        let args = cli_related::SearchArgs {
            top: guide.top,
            method: weightreel::search::Method::parse(&guide.method)?,
            roles: &parse_roles(&guide.select.layers)?,
            json: guide.encode.store.json,
        };
        let open = guide.source.options()?;
        let s = Store::open_existing(&store_dir(guide.encode.store.storage_dir.as_deref()))?
            .with_reels(reels_location(guide.encode.store.reels.as_deref())?.as_ref())?;
        cli_related::run_search(&s, model, &args, &open, &cancel_flag())?;
        return Ok(ExitCode::SUCCESS);
    }
    // `--list-models --statistics` prints both, in that order (JSON: one object holding both).
    if guide.list_models && guide.statistics && guide.encode.store.json {
        run_list_and_stats_json(&guide.encode.store)?;
        return Ok(ExitCode::SUCCESS);
    }
    if guide.list_models {
        run_list(&guide.encode.store)?;
    }
    if guide.list_models && guide.statistics {
        println!();
    }
    if guide.statistics {
        run_stats(&guide.encode.store)?;
    }
    if guide.list_models || guide.statistics {
        return Ok(ExitCode::SUCCESS);
    }
    let models: Vec<String> = match (&guide.model, guide.models.is_empty()) {
        (Some(m), _) => vec![m.clone()],
        (None, false) => guide.models.clone(),
        (None, true) => {
            use clap::CommandFactory;
            eprintln!(
                "error: nothing to do: give a command (encode, inspect, list, show, stats, decode, frames, fingerprint, search, compare, tree, rm, check, gc, serve, queue, worker, completions) or --model M, --models A B, --list-models, --statistics, --search-similar M (see --help)"
            );
            eprintln!("\n{}", Cli::command().render_usage());
            return Ok(ExitCode::from(2));
        }
    };
    let code = run_encode(&models, &guide.source, &guide.select, &guide.encode)?;
    if models.len() > 1 && code == ExitCode::SUCCESS && !guide.encode.store.json {
        let s = Store::open_existing(&store_dir(guide.encode.store.storage_dir.as_deref()))?
            .with_reels(reels_location(guide.encode.store.reels.as_deref())?.as_ref())?;
        print!("{}", cli_related::similarity_matrix(&s, &models)?);
    }
    Ok(code)
}

/// The store a command names (or the default one), for hints in its errors.
fn store_of(cli: &Cli) -> PathBuf {
    let named = match &cli.command {
        Some(
            Command::Encode {
                encode: EncodeArgs { store, .. },
                ..
            }
            | Command::List { store }
            | Command::Stats { store, .. }
            | Command::Show { store, .. }
            | Command::Gc { store, .. }
            | Command::Check { store, .. }
            | Command::Fingerprint { store, .. }
            | Command::Search { store, .. }
            | Command::Compare { store, .. }
            | Command::Tree { store, .. }
            | Command::Rm { store, .. },
        ) => store.storage_dir.clone(),
        Some(_) => None,
        None => cli.guide.encode.store.storage_dir.clone(),
    };
    store_dir(named.as_deref())
}

/// A repo the Hub does not have, with the store's closest model names when there are any
/// ("did you mean"), as for a misspelt stored name.
fn with_stored_names(err: Error, store: &std::path::Path) -> Error {
    let Error::NotOnHub {
        repo,
        missing: weightreel::error::HubMissing::Repo,
        problem,
    } = err
    else {
        return err;
    };
    let names: Vec<String> = Store::open_existing(store)
        .and_then(|s| {
            let mut names: Vec<String> = s.list()?.into_iter().map(|e| e.record.name).collect();
            names.extend(s.fingerprint_names()?);
            names.sort();
            names.dedup();
            Ok(names)
        })
        .unwrap_or_default();
    let near: Vec<String> = weightreel::search::closest_names(&repo, &names, 3)
        .into_iter()
        .filter(|n| {
            weightreel::text::edit_distance(&repo.to_lowercase(), &n.to_lowercase())
                <= (repo.chars().count() / 3).max(2)
        })
        .map(|n| format!("'{n}'"))
        .collect();
    let problem = if near.is_empty() {
        problem
    } else {
        format!(
            "{problem}; did you mean {} (stored in {})?",
            near.join(" or "),
            weightreel::store::shown(store)
        )
    };
    Error::NotOnHub {
        repo,
        missing: weightreel::error::HubMissing::Repo,
        problem,
    }
}

/// Parse the command line; a usage error becomes one line (clap's message and its tips, the
/// valid values included) and exit status 2. Help and version print as usual.
fn parse_cli() -> std::result::Result<Cli, ExitCode> {
    match Cli::try_parse() {
        Ok(cli) => Ok(cli),
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            Err(ExitCode::SUCCESS)
        }
        Err(e) => {
            let text = e.render().to_string();
            let mut line = String::new();
            for part in text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .filter(|l| !l.is_empty())
            {
                if !line.is_empty() {
                    line.push_str(if line.ends_with(':') { " " } else { "; " });
                }
                line.push_str(part);
            }
            eprintln!("{line} (see --help)");
            Err(ExitCode::from(2))
        }
    }
}

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so a closed pipe (`weightreel list | head`) makes every print
    // fail and `println!` panic. Output to a reader that left is done: end as other tools do.
    // SAFETY: setting a signal's disposition to the default before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = match parse_cli() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let store = store_of(&cli);
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            let err = with_stored_names(err, &store);
            // One line: the error names the thing and the problem.
            // Control characters from files or servers are escaped (a newline too).
            let text = err.to_string();
            eprintln!("error: {}", weightreel::text::printable(&text));
            // A setting out of range is a usage error, as clap's own are (exit 2).
            if matches!(err, Error::Invalid { .. } | Error::Ambiguous { .. }) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
