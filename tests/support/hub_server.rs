//! A real HTTP server on 127.0.0.1 that speaks the parts of the Hugging Face Hub API weightreel
//! uses, so that the real `HubClient` is tested over real sockets:
//!
//! - `GET /api/models/{repo}/revision/{revision}`: the listing JSON (`id`, `sha`, `siblings`).
//! - `GET /api/models/{repo}/refs`: the repo's branches and tags (`{"branches": [{"name",
//!   "ref", "targetCommit"}], "tags": [...], "converts": []}`).
//! - Errors as the Hub sends them, with `X-Error-Code` and `X-Error-Message`: `RepoNotFound`
//!   (401 without an `Authorization` header, which also hides private repos; 404 with one),
//!   `RevisionNotFound` (404), `EntryNotFound` (404), and 401 "Invalid credentials in
//!   Authorization header" for a token the repo does not accept.
//! - `GET /{repo}/resolve/{revision}/{file}`: small files directly; files registered as large
//!   answer `302 Found` to `/cdn/{id}`, as the Hub redirects LFS files to its CDN.
//! - `Range: bytes=a-b`, `a-` and `-n` answered with `206` and `Content-Range`, `416` when
//!   unsatisfiable, `200` with the whole body without a `Range` header.
//! - Private repos (401 without a Bearer token, 403 with a wrong one) and per-repo failure modes:
//!   the faults a hostile or flaky server shows (short `206`, stalls, a trickling body, `429`/`503`
//!   before success), and redirects to a CDN on another server (another port).
//! - A per-request delay ([`HubServer::set_delay`]), the round trip of a real link. Every
//!   connection has its own thread and keep-alive, so concurrent requests are delayed
//!   concurrently, as on a real link. (Not tiny_http: its connection pool can leave a new
//!   connection unserved while others stay open, when several arrive at once.)
//!
//! Files on disk are served with seek + read of the requested range only. Counters record what
//! was asked and what was sent.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Where a file's bytes live.
#[derive(Clone)]
pub enum Body {
    /// Held in memory (small test files).
    Memory(Arc<Vec<u8>>),
    /// Read from disk per request, only the requested range.
    Disk(PathBuf),
}

impl Body {
    fn len(&self) -> u64 {
        match self {
            Body::Memory(b) => b.len() as u64,
            Body::Disk(p) => std::fs::metadata(p).expect("served file").len(),
        }
    }

    /// A reader over `start..start + len`.
    fn reader(&self, start: u64, len: u64) -> Box<dyn Read + Send> {
        match self {
            Body::Memory(b) => {
                let slice = b[start as usize..(start + len) as usize].to_vec();
                Box::new(Cursor::new(slice))
            }
            Body::Disk(p) => {
                let mut f = File::open(p).expect("open served file");
                f.seek(SeekFrom::Start(start)).expect("seek served file");
                Box::new(f.take(len))
            }
        }
    }
}

/// One file of a repo.
#[derive(Clone)]
pub struct RepoFile {
    /// The bytes.
    pub body: Body,
    /// Served through a redirect to `/cdn/{id}` like an LFS file.
    pub large: bool,
}

/// How a repo misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Every `resolve` request answers this status.
    Status(u16),
    /// File bytes are sent whole with `200`, whatever the `Range` header says.
    IgnoreRange,
    /// Range requests get a valid `206` for at most this many bytes of what was asked.
    ShortRange(u64),
    /// The next `count` file requests (resolve or CDN) answer `status`, then requests succeed.
    FailFirst { status: u16, count: u32 },
    /// File requests wait this long before answering (a stalled connection).
    Stall(Duration),
    /// File bodies are sent one byte per interval (a trickle).
    Trickle(Duration),
}

/// A repo the server knows.
#[derive(Clone)]
pub struct Repo {
    /// The commit every branch points at.
    pub commit: String,
    /// Branch names that resolve to `commit`.
    pub branches: Vec<String>,
    /// Tag names that resolve to `commit`.
    pub tags: Vec<String>,
    /// Files by repo-relative name.
    pub files: BTreeMap<String, RepoFile>,
    /// When set, requests need `Authorization: Bearer {token}`.
    pub token: Option<String>,
    /// Failure mode.
    pub failure: Option<Failure>,
}

