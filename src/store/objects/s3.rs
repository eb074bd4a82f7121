//! Reels in S3-compatible object storage (`s3://bucket/prefix`), with `rusty-s3` signing each
//! request (SigV4, presigned URLs) and `ureq` sending it: no async runtime, no SDK.
//!
//! - An upload is a multipart upload: parts of [`S3Config::part_size`] bytes are sent as they
//!   fill (one part in memory), `CompleteMultipartUpload` publishes, `AbortMultipartUpload` undoes.
//! - Each upload also puts an empty marker object `PREFIX.uploads/NAME/UPLOAD_ID`, removed on
//!   publish or abort. [`ReelStorage::unfinished`] lists these markers, so that crashed uploads are
//!   found on every S3-compatible server, including those without `ListMultipartUploads` (such
//!   as s3s-fs, the tests' server). An upload that crashed between its creation and its marker
//!   is not seen; a bucket lifecycle rule (`AbortIncompleteMultipartUpload`) is the backstop.
//! - Reads are range GETs; nothing is read that was not asked for.

use std::io::Read;
use std::time::{Duration, SystemTime};

use rusty_s3::actions::{CreateMultipartUpload, ListObjectsV2};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use super::{
    check_name, not_found, past_end, storage_error, ReelStorage, StoredReel, UnfinishedUpload,
    Upload, UploadBackend, DEFAULT_PART_SIZE, MAX_PART_SIZE, MIN_PART_SIZE,
};
use crate::error::{Error, Result};
use crate::store::owner::{parse_utc, OWNER_OBJECT};

/// How long a signed request stays valid: long enough for one part on a slow link.
const SIGNED_FOR: Duration = Duration::from_secs(3600);

/// Where the markers of unfinished uploads live, under the prefix.
const UPLOADS: &str = ".uploads/";

/// Waits before the retries of an idempotent request: a server restarting or shedding load
/// gets about 3.5 s.
const RETRY_DELAYS: [Duration; 3] = [
    Duration::from_millis(250),
    Duration::from_millis(1000),
    Duration::from_millis(2250),
];

/// The most parts S3 takes in one upload.
const MAX_PARTS: usize = 10_000;

/// The most of an owner object read (it is about 200 bytes).
const MAX_OWNER_BYTES: u64 = 64 << 10;

/// The most of an error response kept for its message.
const MAX_ERROR_BODY: u64 = 64 << 10;

/// How to reach the object store. Its `Debug` leaves the secret and the token out.
#[derive(Clone)]
pub struct S3Config {
    /// An S3-compatible server's URL (`http://127.0.0.1:9000`); requests then use path-style
    /// addressing. `None` is AWS: `https://s3.REGION.amazonaws.com`, virtual-hosted style.
    pub endpoint: Option<String>,
    /// The region requests are signed for.
    pub region: String,
    /// Access key and secret; `None` sends unsigned requests.
    pub credentials: Option<(String, String)>,
    /// A session token for temporary credentials.
    pub session_token: Option<String>,
    /// Bytes per uploaded part (every part but the last).
    pub part_size: usize,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key", &self.credentials.as_ref().map(|(key, _)| key))
            .field("part_size", &self.part_size)
            .finish_non_exhaustive()
    }
}

impl S3Config {
    /// From the environment: `WEIGHTREEL_S3_ENDPOINT` or `AWS_ENDPOINT_URL`, `AWS_REGION`
    /// (default `us-east-1`), `AWS_ACCESS_KEY_ID` with `AWS_SECRET_ACCESS_KEY`, and
    /// `AWS_SESSION_TOKEN`.
    pub fn from_env() -> Result<S3Config> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let credentials = match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            (Some(key), Some(secret)) => Some((key, secret)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(Error::invalid(
                    "S3 credentials",
                    "AWS_ACCESS_KEY_ID without AWS_SECRET_ACCESS_KEY",
                    "both set, or neither",
                ))
            }
            (None, Some(_)) => {
                return Err(Error::invalid(
                    "S3 credentials",
                    "AWS_SECRET_ACCESS_KEY without AWS_ACCESS_KEY_ID",
                    "both set, or neither",
                ))
            }
        };
        Ok(S3Config {
            endpoint: var("WEIGHTREEL_S3_ENDPOINT").or_else(|| var("AWS_ENDPOINT_URL")),
            region: var("AWS_REGION").unwrap_or_else(|| "us-east-1".to_string()),
            credentials,
            session_token: var("AWS_SESSION_TOKEN"),
            part_size: DEFAULT_PART_SIZE,
        })
    }
}

