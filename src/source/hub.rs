//! The Hugging Face Hub over HTTP: the file listing API, `resolve` URLs read with `Range`
//! requests (following the Hub's redirects to its CDN), and Bearer-token auth.
//!
//! - **Credentials** go only to the endpoint's exact origin (scheme, host and port): the token as
//!   `Authorization: Bearer`, or the endpoint's `user:password@` as Basic auth when there is no
//!   token. Redirects are followed here, not by the HTTP library, so that a redirect to another
//!   origin (the Hub's signed CDN URLs, which need no token) never carries them. No URL that is
//!   shown, logged or stored carries userinfo.
//! - **Deadlines**: connect, per-read and whole-request timeouts ([`HubSettings`]); a failed
//!   request that may succeed again (`429`, `5xx`, a timeout, a dropped connection) is retried a
//!   bounded number of times with exponential backoff, and the final error names the URL.
//! - **Concurrency**: one keep-alive connection pool per client, as large as
//!   [`HubSettings::connections`]; [`HttpFile`] is `Sync`, and the stream reads several ranges of
//!   it at once.
//! - **Short answers**: a `206` for less than was asked is a partial read that continues from
//!   where it ended.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use url::Url;

use super::bytes::{ByteSource, ReadStats};
use super::header::MAX_HEADER_LEN;
use super::model::HubSettings;
use crate::error::{Error, HubMissing, Result};

/// Bytes fetched by the first request of every file: enough for most headers, so that opening a
/// remote safetensors file costs one request.
const PREFIX_LEN: u64 = 16 * 1024;

/// Redirects followed per request, as browsers and `huggingface_hub` allow.
const MAX_REDIRECTS: usize = 10;

/// Requests one read may take when the server keeps answering with shorter ranges than asked.
const MAX_PARTIAL_ANSWERS: usize = 64;

/// The slowest transfer a range read is allowed beyond [`HubSettings::read_timeout`]: a read
/// of `n` bytes must end within `read_timeout + n / MIN_RATE` (and [`HubSettings::request_timeout`]).
pub const MIN_RATE: u64 = 64 * 1024;

/// A gap of this many bytes between two wanted ranges costs less to read through than a second
/// request: at 50 ms a round trip, a link moves 128 KiB in a few milliseconds.
pub const HTTP_READ_THROUGH: u64 = 128 * 1024;

/// What the listing API said about a repo at a revision.
#[derive(Debug, Clone)]
pub struct RepoListing {
    /// The commit the revision resolves to.
    pub commit: String,
    /// File names relative to the repo root.
    pub files: Vec<String>,
}

/// The branches and tags of a repo.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoRefs {
    pub branches: Vec<String>,
    pub tags: Vec<String>,
}

/// Names listed in a message, at most this many of each kind.
const REFS_SHOWN: usize = 10;

impl RepoRefs {
    /// `; did you mean 'main'? (branches: main, dev; tags: v1.0)` for a revision not found.
    pub fn describe(&self, revision: &str) -> String {
        let all: Vec<&String> = self.branches.iter().chain(&self.tags).collect();
        let closest = all
            .iter()
            .map(|name| (crate::text::edit_distance(revision, name), name))
            .filter(|(d, name)| *d <= (name.chars().count() / 3).max(2))
            .min();
        let mut out = match closest {
            Some((_, name)) => format!("; did you mean '{}'?", crate::text::printable(name)),
            None => String::new(),
        };
        let list = |names: &[String]| {
            let mut shown: Vec<String> = names
                .iter()
                .take(REFS_SHOWN)
                .map(|n| crate::text::printable(n).into_owned())
                .collect();
            if names.len() > REFS_SHOWN {
                shown.push(format!("and {} more", names.len() - REFS_SHOWN));
            }
            shown.join(", ")
        };
        let mut known = vec![format!("branches: {}", list(&self.branches))];
        if !self.tags.is_empty() {
            known.push(format!("tags: {}", list(&self.tags)));
        }
        out.push_str(&format!(" ({}; or a commit hash)", known.join("; ")));
        out
    }
}