impl Repo {
    /// An empty public repo at a commit derived from `seed`, with branch `main`.
    pub fn new(seed: &str) -> Repo {
        Repo {
            commit: fake_commit(seed),
            branches: vec!["main".into()],
            tags: Vec::new(),
            files: BTreeMap::new(),
            token: None,
            failure: None,
        }
    }

    /// Add a small file served directly.
    pub fn small(mut self, name: &str, bytes: impl Into<Vec<u8>>) -> Repo {
        self.files.insert(
            name.into(),
            RepoFile {
                body: Body::Memory(Arc::new(bytes.into())),
                large: false,
            },
        );
        self
    }

    /// Add a file from disk; `large` files are redirected to the CDN path.
    pub fn disk(mut self, name: &str, path: impl AsRef<Path>, large: bool) -> Repo {
        self.files.insert(
            name.into(),
            RepoFile {
                body: Body::Disk(path.as_ref().to_path_buf()),
                large,
            },
        );
        self
    }

    /// Make the repo private with `token`.
    pub fn private(mut self, token: &str) -> Repo {
        self.token = Some(token.into());
        self
    }

    /// Add a branch at the repo's commit.
    pub fn branch(mut self, name: &str) -> Repo {
        self.branches.push(name.into());
        self
    }

    /// Add a tag at the repo's commit.
    pub fn tag(mut self, name: &str) -> Repo {
        self.tags.push(name.into());
        self
    }

    fn resolves(&self, revision: &str) -> bool {
        revision == self.commit
            || self.branches.iter().any(|b| b == revision)
            || self.tags.iter().any(|t| t == revision)
    }
}

/// A 40-hex commit id derived from `seed` (FNV-1a, repeated).
pub fn fake_commit(seed: &str) -> String {
    let mut out = String::new();
    let mut h: u64 = 0xcbf29ce484222325;
    while out.len() < 40 {
        for b in seed.bytes().chain(out.clone().bytes()) {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        out.push_str(&format!("{h:016x}"));
    }
    out.truncate(40);
    out
}

/// What kind of path a request was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `/api/models/...`
    Api,
    /// `/{repo}/resolve/...`
    Resolve,
    /// `/cdn/...`
    Cdn,
    /// Anything else.
    Other,
}

/// Counters of one kind of request.
#[derive(Default)]
pub struct Counter {
    requests: AtomicU64,
    bytes: AtomicU64,
}

impl Counter {
    fn add(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// Everything counted so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests received.
    pub requests: u64,
    /// Body bytes sent.
    pub bytes: u64,
    /// Listing API requests.
    pub api_requests: u64,
    /// `resolve` requests (including those answered with a redirect).
    pub resolve_requests: u64,
    /// CDN requests.
    pub cdn_requests: u64,
    /// Body bytes sent by the CDN path.
    pub cdn_bytes: u64,
    /// Body bytes sent by the `resolve` path.
    pub resolve_bytes: u64,
}

#[derive(Default)]
struct Stats {
    api: Counter,
    resolve: Counter,
    cdn: Counter,
    other: Counter,
    ranges: Mutex<Vec<Option<String>>>,
    log: Mutex<Vec<Logged>>,
}

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// Path kind.
    pub kind: Kind,
    /// Path without the query.
    pub path: String,
    /// The `Range` header.
    pub range: Option<String>,
    /// Whether an `Authorization` header came with it.
    pub authorized: bool,
    /// Status answered.
    pub status: u16,
}

impl Stats {
    fn counter(&self, kind: Kind) -> &Counter {
        match kind {
            Kind::Api => &self.api,
            Kind::Resolve => &self.resolve,
            Kind::Cdn => &self.cdn,
            Kind::Other => &self.other,
        }
    }
}

