//! The store facade: what the library calls. It holds a registry backend (`sqlite.rs` in the
//! store directory, or `postgres.rs`) behind [`Registry`], and the local paths: the directory
//! whose `reels/` holds the reels and the work directory of encodes in progress.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::backend::Registry;
use super::fingerprints::FingerprintSource;
use super::sqlite::SqliteRegistry;
use crate::error::{Error, Result};
use crate::fingerprint::Fingerprint;

pub use super::sqlite::SCHEMA_VERSION;

/// The settings an encode ran with: the reel's own record of them (the store is downstream
/// of reels). Entries of one model with equal [`Settings::key`]s replace each other.
pub use crate::reel::ReelSettings as Settings;

/// Totals of one encode.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Values encoded.
    pub params: u64,
    /// Chunks of `chunk_size` values streamed.
    pub chunks: u64,
    /// Frames in the reel.
    pub frames: u64,
    /// Bytes of model data read (headers included).
    pub bytes_read: u64,
    /// Read calls (HTTP requests for the Hub).
    pub read_requests: u64,
    /// Wall-clock encoding time.
    pub encoding_secs: f64,
    /// `params / encoding_secs`.
    pub params_per_sec: f64,
    /// Peak resident memory of the encoding process.
    pub peak_rss_bytes: u64,
    /// Reel file name, relative to the store directory.
    pub reel_file: String,
    /// Reel size.
    pub reel_bytes: u64,
}

/// Everything recorded about one encoded model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryRecord {
    /// The model name as given.
    pub name: String,
    /// `file`, `directory`, `cache` or `hub`.
    pub source_kind: String,
    /// Path or endpoint.
    pub source: String,
    /// Revision asked for (Hub and cache).
    pub revision: Option<String>,
    /// Commit it resolved to (Hub and cache).
    pub commit: Option<String>,
    /// `safetensors` or `safetensors (N shards)`.
    pub format: String,
    /// From `config.json`.
    pub model_type: Option<String>,
    /// From `config.json`.
    pub architectures: Vec<String>,
    /// How it was encoded.
    pub settings: Settings,
    /// What it cost and produced.
    pub totals: Totals,
    /// RFC 3339 UTC time of the commit.
    pub created_at: String,
}

/// One frame's row: where it is and a summary of its values, about 60 bytes in SQLite.
/// Segment maps and quantization are in the reel's manifest; block means and histograms are
/// computed from the reel when asked for (see [`crate::frames`]), so the registry does not
/// grow with what only a look inside one reel needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameRecord {
    /// Frame number in the reel.
    pub index: u64,
    /// Position of its first value in the selection's value sequence.
    pub first_value: u64,
    /// Values in the frame.
    pub count: u64,
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// CRC32 of the frame's planes.
    pub checksum: u32,
    /// NaN and infinite values (left out of the statistics below).
    pub nonfinite: u64,
    /// Smallest finite value.
    pub min: f32,
    /// Largest finite value.
    pub max: f32,
    /// Mean of the finite values.
    pub mean: f32,
    /// Population standard deviation of the finite values.
    pub std: f32,
}

impl FrameRecord {
    /// `count / (width × height)`.
    pub fn efficiency(&self) -> f64 {
        self.count as f64 / (f64::from(self.width) * f64::from(self.height)).max(1.0)
    }
}

/// A stored entry as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntrySummary {
    /// Registry id.
    pub id: i64,
    /// The full record.
    #[serde(flatten)]
    pub record: EntryRecord,
    /// The settings key (`rm --settings-key` takes it whole or short).
    pub settings_key: String,
    /// Its first 8 hex digits, as `list` shows it.
    pub short_key: String,
    /// The model's parameter count (every streamable tensor), from its fingerprint; the
    /// values stored are `totals.params`.
    pub model_params: Option<u64>,
}

/// The guide's statistics block, from the registry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreStats {
    /// Entries.
    pub encoded_models: u64,
    /// Sum of encoded values.
    pub total_parameters: u64,
    /// Sum of chunks.
    pub total_chunks: u64,
    /// Mean encoding time in seconds (0 when empty).
    pub average_encoding_time: f64,
    /// Mean chunks per entry (0 when empty).
    pub average_chunks_per_model: f64,
    /// Distinct chunk sizes of the stored entries, ascending.
    pub chunk_sizes: Vec<u64>,
}

