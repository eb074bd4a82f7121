//! The SQLite registry.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};

use super::fingerprints::FingerprintSource;
use crate::error::{Error, Result};
use crate::fingerprint::Fingerprint;

/// Version of the registry schema this build writes and reads.
pub const SCHEMA_VERSION: i64 = 3;

/// The frames table of schema version 2 (a macro, so that [`SCHEMA`] and the version-1
/// migration share one definition).
macro_rules! frames_table {
    () => {
        "CREATE TABLE IF NOT EXISTS frames (
    model_id    INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    idx         INTEGER NOT NULL,
    first_value INTEGER NOT NULL,
    count       INTEGER NOT NULL,
    width       INTEGER NOT NULL,
    height      INTEGER NOT NULL,
    checksum    INTEGER NOT NULL,
    nonfinite   INTEGER NOT NULL,
    min         REAL NOT NULL,
    max         REAL NOT NULL,
    mean        REAL NOT NULL,
    std         REAL NOT NULL,
    PRIMARY KEY (model_id, idx)
) WITHOUT ROWID;
"
    };
}

const SCHEMA: &str = concat!(
    "
CREATE TABLE IF NOT EXISTS models (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT NOT NULL,
    settings_key    TEXT NOT NULL,
    settings_json   TEXT NOT NULL,
    source_kind     TEXT NOT NULL,
    source          TEXT NOT NULL,
    revision        TEXT,
    commit_sha      TEXT,
    format          TEXT NOT NULL,
    model_type      TEXT,
    architectures   TEXT NOT NULL,
    chunk_size      INTEGER NOT NULL,
    layers          TEXT NOT NULL,
    include_re      TEXT,
    exclude_re      TEXT,
    max_params      INTEGER,
    sample          TEXT NOT NULL,
    mode            TEXT NOT NULL,
    method          TEXT NOT NULL,
    params          INTEGER NOT NULL,
    chunks          INTEGER NOT NULL,
    frames          INTEGER NOT NULL,
    bytes_read      INTEGER NOT NULL,
    read_requests   INTEGER NOT NULL,
    encoding_secs   REAL NOT NULL,
    params_per_sec  REAL NOT NULL,
    peak_rss_bytes  INTEGER NOT NULL,
    reel_file       TEXT NOT NULL,
    reel_bytes      INTEGER NOT NULL,
    created_at      TEXT NOT NULL,
    UNIQUE (name, settings_key)
);
",
    frames_table!(),
    // Schema version 3: one fingerprint per model name (see `fingerprints.rs`), whether it came
    // with an encode or alone (`weightreel fingerprint`). What search scans for every model
    // (~0.7 KB) is a table of its own, so a scan does not walk the bodies' pages.
    "
CREATE TABLE IF NOT EXISTS fingerprints (
    name        TEXT PRIMARY KEY,
    source      TEXT NOT NULL,
    revision    TEXT,
    model_type  TEXT,
    params      INTEGER NOT NULL,
    tensors     INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    body        BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS fingerprint_index (
    name        TEXT PRIMARY KEY REFERENCES fingerprints(name) ON DELETE CASCADE,
    params      INTEGER NOT NULL,
    sketch      BLOB NOT NULL,
    features    BLOB NOT NULL
) WITHOUT ROWID;
"
);

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

/// Receipts of commits made for someone else's bookkeeping (the job queue's jobs): created
/// when the first one is written, so stores that never take one are unchanged. A receipt
/// whose entry was replaced or removed names no entry (the lookup joins `models`).
const RECEIPTS_TABLE: &str = "CREATE TABLE IF NOT EXISTS receipts (
    tag      TEXT PRIMARY KEY,
    model_id INTEGER NOT NULL
) WITHOUT ROWID;";

/// An open store.
pub struct Store {
    pub(super) dir: PathBuf,
    pub(super) conn: Connection,
    /// Whether the registry has the fingerprint tables (schema 3; a read-only store of an
    /// older schema is never migrated), looked up once.
    pub(super) has_fingerprints: std::cell::OnceCell<bool>,
    /// Where reels live when not in `reels/` (`--reels`; see `reels.rs`).
    pub(super) reels: Option<super::reels::SharedReels>,
}