/// A client for one Hub endpoint.
#[derive(Clone)]
pub struct HubClient {
    /// The endpoint without userinfo.
    endpoint: Url,
    /// `endpoint` as shown, without a trailing slash.
    endpoint_text: String,
    /// `user`, `password` from the endpoint URL, sent to the endpoint only.
    userinfo: Option<(String, Option<String>)>,
    token: Option<String>,
    settings: HubSettings,
    agent: ureq::Agent,
}

impl std::fmt::Debug for HubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token and the userinfo are deliberately left out.
        f.debug_struct("HubClient")
            .field("endpoint", &self.endpoint_text)
            .finish()
    }
}

/// Percent-encode one URL path segment (RFC 3986 unreserved characters pass through).
fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Encode a repo-relative file path, keeping its `/` separators.
fn encode_path(path: &str) -> String {
    path.split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

/// `text` with any `user:password@` of its authority removed, for messages about URLs that may
/// not even parse.
pub fn without_userinfo(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    format!("{scheme}://{host}{path}")
}

/// One failed attempt: what to say, and whether trying again may help.
struct Failure {
    problem: String,
    /// `Some` when the request may be retried; the server's `Retry-After`, if it gave one.
    retry: Option<Option<Duration>>,
    /// The Hub's `X-Error-Code` (`RepoNotFound`, `RevisionNotFound`, …), when it sent one.
    code: Option<String>,
}

impl Failure {
    fn fatal(problem: impl Into<String>) -> Failure {
        Failure {
            problem: problem.into(),
            retry: None,
            code: None,
        }
    }

    fn transient(problem: impl Into<String>) -> Failure {
        Failure {
            problem: problem.into(),
            retry: Some(None),
            code: None,
        }
    }
}

/// Where a token comes from, for messages that ask for one.
const TOKEN_HINT: &str = "HF_TOKEN, the token `hf auth login` saved, or --token";

/// The words for a request that ran out of time.
fn timed_out(what: &str, limit: Duration) -> String {
    format!(
        "{what} timed out after {:.1} s (WEIGHTREEL_HUB_READ_TIMEOUT, WEIGHTREEL_HUB_TIMEOUT)",
        limit.as_secs_f64()
    )
}

/// An I/O error while talking to a server, in words, with the settings to change for a timeout.
fn io_problem(what: &str, e: &std::io::Error, limit: Duration) -> String {
    match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => timed_out(what, limit),
        _ => format!("{what} failed: {e}"),
    }
}

/// A transport error in words, without the URL (which ureq's own message includes, userinfo
/// and CDN signatures with it).
fn transport_failure(t: &ureq::Transport, limit: Duration) -> Failure {
    use std::error::Error as _;
    if let Some(io) = t.source().and_then(|s| s.downcast_ref::<std::io::Error>()) {
        return Failure::transient(io_problem("the request", io, limit));
    }
    let mut problem = format!("connection failed: {}", t.kind());
    if let Some(message) = t.message() {
        problem.push_str(&format!(" ({message})"));
    }
    match t.kind() {
        ureq::ErrorKind::Io | ureq::ErrorKind::ConnectionFailed => Failure::transient(problem),
        _ => Failure::fatal(problem),
    }
}

/// A status error in words, retryable for `429` and `5xx`. The Hub's `X-Error-Code` and
/// `X-Error-Message` headers say what was not found or refused (as `huggingface_hub` reads them).
fn status_failure(code: u16, response: &ureq::Response) -> Failure {
    let hub_code = response
        .header("X-Error-Code")
        .map(|c| crate::text::printable(c.trim()).into_owned())
        .filter(|c| !c.is_empty() && c.len() <= 64);
    let hub_message = response.header("X-Error-Message").unwrap_or("");
    let problem = match (code, hub_code.as_deref()) {
        (401, Some("RepoNotFound")) => format!(
            "HTTP 401, RepoNotFound: no such repo, or it is private or gated and needs a token ({TOKEN_HINT})"
        ),
        (_, Some("RepoNotFound")) => format!(
            "HTTP {code}, RepoNotFound: no such repo, or the token has no access to it"
        ),
        (_, Some("RevisionNotFound")) => format!("HTTP {code}, RevisionNotFound"),
        (_, Some("EntryNotFound")) => format!("HTTP {code}, EntryNotFound: no such file in the repo"),
        (_, Some("GatedRepo")) => format!(
            "HTTP {code}, GatedRepo: the repo is gated; accept its conditions on its Hub page with the account of the token ({TOKEN_HINT})"
        ),
        (401, _) if hub_message.contains("Invalid credentials") => format!(
            "HTTP 401: the Hub refused the token as invalid; check {TOKEN_HINT}"
        ),
        (401 | 403, _) => format!(
            "HTTP {code}: access denied — the repo may be private or gated; set {TOKEN_HINT}"
        ),
        (404, _) => "HTTP 404: not found on the Hub — check the repo name, revision and file".to_string(),
        (416, _) => "HTTP 416: requested range not satisfiable".to_string(),
        (429, _) => "HTTP 429: rate limited by the Hub; try again later".to_string(),
        (500..=599, _) => format!("HTTP {code}: server error; try again later"),
        _ => format!("HTTP {code}"),
    };
    if code == 429 || (500..=599).contains(&code) {
        let retry_after = response
            .header("Retry-After")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&secs| secs <= 60)
            .map(Duration::from_secs);
        Failure {
            problem,
            retry: Some(retry_after),
            code: hub_code,
        }
    } else {
        Failure {
            code: hub_code,
            ..Failure::fatal(problem)
        }
    }
}