/// An open store.
pub struct Store {
    /// The store directory of a SQLite store (its `reels/` holds the reels unless `--reels`
    /// says otherwise); a local directory of a PostgreSQL one, whose reels are always in
    /// [`Store::with_reels`]'s location.
    pub(super) dir: PathBuf,
    /// Where encodes in progress keep their parts and locks.
    pub(super) work: PathBuf,
    pub(super) registry: Box<dyn Registry>,
    /// Whether other machines may write the registry and `reels/` (PostgreSQL): their claims
    /// on reel names are not visible here, so a sweep leaves `reels/` alone.
    pub(super) shared: bool,
    /// What the store was opened from (a directory, or a PostgreSQL URL that may hold a
    /// password: never shown).
    opened_as: PathBuf,
    /// Where reels live when not in `reels/` (`--reels`; see `reels.rs`).
    pub(super) reels: Option<super::reels::SharedReels>,
    /// The reel location the next commit records in the registry because the store was empty
    /// when another location was given (see `reels.rs`).
    pub(super) reels_to_record: Option<String>,
}

/// Entries as listed, and the rows that could not be read (id and why), which are skipped.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Readable entries, oldest first.
    pub entries: Vec<EntrySummary>,
    /// Rows that could not be read: their id and the problem.
    pub unreadable: Vec<(i64, String)>,
}

/// Reels in `dir/reels`, for the check that a registry was not lost while its reels remain.
fn reel_count(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("reels")).map_or(0, |rd| {
        rd.filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "mkv"))
            .count()
    })
}

/// Refuse a store whose registry is missing or empty while it still holds reels: opening it
/// would start a new, empty registry and leave every reel unreferenced.
fn check_registry_present(dir: &Path) -> Result<()> {
    // A store's own reels/ directory given as a store would grow a store inside the store.
    if dir.file_name().is_some_and(|n| n == "reels")
        && dir
            .parent()
            .is_some_and(|p| p.join("registry.sqlite").is_file())
    {
        let parent = dir.parent().expect("checked");
        return Err(Error::store(
            dir,
            format!(
                "is the reels directory of the store at {}; give that store instead",
                parent.display()
            ),
        ));
    }
    let db = dir.join("registry.sqlite");
    let len = match std::fs::metadata(&db) {
        Ok(m) if !m.is_file() => {
            return Err(Error::store(dir, "registry.sqlite is not a regular file"));
        }
        Ok(m) => Some(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(&db, e)),
    };
    let reels = reel_count(dir);
    if reels > 0 && len.is_none_or(|l| l == 0) {
        return Err(Error::store(
            dir,
            format!(
                "registry.sqlite is {} but reels/ holds {reels} reel(s): the registry was lost or truncated; restore it (nothing was changed)",
                if len.is_none() { "missing" } else { "empty" }
            ),
        ));
    }
    Ok(())
}

impl Store {
    /// [`Store::open_read_only`] for commands that only report on a store (`list`, `stats`,
    /// `search`…): a directory without a registry is an error that says so (and names the
    /// default store when there is one), not an empty store. A `postgres://` "directory" opens
    /// that registry (see [`Store::open_url`]).
    pub fn open_existing(dir: &Path) -> Result<Store> {
        if let Some(url) = super::registry_url(dir) {
            return super::open_postgres(url, false);
        }
        if !dir.join("registry.sqlite").is_file() {
            check_registry_present(dir)?;
            let default = Path::new(super::DEFAULT_STORE_DIR);
            let hint = if dir != default && default.join("registry.sqlite").is_file() {
                format!(" (there is one at ./{})", super::DEFAULT_STORE_DIR)
            } else {
                String::new()
            };
            return Err(Error::store(
                dir,
                format!("no store here (no registry.sqlite){hint}; encode a model into it first"),
            ));
        }
        Store::open_read_only(dir)
    }

    /// Open the store at `dir` for reading only: nothing is created, migrated or written, so
    /// it works on a read-only mount and for users who may not write the store. A missing
    /// store reads as empty. A version-1 registry reads (its entries are the same).
    pub fn open_read_only(dir: &Path) -> Result<Store> {
        if let Some(url) = super::registry_url(dir) {
            return super::open_postgres(url, false);
        }
        if dir.exists() && !dir.is_dir() {
            return Err(Error::store(dir, "exists and is not a directory"));
        }
        check_registry_present(dir)?;
        let registry = SqliteRegistry::open_read_only(dir)?;
        Ok(Store::local(dir, Box::new(registry)))
    }

