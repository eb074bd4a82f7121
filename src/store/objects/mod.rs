//! Where reels live: a directory on a (possibly shared) filesystem, or an S3-compatible object
//! store. Both sit behind [`ReelStorage`], and one conformance suite (`tests/objects.rs`) runs
//! against each, as tantivy does for its `Directory`.
//!
//! Visibility is the same on every backend: an [`Upload`] takes a reel's bytes as they are
//! written, holding at most one part in memory, and nothing under the reel's name exists until
//! [`Upload::publish`]. An upload that is dropped, fails, or is aborted leaves nothing visible; one
//! whose process died is listed by [`ReelStorage::unfinished`] and removed by
//! [`ReelStorage::abort_unfinished`] (what `weightreel gc` will call).
//!
//! - [`DirectoryStorage`] (`file:///dir` or a plain path): a temporary file under `dir/.uploads/`,
//!   fsynced and renamed into place on publish.
//! - `S3Storage` (`s3://bucket/prefix`, feature `s3`): a multipart upload whose parts are sent as
//!   they fill, completed on publish and aborted on failure; reads are HTTP range GETs.
//!
//! Reel names are relative paths such as `models/bert-1a2b.mkv`: ASCII letters, digits, `.`,
//! `_`, `-` and `/`, no empty or dot-leading component, so that a name is the same key on
//! every backend and never escapes its directory or prefix.

mod directory;
#[cfg(feature = "s3")]
mod s3;

use std::io::Write;
use std::path::PathBuf;

use crate::error::{Error, Result};

pub use directory::DirectoryStorage;
#[cfg(feature = "s3")]
pub use s3::{S3Config, S3Storage};

/// Default size of an S3 part: parts are uploaded as they fill, so this bounds the memory an
/// upload holds.
pub const DEFAULT_PART_SIZE: usize = 8 << 20;

/// The smallest part S3 accepts (every part but the last).
pub const MIN_PART_SIZE: usize = 5 << 20;

/// The largest part S3 accepts.
pub const MAX_PART_SIZE: usize = 5 << 30;

/// A stored reel, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReel {
    /// The reel's name, relative to the storage location.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written, if the backend tells (`gc` removes nothing of unknown age).
    pub modified: Option<std::time::SystemTime>,
}

/// An upload that was begun and neither published nor aborted (a crashed writer's leftovers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnfinishedUpload {
    /// The reel name it was writing.
    pub name: String,
    /// The backend's handle for it: the temporary file's name, or the S3 upload id.
    pub id: String,
    /// When it was last written to (a directory's temporary file) or begun (S3: its marker
    /// object), if the backend tells.
    pub modified: Option<std::time::SystemTime>,
}

/// Where reels live. Every method's error names the location and the reel.
pub trait ReelStorage: Send + Sync {
    /// The location as a URL, for messages: `file:///dir` or `s3://bucket/prefix`.
    fn location(&self) -> String;

    /// Begin writing reel `name`; it becomes visible (replacing any reel of that name) only on
    /// [`Upload::publish`].
    fn begin(&self, name: &str) -> Result<Upload>;

    /// Fill `buf` with the bytes of reel `name` from `offset`; the whole range must exist.
    fn read_range(&self, name: &str, offset: u64, buf: &mut [u8]) -> Result<()>;

    /// The size of reel `name` in bytes.
    fn size(&self, name: &str) -> Result<u64>;

    /// The published reels whose names start with `prefix`, sorted by name.
    fn list(&self, prefix: &str) -> Result<Vec<StoredReel>>;

    /// Delete reel `name`; a missing reel is an error naming it.
    fn delete(&self, name: &str) -> Result<()>;

    /// Uploads begun and never published or aborted, sorted by name.
    fn unfinished(&self) -> Result<Vec<UnfinishedUpload>>;

    /// Remove an unfinished upload and what it had stored.
    fn abort_unfinished(&self, upload: &UnfinishedUpload) -> Result<()>;

    /// The owner object (`.weightreel-owner`, see `store/owner.rs`), if the location has one.
    fn read_owner(&self) -> Result<Option<Vec<u8>>>;

    /// Write the owner object unless the location has one (an existing one is kept); the
    /// caller reads it back to learn who owns the location.
    fn create_owner(&self, bytes: &[u8]) -> Result<()>;

    /// Bytes an unfinished upload holds, when the backend can tell (`gc --dry-run` shows it).
    fn unfinished_bytes(&self, _upload: &UnfinishedUpload) -> Result<Option<u64>> {
        Ok(None)
    }
}