/// Reels in an S3 bucket under a key prefix.
#[derive(Debug, Clone)]
pub struct S3Storage {
    bucket: Bucket,
    credentials: Option<Credentials>,
    /// Empty, or ending in `/`.
    prefix: String,
    part_size: usize,
    /// `s3://bucket/prefix`, for messages.
    url: String,
    /// Said after a failure's message when the endpoint is not AWS.
    endpoint_note: String,
    agent: ureq::Agent,
}

impl S3Storage {
    /// Reels in `bucket` under `prefix` (empty or ending in `/`). Sends no request.
    pub fn new(bucket: &str, prefix: &str, config: S3Config) -> Result<S3Storage> {
        let url = super::s3_url(bucket, prefix);
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&config.part_size) {
            return Err(Error::invalid(
                "S3 part size",
                config.part_size,
                format!("{MIN_PART_SIZE}..={MAX_PART_SIZE} bytes"),
            ));
        }
        let (endpoint, style, endpoint_note) = match &config.endpoint {
            Some(e) => (e.clone(), UrlStyle::Path, format!(" (endpoint {e})")),
            None => (
                format!("https://s3.{}.amazonaws.com", config.region),
                UrlStyle::VirtualHost,
                String::new(),
            ),
        };
        let bad_endpoint = |why: String| {
            Error::invalid(
                "S3 endpoint",
                format!("'{endpoint}': {why}"),
                "an http:// or https:// URL such as http://127.0.0.1:9000",
            )
        };
        let parsed: url::Url = endpoint.parse().map_err(|e| bad_endpoint(format!("{e}")))?;
        let bucket = Bucket::new(parsed, style, bucket.to_string(), config.region.clone())
            .map_err(|e| bad_endpoint(format!("{e}")))?;
        let credentials = config
            .credentials
            .map(|(key, secret)| match config.session_token {
                Some(token) => Credentials::new_with_token(key, secret, token),
                None => Credentials::new(key, secret),
            });
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .timeout_read(Duration::from_secs(120))
            .timeout_write(Duration::from_secs(120))
            .build();
        Ok(S3Storage {
            bucket,
            credentials,
            prefix: prefix.to_string(),
            part_size: config.part_size,
            url,
            endpoint_note,
            agent,
        })
    }

    fn key(&self, name: &str) -> Result<String> {
        check_name(name)?;
        Ok(format!("{}{name}", self.prefix))
    }

    fn marker_key(&self, name: &str, upload_id: &str) -> String {
        format!("{}{UPLOADS}{name}/{upload_id}", self.prefix)
    }

    fn fail(&self, what: &str, problem: impl std::fmt::Display) -> Error {
        storage_error(
            &self.url,
            format!("{what}: {problem}{}", self.endpoint_note),
        )
    }

    /// Send a signed request; a non-2xx answer becomes an error naming `what`, with the
    /// server's code and message. Idempotent requests (all but POST: creating and completing
    /// an upload) are tried again after a lost connection or a busy server, [`RETRY_DELAYS`]
    /// apart.
    fn send(
        &self,
        what: &str,
        method: &str,
        url: url::Url,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::result::Result<ureq::Response, Failure> {
        let retries: &[Duration] = if method == "POST" { &[] } else { &RETRY_DELAYS };
        let mut attempt = 0;
        loop {
            let failure = match self.send_once(what, method, &url, headers, body) {
                Ok(response) => return Ok(response),
                Err(f) => f,
            };
            let transient = match &failure {
                Failure::Transport(_) => true,
                Failure::Status(status, _) => matches!(status, 429 | 500 | 502 | 503 | 504),
            };
            match retries.get(attempt) {
                Some(delay) if transient => std::thread::sleep(*delay),
                _ => return Err(failure),
            }
            attempt += 1;
        }
    }

    fn send_once(
        &self,
        what: &str,
        method: &str,
        url: &url::Url,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::result::Result<ureq::Response, Failure> {
        let mut request = self.agent.request(method, url.as_str());
        for (name, value) in headers {
            request = request.set(name, value);
        }
        match request.send_bytes(body) {
            Ok(response) => Ok(response),
            Err(ureq::Error::Status(status, response)) => {
                let mut text = String::new();
                let _ = response
                    .into_reader()
                    .take(MAX_ERROR_BODY)
                    .read_to_string(&mut text);
                Err(Failure::Status(
                    status,
                    self.fail(what, server_error(status, &text)),
                ))
            }
            Err(ureq::Error::Transport(t)) => {
                Err(Failure::Transport(self.fail(what, transport_problem(&t))))
            }
        }
    }

    fn head(&self, name: &str) -> Result<u64> {
        let key = self.key(name)?;
        let url = self
            .bucket
            .head_object(self.credentials.as_ref(), &key)
            .sign(SIGNED_FOR);
        let what = format!("size of reel '{name}'");
        match self.send(&what, "HEAD", url, &[], &[]) {
            Ok(response) => response
                .header("Content-Length")
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| self.fail(&what, "the answer has no Content-Length")),
            Err(Failure::Status(404, _)) => Err(not_found(&self.url, name)),
            Err(f) => Err(f.into_error()),
        }
    }

    /// All keys (with sizes and, when the server sends one, their `LastModified`) under
    /// `key_prefix`, following continuation tokens.
    fn list_keys(&self, key_prefix: &str) -> Result<Vec<(String, u64, Option<SystemTime>)>> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut action = self.bucket.list_objects_v2(self.credentials.as_ref());
            action.with_prefix(key_prefix);
            if let Some(t) = &token {
                action.with_continuation_token(t.as_str());
            }
            let url = action.sign(SIGNED_FOR);
            let what = format!("list '{key_prefix}'");
            let response = self
                .send(&what, "GET", url, &[], &[])
                .map_err(Failure::into_error)?;
            let text = response.into_string().map_err(|e| self.fail(&what, e))?;
            let listing = ListObjectsV2::parse_response(&text)
                .map_err(|e| self.fail(&what, format!("unreadable listing: {e}")))?;
            for entry in listing.contents {
                let size = entry
                    .size
                    .ok_or_else(|| self.fail(&what, format!("'{}' has no Size", entry.key)))?;
                let modified = entry.last_modified.as_deref().and_then(parse_utc);
                keys.push((entry.key, size, modified));
            }
            token = listing.next_continuation_token;
            if token.is_none() {
                return Ok(keys);
            }
        }
    }

    fn delete_key(&self, what: &str, key: &str) -> Result<()> {
        let url = self
            .bucket
            .delete_object(self.credentials.as_ref(), key)
            .sign(SIGNED_FOR);
        self.send(what, "DELETE", url, &[], &[])
            .map(drop)
            .map_err(Failure::into_error)
    }

    fn abort_upload(&self, name: &str, upload_id: &str) -> Result<()> {
        let key = self.key(name)?;
        let url = self
            .bucket
            .abort_multipart_upload(self.credentials.as_ref(), &key, upload_id)
            .sign(SIGNED_FOR);
        let what = format!("abort upload of reel '{name}'");
        match self.send(&what, "DELETE", url, &[], &[]) {
            // Already completed or aborted: only its marker is left.
            Ok(_) | Err(Failure::Status(404, _)) => {}
            Err(f) => return Err(f.into_error()),
        }
        self.delete_key(&what, &self.marker_key(name, upload_id))
    }
}