    /// Open (creating with parents) the store at `dir`; a `postgres://` "directory" opens
    /// (creating or migrating) that registry (see [`Store::open_url`]).
    pub fn open(dir: &Path) -> Result<Store> {
        if let Some(url) = super::registry_url(dir) {
            return super::open_postgres(url, true);
        }
        if dir.exists() && !dir.is_dir() {
            return Err(Error::store(dir, "exists and is not a directory"));
        }
        check_registry_present(dir)?;
        std::fs::create_dir_all(dir.join("reels")).map_err(|e| Error::io(dir, e))?;
        let registry = SqliteRegistry::open(dir)?;
        Ok(Store::local(dir, Box::new(registry)))
    }

    /// Open (creating or migrating) the store `location` names: a directory (SQLite), or
    /// `postgres://user[:password]@host:port/db` for a PostgreSQL registry, whose reels are
    /// where `$WEIGHTREEL_REELS` says (or [`Store::with_reels`] later; required) and whose
    /// encodes keep their work in `$WEIGHTREEL_WORK`, else `~/.cache/weightreel/work`. The
    /// same as [`Store::open`], which takes either too.
    pub fn open_url(location: &str) -> Result<Store> {
        Store::open(Path::new(location))
    }

    /// Open (creating or migrating) the PostgreSQL registry at `url` with reels in the
    /// directory `reels` and encodes' work in `work`, whatever the environment says.
    #[cfg(feature = "queue")]
    pub fn open_postgres(url: &str, reels: &Path, work: &Path) -> Result<Store> {
        super::postgres::open_postgres_at(url, reels, work, true)
    }

    /// A store directory's store: reels in `dir/reels`, work in `dir/work`.
    fn local(dir: &Path, registry: Box<dyn Registry>) -> Store {
        Store {
            dir: dir.to_path_buf(),
            work: dir.join("work"),
            registry,
            shared: false,
            opened_as: dir.to_path_buf(),
            reels: None,
            reels_to_record: None,
        }
    }

    /// A store of `registry` shared with other machines (PostgreSQL): `dir` is local (its
    /// reels come from [`Store::with_reels`]), encodes' work is in `work`.
    pub fn with_registry(registry: Box<dyn Registry>, dir: &Path, work: &Path) -> Store {
        Store {
            dir: dir.to_path_buf(),
            work: work.to_path_buf(),
            registry,
            shared: true,
            opened_as: dir.to_path_buf(),
            reels: None,
            reels_to_record: None,
        }
    }

    #[cfg(feature = "queue")]
    pub(super) fn set_opened_as(&mut self, location: &Path) {
        self.opened_as = location.to_path_buf();
    }

    /// Another read-only handle on the same store (for a thread of its own).
    pub fn reopen_read_only(&self) -> Result<Store> {
        if self.shared && super::registry_url(&self.opened_as).is_none() {
            // Opened with explicit directories (`Store::open_postgres`): not reopenable
            // from a location.
            return Err(Error::store(
                self.location(),
                "this store was opened from explicit directories and cannot be reopened",
            ));
        }
        Store::open_read_only(&self.opened_as)
    }

    /// The registry backend.
    pub fn registry(&self) -> &dyn Registry {
        self.registry.as_ref()
    }

    /// Where the registry is, for messages (a PostgreSQL URL without its password).
    pub fn registry_label(&self) -> String {
        self.registry.label()
    }

    /// The store as the user names it, for messages: its directory, or the PostgreSQL URL
    /// without its password.
    pub fn location(&self) -> String {
        if self.shared {
            self.registry.label()
        } else {
            self.dir.display().to_string()
        }
    }

    /// The store directory (for a PostgreSQL store, the directory holding `reels/`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where reels live.
    pub fn reels_dir(&self) -> PathBuf {
        self.dir.join("reels")
    }

    /// Where unfinished encodes keep their completed parts.
    pub fn work_dir(&self) -> PathBuf {
        self.work.clone()
    }

