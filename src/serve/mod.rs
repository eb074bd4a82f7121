//! The gallery: `weightreel serve`, a local web face over the store and search stages, like
//! the CLI is a text face. It sits downstream of [`crate::store`] and [`crate::search`] and
//! only calls them; nothing upstream knows it exists.
//!
//! The HTTP server is `tiny_http` (no default features: no TLS, no async runtime, four small
//! dependencies), one thread answering one request at a time: a local gallery has one user.
//! The pages are HTML shells; a vanilla script and a style sheet compiled into the binary
//! (`assets/`) fill them from the JSON endpoints, so the gallery needs no network. Charts are
//! inline SVG drawn by that script.
//!
//! Requests name models by registry id or stored name, never by path: no URL reaches a file
//! of the store other than through the registry, and a registry row whose reel path leaves
//! the store's `reels/` directory is refused.
//!
//! | path | what |
//! |---|---|
//! | `/`, `/model/ID`, `/compare?a=&b=`, `/search?q=`, `/families` | pages |
//! | `/api/list` | every entry, as `list --json` prints it |
//! | `/api/stats` | the statistics block, as `stats --json` prints it |
//! | `/api/models?q=&sort=&order=&page=&per=` | one page of the store table |
//! | `/api/model/ID` | an entry, its tensors, per-role and per-layer statistics and histograms, its frames |
//! | `/api/model/ID/frame/K?scale=&outline=` | frame K's tensor runs (labels, ranges) |
//! | `/api/model/ID/frame/K.png?scale=&outline=` | frame K as a PNG |
//! | `/api/model/ID/frame/K/at?x=&y=` | the tensor, element and value at a pixel |
//! | `/api/model/ID/preview`, `/api/model/ID/preview.mp4` | the H.264 preview's size, and the preview (made on request) |
//! | `/api/compare?a=&b=` | issue 7's comparison, its layer grid and change table |
//! | `/api/search?q=&top=&method=` | the ranked list |
//! | `/api/families` | family trees (waits for them) |
//! | `/api/families/page?page=&per=` | one page of the families, or how far computing them is |
//! | `/queue`, `/api/queue` | the job queue's progress (feature `queue`; `serve --queue URL`), as `queue status --json` prints it |

pub mod render;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::fingerprint::Fingerprint;
use crate::reel::{Manifest, ReelReader};
use crate::roles::{layer_index, Role};
use crate::search::{self, Method, SearchOptions};
use crate::store::{EntrySummary, Store};

pub use render::{PngCache, Rendered, Scale, View};

/// Galleries opened by this process (each has its own preview directory).
static GALLERIES: AtomicU64 = AtomicU64::new(0);

/// Default port of `weightreel serve`.
pub const DEFAULT_PORT: u16 = 8470;
/// Default bound of the PNG cache.
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;
/// Bins of the histograms.
pub const HISTOGRAM_BINS: usize = 40;

const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// The address to listen on: `bind` (any address, given on purpose) or 127.0.0.1.
pub fn listen_address(bind: Option<&str>, port: u16) -> Result<SocketAddr> {
    let ip = match bind {
        None => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Some(text) => text.parse::<IpAddr>().map_err(|_| {
            Error::invalid("--bind", text, "an IP address such as 127.0.0.1 or 0.0.0.0")
        })?,
    };
    Ok(SocketAddr::new(ip, port))
}

/// A response.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
}

impl Reply {
    fn json<T: Serialize>(value: &T) -> Reply {
        Reply {
            status: 200,
            content_type: "application/json",
            body: serde_json::to_vec(value).expect("serializes"),
        }
    }

    fn error(status: u16, message: impl Into<String>) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: serde_json::to_vec(&json!({ "error": message.into() })).expect("serializes"),
        }
    }

    fn text(content_type: &'static str, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status: 200,
            content_type,
            body: body.into(),
        }
    }
}

/// The gallery over one store: routing and rendering, without the network (see [`run`]).
pub struct Gallery {
    store: Store,
    cache: PngCache,
    /// The family trees of the fingerprinted names they were computed from, computed in the
    /// background: trees compare every pair of models, seconds for a thousand.
    families: Option<FamilyJob>,
    /// H.264 previews made on request, by entry id, in a directory of this process under
    /// the system's temporary directory (removed with the gallery): the store is only read.
    previews: std::collections::HashMap<i64, PathBuf>,
    preview_dir: PathBuf,
    /// The job queue whose progress `/queue` shows (a PostgreSQL URL), if any.
    queue: Option<String>,
    /// Its connection, kept between requests (the page asks every two seconds); dropped after
    /// an error, so the next request connects again.
    #[cfg(feature = "queue")]
    queue_client: Option<crate::queue::Queue>,
}