/// A failed request: the HTTP status, when the server answered, decides what it means.
enum Failure {
    Status(u16, Error),
    Transport(Error),
}

impl Failure {
    fn into_error(self) -> Error {
        match self {
            Failure::Status(_, e) | Failure::Transport(e) => e,
        }
    }
}

impl ReelStorage for S3Storage {
    fn location(&self) -> String {
        self.url.clone()
    }

    fn begin(&self, name: &str) -> Result<Upload> {
        let key = self.key(name)?;
        let what = format!("begin upload of reel '{name}'");
        let url = self
            .bucket
            .create_multipart_upload(self.credentials.as_ref(), &key)
            .sign(SIGNED_FOR);
        let response = self
            .send(&what, "POST", url, &[], &[])
            .map_err(Failure::into_error)?;
        let text = response.into_string().map_err(|e| self.fail(&what, e))?;
        let created = CreateMultipartUpload::parse_response(&text)
            .map_err(|e| self.fail(&what, format!("unreadable answer: {e}")))?;
        let upload_id = created.upload_id().to_string();
        // The id becomes one component of the marker's key.
        if upload_id.is_empty() || upload_id.contains('/') {
            return Err(self.fail(&what, format!("unusable upload id '{upload_id}'")));
        }
        let marker = self.marker_key(name, &upload_id);
        let url = self
            .bucket
            .put_object(self.credentials.as_ref(), &marker)
            .sign(SIGNED_FOR);
        if let Err(f) = self.send(&what, "PUT", url, &[], &[]) {
            let _ = self.abort_upload(name, &upload_id);
            return Err(f.into_error());
        }
        Ok(Upload::new(
            &self.url,
            name,
            Box::new(S3Upload {
                storage: self.clone(),
                name: name.to_string(),
                key,
                upload_id,
                part: Vec::with_capacity(self.part_size),
                etags: Vec::new(),
                size: 0,
            }),
        ))
    }

