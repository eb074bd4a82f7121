//! The SQLite registry: `registry.sqlite` in the store directory, WAL mode, `synchronous=FULL`.
//! The schema version is `PRAGMA user_version`; a newer one is refused, older ones migrate
//! inside the opening transaction.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::backend::{Registry, Removed};
use super::fingerprints::{FingerprintSource, IndexRow};
use super::registry::{EntryRecord, EntrySummary, FrameRecord, Listing, Settings, Totals};
use crate::error::{Error, Result};
use crate::fingerprint::{self, Fingerprint};

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

pub(super) const SCHEMA: &str = concat!(
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

/// Receipts of commits made for someone else's bookkeeping (the job queue's jobs): created
/// when the first one is written, so stores that never take one are unchanged. A receipt
/// whose entry was replaced or removed names no entry (the lookup joins `models`).
const RECEIPTS_TABLE: &str = "CREATE TABLE IF NOT EXISTS receipts (
    tag      TEXT PRIMARY KEY,
    model_id INTEGER NOT NULL
) WITHOUT ROWID;";

/// What the store records about itself, by key (`reels`: where its reels live, see
/// `reels.rs`): created when the first record is written, like [`RECEIPTS_TABLE`], so stores
/// that never record anything are unchanged and older builds read them as before.
const STORE_SETTINGS_TABLE: &str = "CREATE TABLE IF NOT EXISTS store_settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;";

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

/// The SQLite registry of a store directory.
pub(super) struct SqliteRegistry {
    /// The store directory.
    dir: PathBuf,
    /// `dir/registry.sqlite`.
    db: PathBuf,
    conn: Connection,
    /// Whether the registry has the fingerprint tables (schema 3; a read-only store of an
    /// older schema is never migrated), looked up once.
    has_fingerprints: std::cell::OnceCell<bool>,
}

impl SqliteRegistry {
    fn new(dir: &Path, conn: Connection) -> SqliteRegistry {
        SqliteRegistry {
            dir: dir.to_path_buf(),
            db: dir.join("registry.sqlite"),
            conn,
            has_fingerprints: std::cell::OnceCell::new(),
        }
    }

    /// Open the registry of the store at `dir` for reading only: nothing is created, migrated
    /// or written. A missing registry reads as empty.
    pub(super) fn open_read_only(dir: &Path) -> Result<SqliteRegistry> {
        let db = dir.join("registry.sqlite");
        if !db.exists() {
            // Nothing stored yet: an empty registry in memory, so reads need no special case.
            let conn = Connection::open_in_memory().map_err(|e| sql_err(&db, e))?;
            conn.execute_batch(SCHEMA).map_err(|e| sql_err(&db, e))?;
            return Ok(SqliteRegistry::new(dir, conn));
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
        Ok(SqliteRegistry::new(dir, conn))
    }

    /// Open (creating or migrating) the registry of the store directory `dir`, which exists.
    pub(super) fn open(dir: &Path) -> Result<SqliteRegistry> {
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
        Ok(SqliteRegistry::new(dir, conn))
    }

    fn err(&self, e: rusqlite::Error) -> Error {
        sql_err(&self.db, e)
    }

    /// Whether the registry has table `name` (a store opened read-only keeps its older schema).
    fn has_table(&self, name: &str) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [name],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(|e| sql_err(&self.db, e))
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

    fn has_fingerprints_table(&self) -> Result<bool> {
        if let Some(&known) = self.has_fingerprints.get() {
            return Ok(known);
        }
        let found = self.has_table("fingerprints")?;
        Ok(*self.has_fingerprints.get_or_init(|| found))
    }

    fn fp_err(&self, e: rusqlite::Error) -> Error {
        sql_err(&self.db, e)
    }
}

impl Registry for SqliteRegistry {
    fn label(&self) -> String {
        self.db.display().to_string()
    }