impl Drop for Gallery {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.preview_dir);
    }
}

/// Family trees being computed (or computed) on another thread, with its own read-only
/// connection to the store, so that pages stay answered meanwhile.
struct FamilyJob {
    names: Vec<String>,
    done: Arc<AtomicU64>,
    total: u64,
    result: Arc<Mutex<Option<std::result::Result<Value, String>>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FamilyJob {
    fn start(store: &Store, names: Vec<String>) -> FamilyJob {
        let done = Arc::new(AtomicU64::new(0));
        let result = Arc::new(Mutex::new(None));
        // A handle of its own on the same store (directory or PostgreSQL) for the thread.
        let (opened, job_names) = (store.reopen_read_only(), names.clone());
        let (d, r) = (Arc::clone(&done), Arc::clone(&result));
        let thread = std::thread::spawn(move || {
            let trees = (|| -> Result<Value> {
                let store = opened?;
                let mut models = Vec::new();
                for name in &job_names {
                    if let Some(fp) = store.fingerprint(name)? {
                        models.push((name.clone(), fp));
                    }
                }
                let families = search::families_counting(&models, &d);
                Ok(serde_json::to_value(families).expect("serializes"))
            })();
            *r.lock().unwrap_or_else(|e| e.into_inner()) = Some(trees.map_err(|e| e.to_string()));
        });
        FamilyJob {
            total: search::family_pairs(names.len()),
            names,
            done,
            result,
            thread: Some(thread),
        }
    }

    /// The trees, or `None` while they are computed.
    fn ready(&self) -> Option<std::result::Result<Value, String>> {
        self.result
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The trees, waiting for them.
    fn wait(&mut self) -> Result<Value> {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        match self.ready() {
            Some(Ok(trees)) => Ok(trees),
            Some(Err(e)) => Err(Error::store(Path::new("family trees"), e)),
            None => Err(Error::store(
                Path::new("family trees"),
                "their computation stopped",
            )),
        }
    }
}

/// Percent-decoding of one query component (`+` is a space).
fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A request's path (decoded) and query parameters.
struct Target {
    path: String,
    query: Vec<(String, String)>,
}

impl Target {
    fn parse(url: &str) -> Target {
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        Target {
            path: unescape(path),
            query: query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (unescape(k), unescape(v))
                })
                .collect(),
        }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Escape text for HTML.
fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A page: the shell the script fills.
fn page(kind: &str, title: &str, data: &[(&str, &str)]) -> Reply {
    let attrs: String = data
        .iter()
        .map(|(k, v)| format!(" data-{k}=\"{}\"", esc(v)))
        .collect();
    Reply::text(
        "text/html; charset=utf-8",
        format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{} · weightreel</title><link rel=\"stylesheet\" href=\"/assets/style.css\">\
<script src=\"/assets/app.js\" defer></script></head>\
<body data-page=\"{kind}\"{attrs}><nav><a href=\"/\">Store</a> <a href=\"/search\">Search</a> \
<a href=\"/compare\">Compare</a> <a href=\"/families\">Families</a> <a href=\"/queue\">Queue</a></nav>\
<main id=\"main\"><p class=\"loading\">Loading…</p></main></body></html>\n",
            esc(title)
        ),
    )
}

/// Per-role or per-layer statistics of a fingerprint's samples.
#[derive(Debug, Clone, Serialize)]
struct GroupStats {
    /// Role name or layer number (`null`: outside numbered layers).
    key: Value,
    tensors: usize,
    params: u64,
    sampled: usize,
    mean: f64,
    std: f64,
    absmax: f64,
    /// Histogram of the samples over `[lo, hi]` in [`HISTOGRAM_BINS`] bins.
    lo: f64,
    hi: f64,
    counts: Vec<u64>,
}

fn group_stats<'a>(
    key: Value,
    prints: impl Iterator<Item = &'a crate::fingerprint::TensorPrint>,
) -> GroupStats {
    let prints: Vec<_> = prints.collect();
    let values = || {
        prints
            .iter()
            .flat_map(|t| t.values.iter())
            .filter(|v| v.is_finite())
            .map(|&v| f64::from(v))
    };
    let n = values().count();
    let mean = if n == 0 {
        0.0
    } else {
        values().sum::<f64>() / n as f64
    };
    let var = if n == 0 {
        0.0
    } else {
        values().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64
    };
    let (lo, hi) = values().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let (lo, hi) = if n == 0 { (0.0, 0.0) } else { (lo, hi) };
    let mut counts = vec![0u64; HISTOGRAM_BINS];
    let width = (hi - lo).max(f64::MIN_POSITIVE);
    for v in values() {
        let bin = (((v - lo) / width) * HISTOGRAM_BINS as f64) as usize;
        counts[bin.min(HISTOGRAM_BINS - 1)] += 1;
    }
    GroupStats {
        key,
        tensors: prints.len(),
        params: prints.iter().map(|t| t.numel()).sum(),
        sampled: n,
        mean,
        std: var.sqrt(),
        absmax: lo.abs().max(hi.abs()),
        lo,
        hi,
        counts,
    }
}