    /// Commit `entry` and its frames in one transaction, replacing the entry with the same name
    /// and settings. Returns the new id and the reel file of the replaced entry, which the caller
    /// deletes after this returns.
    pub fn commit_entry<I>(
        &mut self,
        entry: &EntryRecord,
        frames: I,
    ) -> Result<(i64, Option<String>)>
    where
        I: IntoIterator<Item = Result<FrameRecord>>,
    {
        self.commit_entry_with(entry, frames, None, None)
    }

    /// [`Store::commit_entry`], storing the model's fingerprint in the same transaction.
    pub fn commit_entry_with<I>(
        &mut self,
        entry: &EntryRecord,
        frames: I,
        fingerprint: Option<(&FingerprintSource, &Fingerprint)>,
        receipt: Option<&str>,
    ) -> Result<(i64, Option<String>)>
    where
        I: IntoIterator<Item = Result<FrameRecord>>,
    {
        // Before the entry, so that an error recording it is reported before anything is
        // committed (a record the commit then does not follow names a location that holds none
        // of the store's entries: harmless, see `reels.rs`).
        if let Some(value) = self.reels_record_due()? {
            self.registry.record_reels(&value)?;
            self.reels_to_record = None;
        }
        let mut frames = frames.into_iter();
        self.registry
            .commit(entry, &mut frames, fingerprint, receipt)
    }

    /// The entry committed with `tag` (see [`crate::encode::EncodeOptions::receipt`]), if it is
    /// still in the store. A store that never took a receipt has none.
    pub fn receipt(&self, tag: &str) -> Result<Option<i64>> {
        self.registry.receipt(tag)
    }

    /// All readable entries, oldest first (see [`Store::listing`] for the unreadable ones).
    pub fn list(&self) -> Result<Vec<EntrySummary>> {
        Ok(self.listing()?.entries)
    }

    /// All entries, oldest first, and the rows that could not be read: a damaged row is
    /// reported and skipped, so it does not hide the others.
    pub fn listing(&self) -> Result<Listing> {
        self.registry.listing()
    }

    /// The entry with registry id `id`, if there is one and it can be read.
    pub fn entry(&self, id: i64) -> Result<Option<EntrySummary>> {
        self.registry.entry(id)
    }

    /// Entries named `name`.
    pub fn find(&self, name: &str) -> Result<Vec<EntrySummary>> {
        self.registry.entries_named(name)
    }

    /// Reel files of entries that begin with `reels/STEM` (the names [`Store::place_reel`] and
    /// [`Store::put_reel`] must not take).
    pub(super) fn reel_files_of_stem(
        &self,
        stem: &str,
    ) -> Result<std::collections::HashSet<String>> {
        Ok(self
            .registry
            .reel_files_starting(&format!("reels/{stem}"))?
            .into_iter()
            .collect())
    }

    /// The frame rows of entry `id`, in order.
    pub fn frames(&self, id: i64) -> Result<Vec<FrameRecord>> {
        self.registry.frames(id)
    }

    /// Remove every entry named `name` (or only the one with `settings_key`) and their reels.
    /// Returns how many entries were removed.
    pub fn remove(&mut self, name: &str, settings_key: Option<&str>) -> Result<usize> {
        let removed = self.registry.remove(name, settings_key)?;
        if removed.reels.is_empty() {
            return Ok(removed.fingerprints);
        }
        for file in &removed.reels {
            self.delete_reel(file)?;
        }
        Ok(removed.reels.len())
    }