    fn read_range(&self, name: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        if buf.is_empty() {
            let size = self.head(name)?;
            return if offset <= size {
                Ok(())
            } else {
                Err(past_end(&self.url, name, offset, 0, size))
            };
        }
        let key = self.key(name)?;
        let last = offset
            .checked_add(buf.len() as u64 - 1)
            .ok_or_else(|| past_end(&self.url, name, offset, buf.len(), u64::MAX))?;
        let url = self
            .bucket
            .get_object(self.credentials.as_ref(), &key)
            .sign(SIGNED_FOR);
        let range = format!("bytes={offset}-{last}");
        let what = format!("read reel '{name}' {range}");
        let response = match self.send(&what, "GET", url, &[("Range", &range)], &[]) {
            Ok(r) => r,
            Err(Failure::Status(404, _)) => return Err(not_found(&self.url, name)),
            Err(Failure::Status(416, _)) => {
                let size = self.head(name)?;
                return Err(past_end(&self.url, name, offset, buf.len(), size));
            }
            Err(f) => return Err(f.into_error()),
        };
        // A server that ignores Range answers 200 with the whole object: never take that as
        // the range.
        if response.status() != 206 {
            return Err(self.fail(
                &what,
                format!("HTTP {} instead of 206 Partial Content", response.status()),
            ));
        }
        let length: Option<u64> = response
            .header("Content-Length")
            .and_then(|v| v.parse().ok());
        if length.is_some_and(|l| l < buf.len() as u64) {
            let size = self.head(name)?;
            return Err(past_end(&self.url, name, offset, buf.len(), size));
        }
        response
            .into_reader()
            .read_exact(buf)
            .map_err(|e| self.fail(&what, e))
    }

    fn size(&self, name: &str) -> Result<u64> {
        self.head(name)
    }

    fn list(&self, prefix: &str) -> Result<Vec<StoredReel>> {
        let mut reels: Vec<StoredReel> = self
            .list_keys(&format!("{}{prefix}", self.prefix))?
            .into_iter()
            .filter_map(|(key, size, modified)| {
                let name = key.strip_prefix(&self.prefix)?.to_string();
                check_name(&name).is_ok().then_some(StoredReel {
                    name,
                    size,
                    modified,
                })
            })
            .collect();
        reels.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(reels)
    }

    fn delete(&self, name: &str) -> Result<()> {
        // S3 deletes a missing key without complaint; a missing reel is an error here.
        self.head(name)?;
        let key = self.key(name)?;
        self.delete_key(&format!("delete reel '{name}'"), &key)
    }

    fn unfinished(&self) -> Result<Vec<UnfinishedUpload>> {
        let markers = format!("{}{UPLOADS}", self.prefix);
        let mut uploads: Vec<UnfinishedUpload> = self
            .list_keys(&markers)?
            .into_iter()
            .filter_map(|(key, _, modified)| {
                let (name, id) = key.strip_prefix(&markers)?.rsplit_once('/')?;
                check_name(name).is_ok().then(|| UnfinishedUpload {
                    name: name.to_string(),
                    id: id.to_string(),
                    modified,
                })
            })
            .collect();
        uploads.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        Ok(uploads)
    }

    fn read_owner(&self) -> Result<Option<Vec<u8>>> {
        let key = format!("{}{OWNER_OBJECT}", self.prefix);
        let url = self
            .bucket
            .get_object(self.credentials.as_ref(), &key)
            .sign(SIGNED_FOR);
        let what = format!("read the owner object '{OWNER_OBJECT}'");
        let response = match self.send(&what, "GET", url, &[], &[]) {
            Ok(r) => r,
            Err(Failure::Status(404, _)) => return Ok(None),
            Err(f) => return Err(f.into_error()),
        };
        let mut bytes = Vec::new();
        response
            .into_reader()
            .take(MAX_OWNER_BYTES)
            .read_to_end(&mut bytes)
            .map_err(|e| self.fail(&what, e))?;
        Ok(Some(bytes))
    }