/// Store-table row.
#[derive(Serialize)]
struct Row<'a> {
    id: i64,
    name: &'a str,
    source_kind: &'a str,
    source: &'a str,
    revision: Option<&'a str>,
    params: u64,
    mode: &'a str,
    chunk_size: u64,
    frames: u64,
    reel_bytes: u64,
    bytes_read: u64,
    /// `reel_bytes / bytes_read`: the reel's size against the model data it was made from.
    ratio: f64,
    created_at: &'a str,
}

impl<'a> Row<'a> {
    fn of(e: &'a EntrySummary) -> Row<'a> {
        let r = &e.record;
        Row {
            id: e.id,
            name: &r.name,
            source_kind: &r.source_kind,
            source: &r.source,
            revision: r.revision.as_deref(),
            params: r.totals.params,
            mode: &r.settings.mode,
            chunk_size: r.settings.chunk_size,
            frames: r.totals.frames,
            reel_bytes: r.totals.reel_bytes,
            bytes_read: r.totals.bytes_read,
            ratio: r.totals.reel_bytes as f64 / (r.totals.bytes_read.max(1)) as f64,
            created_at: &r.created_at,
        }
    }
}

/// Sort keys of the store table.
const SORT_KEYS: &[&str] = &[
    "id",
    "name",
    "source",
    "revision",
    "params",
    "mode",
    "chunk_size",
    "frames",
    "reel_bytes",
    "ratio",
    "created_at",
];

impl Gallery {
    /// The gallery over the store at `dir` (opened read-only), caching at most `cache_bytes`
    /// of PNGs.
    /// The gallery over the store at `dir`; the family trees start computing in the
    /// background at once.
    /// Show the progress of the job queue at `url` (a PostgreSQL URL) on `/queue`.
    pub fn with_queue(mut self, url: Option<String>) -> Gallery {
        self.queue = url;
        self
    }

    /// `/api/queue`: `queue status --json`, read anew at every request (workers move it).
    fn queue_status(&mut self) -> Result<Reply> {
        let Some(url) = &self.queue else {
            return Ok(Reply::error(
                404,
                "no job queue: start the gallery with --queue URL (or $WEIGHTREEL_QUEUE)",
            ));
        };
        #[cfg(feature = "queue")]
        {
            let client = match self.queue_client.take() {
                Some(client) => client,
                None => crate::queue::Queue::connect(url)?,
            };
            let client = self.queue_client.insert(client);
            match client.status() {
                Ok(status) => Ok(Reply::json(&status)),
                Err(e) => {
                    self.queue_client = None;
                    Err(e)
                }
            }
        }
        #[cfg(not(feature = "queue"))]
        {
            let _ = url;
            Ok(Reply::error(
                404,
                "this build has no job queue (feature `queue`)",
            ))
        }
    }

    /// Read the reels from `location` (`--reels`) instead of the store's `reels/`.
    pub fn with_reels(
        mut self,
        location: Option<&crate::store::objects::ReelLocation>,
    ) -> Result<Gallery> {
        self.store.set_reels(location)?;
        Ok(self)
    }