/// A reader that counts the bytes the server takes from it to send.
struct Counted<R> {
    inner: R,
    stats: Arc<Stats>,
    kind: Kind,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.stats.counter(self.kind).add(n as u64);
        Ok(n)
    }
}

struct State {
    repos: BTreeMap<String, Repo>,
    /// CDN id → (repo, file).
    cdn: BTreeMap<String, (String, String)>,
    absolute_redirects: bool,
    /// Host name used in absolute redirects (`127.0.0.1` unless set).
    redirect_host: Option<String>,
    /// Base URL of another server that answers the CDN paths (absolute redirects go there).
    redirect_base: Option<String>,
    /// Waited before answering every request.
    delay: Duration,
}

/// The running server; stops on drop.
pub struct HubServer {
    url: String,
    state: Arc<Mutex<State>>,
    stats: Arc<Stats>,
    stopping: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl HubServer {
    /// Start on an ephemeral port.
    pub fn start() -> HubServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("a local address").port();
        let url = format!("http://127.0.0.1:{port}");
        let state = Arc::new(Mutex::new(State {
            repos: BTreeMap::new(),
            cdn: BTreeMap::new(),
            absolute_redirects: false,
            redirect_host: None,
            redirect_base: None,
            delay: Duration::ZERO,
        }));
        let stats = Arc::new(Stats::default());
        let stopping = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (state, stats, url, stopping) =
                (state.clone(), stats.clone(), url.clone(), stopping.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (state, stats, url, stopping) =
                        (state.clone(), stats.clone(), url.clone(), stopping.clone());
                    std::thread::spawn(move || serve(stream, &state, &stats, &url, &stopping));
                }
            })
        };
        HubServer {
            url,
            state,
            stats,
            stopping,
            acceptor: Some(acceptor),
        }
    }

    /// Answer every request after `delay`, like a link with that round trip.
    pub fn set_delay(&self, delay: Duration) {
        self.state.lock().unwrap().delay = delay;
    }

    /// Redirect large files to `{base}/cdn/{id}` on another server (another origin), which must
    /// have the same repo and [`HubServer::serve_cdn`] it.
    pub fn set_redirect_base(&self, base: &str) {
        let mut state = self.state.lock().unwrap();
        state.absolute_redirects = true;
        state.redirect_base = Some(base.into());
    }

    /// Answer the CDN path of `file` of `repo` (registered here) as the Hub's CDN would, for a
    /// server that [`HubServer::set_redirect_base`]s here.
    pub fn serve_cdn(&self, repo: &str, file: &str) {
        let mut state = self.state.lock().unwrap();
        let id = cdn_id(repo, &state.repos[repo].commit, file);
        state.cdn.insert(id, (repo.into(), file.into()));
    }

    /// `http://127.0.0.1:{port}`, the endpoint to give the client.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Register (or replace) `repo` under `id` (`name` or `org/name`).
    pub fn add_repo(&self, id: &str, repo: Repo) {
        self.state.lock().unwrap().repos.insert(id.into(), repo);
    }

    /// Set or clear a repo's failure mode.
    pub fn set_failure(&self, id: &str, failure: Option<Failure>) {
        self.state
            .lock()
            .unwrap()
            .repos
            .get_mut(id)
            .expect("registered repo")
            .failure = failure;
    }

    /// Redirect with absolute `http://127.0.0.1:{port}/cdn/..` URLs instead of relative ones.
    pub fn set_absolute_redirects(&self, absolute: bool) {
        self.state.lock().unwrap().absolute_redirects = absolute;
    }

    /// Redirect to absolute URLs naming `host` (e.g. `localhost`: the same server under another
    /// host name, as a CDN on another host would be).
    pub fn set_redirect_host(&self, host: &str) {
        let mut state = self.state.lock().unwrap();
        state.absolute_redirects = true;
        state.redirect_host = Some(host.into());
    }

    /// Forget every CDN URL handed out, as when the Hub's signed CDN URLs expire.
    pub fn expire_cdn(&self) {
        self.state.lock().unwrap().cdn.clear();
    }

    /// Every request so far.
    pub fn log(&self) -> Vec<Logged> {
        self.stats.log.lock().unwrap().clone()
    }

    /// The commit of a registered repo.
    pub fn commit(&self, id: &str) -> String {
        self.state.lock().unwrap().repos[id].commit.clone()
    }

    /// Counters so far.
    pub fn counts(&self) -> Counts {
        let s = &self.stats;
        let r = |c: &Counter| c.requests.load(Ordering::Relaxed);
        let b = |c: &Counter| c.bytes.load(Ordering::Relaxed);
        Counts {
            requests: r(&s.api) + r(&s.resolve) + r(&s.cdn) + r(&s.other),
            bytes: b(&s.api) + b(&s.resolve) + b(&s.cdn) + b(&s.other),
            api_requests: r(&s.api),
            resolve_requests: r(&s.resolve),
            cdn_requests: r(&s.cdn),
            cdn_bytes: b(&s.cdn),
            resolve_bytes: b(&s.resolve),
        }
    }

    /// The `Range` header of every request, in arrival order (`None` when absent).
    pub fn ranges(&self) -> Vec<Option<String>> {
        self.stats.ranges.lock().unwrap().clone()
    }

    /// Zero the counters and the range log.
    pub fn reset_counts(&self) {
        for kind in [Kind::Api, Kind::Resolve, Kind::Cdn, Kind::Other] {
            let c = self.stats.counter(kind);
            c.requests.store(0, Ordering::Relaxed);
            c.bytes.store(0, Ordering::Relaxed);
        }
        self.stats.ranges.lock().unwrap().clear();
        self.stats.log.lock().unwrap().clear();
    }
}