/// One backend's half of an upload; [`Upload`] adds the rules every backend shares.
pub(crate) trait UploadBackend: Send {
    /// Take the next bytes of the reel.
    fn append(&mut self, bytes: &[u8]) -> Result<()>;
    /// Make the reel visible under its name; returns its size.
    fn publish(&mut self) -> Result<u64>;
    /// Remove everything stored so far.
    fn abort(&mut self) -> Result<()>;
}

/// A reel being written. Nothing is visible until [`Upload::publish`]; an upload that is dropped
/// unpublished, or whose write failed, is aborted.
pub struct Upload {
    location: String,
    name: String,
    backend: Box<dyn UploadBackend>,
    written: u64,
    finished: bool,
}

impl Upload {
    pub(crate) fn new(location: &str, name: &str, backend: Box<dyn UploadBackend>) -> Upload {
        Upload {
            location: location.to_string(),
            name: name.to_string(),
            backend,
            written: 0,
            finished: false,
        }
    }

    /// The reel name being written.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes taken so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Take the next bytes. On error the upload is aborted, and later writes fail.
    pub fn append(&mut self, bytes: &[u8]) -> Result<()> {
        if self.finished {
            return Err(storage_error(
                &self.location,
                format!("reel '{}': write after the upload ended", self.name),
            ));
        }
        if let Err(e) = self.backend.append(bytes) {
            self.finished = true;
            // The write's error is the one to report; an abort failure leaves an unfinished
            // upload that `unfinished` lists.
            let _ = self.backend.abort();
            return Err(e);
        }
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Make the reel visible under its name; returns its size. On error nothing is visible.
    pub fn publish(mut self) -> Result<u64> {
        self.finished = true;
        match self.backend.publish() {
            Ok(size) => Ok(size),
            Err(e) => {
                let _ = self.backend.abort();
                Err(e)
            }
        }
    }

    /// Give the upload up, removing what it had stored.
    pub fn abort(mut self) -> Result<()> {
        self.finished = true;
        self.backend.abort()
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.backend.abort();
        }
    }
}

impl Write for Upload {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.append(buf).map_err(std::io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A stored reel as `Read + Seek`, for readers that want a file (the reel's envelope, a demuxer):
/// reads go through [`ReelStorage::read_range`] a window at a time, so that a reader taking
/// small pieces makes one request per window, and a seek costs nothing until the next read.
pub struct ReelReader<'a> {
    storage: &'a dyn ReelStorage,
    name: String,
    size: u64,
    position: u64,
    window: Vec<u8>,
    window_start: u64,
    window_size: usize,
}

impl<'a> ReelReader<'a> {
    /// Open reel `name`, reading `window_size` bytes (at least 1) per request.
    pub fn open(
        storage: &'a dyn ReelStorage,
        name: &str,
        window_size: usize,
    ) -> Result<ReelReader<'a>> {
        Ok(ReelReader {
            storage,
            name: name.to_string(),
            size: storage.size(name)?,
            position: 0,
            window: Vec::new(),
            window_start: 0,
            window_size: window_size.max(1),
        })
    }

    /// The reel's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl std::io::Read for ReelReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if out.is_empty() || self.position >= self.size {
            return Ok(0);
        }
        let in_window = self.position >= self.window_start
            && self.position < self.window_start + self.window.len() as u64;
        if !in_window {
            let len = (self.size - self.position).min(self.window_size as u64) as usize;
            self.window.resize(len, 0);
            self.storage
                .read_range(&self.name, self.position, &mut self.window)
                .map_err(std::io::Error::other)?;
            self.window_start = self.position;
        }
        let from = (self.position - self.window_start) as usize;
        let n = out.len().min(self.window.len() - from);
        out[..n].copy_from_slice(&self.window[from..from + n]);
        self.position += n as u64;
        Ok(n)
    }
}

impl std::io::Seek for ReelReader<'_> {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            std::io::SeekFrom::Start(p) => Some(p),
            std::io::SeekFrom::End(d) => self.size.checked_add_signed(d),
            std::io::SeekFrom::Current(d) => self.position.checked_add_signed(d),
        };
        let target = target.ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("reel '{}': seek before its start", self.name),
            )
        })?;
        self.position = target;
        Ok(target)
    }
}

/// A parsed reel location (`--reels`, `$WEIGHTREEL_REELS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReelLocation {
    /// A directory: `file:///abs/dir` or a plain path.
    Directory(PathBuf),
    /// An S3 bucket and a key prefix (empty, or ending in `/`).
    S3 { bucket: String, prefix: String },
}

