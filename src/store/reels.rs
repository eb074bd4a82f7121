//! Where a store's reels live: its own `reels/` directory (the default, unchanged), or a
//! [`ReelStorage`] given by `--reels` / `$WEIGHTREEL_REELS` (`s3://bucket/prefix`, `file:///dir`,
//! a directory), set once when the store is opened ([`Store::with_reels`]).
//!
//! An entry's `reel_file` is `reels/NAME` on every backend; `NAME` is the reel's name in the
//! storage (the key under the S3 prefix, the file in the directory). Encoding into a storage:
//! - the final reel is joined in the encode's locked work directory as today (the Matroska
//!   muxer seeks back to write sizes, cues and the seek head, so it cannot write into a
//!   forward-only upload), then streamed into the storage's upload 8 MiB at a time (an S3
//!   multipart upload: one part in memory at a time);
//! - the name is claimed in the work directory first (as for `reels/`), so that `gc` leaves the
//!   upload and the object alone while that encode runs;
//! - the upload is published before the registry commit, like the rename into `reels/`: a
//!   crash between the two leaves an object no entry names (removed by `gc`), never an entry
//!   without its reel; a failed commit deletes the object. A crash during the upload leaves an
//!   unfinished upload, which `gc` aborts.
//! - the location belongs to one store (its owner object, `owner.rs`): an encode into another
//!   store's location is refused before anything is written, and the first reel put into a
//!   location without an owner claims it.
//!
//! - the store records where its reels are (see [`RecordedReels`]): a command told nothing
//!   uses the record, and another location given to a store holding entries is refused unless
//!   its owner object says it is this store's (the same storage reached another way).
//!
//! `gc` collects in a storage only if this store owns it, and only what is older than its
//! `--min-age` (a running encode of another machine sharing the registry is not seen by its
//! lock); the sweep of every encode never touches a storage.
//!
//! Reading: reels in a directory are opened by path; reels in S3 through
//! [`crate::reel::stored`], with range requests.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::gc::{Kept, Leftover};
use super::objects::{ReelLocation, ReelStorage};
use super::owner::{Owner, OWNER_OBJECT};
use super::registry::Store;
use crate::error::{Error, Result};

/// Bytes read from the joined reel per upload write.
const UPLOAD_CHUNK: usize = 8 << 20;

/// A store's reel storage, when `--reels` names one.
pub struct SharedReels {
    location: ReelLocation,
    storage: Arc<dyn ReelStorage>,
    /// The path prefix its reels are read under (see [`crate::reel::stored::mount`]).
    mount: String,
}

/// Where a store keeps its reels, as its registry records it (table `store_settings` /
/// `wr_store_settings`, key `reels`): the first commit records the location it used, so that
/// later commands (and other machines sharing a PostgreSQL registry) find the reels without
/// being told.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RecordedReels {
    /// The store directory's own `reels/`, recorded as [`OWN_REELS`].
    Own,
    /// A storage, recorded as its URL (`s3://…`, `file:///…`: always with a scheme, so never
    /// [`OWN_REELS`]).
    Storage(ReelLocation),
}

/// What [`Store::verdict_on`] makes of a location given against the record.
enum Verdict {
    /// It is the recorded place (or nothing is recorded yet, which the next commit does).
    Recorded,
    /// The store is empty: the next commit records this new place.
    Record(String),
    /// Another place than the store's: the refusal to report.
    Elsewhere(Error),
}

/// The record of [`RecordedReels::Own`].
const OWN_REELS: &str = "reels/";

impl RecordedReels {
    /// Whether the recorded place can be used from this machine without being told more: a
    /// recorded directory must exist here (opening it would create an empty one).
    fn reachable(&self) -> bool {
        match self {
            RecordedReels::Storage(ReelLocation::Directory(dir)) => dir.is_dir(),
            _ => true,
        }
    }

    fn encode(&self) -> String {
        match self {
            RecordedReels::Own => OWN_REELS.to_string(),
            RecordedReels::Storage(l) => l.url(),
        }
    }

    fn decode(text: &str) -> std::result::Result<RecordedReels, String> {
        if text == OWN_REELS {
            return Ok(RecordedReels::Own);
        }
        if !text.contains("://") {
            return Err("neither 'reels/' nor a URL".into());
        }
        ReelLocation::parse(text)
            .map(RecordedReels::Storage)
            .map_err(|e| e.to_string())
    }
}