    fn commit(
        &mut self,
        entry: &EntryRecord,
        frames: &mut dyn Iterator<Item = Result<FrameRecord>>,
        fingerprint: Option<(&FingerprintSource, &Fingerprint)>,
        receipt: Option<&str>,
    ) -> Result<(i64, Option<String>)> {
        let key = entry.settings.key();
        let settings_json = serde_json::to_string(&entry.settings).expect("settings serialize");
        let db = self.db.clone();
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
            for frame in &mut *frames {
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
            put_fingerprint_in(&tx, source, fp).map_err(|e| sql_err(&db, e))?;
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

    fn recorded_reels(&self) -> Result<Option<String>> {
        if !self.has_table("store_settings")? {
            return Ok(None);
        }
        self.conn
            .query_row(
                "SELECT value FROM store_settings WHERE key = 'reels'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    fn record_reels(&mut self, value: &str) -> Result<()> {
        let db = self.db.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| sql_err(&db, e))?;
        tx.execute_batch(STORE_SETTINGS_TABLE)
            .map_err(|e| sql_err(&db, e))?;
        tx.execute(
            "INSERT INTO store_settings (key, value) VALUES ('reels', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [value],
        )
        .map_err(|e| sql_err(&db, e))?;
        tx.commit().map_err(|e| sql_err(&db, e))
    }

    fn receipt(&self, tag: &str) -> Result<Option<i64>> {
        let db = self.db.clone();
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

    fn listing(&self) -> Result<Listing> {
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

    fn entries_named(&self, name: &str) -> Result<Vec<EntrySummary>> {
        let ids: Vec<i64> = {
            let mut stmt = self
                .conn
                .prepare("SELECT id FROM models WHERE name = ?1 ORDER BY id")
                .map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map([name], |r| r.get(0))
                .map_err(|e| self.err(e))?;
            rows.collect::<rusqlite::Result<_>>()
                .map_err(|e| self.err(e))?
        };
        let mut stmt = self
            .conn
            .prepare(self.entry_query())
            .map_err(|e| self.err(e))?;
        // Unreadable rows are skipped, as `listing` reports and `list` skips them.
        Ok(ids
            .into_iter()
            .filter_map(|id| stmt.query_row([id], Self::row_to_summary).ok())
            .collect())
    }

    fn reel_files_starting(&self, prefix: &str) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT reel_file FROM models WHERE substr(reel_file, 1, length(?1)) = ?1")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([prefix], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.err(e))
    }

    fn entry(&self, id: i64) -> Result<Option<EntrySummary>> {
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

    fn frames(&self, id: i64) -> Result<Vec<FrameRecord>> {
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

    fn remove(&mut self, name: &str, settings_key: Option<&str>) -> Result<Removed> {
        let victims: Vec<EntrySummary> = self
            .listing()?
            .entries
            .into_iter()
            .filter(|e| e.record.name == name)
            .filter(|e| settings_key.is_none_or(|k| e.record.settings.key() == k))
            .collect();
        let db = self.db.clone();
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
        Ok(Removed {
            reels: victims
                .into_iter()
                .map(|v| v.record.totals.reel_file)
                .collect(),
            fingerprints: prints,
        })
    }

    fn put_fingerprints(&mut self, rows: &[(&FingerprintSource, &Fingerprint)]) -> Result<()> {
        let db = self.db.clone();
        let tx = self.conn.transaction().map_err(|e| sql_err(&db, e))?;
        for (source, fp) in rows {
            put_fingerprint_in(&tx, source, fp).map_err(|e| sql_err(&db, e))?;
        }
        tx.commit().map_err(|e| sql_err(&db, e))
    }

    fn fingerprint(&self, name: &str) -> Result<Option<Fingerprint>> {
        if !self.has_fingerprints_table()? {
            return Ok(None);
        }
        let body: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT body FROM fingerprints WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.fp_err(e))?;
        body.map(|b| {
            Fingerprint::from_bytes(&b)
                .map_err(|p| Error::store(&self.dir, format!("fingerprint of '{name}': {p}")))
        })
        .transpose()
    }

    fn fingerprint_names(&self) -> Result<Vec<String>> {
        if !self.has_fingerprints_table()? {
            return Ok(Vec::new());
        }
        let mut stmt = self
            .conn
            .prepare("SELECT name FROM fingerprints ORDER BY name")
            .map_err(|e| self.fp_err(e))?;
        let names = stmt
            .query_map([], |r| r.get(0))
            .map_err(|e| self.fp_err(e))?
            .collect::<rusqlite::Result<Vec<String>>>()
            .map_err(|e| self.fp_err(e));
        names
    }

    fn fingerprint_source(&self, name: &str) -> Result<Option<FingerprintSource>> {
        if !self.has_fingerprints_table()? {
            return Ok(None);
        }
        self.conn
            .query_row(
                "SELECT name, source, revision, model_type, created_at FROM fingerprints WHERE name = ?1",
                [name],
                |r| {
                    Ok(FingerprintSource {
                        name: r.get(0)?,
                        source: r.get(1)?,
                        revision: r.get(2)?,
                        model_type: r.get(3)?,
                        created_at: r.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.fp_err(e))
    }

    fn fingerprint_index(&self) -> Result<Vec<IndexRow>> {
        if !self.has_fingerprints_table()? {
            return Ok(Vec::new());
        }
        let mut stmt = self
            .conn
            .prepare("SELECT name, params, sketch, features FROM fingerprint_index ORDER BY name")
            .map_err(|e| self.fp_err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                ))
            })
            .map_err(|e| self.fp_err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (name, params, sketch, features) = row.map_err(|e| self.fp_err(e))?;
            let damaged =
                |p: String| Error::store(&self.dir, format!("fingerprint of '{name}': {p}"));
            out.push(IndexRow {
                sketch: fingerprint::sketch_from_bytes(&sketch).map_err(damaged)?,
                features: fingerprint::features_from_bytes(&features).map_err(damaged)?,
                params: params.max(0) as u64,
                name,
            });
        }
        Ok(out)
    }

    fn entries_without_fingerprint(&self) -> Result<Vec<(String, String)>> {
        let query = if self.has_fingerprints_table()? {
            "SELECT name, source FROM models WHERE name NOT IN (SELECT name FROM fingerprints)
             GROUP BY name ORDER BY name"
        } else {
            "SELECT name, source FROM models GROUP BY name ORDER BY name"
        };
        let mut stmt = self.conn.prepare(query).map_err(|e| self.fp_err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.fp_err(e))?
            .collect::<rusqlite::Result<Vec<(String, String)>>>()
            .map_err(|e| self.fp_err(e));
        rows
    }
}

/// Insert or replace a fingerprint row inside `tx`.
fn put_fingerprint_in(
    tx: &rusqlite::Transaction<'_>,
    source: &FingerprintSource,
    fp: &Fingerprint,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR REPLACE INTO fingerprints
            (name, source, revision, model_type, params, tensors, created_at, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            source.name,
            source.source,
            source.revision,
            source.model_type,
            fp.params() as i64,
            fp.tensors.len() as i64,
            source.created_at,
            fp.to_bytes(),
        ],
    )?;
    tx.execute(
        "INSERT OR REPLACE INTO fingerprint_index (name, params, sketch, features)
         VALUES (?1, ?2, ?3, ?4)",
        params![
            source.name,
            fp.params() as i64,
            fp.sketch_bytes(),
            fingerprint::features_bytes(&fp.role_features()),
        ],
    )
    .map(|_| ())
}