    fn create_owner(&self, bytes: &[u8]) -> Result<()> {
        let key = format!("{}{OWNER_OBJECT}", self.prefix);
        let url = self
            .bucket
            .put_object(self.credentials.as_ref(), &key)
            .sign(SIGNED_FOR);
        let what = format!("write the owner object '{OWNER_OBJECT}'");
        // `If-None-Match: *` makes the put conditional on servers that support it (AWS since
        // 2024, MinIO): of two stores claiming at once one wins, and 412 tells the other.
        // Where it is ignored, the last writer wins, and each store reads back who did.
        match self.send(&what, "PUT", url, &[("If-None-Match", "*")], bytes) {
            Ok(_) | Err(Failure::Status(412, _)) => Ok(()),
            Err(f) => Err(f.into_error()),
        }
    }

    fn unfinished_bytes(&self, upload: &UnfinishedUpload) -> Result<Option<u64>> {
        let key = self.key(&upload.name)?;
        let what = format!("parts of the upload of reel '{}'", upload.name);
        let mut bytes = 0u64;
        let mut marker: Option<u16> = None;
        loop {
            let mut action = self
                .bucket
                .list_parts(self.credentials.as_ref(), &key, &upload.id);
            if let Some(m) = marker {
                action.set_part_number_marker(m);
            }
            let url = action.sign(SIGNED_FOR);
            let response = match self.send(&what, "GET", url, &[], &[]) {
                Ok(r) => r,
                // Completed or aborted since it was listed.
                Err(Failure::Status(404, _)) => return Ok(None),
                Err(f) => return Err(f.into_error()),
            };
            let text = response.into_string().map_err(|e| self.fail(&what, e))?;
            // Read by hand: servers leave out elements rusty-s3's parser requires (s3s-fs
            // sends no ETag).
            let mut parts = 0;
            for part in xml_elements(&text, "Part") {
                let size = xml_elements(part, "Size")
                    .next()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .ok_or_else(|| self.fail(&what, "a part without a Size"))?;
                bytes += size;
                parts += 1;
            }
            let truncated = xml_elements(&text, "IsTruncated").next() == Some("true");
            let next = xml_elements(&text, "NextPartNumberMarker")
                .next()
                .and_then(|m| m.trim().parse::<u16>().ok());
            match next {
                Some(m) if truncated && parts > 0 && Some(m) != marker => marker = Some(m),
                _ => return Ok(Some(bytes)),
            }
        }
    }

    fn abort_unfinished(&self, upload: &UnfinishedUpload) -> Result<()> {
        if upload.id.is_empty() || upload.id.contains('/') {
            return Err(storage_error(
                &self.url,
                format!("upload '{}' is not an upload of this storage", upload.id),
            ));
        }
        self.abort_upload(&upload.name, &upload.id)
    }
}

struct S3Upload {
    storage: S3Storage,
    name: String,
    key: String,
    upload_id: String,
    /// The part being filled; sent when it reaches the part size.
    part: Vec<u8>,
    etags: Vec<String>,
    size: u64,
}

impl S3Upload {
    fn send_part(&mut self) -> Result<()> {
        let number = self.etags.len() + 1;
        let what = format!("upload part {number} of reel '{}'", self.name);
        if number > MAX_PARTS {
            return Err(self.storage.fail(
                &what,
                format!("more than {MAX_PARTS} parts: use a larger part size"),
            ));
        }
        let url = self
            .storage
            .bucket
            .upload_part(
                self.storage.credentials.as_ref(),
                &self.key,
                number as u16,
                &self.upload_id,
            )
            .sign(SIGNED_FOR);
        let response = self
            .storage
            .send(&what, "PUT", url, &[], &self.part)
            .map_err(Failure::into_error)?;
        let etag = response
            .header("ETag")
            .ok_or_else(|| self.storage.fail(&what, "the answer has no ETag"))?;
        self.etags.push(etag.to_string());
        self.size += self.part.len() as u64;
        self.part.clear();
        Ok(())
    }
}

