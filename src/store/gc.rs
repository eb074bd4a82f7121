//! Leftovers of encodes that did not finish, and what removes them.
//!
//! An encode owns `work/<model>-<key>/` (its parts, the lock it holds while running, the
//! final reel while it is joined, with `.tmp` and `.packets.tmp` beside it) and, from the
//! moment it claims a name until its entry is committed, the new reel in `reels/` (see
//! `names.rs`). A crash, `kill -9` or a full disk can leave any of them behind.
//! Whether their encode is still running is told by its lock: a lock nobody holds belongs to
//! no live encode.
//!
//! - Temporary files and complete reels that no entry names, whose encode is not running, are
//!   garbage: every encode removes them when it opens the store ([`Store::sweep`]).
//! - Work directories of interrupted encodes are kept, since re-running the command resumes
//!   from them; `weightreel gc` removes them too ([`Store::collect_garbage`]), and `list`
//!   mentions them.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::registry::Store;
use crate::error::{Error, Result};

/// Something that belongs to no entry and no running encode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Leftover {
    /// The file or directory.
    pub path: PathBuf,
    /// Bytes it takes.
    pub bytes: u64,
    /// `temporary file`, `unreferenced reel`, `interrupted encode` or `orphaned upload`.
    pub kind: &'static str,
    /// The upload, for an orphaned upload in the reel storage (`--reels`).
    #[serde(skip)]
    pub upload: Option<super::objects::UnfinishedUpload>,
    /// How long ago it was last written, for what lies in a reel storage (`None`: unknown, or
    /// not in a reel storage).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_seconds: Option<u64>,
}

/// Something in a reel storage that `gc` leaves, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kept {
    #[serde(flatten)]
    pub leftover: Leftover,
    /// `younger than --min-age 24h`, `age unknown`, `the location belongs to store …`.
    pub reason: String,
}

/// What a sweep or `gc` removed (or, dry, would remove).
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    /// What was (or would be) removed.
    pub removed: Vec<Leftover>,
    /// Bytes freed (or that would be).
    pub bytes: u64,
    /// Nothing was removed: only reported.
    pub dry_run: bool,
    /// What `gc` found in the reel storage (`--reels`) and leaves there.
    pub kept: Vec<Kept>,
}

/// Bytes under `path` (a file, or a directory's files).
fn size_of(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path).map_or(0, |rd| {
        rd.filter_map(|e| e.ok()).map(|e| size_of(&e.path())).sum()
    })
}

/// True when an encode holds the lock of work directory `dir` right now.
fn is_live(dir: &Path) -> bool {
    match File::open(dir.join("lock")) {
        Ok(f) => f.try_lock().is_err(),
        // No lock file: an encode creates it first thing, so nothing runs there.
        Err(_) => false,
    }
}

/// `<slug>-<8 hex>.mkv` or `<slug>-<8 hex>-<n>.mkv`: a reel name this build gives.
fn is_short_reel_name(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".mkv") else {
        return false;
    };
    let hex8 = |t: &str| t.len() == 8 && t.bytes().all(|b| b.is_ascii_hexdigit());
    let mut parts = stem.rsplit('-');
    match (parts.next(), parts.next()) {
        (Some(last), _) if hex8(last) => true,
        (Some(n), Some(key)) => n.parse::<u32>().is_ok() && hex8(key),
        _ => false,
    }
}

/// Reels that running encodes are placing (named by the claim in their locked work
/// directory, see `names.rs`).
fn claimed_reels(store: &Path, work: &Path) -> HashSet<PathBuf> {
    std::fs::read_dir(work)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|dir| dir.is_dir() && is_live(dir))
        .filter_map(|dir| std::fs::read_to_string(dir.join(super::names::CLAIM_FILE)).ok())
        .map(|name| store.join(name.trim()))
        .collect()
}

/// The reel files (`reels/NAME`) that running encodes of the store whose work directory is
/// `work` have claimed.
pub(super) fn claimed_names(work: &Path) -> HashSet<String> {
    std::fs::read_dir(work)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|dir| dir.is_dir() && is_live(dir))
        .filter_map(|dir| std::fs::read_to_string(dir.join(super::names::CLAIM_FILE)).ok())
        .map(|name| name.trim().to_string())
        .collect()
}

/// The work directory name (`<model>-<key>`) a reel file name of an older build belongs to: the reel is named
/// `<model>-<key>-<millis>-<pid>.mkv[.tmp|.packets.tmp]`.
fn owner_of(reel_name: &str) -> Option<String> {
    let stem = reel_name.split(".mkv").next()?;
    let mut parts = stem.rsplitn(3, '-');
    let (_pid, _millis) = (parts.next()?, parts.next()?);
    parts.next().map(str::to_string)
}