impl Drop for HubServer {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Relaxed);
        // Wake the acceptor; connection threads notice `stopping` within a poll interval.
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

/// The CDN id of a file: stable, so that a second server can answer it.
fn cdn_id(repo: &str, commit: &str, file: &str) -> String {
    fake_commit(&format!("{repo}\0{commit}\0{file}"))
}

/// Sleep `total`, waking early when the server stops.
fn pause(total: Duration, stopping: &AtomicBool) {
    let until = Instant::now() + total;
    while !stopping.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= until {
            break;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(20)));
    }
}

/// A body sent one byte per `interval`.
struct Trickle {
    inner: Box<dyn Read + Send>,
    interval: Duration,
    stopping: Arc<AtomicBool>,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        pause(self.interval, &self.stopping);
        if self.stopping.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("server stopping"));
        }
        self.inner.read(&mut buf[..1])
    }
}

/// A response header.
type Header = (String, String);

fn header(name: &str, value: &str) -> Header {
    (name.to_string(), value.to_string())
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Some(v) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A response about to be sent: status, headers, body reader and its length.
struct Reply {
    status: u16,
    headers: Vec<Header>,
    body: Box<dyn Read + Send>,
    len: u64,
}

impl Reply {
    fn status(status: u16, text: &str) -> Reply {
        Reply {
            status,
            headers: vec![header("Content-Type", "text/plain")],
            body: Box::new(Cursor::new(text.as_bytes().to_vec())),
            len: text.len() as u64,
        }
    }

    /// An error as the Hub sends it: the code and message in headers and a JSON body.
    fn hub_error(status: u16, code: Option<&str>, message: &str) -> Reply {
        let mut reply = Reply::json(serde_json::json!({ "error": message }));
        reply.status = status;
        if let Some(code) = code {
            reply.headers.push(header("X-Error-Code", code));
        }
        reply.headers.push(header("X-Error-Message", message));
        reply
    }

    fn json(value: serde_json::Value) -> Reply {
        let bytes = serde_json::to_vec(&value).unwrap();
        Reply {
            status: 200,
            headers: vec![header("Content-Type", "application/json")],
            len: bytes.len() as u64,
            body: Box::new(Cursor::new(bytes)),
        }
    }
}

/// Parse one `Range` header against a body of `total` bytes: `Ok(Some((start, end)))` inclusive,
/// `Ok(None)` when there is no header, `Err(())` when unsatisfiable or malformed.
fn parse_range(value: Option<&str>, total: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(value) = value else { return Ok(None) };
    let spec = value.trim().strip_prefix("bytes=").ok_or(())?;
    if spec.contains(',') {
        return Err(());
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 || total == 0 {
            return Err(());
        }
        (total.saturating_sub(n), total - 1)
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end: u64 = if b.is_empty() {
            total.saturating_sub(1)
        } else {
            b.parse().map_err(|_| ())?
        };
        (start, end.min(total.saturating_sub(1)))
    };
    if start >= total || end < start {
        return Err(());
    }
    Ok(Some((start, end)))
}

fn serve_bytes(file: &RepoFile, range: Option<&str>, failure: Option<Failure>) -> Reply {
    let total = file.body.len();
    let range = match failure {
        Some(Failure::IgnoreRange) => Ok(None),
        Some(Failure::ShortRange(most)) => parse_range(range, total)
            .map(|r| r.map(|(start, end)| (start, end.min(start + most.max(1) - 1)))),
        _ => parse_range(range, total),
    };
    match range {
        Err(()) => {
            let mut r = Reply::status(416, "range not satisfiable");
            r.headers
                .push(header("Content-Range", &format!("bytes */{total}")));
            r
        }
        Ok(None) => Reply {
            status: 200,
            headers: vec![
                header("Content-Type", "application/octet-stream"),
                header("Accept-Ranges", "bytes"),
            ],
            body: file.body.reader(0, total),
            len: total,
        },
        Ok(Some((start, end))) => Reply {
            status: 206,
            headers: vec![
                header("Content-Type", "application/octet-stream"),
                header("Accept-Ranges", "bytes"),
                header("Content-Range", &format!("bytes {start}-{end}/{total}")),
            ],
            body: file.body.reader(start, end - start + 1),
            len: end - start + 1,
        },
    }
}

/// The Hub's answer for a repo that does not exist (or that the caller may not see): 401
/// without credentials, 404 with them, `RepoNotFound` either way.
fn repo_not_found(authorization: Option<&str>) -> Reply {
    let status = if authorization.is_some() { 404 } else { 401 };
    Reply::hub_error(status, Some("RepoNotFound"), "Repository not found")
}

/// For private repos: without a token the repo is hidden (`RepoNotFound`); a token it does not
/// accept is refused as invalid credentials.
fn check_auth(repo: &Repo, authorization: Option<&str>) -> Option<Reply> {
    let token = repo.token.as_deref()?;
    match authorization.and_then(|a| a.strip_prefix("Bearer ")) {
        None => Some(repo_not_found(None)),
        Some(t) if t == token => None,
        Some(_) => Some(Reply::hub_error(
            401,
            None,
            "Invalid credentials in Authorization header",
        )),
    }
}

fn revision_not_found(revision: &str) -> Reply {
    Reply::hub_error(
        404,
        Some("RevisionNotFound"),
        &format!("Invalid rev id: {revision}"),
    )
}

/// `GET /api/models/{repo}/refs`.
fn refs_json(repo: &Repo) -> Reply {
    let entry = |name: &str, kind: &str| {
        serde_json::json!({
            "name": name,
            "ref": format!("refs/{kind}/{name}"),
            "targetCommit": repo.commit,
        })
    };
    Reply::json(serde_json::json!({
        "branches": repo.branches.iter().map(|b| entry(b, "heads")).collect::<Vec<_>>(),
        "tags": repo.tags.iter().map(|t| entry(t, "tags")).collect::<Vec<_>>(),
        "converts": [],
    }))
}

fn route(
    path: &str,
    range: Option<&str>,
    authorization: Option<&str>,
    state: &Mutex<State>,
    base: &str,
) -> (Kind, Reply) {
    let mut state = state.lock().unwrap();
    if let Some(rest) = path.strip_prefix("/api/models/") {
        if let Some(repo_id) = rest.strip_suffix("/refs") {
            let Some(repo) = state.repos.get(&percent_decode(repo_id)) else {
                return (Kind::Api, repo_not_found(authorization));
            };
            if let Some(reply) = check_auth(repo, authorization) {
                return (Kind::Api, reply);
            }
            return (Kind::Api, refs_json(repo));
        }
        let Some((repo_id, revision)) = rest.rsplit_once("/revision/") else {
            return (Kind::Api, Reply::status(404, "no such route"));
        };
        let (repo_id, revision) = (percent_decode(repo_id), percent_decode(revision));
        let Some(repo) = state.repos.get(&repo_id) else {
            return (Kind::Api, repo_not_found(authorization));
        };
        if let Some(reply) = check_auth(repo, authorization) {
            return (Kind::Api, reply);
        }
        if !repo.resolves(&revision) {
            return (Kind::Api, revision_not_found(&revision));
        }
        let siblings: Vec<_> = repo
            .files
            .keys()
            .map(|f| serde_json::json!({ "rfilename": f }))
            .collect();
        return (
            Kind::Api,
            Reply::json(serde_json::json!({
                "id": repo_id,
                "sha": repo.commit,
                "siblings": siblings,
            })),
        );
    }
    if let Some(id) = path.strip_prefix("/cdn/") {
        let Some((repo_id, file)) = state.cdn.get(id).cloned() else {
            return (Kind::Cdn, Reply::status(404, "no such object"));
        };
        if let Some(reply) = injected_status(state.repos.get_mut(&repo_id).unwrap()) {
            return (Kind::Cdn, reply);
        }
        let repo = &state.repos[&repo_id];
        return (
            Kind::Cdn,
            serve_bytes(&repo.files[&file], range, repo.failure),
        );
    }
    if let Some((repo_id, rest)) = path.split_once("/resolve/") {
        let repo_id = percent_decode(repo_id.trim_start_matches('/'));
        let Some((revision, file)) = rest.split_once('/') else {
            return (Kind::Resolve, Reply::status(404, "no such route"));
        };
        let (revision, file) = (percent_decode(revision), percent_decode(file));
        let Some(repo) = state.repos.get_mut(&repo_id) else {
            return (Kind::Resolve, repo_not_found(authorization));
        };
        if let Some(reply) = check_auth(repo, authorization) {
            return (Kind::Resolve, reply);
        }
        if let Some(Failure::Status(code)) = repo.failure {
            return (Kind::Resolve, Reply::status(code, "injected failure"));
        }
        if let Some(reply) = injected_status(repo) {
            return (Kind::Resolve, reply);
        }
        let repo = &state.repos[&repo_id];
        if !repo.resolves(&revision) {
            return (Kind::Resolve, revision_not_found(&revision));
        }
        let Some(entry) = repo.files.get(&file).cloned() else {
            return (
                Kind::Resolve,
                Reply::hub_error(404, Some("EntryNotFound"), "Entry not found"),
            );
        };
        if entry.large {
            let id = cdn_id(&repo_id, &repo.commit, &file);
            state.cdn.insert(id.clone(), (repo_id, file));
            let location = if state.absolute_redirects {
                let base = match (&state.redirect_base, &state.redirect_host) {
                    (Some(other), _) => other.clone(),
                    (None, Some(host)) => base.replace("127.0.0.1", host),
                    (None, None) => base.to_string(),
                };
                format!("{base}/cdn/{id}")
            } else {
                format!("/cdn/{id}")
            };
            let mut reply = Reply::status(302, "found");
            reply.headers.push(header("Location", &location));
            return (Kind::Resolve, reply);
        }
        return (Kind::Resolve, serve_bytes(&entry, range, repo.failure));
    }
    (Kind::Other, Reply::status(404, "not found"))
}

/// The status of a [`Failure::FailFirst`] still to be served, counting it down.
fn injected_status(repo: &mut Repo) -> Option<Reply> {
    let Some(Failure::FailFirst { status, count }) = repo.failure else {
        return None;
    };
    repo.failure = (count > 1).then_some(Failure::FailFirst {
        status,
        count: count - 1,
    });
    Some(Reply::status(status, "injected transient failure"))
}

/// How a file request of `path` is slowed down, if its repo stalls or trickles.
fn slowdown(path: &str, state: &Mutex<State>) -> Option<Failure> {
    let state = state.lock().unwrap();
    let repo_id = match path.strip_prefix("/cdn/") {
        Some(id) => state.cdn.get(id)?.0.clone(),
        None => percent_decode(path.split_once("/resolve/")?.0.trim_start_matches('/')),
    };
    state
        .repos
        .get(&repo_id)?
        .failure
        .filter(|f| matches!(f, Failure::Stall(_) | Failure::Trickle(_)))
}

/// Answer the requests of one keep-alive connection until the client closes it or the server
/// stops. Request bodies are not supported (the Hub API used here has none).
fn serve(
    stream: TcpStream,
    state: &Mutex<State>,
    stats: &Arc<Stats>,
    base: &str,
    stopping: &Arc<AtomicBool>,
) {
    let _ = stream.set_nodelay(true);
    // Poll, so that an idle connection notices the server stopping.
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut head = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) => return,
                Ok(_) if line == "\r\n" || line == "\n" => break,
                Ok(_) => head.push(line.trim_end().to_string()),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if stopping.load(Ordering::Relaxed) {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
        if head.is_empty() {
            continue;
        }
        let target = head[0].split_whitespace().nth(1).unwrap_or("/").to_string();
        let find = |name: &str| {
            head[1..].iter().find_map(|h| {
                let (k, v) = h.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        let close = find("Connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
        let (range, authorization) = (find("Range"), find("Authorization"));
        let Some(reply) = handle(&target, range, authorization, state, stats, base, stopping)
        else {
            return;
        };
        let mut out = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
        for (name, value) in &reply.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str(&format!("Content-Length: {}\r\n\r\n", reply.len));
        let mut body = reply.body;
        if writer.write_all(out.as_bytes()).is_err() || copy_body(&mut body, &mut writer).is_err() {
            // A client that hangs up early is not the server's problem.
            return;
        }
        if close {
            return;
        }
    }
}

/// Copy a body, writing each read at once (a trickle must reach the client byte by byte).
fn copy_body(body: &mut dyn Read, writer: &mut TcpStream) -> std::io::Result<()> {
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = body.read(&mut buf)?;
        if n == 0 {
            return writer.flush();
        }
        writer.write_all(&buf[..n])?;
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Route one request, after the delay and any stall; `None` when the server stops meanwhile.
fn handle(
    url: &str,
    range: Option<String>,
    authorization: Option<String>,
    state: &Mutex<State>,
    stats: &Arc<Stats>,
    base: &str,
    stopping: &Arc<AtomicBool>,
) -> Option<Reply> {
    let path = url.split('?').next().unwrap_or("");
    let delay = state.lock().unwrap().delay;
    pause(delay, stopping);
    let slow = slowdown(path, state);
    if let Some(Failure::Stall(stall)) = slow {
        pause(stall, stopping);
    }
    if stopping.load(Ordering::Relaxed) {
        // The test is over and its files may be gone.
        return None;
    }
    stats.ranges.lock().unwrap().push(range.clone());
    let (kind, reply) = route(
        path,
        range.as_deref(),
        authorization.as_deref(),
        state,
        base,
    );
    stats.counter(kind).requests.fetch_add(1, Ordering::Relaxed);
    stats.log.lock().unwrap().push(Logged {
        kind,
        path: path.to_string(),
        range: range.clone(),
        authorized: authorization.is_some(),
        status: reply.status,
    });
    let inner = match slow {
        Some(Failure::Trickle(interval)) if reply.len > 0 => Box::new(Trickle {
            inner: reply.body,
            interval,
            stopping: stopping.clone(),
        }) as Box<dyn Read + Send>,
        _ => reply.body,
    };
    Some(Reply {
        body: Box::new(Counted {
            inner,
            stats: stats.clone(),
            kind,
        }),
        ..reply
    })
}

/// How long tests wait for anything network-related before calling it a hang.
pub const HANG: Duration = Duration::from_secs(30);