    pub fn open(dir: &Path, cache_bytes: usize) -> Result<Gallery> {
        let mut gallery = Gallery {
            store: Store::open_read_only(dir)?,
            cache: PngCache::new(cache_bytes),
            families: None,
            previews: Default::default(),
            queue: None,
            #[cfg(feature = "queue")]
            queue_client: None,
            preview_dir: std::env::temp_dir().join(format!(
                "weightreel-serve-{}-{}",
                std::process::id(),
                GALLERIES.fetch_add(1, Ordering::Relaxed)
            )),
        };
        gallery.family_job()?;
        Ok(gallery)
    }

    /// The PNG cache (for its size).
    pub fn cache(&self) -> &PngCache {
        &self.cache
    }

    /// Answer a GET of `url` (path and query).
    pub fn get(&mut self, url: &str) -> Reply {
        let target = Target::parse(url);
        match self.route(&target) {
            Ok(reply) => reply,
            Err(e @ Error::Invalid { .. }) => Reply::error(400, e.to_string()),
            Err(e) => Reply::error(500, e.to_string()),
        }
    }

    fn route(&mut self, t: &Target) -> Result<Reply> {
        let parts: Vec<&str> = t.path.split('/').filter(|p| !p.is_empty()).collect();
        Ok(match parts.as_slice() {
            [] => page("store", "Store", &[]),
            ["assets", "app.js"] => Reply::text("text/javascript; charset=utf-8", APP_JS),
            ["assets", "style.css"] => Reply::text("text/css; charset=utf-8", STYLE_CSS),
            ["model", id] => match self.entry(id)? {
                Some(e) => page("model", &e.record.name, &[("id", &e.id.to_string())]),
                None => not_found(&t.path),
            },
            ["compare"] => page(
                "compare",
                "Compare",
                &[
                    ("a", t.get("a").unwrap_or("")),
                    ("b", t.get("b").unwrap_or("")),
                ],
            ),
            ["search"] => page("search", "Search", &[("q", t.get("q").unwrap_or(""))]),
            ["families"] => page("families", "Families", &[]),
            ["queue"] => page("queue", "Queue", &[]),
            ["api", "queue"] => self.queue_status()?,
            ["api", "list"] => Reply::json(&self.store.listing()?.entries),
            ["api", "stats"] => Reply::json(&self.store.stats()?),
            ["api", "models"] => self.models_page(t)?,
            ["api", "model", id] => match self.entry(id)? {
                Some(e) => self.model(&e)?,
                None => not_found(&t.path),
            },
            ["api", "model", id, "preview"] => match self.entry(id)? {
                Some(e) => {
                    let g = crate::reel::preview_geometry(&self.reel_path(&e)?)?;
                    Reply::json(&json!({
                        "width": g.width, "height": g.height, "shrink": g.shrink,
                        "describe": g.describe(),
                    }))
                }
                None => not_found(&t.path),
            },
            ["api", "model", id, "preview.mp4"] => match self.entry(id)? {
                Some(e) => Reply {
                    status: 200,
                    content_type: "video/mp4",
                    body: self.preview(&e)?,
                },
                None => not_found(&t.path),
            },
            ["api", "model", id, "frame", k] => {
                let Some(e) = self.entry(id)? else {
                    return Ok(not_found(&t.path));
                };
                match k.strip_suffix(".png") {
                    Some(k) => {
                        let r = self.rendered(&e, k, t)?;
                        Reply::text("image/png", r.png.clone())
                    }
                    None => Reply::json(&*self.rendered(&e, k, t)?),
                }
            }
            ["api", "model", id, "frame", k, "at"] => {
                let Some(e) = self.entry(id)? else {
                    return Ok(not_found(&t.path));
                };
                let x = number::<u32>(t, "x")?;
                let y = number::<u32>(t, "y")?;
                let r = self.rendered(&e, k, t)?;
                match r.at(x, y) {
                    Some((region, element)) => {
                        // The value itself: the one tile holding the pixel is decoded.
                        let reel = self.reel_path(&e)?;
                        let mut reader = ReelReader::open(&reel)?;
                        let manifest = Manifest::parse(&reel, reader.metadata_json())?;
                        let value = r.value_at(&reel, &mut reader, &manifest, x, y)?;
                        Reply::json(&json!({
                            "x": x, "y": y, "tensor": region.name, "shape": region.shape,
                            "element": element, "index": unravel(element, &region.shape),
                            "value": value.filter(|v| v.is_finite()),
                            "value_text": value.map(|v| v.to_string()),
                        }))
                    }
                    None if x < r.width && y < r.height => {
                        Reply::json(&json!({ "x": x, "y": y, "padding": true }))
                    }
                    None => Reply::error(
                        400,
                        format!(
                            "pixel ({x}, {y}) is outside the {}x{} frame",
                            r.width, r.height
                        ),
                    ),
                }
            }
            ["api", "compare"] => self.compare(t)?,
            ["api", "search"] => self.search(t)?,
            ["api", "families"] => self.families()?,
            ["api", "families", "page"] => self.families_page(t)?,
            _ => not_found(&t.path),
        })
    }

