//! Reels in a directory: `file:///dir` or a plain path, local or on a shared filesystem.
//!
//! An upload writes `dir/.uploads/<name with '/' as '%'>.<id>.part` (same filesystem, so the
//! publishing rename is atomic), fsyncs it, renames it to `dir/<name>` and fsyncs the
//! directory. Names never have a dot-leading component, so `.uploads` is never a reel.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{
    check_name, directory_url, not_found, past_end, storage_error, ReelStorage, StoredReel,
    UnfinishedUpload, Upload, UploadBackend,
};
use crate::error::{Error, Result};
use crate::store::owner::OWNER_OBJECT;

const UPLOADS: &str = ".uploads";
const PART: &str = ".part";

/// Reels in a directory.
#[derive(Debug)]
pub struct DirectoryStorage {
    root: PathBuf,
    url: String,
}

impl DirectoryStorage {
    /// Open (creating it if needed) the directory `root`.
    pub fn open(root: &Path) -> Result<DirectoryStorage> {
        fs::create_dir_all(root.join(UPLOADS)).map_err(|e| Error::io(root, e))?;
        Ok(DirectoryStorage {
            root: root.to_path_buf(),
            url: directory_url(root),
        })
    }

    fn path(&self, name: &str) -> Result<PathBuf> {
        check_name(name)?;
        Ok(self.root.join(name))
    }

    fn open_reel(&self, name: &str) -> Result<File> {
        let path = self.path(name)?;
        match File::open(&path) {
            Ok(f) if f.metadata().is_ok_and(|m| m.is_file()) => Ok(f),
            Ok(_) => Err(not_found(&self.url, name)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(not_found(&self.url, name)),
            Err(e) => Err(Error::io(&path, e)),
        }
    }
}

/// A process-wide counter, with the pid and the time, makes upload ids unique.
static NEXT_UPLOAD: AtomicU64 = AtomicU64::new(0);

fn upload_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}-{nanos}-{}",
        std::process::id(),
        NEXT_UPLOAD.fetch_add(1, Ordering::Relaxed)
    )
}

impl ReelStorage for DirectoryStorage {
    fn location(&self) -> String {
        self.url.clone()
    }

    fn begin(&self, name: &str) -> Result<Upload> {
        let target = self.path(name)?;
        let id = upload_id();
        let temp = self
            .root
            .join(UPLOADS)
            .join(format!("{}.{id}{PART}", name.replace('/', "%")));
        let file = File::create(&temp).map_err(|e| Error::io(&temp, e))?;
        Ok(Upload::new(
            &self.url,
            name,
            Box::new(DirectoryUpload {
                file: Some(BufWriter::with_capacity(1 << 20, file)),
                temp,
                target,
                root: self.root.clone(),
            }),
        ))
    }