impl Store {
    /// The store's leftovers; interrupted encodes' work directories only if asked.
    pub fn leftovers(&self, interrupted: bool) -> Result<Vec<Leftover>> {
        let work = self.work_dir();
        // The order matters against a running encode: it claims a name (`names::CLAIM_FILE`)
        // before the reel appears, and drops the claim only after the registry names the
        // reel. So a reel listed here is claimed when the claims are read next, or named
        // when the registry is read after that.
        // A shared store's `reels/` (PostgreSQL registry) is written by other machines too,
        // whose claims are in their own work directories: only their registry commit tells
        // what is theirs, so nothing there is taken for garbage here.
        let reels: Vec<std::fs::DirEntry> = if self.shared {
            Vec::new()
        } else {
            std::fs::read_dir(self.reels_dir())
                .map(|rd| rd.filter_map(|e| e.ok()).collect())
                .unwrap_or_default()
        };
        let claimed = claimed_reels(self.dir(), &work);
        // Only the reel files (one column), not the entries: the sweep runs before every encode.
        let named: HashSet<PathBuf> = self
            .registry
            .reel_files_starting("")?
            .into_iter()
            .map(|file| self.dir().join(file))
            .collect();
        let live = |owner: &str| is_live(&work.join(owner));
        let mut out = Vec::new();
        {
            for entry in reels {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().to_string();
                if named.contains(&path)
                    || claimed.contains(&path)
                    || !entry.file_type().is_ok_and(|t| t.is_file())
                {
                    continue;
                }
                // Reels of older builds were joined in reels/ under `<model>-<key>-<millis>-<pid>`,
                // owned by their work directory; files of other names are not ours to remove.
                match owner_of(&name) {
                    Some(owner) if live(&owner) => continue,
                    Some(_) => {}
                    None if is_short_reel_name(&name) => {}
                    None => continue,
                }
                let kind = if name.ends_with(".tmp") {
                    "temporary file"
                } else if name.ends_with(".mkv") {
                    "unreferenced reel"
                } else {
                    continue;
                };
                out.push(Leftover {
                    bytes: size_of(&path),
                    path,
                    kind,
                    upload: None,
                    age_seconds: None,
                });
            }
        }
        for dir in self.stale_work_dirs() {
            if interrupted {
                out.push(Leftover {
                    bytes: size_of(&dir),
                    path: dir,
                    kind: "interrupted encode",
                    upload: None,
                    age_seconds: None,
                });
                continue;
            }
            // A part being written when the encode died is never resumed from.
            for f in std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok())
            {
                let p = f.path();
                if p.to_string_lossy().ends_with(".tmp") {
                    out.push(Leftover {
                        bytes: size_of(&p),
                        path: p,
                        kind: "temporary file",
                        upload: None,
                        age_seconds: None,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Interrupted encodes whose work is kept for a resume.
    pub fn interrupted(&self) -> Result<Vec<Leftover>> {
        // Only the work directories: `list` calls this, and the reels' side of `leftovers`
        // lists every entry again (half of `list`'s time on a store of 100 entries).
        Ok(self
            .stale_work_dirs()
            .into_iter()
            .map(|dir| Leftover {
                bytes: size_of(&dir),
                path: dir,
                kind: "interrupted encode",
                upload: None,
                age_seconds: None,
            })
            .collect())
    }

    /// Work directories that no running encode owns, sorted.
    fn stale_work_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(self.work_dir())
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|dir| dir.is_dir() && !is_live(dir))
            .collect();
        dirs.sort();
        dirs
    }

    /// Remove what belongs to no entry and no running encode, keeping interrupted encodes'
    /// work (called by every encode).
    pub fn sweep(&self) -> Result<GcReport> {
        self.remove_leftovers(self.leftovers(false)?, false)
    }

    /// `weightreel gc`: remove (or with `dry_run`, list) every leftover, interrupted encodes
    /// included, and in the reel storage `--reels` names, if this store owns it, objects no
    /// entry names and uploads never finished that are older than `min_age` (see `reels.rs`).
    /// The sweep of every encode never touches a reel storage.
    pub fn collect_garbage(&self, dry_run: bool, min_age: std::time::Duration) -> Result<GcReport> {
        let mut leftovers = self.leftovers(true)?;
        let (stored, kept) = self.storage_leftovers(min_age)?;
        leftovers.extend(stored);
        let mut report = self.remove_leftovers(leftovers, dry_run)?;
        report.kept = kept;
        Ok(report)
    }

    fn remove_leftovers(&self, leftovers: Vec<Leftover>, dry_run: bool) -> Result<GcReport> {
        let mut report = GcReport {
            dry_run,
            ..GcReport::default()
        };
        for l in leftovers {
            if !dry_run && (l.upload.is_some() || self.is_stored(&l.path)) {
                self.remove_stored(&l)?;
            } else if !dry_run {
                let removed = if l.path.is_dir() {
                    std::fs::remove_dir_all(&l.path)
                } else {
                    std::fs::remove_file(&l.path)
                };
                match removed {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(Error::io(&l.path, e)),
                }
            }
            report.bytes += l.bytes;
            report.removed.push(l);
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::owner_of;

    #[test]
    fn reel_names_give_their_work_directory() {
        assert_eq!(
            owner_of("gpt2-v2-0123456789ab-1796133064286-18399.mkv.packets.tmp").as_deref(),
            Some("gpt2-v2-0123456789ab")
        );
        assert_eq!(
            owner_of("a-b-v2-0123456789ab-1-2.mkv").as_deref(),
            Some("a-b-v2-0123456789ab")
        );
        assert_eq!(owner_of("stray.mkv"), None);
    }
}
