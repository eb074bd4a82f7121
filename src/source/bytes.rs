//! Random-access byte sources: a local file read with `pread`, or (with the `hub` feature) an
//! HTTP file read with `Range` requests. Everything above this layer asks for byte ranges only,
//! so a model is never downloaded or mapped whole.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Counters of what a source has read so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReadStats {
    /// Number of read calls that reached the file or the network (HTTP requests for the Hub).
    pub requests: u64,
    /// Bytes transferred.
    pub bytes: u64,
}

impl std::ops::Add for ReadStats {
    type Output = ReadStats;
    fn add(self, other: ReadStats) -> ReadStats {
        ReadStats {
            requests: self.requests + other.requests,
            bytes: self.bytes + other.bytes,
        }
    }
}

/// Counts of reads and bytes, for [`ByteSource::stats`] (shared by the sources).
#[derive(Debug, Default)]
pub struct ReadCounter {
    requests: AtomicU64,
    bytes: AtomicU64,
}

impl ReadCounter {
    /// One read of `bytes` bytes.
    pub fn record(&self, bytes: usize) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// What has been counted.
    pub fn stats(&self) -> ReadStats {
        ReadStats {
            requests: self.requests.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}

/// A file that can be read at any offset. Implementations must be cheap to call repeatedly
/// with small buffers and must never hold more than a bounded amount of the file in memory.
pub trait ByteSource: Send + Sync {
    /// What to call this source in messages: a path, or a URL without credentials.
    fn name(&self) -> &str;
    /// Total length in bytes.
    fn len(&self) -> u64;
    /// True when the source holds no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Fill `buf` with the bytes at `offset..offset + buf.len()`. Reading past the end is an error
    /// that names the source and says it is truncated.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;
    /// What has been read so far.
    fn stats(&self) -> ReadStats;
    /// How many reads are worth having in flight at once: 1 for a local file (the page cache
    /// answers faster than threads hand work over), the connection pool's size for HTTP, where
    /// each read waits a round trip.
    fn concurrency(&self) -> usize {
        1
    }
    /// The largest gap between two wanted byte ranges that is cheaper to read through than to
    /// skip with a second read.
    fn read_through(&self) -> u64 {
        LOCAL_READ_THROUGH
    }
}

/// [`ByteSource::read_through`] of a local file: a `pread` costs about as much as copying
/// 16 KiB from the page cache.
pub const LOCAL_READ_THROUGH: u64 = 16 * 1024;

/// A local file read with positioned reads into caller buffers.
///
/// We use `pread` rather than mmap on purpose: mapped pages that were touched count in the
/// process's resident set, so streaming a 10 GB file through a map would grow RSS with the model.
pub struct LocalFile {
    path: PathBuf,
    name: String,
    file: File,
    len: u64,
    counter: ReadCounter,
}

/// Refuse anything but a regular file at `path` (looked at without opening it: opening a FIFO
/// waits for a writer, forever if none comes).
pub fn check_regular_file(path: &Path) -> Result<std::fs::Metadata> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        return Err(Error::model(
            path.display().to_string(),
            "is a directory, expected a file",
        ));
    }
    if !meta.is_file() {
        return Err(Error::model(
            path.display().to_string(),
            "is not a regular file (a FIFO, device or socket), expected a file",
        ));
    }
    Ok(meta)
}

/// Read a small file whole (`config.json`, an index), refusing one over `limit` bytes and
/// anything that is not a regular file.
pub fn read_small_file(path: &Path, limit: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let meta = check_regular_file(path)?;
    if meta.len() > limit {
        return Err(Error::model(
            path.display().to_string(),
            format!(
                "is {} bytes, more than the {limit}-byte limit for this file",
                meta.len()
            ),
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    File::open(path)
        .and_then(|f| f.take(limit + 1).read_to_end(&mut bytes))
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > limit {
        return Err(Error::model(
            path.display().to_string(),
            format!("grew past the {limit}-byte limit for this file while it was read"),
        ));
    }
    Ok(bytes)
}

impl LocalFile {
    /// Open `path` for reading; it must be a regular file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        check_regular_file(path)?;
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            return Err(Error::model(
                path.display().to_string(),
                "is a directory, expected a .safetensors file",
            ));
        }
        Ok(LocalFile {
            path: path.to_path_buf(),
            name: path.display().to_string(),
            file,
            len: meta.len(),
            counter: ReadCounter::default(),
        })
    }

    /// The path this file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl ByteSource for LocalFile {
    fn name(&self) -> &str {
        &self.name
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .ok_or_else(|| Error::header(&self.name, "read offset overflows"))?;
        if end > self.len {
            return Err(Error::header(
                &self.name,
                format!(
                    "file is truncated: needs bytes up to {end} but has only {}",
                    self.len
                ),
            ));
        }
        self.file.read_exact_at(buf, offset).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::header(&self.name, "file is truncated (it shrank while being read)")
            } else {
                Error::io(&self.path, e)
            }
        })?;
        self.counter.record(buf.len());
        Ok(())
    }

    fn stats(&self) -> ReadStats {
        self.counter.stats()
    }
}

/// Run `f` on every item with at most `workers` threads at once; results in item order.
pub(crate) fn in_parallel<T: Sync, R: Send>(
    items: &[T],
    workers: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    if workers <= 1 || items.len() <= 1 {
        return items.iter().map(f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<R>>> =
        items.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..workers.min(items.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                *results[i].lock().expect("result slot") = Some(f(item));
            });
        }
    });
    results
        .into_iter()
        .map(|slot| {
            slot.into_inner()
                .expect("result slot")
                .expect("every item ran")
        })
        .collect()
}