impl HubClient {
    /// A client for `endpoint` (no trailing slash needed) with an optional token.
    pub fn new(endpoint: &str, token: Option<String>, settings: HubSettings) -> Result<HubClient> {
        settings.validate()?;
        let refuse = || {
            Error::invalid(
                "HF_ENDPOINT",
                format!("'{}'", without_userinfo(endpoint)),
                "an http:// or https:// URL",
            )
        };
        let mut url = Url::parse(endpoint.trim_end_matches('/')).map_err(|_| refuse())?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(refuse());
        }
        let userinfo = (!url.username().is_empty() || url.password().is_some()).then(|| {
            (
                url.username().to_string(),
                url.password().map(str::to_string),
            )
        });
        // Infallible for http(s) URLs with a host.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        let endpoint_text = url.as_str().trim_end_matches('/').to_string();
        let agent = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout_connect(settings.connect_timeout)
            .timeout_read(settings.read_timeout)
            .timeout_write(settings.read_timeout)
            .max_idle_connections(4 * settings.connections)
            .max_idle_connections_per_host(settings.connections)
            .user_agent(concat!("weightreel/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(HubClient {
            endpoint: url,
            endpoint_text,
            userinfo,
            token,
            settings,
            agent,
        })
    }

    /// The endpoint URL, without userinfo.
    pub fn endpoint(&self) -> &str {
        &self.endpoint_text
    }

    /// The network settings.
    pub fn settings(&self) -> &HubSettings {
        &self.settings
    }

    /// A GET of `url`, with credentials only when it is on the endpoint's exact origin.
    fn request(&self, url: &Url) -> ureq::Request {
        if url.origin() != self.endpoint.origin() {
            return self.agent.request_url("GET", url);
        }
        let mut target = url.clone();
        if let (Some((user, password)), None) = (&self.userinfo, &self.token) {
            // ureq turns URL userinfo into Basic auth.
            let _ = target.set_username(user);
            let _ = target.set_password(password.as_deref());
        }
        let req = self.agent.request_url("GET", &target);
        match &self.token {
            Some(token) => req.set("Authorization", &format!("Bearer {token}")),
            None => req,
        }
    }

    /// GET `url` following redirects; returns the final response and its URL, and counts the
    /// requests made. Every hop decides afresh whether credentials go with it, and must end
    /// (body included) within `limit`.
    ///
    /// The limit is a deadline per request rather than ureq's per-read timeout because ureq 2
    /// clears a pooled connection's read timeout until the next response has begun: a stall on
    /// a reused connection would wait forever.
    fn send(
        &self,
        url: &Url,
        range: Option<&str>,
        requests: &AtomicU64,
        limit: Duration,
    ) -> std::result::Result<(ureq::Response, Url), Failure> {
        let mut current = url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let mut req = self.request(&current).timeout(limit);
            if let Some(range) = range {
                req = req.set("Range", range);
            }
            requests.fetch_add(1, Ordering::Relaxed);
            let resp = match req.call() {
                Ok(resp) => resp,
                Err(ureq::Error::Status(code, resp)) => return Err(status_failure(code, &resp)),
                Err(ureq::Error::Transport(t)) => return Err(transport_failure(&t, limit)),
            };
            if !(300..400).contains(&resp.status()) {
                return Ok((resp, current));
            }
            let next = resp
                .header("Location")
                .and_then(|location| current.join(location).ok())
                .filter(|next| matches!(next.scheme(), "http" | "https"))
                .ok_or_else(|| {
                    Failure::fatal(format!(
                        "HTTP {} redirect without a valid http(s) Location",
                        resp.status()
                    ))
                })?;
            current = next;
        }
        Err(Failure::fatal(format!(
            "more than {MAX_REDIRECTS} redirects"
        )))
    }

    /// Run `attempt` until it succeeds, fails for good, or has been retried
    /// [`HubSettings::retries`] times with exponential backoff. The error names `url`.
    fn retrying<T>(
        &self,
        url: &str,
        attempt: impl FnMut() -> std::result::Result<T, Failure>,
    ) -> Result<T> {
        self.attempts(attempt)
            .map_err(|failure| Error::http(url, failure.problem))
    }

    /// [`HubClient::retrying`], keeping the last failure (and the Hub's error code) as it is.
    fn attempts<T>(
        &self,
        mut attempt: impl FnMut() -> std::result::Result<T, Failure>,
    ) -> std::result::Result<T, Failure> {
        let mut retried = 0;
        loop {
            match attempt() {
                Ok(value) => return Ok(value),
                Err(Failure {
                    retry: Some(wait), ..
                }) if retried < self.settings.retries => {
                    let backoff = HubSettings::BACKOFF * 2u32.pow(retried);
                    std::thread::sleep(wait.unwrap_or(backoff));
                    retried += 1;
                }
                Err(mut failure) => {
                    if retried > 0 {
                        failure.problem = format!(
                            "{}; gave up after {} attempts",
                            failure.problem,
                            retried + 1
                        );
                    }
                    return Err(failure);
                }
            }
        }
    }

    /// Read a response body of at most `most` bytes before `started + limit`.
    fn read_body(
        &self,
        resp: ureq::Response,
        most: u64,
        started: Instant,
        limit: Duration,
    ) -> std::result::Result<Vec<u8>, Failure> {
        let deadline = started + limit;
        let mut reader = resp.into_reader().take(most);
        let mut body = Vec::new();
        let mut buf = [0u8; 64 * 1024];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => return Ok(body),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Failure::transient(io_problem("the download", &e, limit))),
            };
            body.extend_from_slice(&buf[..n]);
            if Instant::now() > deadline {
                return Err(Failure::transient(timed_out("the download", limit)));
            }
        }
    }

    /// GET a small document whole, refusing more than `limit` bytes.
    fn fetch_whole(&self, url: &Url, limit: u64, what: &str) -> Result<Vec<u8>> {
        let body = self
            .fetch_attempts(url, limit)
            .map_err(|failure| Error::http(url.as_str(), failure.problem))?;
        self.within_limit(url, body, limit, what)
    }

    /// The attempts of [`HubClient::fetch_whole`], the last failure kept as it is.
    fn fetch_attempts(&self, url: &Url, limit: u64) -> std::result::Result<Vec<u8>, Failure> {
        let requests = AtomicU64::new(0);
        let budget = self.settings.request_timeout;
        self.attempts(|| {
            let started = Instant::now();
            let (resp, _) = self.send(url, None, &requests, budget)?;
            self.read_body(resp, limit + 1, started, budget)
        })
    }

    fn within_limit(&self, url: &Url, body: Vec<u8>, limit: u64, what: &str) -> Result<Vec<u8>> {
        let shown = url.as_str();
        if body.len() as u64 > limit {
            return Err(Error::http(
                shown,
                format!("{what} is larger than the {limit}-byte limit"),
            ));
        }
        Ok(body)
    }

    fn url(&self, path: &str) -> Url {
        // The endpoint is a valid base URL and `path` is percent-encoded.
        Url::parse(&format!("{}{path}", self.endpoint_text)).expect("a valid URL")
    }

    /// List a repo's files at `revision` (branch, tag or commit). A repo or revision the Hub
    /// does not have is [`Error::NotOnHub`]; for a revision, the message names the branches
    /// and tags the repo has (and the closest one).
    pub fn list(&self, repo: &str, revision: &str) -> Result<RepoListing> {
        let url = self.url(&format!(
            "/api/models/{}/revision/{}",
            encode_path(repo),
            encode_segment(revision)
        ));
        const LIMIT: u64 = 64 << 20;
        let body = match self.fetch_attempts(&url, LIMIT) {
            Ok(body) => self.within_limit(&url, body, LIMIT, "the listing")?,
            Err(failure) => return Err(self.listing_error(repo, revision, &url, failure)),
        };
        #[derive(serde::Deserialize)]
        struct Sibling {
            rfilename: String,
        }
        #[derive(serde::Deserialize)]
        struct Listing {
            sha: Option<String>,
            #[serde(default)]
            siblings: Vec<Sibling>,
        }
        let listing: Listing = serde_json::from_slice(&body).map_err(|e| {
            Error::http(
                url.as_str(),
                format!("the listing is not the Hub's JSON: {e}"),
            )
        })?;
        let commit = listing.sha.unwrap_or_else(|| revision.to_string());
        if commit.is_empty() || commit.contains("..") || commit.contains('/') {
            return Err(Error::http(
                url.as_str(),
                format!("the listing gave an invalid commit '{commit}'"),
            ));
        }
        Ok(RepoListing {
            commit,
            files: listing.siblings.into_iter().map(|s| s.rfilename).collect(),
        })
    }

    /// The error of a failed listing: [`Error::NotOnHub`] when the Hub said what is missing.
    fn listing_error(&self, repo: &str, revision: &str, url: &Url, failure: Failure) -> Error {
        match failure.code.as_deref() {
            Some("RepoNotFound") => Error::NotOnHub {
                repo: repo.to_string(),
                missing: HubMissing::Repo,
                problem: format!(
                    "not found on the Hub at {} ({})",
                    self.endpoint_text, failure.problem
                ),
            },
            Some("RevisionNotFound") => {
                let known = match self.refs(repo) {
                    Ok(refs) => refs.describe(revision),
                    Err(_) => String::new(),
                };
                Error::NotOnHub {
                    repo: repo.to_string(),
                    missing: HubMissing::Revision,
                    problem: format!(
                        "revision '{revision}' not found on the Hub ({}){known}",
                        failure.problem
                    ),
                }
            }
            _ => Error::http(url.as_str(), failure.problem),
        }
    }

    /// The branches and tags of a repo (`GET /api/models/{repo}/refs`).
    pub fn refs(&self, repo: &str) -> Result<RepoRefs> {
        let url = self.url(&format!("/api/models/{}/refs", encode_path(repo)));
        let body = self.fetch_whole(&url, 16 << 20, "the refs listing")?;
        #[derive(serde::Deserialize)]
        struct Ref {
            name: String,
        }
        #[derive(serde::Deserialize)]
        struct Refs {
            #[serde(default)]
            branches: Vec<Ref>,
            #[serde(default)]
            tags: Vec<Ref>,
        }
        let refs: Refs = serde_json::from_slice(&body).map_err(|e| {
            Error::http(
                url.as_str(),
                format!("the refs listing is not the Hub's JSON: {e}"),
            )
        })?;
        let names = |refs: Vec<Ref>| refs.into_iter().map(|r| r.name).collect();
        Ok(RepoRefs {
            branches: names(refs.branches),
            tags: names(refs.tags),
        })
    }

    /// The `resolve` URL of a file.
    pub fn resolve_url(&self, repo: &str, revision: &str, file: &str) -> String {
        self.resolve(repo, revision, file).to_string()
    }

    fn resolve(&self, repo: &str, revision: &str, file: &str) -> Url {
        self.url(&format!(
            "/{}/resolve/{}/{}",
            encode_path(repo),
            encode_segment(revision),
            encode_path(file)
        ))
    }

    /// Download a small file whole (config, index), refusing more than `limit` bytes.
    pub fn fetch_small(
        &self,
        repo: &str,
        revision: &str,
        file: &str,
        limit: u64,
    ) -> Result<Vec<u8>> {
        self.fetch_whole(&self.resolve(repo, revision, file), limit, "the file")
    }

    /// Open a remote file for ranged reads. Costs one request, which also fetches the first
    /// [`PREFIX_LEN`] bytes (the safetensors header, usually); a longer header is fetched at
    /// once with one more, so that reading the header needs no further request.
    pub fn open(&self, repo: &str, revision: &str, file: &str) -> Result<HttpFile> {
        let url = self.resolve(repo, revision, file);
        let mut http = HttpFile {
            client: self.clone(),
            name: url.to_string(),
            data_url: Mutex::new(url.clone()),
            url,
            len: 0,
            prefix: Vec::new(),
            requests: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        };
        let (first, total) = http.fetch_range(0, PREFIX_LEN)?;
        http.len = total;
        let mut prefix = vec![0; PREFIX_LEN.min(total) as usize];
        prefix[..first.len()].copy_from_slice(&first);
        http.fill(first.len() as u64, &mut prefix[first.len()..])?;
        if let Some(header_end) = prefix
            .get(..8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .filter(|&n| n <= MAX_HEADER_LEN)
            .map(|n| n + 8)
            .filter(|&end| end > prefix.len() as u64 && end <= total)
        {
            let have = prefix.len();
            prefix.resize(header_end as usize, 0);
            http.fill(have as u64, &mut prefix[have..])?;
        }
        http.prefix = prefix;
        Ok(http)
    }
}