/// The reel location `--reels` names; `None` (not given): [`Store::set_reels`] looks at
/// `$WEIGHTREEL_REELS`, then at the store's record, then uses its own `reels/`.
pub fn reels_location(flag: Option<&str>) -> Result<Option<ReelLocation>> {
    flag.map(ReelLocation::parse).transpose()
}

/// The reel location `$WEIGHTREEL_REELS` names, if set.
fn env_reels() -> Result<Option<ReelLocation>> {
    std::env::var("WEIGHTREEL_REELS")
        .ok()
        .filter(|v| !v.is_empty())
        .map(|v| ReelLocation::parse(&v))
        .transpose()
}

/// The storage name of an entry's `reel_file` (`reels/NAME` → `NAME`).
fn storage_name(reel_file: &str) -> &str {
    reel_file.strip_prefix("reels/").unwrap_or(reel_file)
}

impl Store {
    /// Keep this store's reels in `location` (`None`: its own `reels/` directory).
    pub fn with_reels(mut self, location: Option<&ReelLocation>) -> Result<Store> {
        self.set_reels(location)?;
        Ok(self)
    }

    /// [`Store::with_reels`] in place. `None`: where the store recorded its reels, else
    /// `$WEIGHTREEL_REELS`, else its own `reels/`. A location given that differs from the
    /// record is refused (see [`Store::verdict_on`]).
    pub fn set_reels(&mut self, given: Option<&ReelLocation>) -> Result<()> {
        let recorded = self.recorded_reels()?;
        self.reels_to_record = None;
        let chosen = match (given, env_reels()?) {
            (Some(given), _) => given.clone(),
            (None, None) => return self.use_recorded(recorded.as_ref()),
            // `$WEIGHTREEL_REELS` is a default: a store that recorded another place keeps it
            // (a machine set up for a shared store still reads its local stores' own reels),
            // unless that place is a directory missing here, which the variable may name as
            // mounted on this machine (its owner file tells, below).
            (None, Some(from_env)) => match &recorded {
                Some(r)
                    if r.encode() != RecordedReels::Storage(from_env.clone()).encode()
                        && r.reachable() =>
                {
                    return self.use_recorded(recorded.as_ref());
                }
                _ => from_env,
            },
        };
        self.mount_reels(Some(&chosen))?;
        match self.verdict_on(recorded.as_ref(), &chosen)? {
            Verdict::Recorded => Ok(()),
            Verdict::Record(value) => {
                self.reels_to_record = Some(value);
                Ok(())
            }
            Verdict::Elsewhere(refusal) => Err(refusal),
        }
    }

    /// Mount the recorded location (none, or `reels/`: the store's own).
    fn use_recorded(&mut self, recorded: Option<&RecordedReels>) -> Result<()> {
        match recorded {
            Some(RecordedReels::Storage(r)) => {
                self.check_recorded_reachable(r)?;
                self.mount_reels(Some(r))
            }
            _ => self.mount_reels(None),
        }
    }

    /// What to make of `given` against the record. A store has one reel location: an entry's
    /// `reel_file` does not say where its reel is, so reels put elsewhere would be lost to it.
    /// A different location is accepted when the store has no entries (the next commit
    /// records it), and when its owner object says it is this store's (the same shared
    /// directory mounted elsewhere, or an S3 prefix reached by another URL). `given` is mounted.
    fn verdict_on(
        &self,
        recorded: Option<&RecordedReels>,
        given: &ReelLocation,
    ) -> Result<Verdict> {
        let given_record = RecordedReels::Storage(given.clone()).encode();
        // Nothing recorded: the next commit records it (see `reels_record_due`).
        let Some(recorded) = recorded else {
            return Ok(Verdict::Recorded);
        };
        if recorded.encode() == given_record {
            return Ok(Verdict::Recorded);
        }
        let entries = self.list()?.len();
        if entries == 0 {
            return Ok(Verdict::Record(given_record));
        }
        if let Some(r) = &self.reels {
            if let Some(owner) = self.reels_owner(r)? {
                if owner.store == self.identity()? {
                    return Ok(Verdict::Recorded);
                }
            }
        }
        let (kept, instead) = match recorded {
            RecordedReels::Storage(r) => (r.url(), format!("give --reels {}", r.url())),
            RecordedReels::Own => (
                format!("its own reels/ ({})", self.reels_dir().display()),
                "leave --reels out".to_string(),
            ),
        };
        Ok(Verdict::Elsewhere(Error::ReelStorage {
            location: given.url(),
            problem: format!(
                "is not where this store keeps its reels: {} in {kept}, and a store keeps \
                 its reels in one place; {instead}",
                if entries == 1 {
                    "its entry has its reel".to_string()
                } else {
                    format!("its {entries} entries have their reels")
                },
            ),
        }))
    }