/// Version 1 kept every frame's pyramid and histogram as JSON (4.5 KB a frame); version 2 keeps
/// a fixed summary, and settings keys of [`Settings::key`]'s second definition. The summary
/// moves over; pyramids and histograms are derived data, computed again from the reels when
/// asked for. Runs inside the opening transaction, so a failure leaves version 1 as it was.
fn migrate_v1(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(concat!(
        "ALTER TABLE frames RENAME TO frames_v1;",
        frames_table!(),
        "         INSERT INTO frames
            SELECT model_id, idx,
                   coalesce(json_extract(meta_json, '$.first_value'), 0), count, width, height, checksum,
                   coalesce(json_extract(meta_json, '$.meta.stats.nonfinite'), 0),
                   coalesce(json_extract(meta_json, '$.meta.stats.min'), 0),
                   coalesce(json_extract(meta_json, '$.meta.stats.max'), 0),
                   coalesce(json_extract(meta_json, '$.meta.stats.mean'), 0),
                   coalesce(json_extract(meta_json, '$.meta.stats.std'), 0)
            FROM frames_v1;
         DROP TABLE frames_v1;"
    ))?;
    let rows: Vec<(i64, String)> = {
        let mut stmt = tx.prepare("SELECT id, settings_json FROM models")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for (id, json) in rows {
        // A row whose settings do not parse keeps its old key; it still lists.
        if let Ok(settings) = serde_json::from_str::<Settings>(&json) {
            tx.execute(
                "UPDATE models SET settings_key = ?1 WHERE id = ?2",
                params![settings.key(), id],
            )?;
        }
    }
    Ok(())
}

pub(super) fn sql_err(path: &Path, e: rusqlite::Error) -> Error {
    Error::store(path, format!("registry: {e}"))
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
    /// default store when there is one), not an empty store.
    pub fn open_existing(dir: &Path) -> Result<Store> {
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
        if dir.exists() && !dir.is_dir() {
            return Err(Error::store(dir, "exists and is not a directory"));
        }
        check_registry_present(dir)?;
        let db = dir.join("registry.sqlite");
        if !db.exists() {
            // Nothing stored yet: an empty registry in memory, so reads need no special case.
            let conn = Connection::open_in_memory().map_err(|e| sql_err(&db, e))?;
            conn.execute_batch(SCHEMA).map_err(|e| sql_err(&db, e))?;
            return Ok(Store {
                dir: dir.to_path_buf(),
                conn,
                has_fingerprints: std::cell::OnceCell::new(),
                reels: None,
            });
        }
        use rusqlite::OpenFlags;
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI;
        let path = db
            .to_str()
            .ok_or_else(|| Error::store(dir, "the store's path is not valid UTF-8"))?;
        // A WAL database opened read-only still needs its -shm file, which a user who may not
        // write the directory cannot create: then the file is read as immutable (nothing can
        // be writing it for that user anyway).
        let uri = |immutable: bool| {
            let escaped = path
                .replace('%', "%25")
                .replace('?', "%3f")
                .replace('#', "%23");
            format!(
                "file:{escaped}{}",
                if immutable { "?immutable=1" } else { "" }
            )
        };
        let probe = |conn: &Connection| -> rusqlite::Result<i64> {
            conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        };
        let (conn, version) = match Connection::open_with_flags(uri(false), flags)
            .and_then(|c| probe(&c).map(|v| (c, v)))
        {
            Ok(ok) => ok,
            Err(_) => {
                let conn =
                    Connection::open_with_flags(uri(true), flags).map_err(|e| sql_err(&db, e))?;
                let v = probe(&conn).map_err(|e| sql_err(&db, e))?;
                (conn, v)
            }
        };
        conn.busy_timeout(Duration::from_secs(60))
            .map_err(|e| sql_err(&db, e))?;
        if version > SCHEMA_VERSION {
            return Err(Error::store(
                dir,
                format!("registry schema version {version} is newer than this weightreel supports ({SCHEMA_VERSION}); upgrade weightreel"),
            ));
        }
        if version == 0 {
            return Err(Error::store(
                dir,
                "registry.sqlite has no weightreel schema (not a weightreel store, or never finished creating)",
            ));
        }
        Ok(Store {
            dir: dir.to_path_buf(),
            conn,
            has_fingerprints: std::cell::OnceCell::new(),
            reels: None,
        })
    }

    /// Open (creating with parents) the store at `dir`.
    pub fn open(dir: &Path) -> Result<Store> {
        if dir.exists() && !dir.is_dir() {
            return Err(Error::store(dir, "exists and is not a directory"));
        }
        check_registry_present(dir)?;
        std::fs::create_dir_all(dir.join("reels")).map_err(|e| Error::io(dir, e))?;
        let db = dir.join("registry.sqlite");
        let mut conn = Connection::open(&db).map_err(|e| sql_err(&db, e))?;
        conn.busy_timeout(Duration::from_secs(60))
            .map_err(|e| sql_err(&db, e))?;
        // WAL lets readers and one writer work at once; switching to it needs a moment alone
        // with the file, which a concurrent opener may be holding.
        let mut waited = Duration::ZERO;
        loop {
            match conn.pragma_update(None, "journal_mode", "WAL") {
                Ok(()) => break,
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy
                        && waited < Duration::from_secs(60) =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                    waited += Duration::from_millis(20);
                }
                Err(e) => return Err(sql_err(&db, e)),
            }
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|e| sql_err(&db, e))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(|e| sql_err(&db, e))?;
        // Check and create the schema under a write lock taken up front (IMMEDIATE), so two
        // processes opening a new store at once do not both try to create it.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| sql_err(&db, e))?;
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| sql_err(&db, e))?;
        if version > SCHEMA_VERSION {
            return Err(Error::store(
                dir,
                format!("registry schema version {version} is newer than this weightreel supports ({SCHEMA_VERSION}); upgrade weightreel"),
            ));
        }
        if version == 1 {
            migrate_v1(&tx).map_err(|e| sql_err(&db, e))?;
        }
        if version < SCHEMA_VERSION {
            tx.execute_batch(SCHEMA).map_err(|e| sql_err(&db, e))?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(|e| sql_err(&db, e))?;
        }
        tx.commit().map_err(|e| sql_err(&db, e))?;
        Ok(Store {
            dir: dir.to_path_buf(),
            conn,
            has_fingerprints: std::cell::OnceCell::new(),
            reels: None,
        })
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where reels live.
    pub fn reels_dir(&self) -> PathBuf {
        self.dir.join("reels")
    }

    /// Where unfinished encodes keep their completed parts.
    pub fn work_dir(&self) -> PathBuf {
        self.dir.join("work")
    }

    fn err(&self, e: rusqlite::Error) -> Error {
        sql_err(&self.dir.join("registry.sqlite"), e)
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
        let key = entry.settings.key();
        let settings_json = serde_json::to_string(&entry.settings).expect("settings serialize");
        let db = self.dir.join("registry.sqlite");
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| sql_err(&db, e))?;
        let old: Option<(i64, String)> = tx
            .query_row(
                "SELECT id, reel_file FROM models WHERE name = ?1 AND settings_key = ?2",
                params![entry.name, key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| sql_err(&db, e))?;
        if let Some((id, _)) = &old {
            tx.execute("DELETE FROM models WHERE id = ?1", [id])
                .map_err(|e| sql_err(&db, e))?;
        }
        let s = &entry.settings;
        let t = &entry.totals;
        tx.execute(
            "INSERT INTO models (name, settings_key, settings_json, source_kind, source, revision, commit_sha,
                format, model_type, architectures, chunk_size, layers, include_re, exclude_re, max_params,
                sample, mode, method, params, chunks, frames, bytes_read, read_requests, encoding_secs,
                params_per_sec, peak_rss_bytes, reel_file, reel_bytes, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,
                ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29)",
            params![
                entry.name,
                key,
                settings_json,
                entry.source_kind,
                entry.source,
                entry.revision,
                entry.commit,
                entry.format,
                entry.model_type,
                serde_json::to_string(&entry.architectures).expect("strings serialize"),
                s.chunk_size as i64,
                s.layers,
                s.include,
                s.exclude,
                s.max_params.map(|v| v as i64),
                s.sample,
                s.mode,
                s.method,
                t.params as i64,
                t.chunks as i64,
                t.frames as i64,
                t.bytes_read as i64,
                t.read_requests as i64,
                t.encoding_secs,
                t.params_per_sec,
                t.peak_rss_bytes as i64,
                t.reel_file,
                t.reel_bytes as i64,
                entry.created_at,
            ],
        )
        .map_err(|e| sql_err(&db, e))?;
        let id = tx.last_insert_rowid();
        {
            let mut insert = tx
                .prepare(
                    "INSERT INTO frames (model_id, idx, first_value, count, width, height, checksum,
                        nonfinite, min, max, mean, std)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )
                .map_err(|e| sql_err(&db, e))?;
            for frame in frames {
                let f = frame?;
                insert
                    .execute(params![
                        id,
                        f.index as i64,
                        f.first_value as i64,
                        f.count as i64,
                        f.width,
                        f.height,
                        f.checksum,
                        f.nonfinite as i64,
                        f.min,
                        f.max,
                        f.mean,
                        f.std,
                    ])
                    .map_err(|e| sql_err(&db, e))?;
            }
        }
        if let Some((source, fp)) = fingerprint {
            super::fingerprints::put_fingerprint_in(&tx, source, fp)
                .map_err(|e| sql_err(&db, e))?;
        }
        if let Some(tag) = receipt {
            tx.execute_batch(RECEIPTS_TABLE)
                .and_then(|()| {
                    tx.execute(
                        "INSERT OR REPLACE INTO receipts (tag, model_id) VALUES (?1, ?2)",
                        params![tag, id],
                    )
                })
                .map_err(|e| sql_err(&db, e))?;
        }
        tx.commit().map_err(|e| sql_err(&db, e))?;
        Ok((id, old.map(|(_, reel)| reel)))
    }

    /// Whether the registry has table `name` (a store opened read-only keeps its older schema).
    pub(super) fn has_table(&self, name: &str) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [name],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(|e| sql_err(&self.dir.join("registry.sqlite"), e))
    }

    /// The entry committed with `tag` (see [`crate::encode::EncodeOptions::receipt`]), if it is
    /// still in the store. A store that never took a receipt has none.
    pub fn receipt(&self, tag: &str) -> Result<Option<i64>> {
        let db = self.dir.join("registry.sqlite");
        let has_table = self.has_table("receipts")?;
        if !has_table {
            return Ok(None);
        }
        self.conn
            .query_row(
                "SELECT r.model_id FROM receipts r JOIN models m ON m.id = r.model_id WHERE r.tag = ?1",
                [tag],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| sql_err(&db, e))
    }

    /// The query of one entry by id, with its fingerprint's parameter count when the
    /// registry has fingerprints (a version-1 or -2 registry opened read-only has none).
    fn entry_query(&self) -> &'static str {
        if self.has_fingerprints_table().unwrap_or(false) {
            "SELECT m.*, f.params AS fp_params FROM models m
             LEFT JOIN fingerprints f ON f.name = m.name WHERE m.id = ?1"
        } else {
            "SELECT *, NULL AS fp_params FROM models WHERE id = ?1"
        }
    }

    fn row_to_summary(r: &rusqlite::Row<'_>) -> rusqlite::Result<EntrySummary> {
        let settings_json: String = r.get("settings_json")?;
        let settings: Settings = serde_json::from_str(&settings_json).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })?;
        let architectures: String = r.get("architectures")?;
        let key = settings.key();
        Ok(EntrySummary {
            short_key: super::short_key(&key).to_string(),
            settings_key: key,
            model_params: r.get::<_, Option<i64>>("fp_params")?.map(|p| p as u64),
            id: r.get("id")?,
            record: EntryRecord {
                name: r.get("name")?,
                source_kind: r.get("source_kind")?,
                source: r.get("source")?,
                revision: r.get("revision")?,
                commit: r.get("commit_sha")?,
                format: r.get("format")?,
                model_type: r.get("model_type")?,
                architectures: serde_json::from_str(&architectures).unwrap_or_default(),
                settings,
                totals: Totals {
                    params: r.get::<_, i64>("params")? as u64,
                    chunks: r.get::<_, i64>("chunks")? as u64,
                    frames: r.get::<_, i64>("frames")? as u64,
                    bytes_read: r.get::<_, i64>("bytes_read")? as u64,
                    read_requests: r.get::<_, i64>("read_requests")? as u64,
                    encoding_secs: r.get("encoding_secs")?,
                    params_per_sec: r.get("params_per_sec")?,
                    peak_rss_bytes: r.get::<_, i64>("peak_rss_bytes")? as u64,
                    reel_file: r.get("reel_file")?,
                    reel_bytes: r.get::<_, i64>("reel_bytes")? as u64,
                },
                created_at: r.get("created_at")?,
            },
        })
    }

    /// All readable entries, oldest first (see [`Store::listing`] for the unreadable ones).
    pub fn list(&self) -> Result<Vec<EntrySummary>> {
        Ok(self.listing()?.entries)
    }

    /// All entries, oldest first, and the rows that could not be read: a damaged row is
    /// reported and skipped, so it does not hide the others.
    pub fn listing(&self) -> Result<Listing> {
        let mut ids = self
            .conn
            .prepare("SELECT id FROM models ORDER BY id")
            .map_err(|e| self.err(e))?;
        let ids = ids
            .query_map([], |r| r.get::<_, i64>(0))
            .map_err(|e| self.err(e))?
            .collect::<rusqlite::Result<Vec<i64>>>()
            .map_err(|e| self.err(e))?;
        let mut stmt = self
            .conn
            .prepare(self.entry_query())
            .map_err(|e| self.err(e))?;
        let mut listing = Listing::default();
        for id in ids {
            match stmt.query_row([id], Self::row_to_summary) {
                Ok(entry) => listing.entries.push(entry),
                Err(e) => listing.unreadable.push((id, e.to_string())),
            }
        }
        Ok(listing)
    }

    /// The entry with registry id `id`, if there is one and it can be read.
    pub fn entry(&self, id: i64) -> Result<Option<EntrySummary>> {
        let mut stmt = self
            .conn
            .prepare(self.entry_query())
            .map_err(|e| self.err(e))?;
        match stmt.query_row([id], Self::row_to_summary) {
            Ok(entry) => Ok(Some(entry)),
            Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Entries named `name`.
    pub fn find(&self, name: &str) -> Result<Vec<EntrySummary>> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|e| e.record.name == name)
            .collect())
    }

    /// The frame rows of entry `id`, in order.
    pub fn frames(&self, id: i64) -> Result<Vec<FrameRecord>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT idx, first_value, count, width, height, checksum, nonfinite, min, max, mean, std
                 FROM frames WHERE model_id = ?1 ORDER BY idx",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([id], |r| {
                Ok(FrameRecord {
                    index: r.get::<_, i64>(0)? as u64,
                    first_value: r.get::<_, i64>(1)? as u64,
                    count: r.get::<_, i64>(2)? as u64,
                    width: r.get(3)?,
                    height: r.get(4)?,
                    checksum: r.get(5)?,
                    nonfinite: r.get::<_, i64>(6)? as u64,
                    min: r.get::<_, f64>(7)? as f32,
                    max: r.get::<_, f64>(8)? as f32,
                    mean: r.get::<_, f64>(9)? as f32,
                    std: r.get::<_, f64>(10)? as f32,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    /// Remove every entry named `name` (or only the one with `settings_key`) and their reels.
    /// Returns how many entries were removed.
    pub fn remove(&mut self, name: &str, settings_key: Option<&str>) -> Result<usize> {
        let victims: Vec<EntrySummary> = self
            .find(name)?
            .into_iter()
            .filter(|e| settings_key.is_none_or(|k| e.record.settings.key() == k))
            .collect();
        let db = self.dir.join("registry.sqlite");
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| sql_err(&db, e))?;
        for v in &victims {
            tx.execute("DELETE FROM models WHERE id = ?1", [v.id])
                .map_err(|e| sql_err(&db, e))?;
        }
        // The fingerprint goes with the model's last entry, or alone for a model that was
        // only fingerprinted (`rm NAME` without a settings key).
        let left: i64 = tx
            .query_row("SELECT count(*) FROM models WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .map_err(|e| sql_err(&db, e))?;
        let mut prints = 0;
        if left == 0 && (settings_key.is_none() || !victims.is_empty()) {
            prints = tx
                .execute("DELETE FROM fingerprint_index WHERE name = ?1", [name])
                .and_then(|_| tx.execute("DELETE FROM fingerprints WHERE name = ?1", [name]))
                .map_err(|e| sql_err(&db, e))?;
        }
        tx.commit().map_err(|e| sql_err(&db, e))?;
        if victims.is_empty() {
            return Ok(prints);
        }
        for v in &victims {
            self.delete_reel(&v.record.totals.reel_file)?;
        }
        Ok(victims.len())
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
        let key: String = store
            .conn
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