/// A remote file read with HTTP `Range` requests.
pub struct HttpFile {
    client: HubClient,
    /// The `resolve` URL.
    url: Url,
    /// `url` as text, for messages.
    name: String,
    /// Where the bytes were last served from: the `resolve` URL, or the CDN URL it redirected
    /// to. Reading the CDN URL directly saves a redirect round trip per range read.
    data_url: Mutex<Url>,
    len: u64,
    /// The first bytes of the file: at least the safetensors header when it is not oversized.
    prefix: Vec<u8>,
    requests: AtomicU64,
    bytes: AtomicU64,
}

/// Parse `bytes START-END/TOTAL`.
fn parse_content_range(value: &str) -> Option<(u64, u64, u64)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    Some((
        start.trim().parse().ok()?,
        end.trim().parse().ok()?,
        total.trim().parse().ok()?,
    ))
}

impl HttpFile {
    /// Request `len` bytes at `offset`; returns the bytes the server sent (a prefix of what was
    /// asked, at least one byte, unless the file is empty) and the file's total length from
    /// `Content-Range`. Retries transient failures.
    fn fetch_range(&self, offset: u64, len: u64) -> Result<(Vec<u8>, u64)> {
        let last = offset + len.max(1) - 1;
        let range = format!("bytes={offset}-{last}");
        self.client
            .retrying(&self.name, || self.try_range(offset, last, &range))
    }