    /// The record the next commit writes before its entry: the new location of a store that
    /// was empty when it was given, or, when nothing is recorded yet (a new store, or one
    /// written before stores recorded it), where this handle keeps its reels.
    pub(super) fn reels_record_due(&self) -> Result<Option<String>> {
        if let Some(value) = &self.reels_to_record {
            return Ok(Some(value.clone()));
        }
        if self.registry.recorded_reels()?.is_some() {
            return Ok(None);
        }
        Ok(Some(match &self.reels {
            Some(r) => RecordedReels::Storage(r.location.clone()).encode(),
            None => RecordedReels::Own.encode(),
        }))
    }

    /// What the registry recorded about where the reels live.
    fn recorded_reels(&self) -> Result<Option<RecordedReels>> {
        let Some(text) = self.registry.recorded_reels()? else {
            return Ok(None);
        };
        RecordedReels::decode(&text).map(Some).map_err(|why| {
            Error::store(
                self.location(),
                format!(
                    "the registry's record of where its reels live, '{text}', is damaged: {why}"
                ),
            )
        })
    }

    /// A recorded directory must be there: opening it would create an empty one (on a machine
    /// that mounts the shared directory elsewhere, or not at all).
    fn check_recorded_reachable(&self, recorded: &ReelLocation) -> Result<()> {
        if RecordedReels::Storage(recorded.clone()).reachable() {
            return Ok(());
        }
        Err(Error::ReelStorage {
            location: recorded.url(),
            problem: "is where this store keeps its reels (recorded at its first encode there), \
                      and it is not a directory on this machine; give --reels with where that \
                      directory is here"
                .into(),
        })
    }

    /// Mount `location` as this store's reel storage (`None`: its own `reels/`).
    fn mount_reels(&mut self, location: Option<&ReelLocation>) -> Result<()> {
        self.reels = match location {
            // A shared registry (PostgreSQL) has no reels/ of its own.
            None if self.shared => {
                return Err(Error::store(
                    self.location(),
                    "a PostgreSQL store needs a reel location every machine reaches: give --reels s3://BUCKET/PREFIX or a shared directory (or set WEIGHTREEL_REELS)",
                ))
            }
            None => None,
            Some(location) => {
                let storage: Arc<dyn ReelStorage> = Arc::from(location.open()?);
                let mount = crate::reel::stored::mount(Arc::clone(&storage));
                Some(SharedReels {
                    location: location.clone(),
                    storage,
                    mount,
                })
            }
        };
        Ok(())
    }

    /// Where the reels live, for messages: `file:///…/STORE/reels` or the `--reels` URL.
    pub fn reels_url(&self) -> String {
        match &self.reels {
            None => super::objects::directory_url(&self.reels_dir()),
            Some(r) => r.location.url(),
        }
    }

    /// The reel storage `--reels` named, if any.
    pub fn reel_storage(&self) -> Option<&Arc<dyn ReelStorage>> {
        self.reels.as_ref().map(|r| &r.storage)
    }

    /// The path every reel reader opens for an entry's `reel_file`: a file, or
    /// `LOCATION/NAME` of a storage read with range requests.
    pub fn reel_path(&self, reel_file: &str) -> PathBuf {
        match &self.reels {
            None => self.dir().join(reel_file),
            Some(SharedReels {
                location: ReelLocation::Directory(dir),
                ..
            }) => dir.join(storage_name(reel_file)),
            Some(r) => PathBuf::from(format!("{}/{}", r.mount, storage_name(reel_file))),
        }
    }