    /// The entry with registry id `id` (`None` when `id` is not a number or not stored).
    fn entry(&self, id: &str) -> Result<Option<EntrySummary>> {
        let Ok(id) = id.parse::<i64>() else {
            return Ok(None);
        };
        self.store.entry(id)
    }

    /// The reel of `e`, which must lie in the store's `reels/` directory.
    fn reel_path(&self, e: &EntrySummary) -> Result<PathBuf> {
        let rel = Path::new(&e.record.totals.reel_file);
        let inside =
            rel.components().all(|c| matches!(c, Component::Normal(_))) && rel.starts_with("reels");
        if !inside {
            return Err(Error::store(
                self.store.dir(),
                format!(
                    "entry #{} names reel '{}', which is outside the store's reels/ directory (refused)",
                    e.id, e.record.totals.reel_file
                ),
            ));
        }
        Ok(self.store.reel_path(&e.record.totals.reel_file))
    }

    fn models_page(&self, t: &Target) -> Result<Reply> {
        let listing = self.store.listing()?;
        let q = t.get("q").unwrap_or("").to_lowercase();
        let rows: Vec<Row> = listing
            .entries
            .iter()
            .map(Row::of)
            .filter(|r| {
                q.is_empty()
                    || r.name.to_lowercase().contains(&q)
                    || r.source.to_lowercase().contains(&q)
            })
            .collect();
        let sort = t.get("sort").unwrap_or("id");
        if !SORT_KEYS.contains(&sort) {
            return Err(Error::invalid(
                "sort",
                sort,
                format!("one of {}", SORT_KEYS.join(", ")),
            ));
        }
        let mut keyed: Vec<(Value, Row)> = rows
            .into_iter()
            .map(|r| (serde_json::to_value(&r).expect("row")[sort].take(), r))
            .collect();
        keyed.sort_by(|(ka, a), (kb, b)| compare_values(ka, kb).then(a.id.cmp(&b.id)));
        let mut rows: Vec<Row> = keyed.into_iter().map(|(_, r)| r).collect();
        if t.get("order") == Some("desc") {
            rows.reverse();
        }
        let per = number_or(t, "per", 50usize)?.clamp(1, 500);
        let page = number_or(t, "page", 0usize)?;
        let total = rows.len();
        let shown: Vec<&Row> = rows.iter().skip(page * per).take(per).collect();
        Ok(Reply::json(&json!({
            "total": total, "page": page, "per": per, "pages": total.div_ceil(per),
            "sort": sort, "rows": shown,
        })))
    }

    fn model(&self, e: &EntrySummary) -> Result<Reply> {
        let reel = self.reel_path(e)?;
        let reader = ReelReader::open(&reel)?;
        let manifest = Manifest::parse(&reel, reader.metadata_json())?;
        let frames = self.store.frames(e.id)?;
        // Tensors follow each other in the value sequence: frames overlapping a tensor's
        // range hold it.
        let mut offset = 0u64;
        let tensors: Vec<Value> = manifest
            .tensors
            .iter()
            .map(|t| {
                let (from, to) = (offset, offset + t.selected);
                offset = to;
                let first = frames
                    .iter()
                    .find(|f| f.first_value + f.count > from && f.first_value < to.max(from + 1));
                json!({
                    "name": t.name, "role": t.role, "layer": layer_index(&t.name),
                    "shape": t.shape, "dtype": t.dtype, "source_type": t.source_type,
                    "numel": t.numel(), "selected": t.selected,
                    "first_frame": first.map(|f| f.index),
                })
            })
            .collect();
        let fingerprint = self.store.fingerprint(&e.record.name)?;
        let (roles, layers) = match &fingerprint {
            Some(fp) => statistics(fp),
            None => (Vec::new(), Vec::new()),
        };
        Ok(Reply::json(&json!({
            "entry": e, "tensors": tensors, "frames": frames,
            "roles": roles, "layers": layers,
            "statistics_from": if fingerprint.is_some() { "the stored fingerprint's samples" } else { "none (no fingerprint stored)" },
        })))
    }