    /// One attempt of [`HttpFile::fetch_range`].
    fn try_range(
        &self,
        offset: u64,
        last: u64,
        range: &str,
    ) -> std::result::Result<(Vec<u8>, u64), Failure> {
        let started = Instant::now();
        let settings = &self.client.settings;
        let limit = settings.request_timeout.min(
            settings.read_timeout
                + Duration::from_secs_f64((last - offset + 1) as f64 / MIN_RATE as f64),
        );
        let target = self.data_url.lock().expect("data_url lock").clone();
        let mut sent = self
            .client
            .send(&target, Some(range), &self.requests, limit);
        if target != self.url && sent.is_err() {
            // The CDN URL may have expired (the Hub signs them): resolve again.
            sent = self
                .client
                .send(&self.url, Some(range), &self.requests, limit);
        }
        let (resp, served_from) = match sent {
            Ok(sent) => sent,
            Err(f) if offset == 0 && f.problem.starts_with("HTTP 416") => {
                // An empty file: nothing to read.
                return Ok((Vec::new(), 0));
            }
            Err(f) => return Err(f),
        };
        if resp.status() != 206 {
            return Err(Failure::fatal(format!(
                "the server ignored the Range request (HTTP {} instead of 206) and would send the whole file; refusing to download it",
                resp.status()
            )));
        }
        if served_from != target {
            *self.data_url.lock().expect("data_url lock") = served_from;
        }
        let (start, end, total) = resp
            .header("Content-Range")
            .and_then(parse_content_range)
            .ok_or_else(|| Failure::fatal("HTTP 206 without a valid Content-Range header"))?;
        if start != offset || end < start || end > last || end >= total {
            return Err(Failure::fatal(format!(
                "asked for bytes {offset}-{last}, the server sent {start}-{end}/{total}"
            )));
        }
        let want = end - start + 1;
        // One byte more than wanted, so that the reader sees the body's end and the connection
        // goes back to the pool for the next read.
        let body = self.client.read_body(resp, want + 1, started, limit)?;
        self.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
        if body.len() as u64 > want {
            return Err(Failure::fatal(format!(
                "the server sent more than the {want} bytes of range {start}-{end}"
            )));
        }
        if (body.len() as u64) < want {
            return Err(Failure::transient(format!(
                "the connection closed after {} of {want} bytes of range {start}-{end}",
                body.len()
            )));
        }
        Ok((body, total))
    }