    /// Delete the reel `reel_file` names; a missing reel is not an error.
    pub fn delete_reel(&self, reel_file: &str) -> Result<()> {
        match &self.reels {
            None => match std::fs::remove_file(self.dir().join(reel_file)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(Error::io(self.dir().join(reel_file), e))
                }
                _ => Ok(()),
            },
            Some(r) => {
                let name = storage_name(reel_file);
                // A reel already gone is what was wanted; other failures are reported.
                if r.storage.list(name)?.iter().any(|s| s.name == name) {
                    r.storage.delete(name)?;
                }
                Ok(())
            }
        }
    }

    /// Put the joined reel at `joined` where the reels live under a free name
    /// `reels/STEM[-N].mkv`, claimed in the encode's work directory `work` first; returns the
    /// name, which no entry references yet.
    pub(crate) fn put_reel(&self, joined: &Path, stem: &str, work: &Path) -> Result<String> {
        let Some(r) = &self.reels else {
            if self.shared {
                return Err(Error::store(
                    self.location(),
                    "a PostgreSQL store needs a reel location every machine reaches: give --reels s3://BUCKET/PREFIX or a shared directory (or set WEIGHTREEL_REELS)",
                ));
            }
            return self.place_reel(joined, stem, work);
        };
        let referenced = self.reel_files_of_stem(stem)?;
        let existing: std::collections::HashSet<String> =
            r.storage.list(stem)?.into_iter().map(|s| s.name).collect();
        let name = (1..=1000u32)
            .map(|n| match n {
                1 => format!("{stem}.mkv"),
                n => format!("{stem}-{n}.mkv"),
            })
            .find(|n| !existing.contains(n) && !referenced.contains(&format!("reels/{n}")))
            .ok_or_else(|| {
                Error::store(
                    self.dir(),
                    format!("no free reel name for '{stem}' in {}", r.location.url()),
                )
            })?;
        self.claim_reels(r)?;
        let reel_file = format!("reels/{name}");
        let claim = work.join(super::names::CLAIM_FILE);
        std::fs::write(&claim, reel_file.as_bytes()).map_err(|e| Error::io(&claim, e))?;
        let mut upload = r.storage.begin(&name)?;
        let mut file = std::fs::File::open(joined).map_err(|e| Error::io(joined, e))?;
        let mut buf = vec![0u8; UPLOAD_CHUNK];
        loop {
            let n = file.read(&mut buf).map_err(|e| Error::io(joined, e))?;
            if n == 0 {
                break;
            }
            upload.append(&buf[..n])?;
        }
        upload.publish()?;
        Ok(reel_file)
    }

    /// Who owns the reel storage `--reels` names: `None` when it has no owner object yet.
    /// A damaged owner object is an error naming it.
    fn reels_owner(&self, r: &SharedReels) -> Result<Option<Owner>> {
        let Some(bytes) = r.storage.read_owner()? else {
            return Ok(None);
        };
        Owner::decode(&bytes)
            .map(Some)
            .map_err(|why| Error::ReelStorage {
                location: r.location.url(),
                problem: format!(
                "its owner object '{OWNER_OBJECT}' is damaged: {why}; restore it, or remove it \
                 if only one store uses this location (the next encode claims it again)"
            ),
            })
    }

    /// The refusal of a location another store owns.
    fn not_ours(r: &SharedReels, owner: &Owner) -> Error {
        Error::ReelStorage {
            location: r.location.url(),
            problem: format!(
                "belongs to another weightreel store, {}; give this store a location of its \
                 own (another --reels prefix or directory)",
                owner.describe()
            ),
        }
    }

    /// Refuse, before anything is written, an encode into a reel storage another store owns
    /// (a location without an owner yet is claimed by the encode's [`Store::put_reel`]).
    pub fn check_reels_owner(&self) -> Result<()> {
        let Some(r) = &self.reels else {
            return Ok(());
        };
        match self.reels_owner(r)? {
            Some(owner) if owner.store != self.identity()? => Err(Self::not_ours(r, &owner)),
            _ => Ok(()),
        }
    }

    /// Make sure this store owns the reel storage, claiming it if nobody does.
    fn claim_reels(&self, r: &SharedReels) -> Result<()> {
        let me = self.identity()?;
        if self.reels_owner(r)?.is_none() {
            let claimed_unix = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let owner = Owner {
                store: me.clone(),
                claimed_unix,
                described: super::objects::directory_url(self.dir()),
            };
            r.storage.create_owner(&owner.encode())?;
        }
        // Read back: of two stores claiming at once, the one whose object is there won.
        match self.reels_owner(r)? {
            Some(owner) if owner.store == me => Ok(()),
            Some(owner) => Err(Self::not_ours(r, &owner)),
            None => Err(Error::ReelStorage {
                location: r.location.url(),
                problem: format!("the owner object '{OWNER_OBJECT}' just written is not there"),
            }),
        }
    }

    /// In the reel storage `--reels` named, if this store owns it: objects no entry names and
    /// uploads never finished, leaving those a running encode of this store has claimed, and
    /// those younger than `min_age` or of unknown age (the second list, with the reason): an
    /// encode of another machine sharing the registry may be uploading them, or about to
    /// commit the entry that names them.
    pub(super) fn storage_leftovers(
        &self,
        min_age: std::time::Duration,
    ) -> Result<(Vec<Leftover>, Vec<Kept>)> {
        let Some(r) = &self.reels else {
            return Ok((Vec::new(), Vec::new()));
        };
        // Listed before the claims and the registry are read, as for `reels/` (see gc.rs).
        let stored = r.storage.list("")?;
        let unfinished = r.storage.unfinished()?;
        let claimed = super::gc::claimed_names(&self.work_dir());
        let named: std::collections::HashSet<String> = self
            .list()?
            .into_iter()
            .map(|e| e.record.totals.reel_file)
            .collect();
        let owned = |name: &str| {
            let reel_file = format!("reels/{name}");
            claimed.contains(&reel_file) || named.contains(&reel_file)
        };
        // Not this store's location: nothing there is removed, whatever its age.
        let foreign = match self.reels_owner(r)? {
            None => Some("the location has no owner object (no encode of this store put a reel there since owner objects exist)".to_string()),
            Some(owner) if owner.store != self.identity()? => {
                Some(format!("the location belongs to {}", owner.describe()))
            }
            Some(_) => None,
        };
        let now = std::time::SystemTime::now();
        let age_of = |t: Option<std::time::SystemTime>| {
            // A time ahead of this clock counts as just written.
            t.map(|t| now.duration_since(t).unwrap_or_default())
        };
        let mut found = Vec::new();
        for s in stored.into_iter().filter(|s| !owned(&s.name)) {
            found.push((
                Leftover {
                    path: self.reel_path(&format!("reels/{}", s.name)),
                    bytes: s.size,
                    kind: "unreferenced reel",
                    upload: None,
                    age_seconds: None,
                },
                age_of(s.modified),
            ));
        }
        for u in unfinished
            .into_iter()
            .filter(|u| !claimed.contains(&format!("reels/{}", u.name)))
        {
            let age = age_of(u.modified);
            found.push((
                Leftover {
                    path: PathBuf::from(format!(
                        "{}/{} (upload {})",
                        r.location.url(),
                        u.name,
                        u.id
                    )),
                    // Best effort: a size the server cannot tell does not stop the collection.
                    bytes: r.storage.unfinished_bytes(&u).ok().flatten().unwrap_or(0),
                    kind: "orphaned upload",
                    upload: Some(u),
                    age_seconds: None,
                },
                age,
            ));
        }
        let (mut out, mut kept) = (Vec::new(), Vec::new());
        for (mut leftover, age) in found {
            leftover.age_seconds = age.map(|a| a.as_secs());
            let reason = match (&foreign, age) {
                (Some(why), _) => Some(why.clone()),
                (None, None) => Some("age unknown".to_string()),
                (None, Some(age)) if age < min_age => Some(format!(
                    "younger than --min-age {}",
                    super::owner::grace_text(min_age)
                )),
                _ => None,
            };
            match reason {
                Some(reason) => kept.push(Kept { leftover, reason }),
                None => out.push(leftover),
            }
        }
        Ok((out, kept))
    }

    /// True when `path` is a reel in the storage `--reels` names.
    pub(super) fn is_stored(&self, path: &Path) -> bool {
        match &self.reels {
            None => false,
            Some(SharedReels {
                location: ReelLocation::Directory(dir),
                ..
            }) => path.starts_with(dir),
            Some(_) => crate::reel::stored::resolve(path).is_some(),
        }
    }

    /// Remove one leftover of [`Store::storage_leftovers`].
    pub(super) fn remove_stored(&self, leftover: &Leftover) -> Result<()> {
        let Some(r) = &self.reels else {
            return Ok(());
        };
        match &leftover.upload {
            Some(u) => r.storage.abort_unfinished(u),
            None => {
                let name = match crate::reel::stored::resolve(&leftover.path) {
                    Some((_, name)) => name,
                    None => leftover
                        .path
                        .strip_prefix(match &r.location {
                            ReelLocation::Directory(d) => d.as_path(),
                            ReelLocation::S3 { .. } => Path::new(""),
                        })
                        .map(|p| p.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                };
                r.storage.delete(&name)
            }
        }
    }
}