const ACCEPTED: &str = "s3://BUCKET[/PREFIX], file:///ABSOLUTE/DIR or a directory path";

impl ReelLocation {
    /// Parse `s3://bucket/prefix`, `file:///dir` or a plain directory path.
    pub fn parse(text: &str) -> Result<ReelLocation> {
        let bad = |why: &str| Error::invalid("reel location", format!("'{text}': {why}"), ACCEPTED);
        if text.is_empty() {
            return Err(bad("empty"));
        }
        let Some((scheme, rest)) = text.split_once("://") else {
            return Ok(ReelLocation::Directory(PathBuf::from(text)));
        };
        match scheme {
            "file" => {
                if !rest.starts_with('/') {
                    return Err(bad("a file URL needs an absolute path and no host"));
                }
                Ok(ReelLocation::Directory(PathBuf::from(rest)))
            }
            "s3" => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                let valid_bucket = (3..=63).contains(&bucket.len())
                    && bucket.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-'
                    })
                    && !bucket.starts_with(['.', '-'])
                    && !bucket.ends_with(['.', '-']);
                if !valid_bucket {
                    return Err(bad(
                        "a bucket name is 3 to 63 lowercase letters, digits, '.' or '-'",
                    ));
                }
                let prefix = prefix.trim_end_matches('/');
                if !prefix.is_empty() {
                    check_name(prefix).map_err(|_| bad("the prefix is not a valid key prefix"))?;
                }
                let prefix = if prefix.is_empty() {
                    String::new()
                } else {
                    format!("{prefix}/")
                };
                Ok(ReelLocation::S3 {
                    bucket: bucket.to_string(),
                    prefix,
                })
            }
            other => Err(bad(&format!("unknown scheme '{other}'"))),
        }
    }

    /// The location as a URL.
    pub fn url(&self) -> String {
        match self {
            ReelLocation::Directory(dir) => directory_url(dir),
            ReelLocation::S3 { bucket, prefix } => s3_url(bucket, prefix),
        }
    }

    /// Open the storage, with S3 settings from the environment (see `S3Config::from_env`).
    pub fn open(&self) -> Result<Box<dyn ReelStorage>> {
        match self {
            ReelLocation::Directory(dir) => Ok(Box::new(DirectoryStorage::open(dir)?)),
            #[cfg(feature = "s3")]
            ReelLocation::S3 { bucket, prefix } => Ok(Box::new(S3Storage::new(
                bucket,
                prefix,
                S3Config::from_env()?,
            )?)),
            #[cfg(not(feature = "s3"))]
            ReelLocation::S3 { .. } => Err(Error::ReelStorage {
                location: self.url(),
                problem: "this build has no S3 support (cargo feature `s3`)".into(),
            }),
        }
    }
}

/// `s3://bucket` or `s3://bucket/prefix`.
pub(crate) fn s3_url(bucket: &str, prefix: &str) -> String {
    match prefix.trim_end_matches('/') {
        "" => format!("s3://{bucket}"),
        prefix => format!("s3://{bucket}/{prefix}"),
    }
}

pub(crate) fn directory_url(dir: &std::path::Path) -> String {
    let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    format!("file://{}", abs.display())
}

/// Check a reel name (see the module doc); the error states what is accepted.
pub fn check_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 512
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
        && name
            .split('/')
            .all(|part| !part.is_empty() && !part.starts_with('.'));
    if valid {
        Ok(())
    } else {
        Err(Error::invalid(
            "reel name",
            format!("'{name}'"),
            "a relative path of ASCII letters, digits, '.', '_', '-' and '/', no empty or dot-leading component, at most 512 bytes",
        ))
    }
}

/// The error of a failed storage operation.
pub(crate) fn storage_error(location: &str, problem: impl Into<String>) -> Error {
    Error::ReelStorage {
        location: location.to_string(),
        problem: problem.into(),
    }
}

/// A missing reel: names it.
pub(crate) fn not_found(location: &str, name: &str) -> Error {
    storage_error(location, format!("reel '{name}' not found"))
}

/// A read past the end: names the reel, the range and the size.
pub(crate) fn past_end(location: &str, name: &str, offset: u64, len: usize, size: u64) -> Error {
    storage_error(
        location,
        format!(
            "reel '{name}': range {offset}..{} is past its end ({size} bytes)",
            offset.saturating_add(len as u64)
        ),
    )
}