    /// Fill `buf` with the bytes at `offset`, asking again from where a short answer ended.
    fn fill(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let mut done = 0;
        for _ in 0..MAX_PARTIAL_ANSWERS {
            if done == buf.len() {
                return Ok(());
            }
            let at = offset + done as u64;
            let (body, total) = self.fetch_range(at, (buf.len() - done) as u64)?;
            if total != self.len && self.len != 0 {
                return Err(Error::http(
                    &self.name,
                    format!(
                        "the file changed size during the read ({} then {total} bytes)",
                        self.len
                    ),
                ));
            }
            if body.is_empty() {
                break;
            }
            buf[done..done + body.len()].copy_from_slice(&body);
            done += body.len();
        }
        if done == buf.len() {
            return Ok(());
        }
        Err(Error::http(
            &self.name,
            format!(
                "the server kept answering with shorter ranges than asked: {done} of {} bytes at offset {offset} after {MAX_PARTIAL_ANSWERS} requests",
                buf.len()
            ),
        ))
    }
}

impl ByteSource for HttpFile {
    fn name(&self) -> &str {
        &self.name
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .ok_or_else(|| Error::http(&self.name, "read offset overflows"))?;
        if end > self.len {
            return Err(Error::header(
                &self.name,
                format!(
                    "file is truncated: needs bytes up to {end} but has only {}",
                    self.len
                ),
            ));
        }
        if buf.is_empty() {
            return Ok(());
        }
        if end <= self.prefix.len() as u64 {
            buf.copy_from_slice(&self.prefix[offset as usize..end as usize]);
            return Ok(());
        }
        self.fill(offset, buf)
    }