    /// The statistics block's numbers.
    pub fn stats(&self) -> Result<StoreStats> {
        let entries = self.list()?;
        let n = entries.len() as u64;
        let total_parameters = entries.iter().map(|e| e.record.totals.params).sum();
        let total_chunks: u64 = entries.iter().map(|e| e.record.totals.chunks).sum();
        let total_time: f64 = entries.iter().map(|e| e.record.totals.encoding_secs).sum();
        let mut chunk_sizes: Vec<u64> = entries
            .iter()
            .map(|e| e.record.settings.chunk_size)
            .collect();
        chunk_sizes.sort_unstable();
        chunk_sizes.dedup();
        Ok(StoreStats {
            encoded_models: n,
            total_parameters,
            total_chunks,
            average_encoding_time: if n == 0 { 0.0 } else { total_time / n as f64 },
            average_chunks_per_model: if n == 0 {
                0.0
            } else {
                total_chunks as f64 / n as f64
            },
            chunk_sizes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SCHEMA;
    use rusqlite::Connection;

    fn settings(chunk: u64) -> Settings {
        Settings {
            revision: "main".into(),
            chunk_size: chunk,
            layers: "all".into(),
            include: None,
            exclude: None,
            max_params: Some(40_000),
            sample: "stratified".into(),
            mode: "u16".into(),
            method: "chunk".into(),
            max_frame_values: 1 << 24,
            min_efficiency: 0.5,
            pyramid_finest: 8,
        }
    }

    fn entry(name: &str, chunk: u64, params: u64, reel: &str) -> EntryRecord {
        EntryRecord {
            name: name.into(),
            source_kind: "file".into(),
            source: "/x".into(),
            revision: None,
            commit: None,
            format: "safetensors".into(),
            model_type: Some("bert".into()),
            architectures: vec!["BertModel".into()],
            settings: settings(chunk),
            totals: Totals {
                params,
                chunks: params.div_ceil(chunk),
                frames: params.div_ceil(chunk),
                encoding_secs: 2.0,
                reel_file: reel.into(),
                ..Totals::default()
            },
            created_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    fn frames(n: u64) -> Vec<Result<FrameRecord>> {
        (0..n)
            .map(|i| {
                Ok(FrameRecord {
                    index: i,
                    first_value: i * 8000,
                    count: 8000,
                    width: 128,
                    height: 64,
                    checksum: i as u32,
                    nonfinite: 0,
                    min: -1.5,
                    max: 2.25,
                    mean: 0.125,
                    std: 0.5,
                })
            })
            .collect()
    }

    #[test]
    fn same_settings_replace_and_different_settings_add() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let (id1, replaced) = store
            .commit_entry(&entry("gpt2", 8000, 40_000, "reels/a.mkv"), frames(5))
            .unwrap();
        assert!(replaced.is_none());
        let (id2, replaced) = store
            .commit_entry(&entry("gpt2", 8000, 40_000, "reels/b.mkv"), frames(5))
            .unwrap();
        assert_eq!(replaced.as_deref(), Some("reels/a.mkv"));
        assert_ne!(id1, id2);
        store
            .commit_entry(&entry("gpt2", 5000, 40_000, "reels/c.mkv"), frames(8))
            .unwrap();
        let list = store.list().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(store.frames(id2).unwrap().len(), 5);
        assert!(
            store.frames(id1).unwrap().is_empty(),
            "replaced entry's frames are gone"
        );
        let stats = store.stats().unwrap();
        assert_eq!(stats.encoded_models, 2);
        assert_eq!(stats.total_parameters, 80_000);
        assert_eq!(stats.total_chunks, 13);
        assert_eq!(stats.chunk_sizes, vec![5000, 8000]);
        assert!((stats.average_chunks_per_model - 6.5).abs() < 1e-9);
    }

    #[test]
    fn failed_frame_stream_leaves_store_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store
            .commit_entry(&entry("bert", 8000, 40_000, "reels/a.mkv"), frames(5))
            .unwrap();
        let mut bad = frames(3);
        bad.push(Err(Error::Frame("boom".into())));
        assert!(store
            .commit_entry(&entry("bert", 8000, 40_000, "reels/b.mkv"), bad)
            .is_err());
        let list = store.list().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].record.totals.reel_file, "reels/a.mkv");
        assert_eq!(store.frames(list[0].id).unwrap().len(), 5);
    }

    #[test]
    fn remove_deletes_rows_and_reels() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        std::fs::write(dir.path().join("reels/a.mkv"), b"x").unwrap();
        store
            .commit_entry(&entry("bert", 8000, 40_000, "reels/a.mkv"), frames(2))
            .unwrap();
        assert_eq!(store.remove("bert", None).unwrap(), 1);
        assert!(!dir.path().join("reels/a.mkv").exists());
        assert!(store.list().unwrap().is_empty());
        assert_eq!(store.remove("bert", None).unwrap(), 0);
    }

