//! The Hugging Face Hub over HTTP: the file listing API, `resolve` URLs read with `Range`
//! requests (following the Hub's redirects to its CDN), and Bearer-token auth.
//!
//! The token is sent in the `Authorization` header of requests to the endpoint only (ureq drops
//! it on redirects to other hosts), and is never part of a URL, an error or a log line.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::bytes::{ByteSource, ReadStats};
use crate::error::{Error, Result};

/// Bytes fetched by the first request of every file: enough for most headers, so that opening a
/// remote safetensors file costs one request.
const PREFIX_LEN: u64 = 64 * 1024;

/// What the listing API said about a repo at a revision.
#[derive(Debug, Clone)]
pub struct RepoListing {
    /// The commit the revision resolves to.
    pub commit: String,
    /// File names relative to the repo root.
    pub files: Vec<String>,
}

/// A client for one Hub endpoint.
#[derive(Clone)]
pub struct HubClient {
    endpoint: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl std::fmt::Debug for HubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is deliberately left out.
        f.debug_struct("HubClient")
            .field("endpoint", &self.endpoint)
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

impl HubClient {
    /// A client for `endpoint` (no trailing slash needed) with an optional token.
    pub fn new(endpoint: &str, token: Option<String>) -> Result<HubClient> {
        let endpoint = endpoint.trim_end_matches('/').to_string();
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(Error::invalid(
                "HF_ENDPOINT",
                format!("'{endpoint}'"),
                "an http:// or https:// URL",
            ));
        }
        let agent = ureq::AgentBuilder::new()
            .redirects(10)
            .redirect_auth_headers(ureq::RedirectAuthHeaders::SameHost)
            .timeout_connect(Duration::from_secs(20))
            .timeout_read(Duration::from_secs(60))
            .user_agent(concat!("weightreel/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(HubClient {
            endpoint,
            token,
            agent,
        })
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn request(&self, url: &str) -> ureq::Request {
        let req = self.agent.get(url);
        match &self.token {
            Some(token) => req.set("Authorization", &format!("Bearer {token}")),
            None => req,
        }
    }

    /// Turn a failed call into a one-line error naming the URL and what to do.
    fn http_error(url: &str, err: ureq::Error) -> Error {
        match err {
            ureq::Error::Status(code, _) => {
                let problem = match code {
                    401 | 403 => format!(
                        "HTTP {code}: access denied — the repo may be private or gated; set HF_TOKEN or pass --token"
                    ),
                    404 => "HTTP 404: not found on the Hub — check the repo name, revision and file".to_string(),
                    416 => "HTTP 416: requested range not satisfiable".to_string(),
                    429 => "HTTP 429: rate limited by the Hub; try again later".to_string(),
                    500..=599 => format!("HTTP {code}: server error; try again later"),
                    _ => format!("HTTP {code}"),
                };
                Error::http(url, problem)
            }
            ureq::Error::Transport(t) => Error::http(url, format!("connection failed: {t}")),
        }
    }

    /// List a repo's files at `revision` (branch, tag or commit).
    pub fn list(&self, repo: &str, revision: &str) -> Result<RepoListing> {
        let url = format!(
            "{}/api/models/{}/revision/{}",
            self.endpoint,
            encode_path(repo),
            encode_segment(revision)
        );
        let resp = self
            .request(&url)
            .call()
            .map_err(|e| Self::http_error(&url, e))?;
        let mut body = Vec::new();
        resp.into_reader()
            .take(64 << 20)
            .read_to_end(&mut body)
            .map_err(|e| Error::http(&url, format!("reading the listing failed: {e}")))?;
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
        let listing: Listing = serde_json::from_slice(&body)
            .map_err(|e| Error::http(&url, format!("the listing is not the Hub's JSON: {e}")))?;
        let commit = listing.sha.unwrap_or_else(|| revision.to_string());
        if commit.is_empty() || commit.contains("..") || commit.contains('/') {
            return Err(Error::http(
                &url,
                format!("the listing gave an invalid commit '{commit}'"),
            ));
        }
        Ok(RepoListing {
            commit,
            files: listing.siblings.into_iter().map(|s| s.rfilename).collect(),
        })
    }