    fn stats(&self) -> ReadStats {
        ReadStats {
            requests: self.requests.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }

    fn concurrency(&self) -> usize {
        self.client.settings.connections
    }

    fn read_through(&self) -> u64 {
        HTTP_READ_THROUGH
    }
}

pub(crate) use super::bytes::in_parallel;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parses() {
        assert_eq!(parse_content_range("bytes 0-7/100"), Some((0, 7, 100)));
        assert_eq!(parse_content_range("bytes 0-7/*"), None);
        assert_eq!(parse_content_range("items 0-7/100"), None);
    }

    #[test]
    fn paths_are_encoded() {
        assert_eq!(encode_segment("refs/pr/1"), "refs%2Fpr%2F1");
        assert_eq!(encode_path("org/name"), "org/name");
        assert_eq!(encode_path("a b/c"), "a%20b/c");
    }

    #[test]
    fn userinfo_is_stripped_from_shown_urls() {
        assert_eq!(
            without_userinfo("http://user:TOKEN@host:8/a@b"),
            "http://host:8/a@b"
        );
        assert_eq!(without_userinfo("https://host/x"), "https://host/x");
        assert_eq!(without_userinfo("not a url"), "not a url");
        let client = HubClient::new(
            "http://user:TOKEN@127.0.0.1:9/",
            None,
            HubSettings::default(),
        )
        .unwrap();
        assert_eq!(client.endpoint(), "http://127.0.0.1:9");
        assert!(!format!("{client:?}").contains("TOKEN"));
        assert!(!client.resolve_url("gpt2", "main", "x").contains("TOKEN"));
    }

    #[test]
    fn in_parallel_keeps_item_order() {
        let items: Vec<u64> = (0..100).collect();
        assert_eq!(
            in_parallel(&items, 7, |&i| i * 2),
            in_parallel(&items, 1, |&i| i * 2)
        );
    }
}