    fn rendered(
        &mut self,
        e: &EntrySummary,
        k: &str,
        t: &Target,
    ) -> Result<std::sync::Arc<Rendered>> {
        let frame = k
            .parse::<u64>()
            .map_err(|_| Error::invalid("frame", k, "a frame number"))?;
        let scale = match t.get("scale") {
            None => Scale::Frame,
            Some(s) => {
                Scale::parse(s).ok_or_else(|| Error::invalid("scale", s, "frame or tensor"))?
            }
        };
        let outline = t.get("outline") != Some("0");
        if frame >= e.record.totals.frames {
            return Err(Error::invalid(
                "frame",
                k,
                format!("a frame of the reel (it has {})", e.record.totals.frames),
            ));
        }
        let reel = self.reel_path(e)?;
        let view = View {
            frame,
            scale,
            outline,
        };
        self.cache
            .get_or_render(e.id, view, || render::render(&reel, view))
    }

    fn stored(&self, t: &Target, key: &str) -> Result<(String, Fingerprint)> {
        let name = t
            .get(key)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| Error::invalid(key, "", "a stored model name"))?;
        match self.store.fingerprint(name)? {
            Some(fp) => Ok((name.to_string(), fp)),
            None => {
                let names = self.store.fingerprint_names()?;
                let closest = search::closest_names(name, &names, 3);
                Err(Error::invalid(
                    key,
                    name,
                    format!(
                        "a stored, fingerprinted model (closest: {})",
                        closest.join(", ")
                    ),
                ))
            }
        }
    }

    fn compare(&self, t: &Target) -> Result<Reply> {
        let (a, fa) = self.stored(t, "a")?;
        let (b, fb) = self.stored(t, "b")?;
        Ok(Reply::json(
            &search::compare(&fa, &fb).report(&a, &fa, &b, &fb),
        ))
    }

    fn search(&self, t: &Target) -> Result<Reply> {
        let (q, fp) = self.stored(t, "q")?;
        let top = number_or(t, "top", 10usize)?.clamp(1, 1000);
        let method = Method::parse(t.get("method").unwrap_or("hybrid"))?;
        let index = self.store.fingerprint_index()?;
        let result = search::search(
            &self.store,
            &index,
            &fp,
            SearchOptions {
                top,
                method,
                exclude: Some(&q),
                roles: &[],
            },
        )?;
        Ok(Reply::json(&result))
    }

    /// The bytes of entry `e`'s H.264 preview (`encode --preview`), made on first request.
    fn preview(&mut self, e: &EntrySummary) -> Result<Vec<u8>> {
        if !self.previews.contains_key(&e.id) {
            let reel = self.reel_path(e)?;
            std::fs::create_dir_all(&self.preview_dir)
                .map_err(|err| Error::io(&self.preview_dir, err))?;
            let out = self.preview_dir.join(format!("{}.mp4", e.id));
            crate::reel::write_preview_h264(&reel, &out)?;
            self.previews.insert(e.id, out);
        }
        let file = &self.previews[&e.id];
        std::fs::read(file).map_err(|err| Error::io(file, err))
    }

    /// The family job of the store's fingerprinted models as they are now (a new one when
    /// the set changed).
    fn family_job(&mut self) -> Result<&mut FamilyJob> {
        let names = self.store.fingerprint_names()?;
        if self.families.as_ref().is_none_or(|job| job.names != names) {
            self.families = Some(FamilyJob::start(&self.store, names));
        }
        Ok(self.families.as_mut().expect("just set"))
    }

    /// Every family tree, as `tree --json` prints them (waits for the computation).
    fn families(&mut self) -> Result<Reply> {
        let trees = self.family_job()?.wait()?;
        Ok(Reply::json(&trees))
    }