impl UploadBackend for S3Upload {
    fn append(&mut self, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            let room = self.storage.part_size - self.part.len();
            let (now, rest) = bytes.split_at(room.min(bytes.len()));
            self.part.extend_from_slice(now);
            bytes = rest;
            if self.part.len() == self.storage.part_size {
                self.send_part()?;
            }
        }
        Ok(())
    }

    fn publish(&mut self) -> Result<u64> {
        // The last part may be short; an empty reel is one empty part.
        if !self.part.is_empty() || self.etags.is_empty() {
            self.send_part()?;
        }
        let what = format!("publish reel '{}'", self.name);
        let action = self.storage.bucket.complete_multipart_upload(
            self.storage.credentials.as_ref(),
            &self.key,
            &self.upload_id,
            self.etags.iter().map(String::as_str),
        );
        let url = action.sign(SIGNED_FOR);
        let body = action.body();
        let response = self
            .storage
            .send(
                &what,
                "POST",
                url,
                &[("Content-Type", "application/xml")],
                body.as_bytes(),
            )
            .map_err(Failure::into_error)?;
        // S3 may answer 200 and still fail the completion in the body.
        let text = response
            .into_string()
            .map_err(|e| self.storage.fail(&what, e))?;
        if text.contains("<Error>") {
            return Err(self.storage.fail(&what, server_error(200, &text)));
        }
        let marker = self.storage.marker_key(&self.name, &self.upload_id);
        // The reel is published; a marker left behind only makes `unfinished` list an upload
        // whose abort finds nothing to abort.
        let _ = self.storage.delete_key(&what, &marker);
        Ok(self.size)
    }

    fn abort(&mut self) -> Result<()> {
        self.part = Vec::new();
        self.storage.abort_upload(&self.name, &self.upload_id)
    }
}

/// What went wrong on the way, without the request's URL: that URL is presigned, and would
/// hand its signature (an hour's access) to whoever reads the message.
fn transport_problem(t: &ureq::Transport) -> String {
    let mut text = t.kind().to_string();
    for part in [
        t.message().map(str::to_string),
        std::error::Error::source(t).map(|e| e.to_string()),
    ]
    .into_iter()
    .flatten()
    {
        text.push_str(": ");
        text.push_str(&part);
    }
    text
}

/// `HTTP 404 NoSuchBucket: The specified bucket does not exist`, from an S3 error body.
fn server_error(status: u16, body: &str) -> String {
    let code = xml_elements(body, "Code").next().map(xml_unescape);
    let message = xml_elements(body, "Message").next().map(xml_unescape);
    let mut text = format!("HTTP {status}");
    for part in [code, message].into_iter().flatten() {
        if !part.is_empty() {
            text.push(' ');
            text.push_str(
                part.split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .as_str(),
            );
        }
    }
    text
}

/// The text of each `<tag>…</tag>` in `xml`, in order: enough for S3's flat error answers,
/// which rusty-s3 does not parse.
fn xml_elements<'a>(xml: &'a str, tag: &str) -> impl Iterator<Item = &'a str> + 'a {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut rest = xml;
    std::iter::from_fn(move || {
        let start = rest.find(&open)? + open.len();
        let end = rest[start..].find(&close)? + start;
        let text = &rest[start..end];
        rest = &rest[end + close.len()..];
        Some(text)
    })
}

fn xml_unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_debug_leaves_the_secret_out() {
        let config = S3Config {
            endpoint: None,
            region: "us-east-1".into(),
            credentials: Some(("AKIDKEY".into(), "very-secret".into())),
            session_token: Some("session-token".into()),
            part_size: DEFAULT_PART_SIZE,
        };
        let text = format!("{config:?}");
        assert!(text.contains("AKIDKEY"), "{text}");
        assert!(
            !text.contains("very-secret") && !text.contains("session-token"),
            "{text}"
        );
        let storage = S3Storage::new("bucket", "", config).unwrap();
        let text = format!("{storage:?}");
        assert!(
            !text.contains("very-secret") && !text.contains("session-token"),
            "{text}"
        );
    }

    #[test]
    fn server_error_takes_code_and_message() {
        let body = "<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>The specified\n bucket does not exist</Message></Error>";
        assert_eq!(
            server_error(404, body),
            "HTTP 404 NoSuchBucket The specified bucket does not exist"
        );
        assert_eq!(server_error(500, ""), "HTTP 500");
    }

    #[test]
    fn server_error_unescapes_and_takes_the_first() {
        let body = "<Error><Code>A&amp;B</Code><Message>x &lt; y</Message><Code>C</Code></Error>";
        assert_eq!(server_error(403, body), "HTTP 403 A&B x < y");
    }
}