    /// The `resolve` URL of a file.
    pub fn resolve_url(&self, repo: &str, revision: &str, file: &str) -> String {
        format!(
            "{}/{}/resolve/{}/{}",
            self.endpoint,
            encode_path(repo),
            encode_segment(revision),
            encode_path(file)
        )
    }

    /// Download a small file whole (config, index), refusing more than `limit` bytes.
    pub fn fetch_small(
        &self,
        repo: &str,
        revision: &str,
        file: &str,
        limit: u64,
    ) -> Result<Vec<u8>> {
        let url = self.resolve_url(repo, revision, file);
        let resp = self
            .request(&url)
            .call()
            .map_err(|e| Self::http_error(&url, e))?;
        let mut body = Vec::new();
        resp.into_reader()
            .take(limit + 1)
            .read_to_end(&mut body)
            .map_err(|e| Error::http(&url, format!("download failed: {e}")))?;
        if body.len() as u64 > limit {
            return Err(Error::http(
                &url,
                format!("file is larger than the {limit}-byte limit"),
            ));
        }
        Ok(body)
    }

    /// Open a remote file for ranged reads. Costs one request, which also fetches the first
    /// [`PREFIX_LEN`] bytes (the safetensors header, usually).
    pub fn open(&self, repo: &str, revision: &str, file: &str) -> Result<HttpFile> {
        let url = self.resolve_url(repo, revision, file);
        let mut http = HttpFile {
            client: self.clone(),
            url,
            len: 0,
            prefix: Vec::new(),
            requests: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        };
        let (prefix, total) = http.fetch_range(0, PREFIX_LEN)?;
        http.len = total;
        http.prefix = prefix;
        Ok(http)
    }
}

/// A remote file read with HTTP `Range` requests.
pub struct HttpFile {
    client: HubClient,
    url: String,
    len: u64,
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
    /// Request `len` bytes at `offset` (fewer if the file is shorter); returns them and the
    /// file's total length from `Content-Range`.
    fn fetch_range(&self, offset: u64, len: u64) -> Result<(Vec<u8>, u64)> {
        let url = &self.url;
        let last = offset + len.max(1) - 1;
        let resp = self
            .client
            .request(url)
            .set("Range", &format!("bytes={offset}-{last}"))
            .call();
        self.requests.fetch_add(1, Ordering::Relaxed);
        let resp = match resp {
            Ok(r) => r,
            Err(ureq::Error::Status(416, _)) if offset == 0 => {
                // An empty file: nothing to read.
                return Ok((Vec::new(), 0));
            }
            Err(e) => return Err(HubClient::http_error(url, e)),
        };
        if resp.status() != 206 {
            return Err(Error::http(
                url,
                format!(
                    "the server ignored the Range request (HTTP {} instead of 206) and would send the whole file; refusing to download it",
                    resp.status()
                ),
            ));
        }
        let (start, end, total) = resp
            .header("Content-Range")
            .and_then(parse_content_range)
            .ok_or_else(|| Error::http(url, "HTTP 206 without a valid Content-Range header"))?;
        if start != offset || end < start || end > last || end >= total {
            return Err(Error::http(
                url,
                format!("asked for bytes {offset}-{last}, the server sent {start}-{end}/{total}"),
            ));
        }
        let want = end - start + 1;
        let mut body = Vec::with_capacity(want as usize);
        resp.into_reader()
            .take(want + 1)
            .read_to_end(&mut body)
            .map_err(|e| Error::http(url, format!("download failed: {e}")))?;
        self.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
        if body.len() as u64 != want {
            return Err(Error::http(
                url,
                format!(
                    "expected {want} bytes for range {start}-{end}, got {}",
                    body.len()
                ),
            ));
        }
        Ok((body, total))
    }
}

impl ByteSource for HttpFile {
    fn name(&self) -> &str {
        &self.url
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .ok_or_else(|| Error::http(&self.url, "read offset overflows"))?;
        if end > self.len {
            return Err(Error::header(
                &self.url,
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
        let (body, total) = self.fetch_range(offset, buf.len() as u64)?;
        if total != self.len {
            return Err(Error::http(
                &self.url,
                format!(
                    "the file changed size during the read ({} then {total} bytes)",
                    self.len
                ),
            ));
        }
        buf.copy_from_slice(&body);
        Ok(())
    }

    fn stats(&self) -> ReadStats {
        ReadStats {
            requests: self.requests.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}

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
}