    fn read_range(&self, name: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        let mut file = self.open_reel(name)?;
        let path = self.root.join(name);
        let size = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|end| end > size)
        {
            return Err(past_end(&self.url, name, offset, buf.len(), size));
        }
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.read_exact(buf))
            .map_err(|e| Error::io(&path, e))
    }

    fn size(&self, name: &str) -> Result<u64> {
        let file = self.open_reel(name)?;
        file.metadata()
            .map(|m| m.len())
            .map_err(|e| Error::io(self.root.join(name), e))
    }

    fn list(&self, prefix: &str) -> Result<Vec<StoredReel>> {
        let mut reels = Vec::new();
        let mut dirs = vec![(self.root.clone(), String::new())];
        while let Some((dir, rel)) = dirs.pop() {
            for entry in fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
                let entry = entry.map_err(|e| Error::io(&dir, e))?;
                let Some(file_name) = entry.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                if file_name.starts_with('.') {
                    continue;
                }
                let name = format!("{rel}{file_name}");
                let meta = entry.metadata().map_err(|e| Error::io(entry.path(), e))?;
                if meta.is_dir() {
                    // Only descend where names under it can match the prefix.
                    let sub = format!("{name}/");
                    if sub.starts_with(prefix) || prefix.starts_with(&sub) {
                        dirs.push((entry.path(), sub));
                    }
                } else if meta.is_file() && name.starts_with(prefix) && check_name(&name).is_ok() {
                    reels.push(StoredReel {
                        name,
                        size: meta.len(),
                        modified: meta.modified().ok(),
                    });
                }
            }
        }
        reels.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(reels)
    }

    fn delete(&self, name: &str) -> Result<()> {
        let path = self.path(name)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(not_found(&self.url, name)),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    fn unfinished(&self) -> Result<Vec<UnfinishedUpload>> {
        let dir = self.root.join(UPLOADS);
        let mut uploads = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let Some(file_name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let Some((name, _id)) = file_name
                .strip_suffix(PART)
                .and_then(|stem| stem.rsplit_once('.'))
            else {
                continue;
            };
            uploads.push(UnfinishedUpload {
                name: name.replace('%', "/"),
                id: file_name,
                modified: entry.metadata().ok().and_then(|m| m.modified().ok()),
            });
        }
        uploads.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        Ok(uploads)
    }

    fn read_owner(&self) -> Result<Option<Vec<u8>>> {
        let path = self.root.join(OWNER_OBJECT);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    fn create_owner(&self, bytes: &[u8]) -> Result<()> {
        let path = self.root.join(OWNER_OBJECT);
        let temp = self
            .root
            .join(UPLOADS)
            .join(format!("owner.{}.tmp", upload_id()));
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&temp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            // A hard link takes the name only if it is free: of two stores claiming at once,
            // one wins and the other reads its owner back.
            match fs::hard_link(&temp, &path) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
                _ => File::open(&self.root).and_then(|d| d.sync_all()),
            }
        };
        let written = write();
        let _ = fs::remove_file(&temp);
        written.map_err(|e| Error::io(&path, e))
    }

    fn unfinished_bytes(&self, upload: &UnfinishedUpload) -> Result<Option<u64>> {
        if upload.id.contains('/') || !upload.id.ends_with(PART) {
            return Ok(None);
        }
        Ok(fs::metadata(self.root.join(UPLOADS).join(&upload.id))
            .ok()
            .map(|m| m.len()))
    }

    fn abort_unfinished(&self, upload: &UnfinishedUpload) -> Result<()> {
        // The id is a file name this storage made; refuse anything else.
        if upload.id.contains('/') || !upload.id.ends_with(PART) {
            return Err(storage_error(
                &self.url,
                format!("upload '{}' is not an upload of this storage", upload.id),
            ));
        }
        let path = self.root.join(UPLOADS).join(&upload.id);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(storage_error(
                &self.url,
                format!("upload '{}' of reel '{}' not found", upload.id, upload.name),
            )),
            Err(e) => Err(Error::io(&path, e)),
        }
    }
}

struct DirectoryUpload {
    file: Option<BufWriter<File>>,
    temp: PathBuf,
    target: PathBuf,
    root: PathBuf,
}

impl UploadBackend for DirectoryUpload {
    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        let file = self.file.as_mut().expect("append after the upload ended");
        file.write_all(bytes).map_err(|e| Error::io(&self.temp, e))
    }

    fn publish(&mut self) -> Result<u64> {
        let file = self.file.take().expect("publish after the upload ended");
        let file = file
            .into_inner()
            .map_err(|e| Error::io(&self.temp, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&self.temp, e))?;
        let size = file.metadata().map_err(|e| Error::io(&self.temp, e))?.len();
        drop(file);
        let parent = self.target.parent().unwrap_or(&self.root);
        fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        fs::rename(&self.temp, &self.target).map_err(|e| Error::io(&self.target, e))?;
        // The rename is durable once the directory holding the new name is synced.
        File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(parent, e))?;
        Ok(size)
    }

    fn abort(&mut self) -> Result<()> {
        self.file = None;
        match fs::remove_file(&self.temp) {
            Ok(()) => Ok(()),
            // Published (renamed away) or already removed.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&self.temp, e)),
        }
    }
}