    /// One page of the families with an edge, and the names of the unrelated models; while
    /// the trees are computed, how far that is.
    fn families_page(&mut self, t: &Target) -> Result<Reply> {
        let per = number_or(t, "per", 20usize)?.clamp(1, 500);
        let page = number_or(t, "page", 0usize)?;
        let job = self.family_job()?;
        let trees = match job.ready() {
            None => {
                return Ok(Reply::json(&json!({
                    "computing": true,
                    "pairs_done": job.done.load(Ordering::Relaxed).min(job.total),
                    "pairs": job.total,
                })))
            }
            Some(_) => job.wait()?,
        };
        let all = trees.as_array().cloned().unwrap_or_default();
        let (related, alone): (Vec<Value>, Vec<Value>) = all
            .into_iter()
            .partition(|f| f["edges"].as_array().is_some_and(|e| !e.is_empty()));
        let pages = related.len().div_ceil(per);
        let shown: Vec<&Value> = related.iter().skip(page * per).take(per).collect();
        Ok(Reply::json(&json!({
            "computing": false,
            "pairs": job.total,
            "page": page,
            "pages": pages,
            "related": related.len(),
            "families": shown,
            "unrelated": alone.iter().map(|f| &f["root"]).collect::<Vec<_>>(),
        })))
    }
}

fn not_found(path: &str) -> Reply {
    Reply::error(404, format!("{path}: no such page"))
}

/// Order of two JSON scalars (numbers numerically, the rest as text, nulls first).
fn compare_values(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&y.as_f64().unwrap_or(0.0)),
        (Value::Null, Value::Null) => std::cmp::Ordering::Equal,
        (Value::Null, _) => std::cmp::Ordering::Less,
        (_, Value::Null) => std::cmp::Ordering::Greater,
        _ => a.to_string().cmp(&b.to_string()),
    }
}

fn number<T: std::str::FromStr>(t: &Target, key: &str) -> Result<T> {
    let text = t.get(key).unwrap_or("");
    text.parse()
        .map_err(|_| Error::invalid(key, text, "a non-negative whole number"))
}

fn number_or<T: std::str::FromStr>(t: &Target, key: &str, default: T) -> Result<T> {
    match t.get(key) {
        None | Some("") => Ok(default),
        Some(_) => number(t, key),
    }
}

/// Row-major index `element` of a tensor of `shape` as one index per dimension.
fn unravel(mut element: u64, shape: &[usize]) -> Vec<u64> {
    let mut out = vec![0u64; shape.len()];
    for (o, &d) in out.iter_mut().zip(shape).rev() {
        let d = (d as u64).max(1);
        *o = element % d;
        element /= d;
    }
    out
}

/// Per-role and per-layer statistics and histograms of a fingerprint's samples.
fn statistics(fp: &Fingerprint) -> (Vec<GroupStats>, Vec<GroupStats>) {
    let roles = Role::ALL
        .into_iter()
        .filter(|r| fp.tensors.iter().any(|t| t.role == *r))
        .map(|r| group_stats(json!(r), fp.tensors.iter().filter(|t| t.role == r)))
        .collect();
    let mut layers: Vec<Option<u32>> = fp.tensors.iter().map(|t| t.layer).collect();
    layers.sort();
    layers.dedup();
    let layers = layers
        .into_iter()
        .map(|l| group_stats(json!(l), fp.tensors.iter().filter(|t| t.layer == l)))
        .collect();
    (roles, layers)
}

/// Serve `gallery` on `addr` until the process ends; `ready` gets the address bound (the
/// port chosen when `addr`'s is 0) before the first request is read.
pub fn run(mut gallery: Gallery, addr: SocketAddr, ready: impl FnOnce(SocketAddr)) -> Result<()> {
    let server = tiny_http::Server::http(addr).map_err(|e| {
        Error::invalid(
            "--port",
            addr.to_string(),
            format!("an address free to listen on ({e})"),
        )
    })?;
    let bound = server.server_addr().to_ip().unwrap_or(addr);
    ready(bound);
    for request in server.incoming_requests() {
        let reply = match request.method() {
            tiny_http::Method::Get | tiny_http::Method::Head => gallery.get(request.url()),
            _ => Reply::error(405, "only GET and HEAD are served"),
        };
        let header =
            tiny_http::Header::from_bytes(&b"Content-Type"[..], reply.content_type.as_bytes())
                .expect("valid header");
        let response = tiny_http::Response::from_data(reply.body)
            .with_status_code(reply.status)
            .with_header(header);
        // A client that went away is no reason to stop serving.
        let _ = request.respond(response);
    }
    Ok(())
}