    #[test]
    fn newer_schema_is_refused_and_file_is_not_a_store() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let conn = Connection::open(dir.path().join("registry.sqlite")).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        let err = Store::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("newer"), "{err}");
        let file = dir.path().join("plain-file");
        std::fs::write(&file, b"x").unwrap();
        let err = Store::open(&file).err().unwrap().to_string();
        assert!(err.contains("not a directory"), "{err}");
    }

    #[test]
    fn concurrent_writers_both_commit() {
        // No store yet: the writers also race to create it.
        let dir = tempfile::tempdir().unwrap();
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let path = dir.path().to_path_buf();
                std::thread::spawn(move || {
                    let mut store = Store::open(&path).unwrap();
                    for j in 0..5 {
                        let name = format!("model-{i}-{j}");
                        store
                            .commit_entry(&entry(&name, 8000, 16_000, "reels/x.mkv"), frames(200))
                            .unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(Store::open(dir.path()).unwrap().list().unwrap().len(), 20);
    }

    #[test]
    fn version_1_registry_migrates_with_its_entries_and_frame_summaries() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("reels")).unwrap();
        let conn = Connection::open(dir.path().join("registry.sqlite")).unwrap();
        // The version-1 schema, as the previous release wrote it.
        let v1 = SCHEMA
            .split("CREATE TABLE IF NOT EXISTS frames")
            .next()
            .unwrap()
            .to_string()
            + "CREATE TABLE frames (model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
                 idx INTEGER NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL,
                 count INTEGER NOT NULL, efficiency REAL NOT NULL, checksum INTEGER NOT NULL,
                 meta_json TEXT NOT NULL, PRIMARY KEY (model_id, idx)) WITHOUT ROWID;";
        conn.execute_batch(&v1).unwrap();
        let old = entry("gpt2", 8000, 16_000, "reels/a.mkv");
        let json = serde_json::to_string(&old.settings).unwrap();
        conn.execute(
            "INSERT INTO models (name, settings_key, settings_json, source_kind, source, format,
                architectures, chunk_size, layers, sample, mode, method, params, chunks, frames,
                bytes_read, read_requests, encoding_secs, params_per_sec, peak_rss_bytes,
                reel_file, reel_bytes, created_at)
             VALUES ('gpt2', '0123456789ab', ?1, 'file', '/x', 'safetensors', '[]', 8000, 'all',
                'stratified', 'u16', 'chunk', 16000, 2, 2, 0, 0, 2.0, 8000.0, 0, 'reels/a.mkv', 10,
                '2026-01-01T00:00:00Z')",
            [json],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO frames VALUES (1, 1, 128, 64, 8000, 0.97, 7,
                '{\"first_value\":8000,\"meta\":{\"stats\":{\"count\":8000,\"nonfinite\":3,\"min\":-1.5,\"max\":2.0,\"mean\":0.25,\"std\":0.5,\"histogram\":[1]}}}')",
            [],
        )
        .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        drop(conn);

        let store = Store::open(dir.path()).unwrap();
        let list = store.list().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].record.totals.reel_file, "reels/a.mkv");
        let key: String = Connection::open(dir.path().join("registry.sqlite"))
            .unwrap()
            .query_row("SELECT settings_key FROM models", [], |r| r.get(0))
            .unwrap();
        assert_eq!(key, old.settings.key(), "keys are recomputed");
        let frames = store.frames(list[0].id).unwrap();
        assert_eq!(
            frames,
            vec![FrameRecord {
                index: 1,
                first_value: 8000,
                count: 8000,
                width: 128,
                height: 64,
                checksum: 7,
                nonfinite: 3,
                min: -1.5,
                max: 2.0,
                mean: 0.25,
                std: 0.5,
            }]
        );
    }

    #[test]
    fn settings_key_is_an_explicit_function_of_the_settings() {
        let base = settings(8000);
        let key = base.key();
        assert!(key.starts_with("v3-") && key.len() == 15, "{key}");
        let mut other = base.clone();
        other.include = Some("a|b".into());
        assert_ne!(other.key(), key);
        let mut other = base.clone();
        other.min_efficiency = 0.7;
        assert_ne!(other.key(), key);
        // The key does not depend on how the struct serializes.
        let json = serde_json::to_string(&base).unwrap();
        let reparsed: Settings = serde_json::from_str(&json).unwrap();
        assert_eq!(reparsed.key(), key);
    }
}
