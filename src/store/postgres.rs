//! The PostgreSQL registry (`--store postgres://user@host:port/db`, feature `queue`): the same
//! schema concepts as `sqlite.rs` — entries, their frame rows, one fingerprint per model name
//! with its compact index row in a table of its own, and receipts — in tables named `wr_…`, so
//! that one database can hold the registry and the job queue.
//!
//! - The schema is versioned (table `wr_registry_schema`): the version is read first under a
//!   transaction-scoped advisory lock, a newer one is refused, and the missing migrations run
//!   in that transaction, so machines starting at once migrate once.
//! - Every commit point is one transaction (READ COMMITTED). Writers of one model name
//!   serialize on a transaction-scoped advisory lock keyed by the name (`pg_advisory_xact_lock`
//!   of [`NAME_LOCK`] and `hashtext(name)`), taken before the entry being replaced is looked up:
//!   the same replace/add rules as SQLite's one writer at a time (same name and settings key:
//!   the later commit replaces the earlier and returns its reel for deletion; other settings:
//!   both kept), so two machines writing the same model lose nothing and never fail on the
//!   unique key. Writers of different models do not wait for each other.
//! - Search's candidate stage reads `wr_fingerprint_index` only (~0.7 KB a model); the bodies
//!   are in `wr_fingerprints`. pgvector is not used.
//! - A lost connection (a server restart) is made again, for up to 15 s: a write checks the
//!   connection first (one round trip), and a read caught by a lost connection is run once
//!   more. A commit caught by it is never run again (its frame stream is spent): once the
//!   connection is back, the entry is looked up by its reel name, which is unique, so a
//!   commit whose COMMIT reached the server is reported as done and its reel kept.
//!
//! Reels of a PostgreSQL store are in the reel storage `--reels` / `$WEIGHTREEL_REELS` names
//! (`s3://…`, or a directory every machine sees; required); the work of encodes in progress is
//! local (see [`work_root`]).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use postgres::{Client, Config, NoTls, Transaction};

use super::backend::{Registry, Removed};
use super::fingerprints::{FingerprintSource, IndexRow};
use super::registry::{EntryRecord, EntrySummary, FrameRecord, Listing, Settings, Totals};
use super::Store;
use crate::error::{Error, Result};
use crate::fingerprint::{self, Fingerprint, RoleFeatures};

/// Version of the PostgreSQL registry schema this build writes and reads.
pub const PG_SCHEMA_VERSION: i32 = 3;

/// Migration `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE wr_models (
    id              BIGSERIAL PRIMARY KEY,
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
    chunk_size      BIGINT NOT NULL,
    layers          TEXT NOT NULL,
    include_re      TEXT,
    exclude_re      TEXT,
    max_params      BIGINT,
    sample          TEXT NOT NULL,
    mode            TEXT NOT NULL,
    method          TEXT NOT NULL,
    params          BIGINT NOT NULL,
    chunks          BIGINT NOT NULL,
    frames          BIGINT NOT NULL,
    bytes_read      BIGINT NOT NULL,
    read_requests   BIGINT NOT NULL,
    encoding_secs   DOUBLE PRECISION NOT NULL,
    params_per_sec  DOUBLE PRECISION NOT NULL,
    peak_rss_bytes  BIGINT NOT NULL,
    reel_file       TEXT NOT NULL,
    reel_bytes      BIGINT NOT NULL,
    created_at      TEXT NOT NULL,
    UNIQUE (name, settings_key)
);
CREATE TABLE wr_frames (
    model_id    BIGINT NOT NULL REFERENCES wr_models(id) ON DELETE CASCADE,
    idx         BIGINT NOT NULL,
    first_value BIGINT NOT NULL,
    count       BIGINT NOT NULL,
    width       BIGINT NOT NULL,
    height      BIGINT NOT NULL,
    checksum    BIGINT NOT NULL,
    nonfinite   BIGINT NOT NULL,
    min         REAL NOT NULL,
    max         REAL NOT NULL,
    mean        REAL NOT NULL,
    std         REAL NOT NULL,
    PRIMARY KEY (model_id, idx)
);
CREATE TABLE wr_fingerprints (
    name        TEXT PRIMARY KEY,
    source      TEXT NOT NULL,
    revision    TEXT,
    model_type  TEXT,
    params      BIGINT NOT NULL,
    tensors     BIGINT NOT NULL,
    created_at  TEXT NOT NULL,
    body        BYTEA NOT NULL
);
CREATE TABLE wr_fingerprint_index (
    name        TEXT PRIMARY KEY REFERENCES wr_fingerprints(name) ON DELETE CASCADE,
    params      BIGINT NOT NULL,
    sketch      BYTEA NOT NULL,
    features    BYTEA NOT NULL
);
CREATE TABLE wr_receipts (
    tag      TEXT PRIMARY KEY,
    model_id BIGINT NOT NULL
);
",
    // Version 2: the store's identity (32 hex digits), which reel locations' owner objects name,
    // the same for every machine's handle.
    "
CREATE TABLE wr_registry_identity (id TEXT NOT NULL);
INSERT INTO wr_registry_identity VALUES (md5(random()::text || clock_timestamp()::text));
",
    // Version 3: what the store records about itself, by key (`reels`: where its reels live,
    // so that machines need not be told; see `reels.rs`).
    "
CREATE TABLE wr_store_settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
",
];

/// The advisory lock the migrations run under ("wr_regis").
const MIGRATION_LOCK: i64 = 0x7772_5f72_6567_6973;

/// The first key of the per-model-name advisory locks ("wrnm"); the second is `hashtext(name)`.
pub const NAME_LOCK: i32 = 0x7772_6e6d;

/// The columns of `wr_models` an entry is read from (with the fingerprint's parameters).
const ENTRY_COLUMNS: &str = "m.id, m.name, m.settings_json, m.source_kind, m.source, m.revision,
    m.commit_sha, m.format, m.model_type, m.architectures, m.params, m.chunks, m.frames,
    m.bytes_read, m.read_requests, m.encoding_secs, m.params_per_sec, m.peak_rss_bytes,
    m.reel_file, m.reel_bytes, m.created_at, f.params AS fp_params";

/// The PostgreSQL registry.
pub struct PgRegistry {
    client: Mutex<Client>,
    /// How to connect again after the connection was lost (a server restart).
    config: Config,
    /// The URL without its password.
    label: String,
}

/// How long a lost connection is tried again before the request fails.
const RECONNECT_FOR: Duration = Duration::from_secs(15);

/// `store postgres://…: registry: <the server's message>`.
fn pg_err(label: &str, e: postgres::Error) -> Error {
    Error::store(label, format!("registry: {}", crate::queue::describe(&e)))
}

impl PgRegistry {
    /// Connect to `url`. Writable: create or migrate the schema. Read-only: a database
    /// without the registry is an error saying so. A newer schema is refused either way.
    pub fn connect(url: &str, writable: bool) -> Result<PgRegistry> {
        let label = crate::queue::redacted(url);
        let mut config: Config = url.parse().map_err(|e| {
            Error::store(
                &label,
                format!("not a PostgreSQL URL ({e}); expected postgres://user@host:port/db"),
            )
        })?;
        config.connect_timeout(Duration::from_secs(10));
        config.application_name("weightreel");
        let mut client = config.connect(NoTls).map_err(|e| {
            Error::store(
                &label,
                format!("cannot connect: {}", crate::queue::describe(&e)),
            )
        })?;
        migrate(&mut client, &label, writable)?;
        Ok(PgRegistry {
            client: Mutex::new(client),
            config,
            label,
        })
    }

    /// Replace a lost connection, trying for up to [`RECONNECT_FOR`].
    fn reconnect(&self, client: &mut Client) -> Result<()> {
        let started = std::time::Instant::now();
        let mut wait = Duration::from_millis(100);
        loop {
            match self.config.connect(NoTls) {
                Ok(fresh) => {
                    *client = fresh;
                    return Ok(());
                }
                Err(_) if started.elapsed() < RECONNECT_FOR => {
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
                Err(e) => {
                    return Err(Error::store(
                        &self.label,
                        format!(
                            "registry: connection lost and not back within {}s: {}",
                            RECONNECT_FOR.as_secs(),
                            crate::queue::describe(&e)
                        ),
                    ))
                }
            }
        }
    }

    /// Before a write: a connection the server dropped (a restart) is made again, so that a
    /// write is never begun on a dead connection (one round trip).
    fn ready(&self, client: &mut Client) -> Result<()> {
        if client.is_closed() || client.is_valid(Duration::from_secs(10)).is_err() {
            self.reconnect(client)?;
        }
        Ok(())
    }

    /// Run a read on the connection; a lost connection (a server restart) is made again
    /// and the read run once more.
    fn read<T>(
        &self,
        f: impl Fn(&mut Client) -> std::result::Result<T, postgres::Error>,
    ) -> Result<T> {
        let mut client = self.client();
        if client.is_closed() {
            self.reconnect(&mut client)?;
        }
        match f(&mut client) {
            Ok(v) => Ok(v),
            Err(e) if crate::queue::transient(&e) => {
                self.reconnect(&mut client)?;
                f(&mut client).map_err(|e| self.err(e))
            }
            Err(e) => Err(self.err(e)),
        }
    }

    fn err(&self, e: postgres::Error) -> Error {
        pg_err(&self.label, e)
    }

    /// The connection (a panic of another thread holding it leaves it usable: every use is
    /// a statement or a transaction that ends with the call).
    fn client(&self) -> std::sync::MutexGuard<'_, Client> {
        self.client
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn summary(&self, row: &postgres::Row) -> std::result::Result<EntrySummary, String> {
        let settings_json: String = row.get("settings_json");
        let settings: Settings = serde_json::from_str(&settings_json)
            .map_err(|e| format!("its settings do not parse: {e}"))?;
        let architectures: String = row.get("architectures");
        let key = settings.key();
        let u = |c: &str| row.get::<_, i64>(c).max(0) as u64;
        Ok(EntrySummary {
            short_key: super::short_key(&key).to_string(),
            settings_key: key,
            model_params: row
                .get::<_, Option<i64>>("fp_params")
                .map(|p| p.max(0) as u64),
            id: row.get("id"),
            record: EntryRecord {
                name: row.get("name"),
                source_kind: row.get("source_kind"),
                source: row.get("source"),
                revision: row.get("revision"),
                commit: row.get("commit_sha"),
                format: row.get("format"),
                model_type: row.get("model_type"),
                architectures: serde_json::from_str(&architectures).unwrap_or_default(),
                settings,
                totals: Totals {
                    params: u("params"),
                    chunks: u("chunks"),
                    frames: u("frames"),
                    bytes_read: u("bytes_read"),
                    read_requests: u("read_requests"),
                    encoding_secs: row.get("encoding_secs"),
                    params_per_sec: row.get("params_per_sec"),
                    peak_rss_bytes: u("peak_rss_bytes"),
                    reel_file: row.get("reel_file"),
                    reel_bytes: u("reel_bytes"),
                },
                created_at: row.get("created_at"),
            },
        })
    }
}

/// Read the schema version first (under the migration lock), refuse a newer one, and run the
/// missing migrations (writable) or refuse a missing or older schema (read-only).
fn migrate(client: &mut Client, label: &str, writable: bool) -> Result<()> {
    let err = |e| pg_err(label, e);
    let mut tx = client.transaction().map_err(err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(err)?;
    let exists: bool = tx
        .query_one("SELECT to_regclass('wr_registry_schema') IS NOT NULL", &[])
        .map_err(err)?
        .get(0);
    let version: i32 = if exists {
        tx.query_opt("SELECT version FROM wr_registry_schema", &[])
            .map_err(err)?
            .map_or(0, |row| row.get(0))
    } else {
        0
    };
    if version > PG_SCHEMA_VERSION {
        return Err(Error::store(
            label,
            format!("registry schema version {version} is newer than this weightreel supports ({PG_SCHEMA_VERSION}); upgrade weightreel"),
        ));
    }
    if version == PG_SCHEMA_VERSION {
        return tx.commit().map_err(err);
    }
    if !writable {
        return Err(Error::store(
            label,
            if version == 0 {
                "no weightreel registry in this database; encode a model into it first".to_string()
            } else {
                format!("registry schema version {version} is older than this weightreel's ({PG_SCHEMA_VERSION}); run a writing command (encode, fingerprint) to migrate it")
            },
        ));
    }
    if !exists {
        tx.batch_execute(
            "CREATE TABLE wr_registry_schema (version INT NOT NULL);
             INSERT INTO wr_registry_schema VALUES (0);",
        )
        .map_err(err)?;
    }
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        tx.batch_execute(migration).map_err(err)?;
        tx.execute(
            "UPDATE wr_registry_schema SET version = $1",
            &[&(i as i32 + 1)],
        )
        .map_err(err)?;
    }
    tx.commit().map_err(err)
}

/// Serialize this transaction with every other writer of model `name` until it ends.
fn lock_name(tx: &mut Transaction<'_>, name: &str) -> std::result::Result<(), postgres::Error> {
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&NAME_LOCK, &name],
    )
    .map(|_| ())
}

/// Insert or replace a fingerprint and its index row inside `tx`.
fn put_fingerprint_in(
    tx: &mut Transaction<'_>,
    source: &FingerprintSource,
    fp: &Fingerprint,
) -> std::result::Result<(), postgres::Error> {
    let params = fp.params() as i64;
    let tensors = fp.tensors.len() as i64;
    tx.execute(
        "INSERT INTO wr_fingerprints
            (name, source, revision, model_type, params, tensors, created_at, body)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (name) DO UPDATE SET source = EXCLUDED.source, revision = EXCLUDED.revision,
            model_type = EXCLUDED.model_type, params = EXCLUDED.params,
            tensors = EXCLUDED.tensors, created_at = EXCLUDED.created_at, body = EXCLUDED.body",
        &[
            &source.name,
            &source.source,
            &source.revision,
            &source.model_type,
            &params,
            &tensors,
            &source.created_at,
            &fp.to_bytes(),
        ],
    )?;
    tx.execute(
        "INSERT INTO wr_fingerprint_index (name, params, sketch, features)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (name) DO UPDATE SET params = EXCLUDED.params, sketch = EXCLUDED.sketch,
            features = EXCLUDED.features",
        &[
            &source.name,
            &params,
            &fp.sketch_bytes(),
            &fingerprint::features_bytes(&fp.role_features()),
        ],
    )
    .map(|_| ())
}

/// Why a commit failed: the frame stream (the caller's error) or the server.
enum CommitError {
    Frames(Error),
    Server(postgres::Error),
}

impl From<postgres::Error> for CommitError {
    fn from(e: postgres::Error) -> Self {
        CommitError::Server(e)
    }
}

fn commit_in(
    label: &str,
    tx: &mut Transaction<'_>,
    entry: &EntryRecord,
    frames: &mut dyn Iterator<Item = Result<FrameRecord>>,
    fingerprint: Option<(&FingerprintSource, &Fingerprint)>,
    receipt: Option<&str>,
    replaced: &mut Option<String>,
) -> std::result::Result<i64, CommitError> {
    let key = entry.settings.key();
    let settings_json = serde_json::to_string(&entry.settings).expect("settings serialize");
    lock_name(tx, &entry.name)?;
    let old = tx.query_opt(
        "DELETE FROM wr_models WHERE name = $1 AND settings_key = $2 RETURNING reel_file",
        &[&entry.name, &key],
    )?;
    *replaced = old.map(|r| r.get(0));
    let s = &entry.settings;
    let t = &entry.totals;
    let i = |v: u64| v as i64;
    let row = tx.query_one(
        "INSERT INTO wr_models (name, settings_key, settings_json, source_kind, source, revision,
            commit_sha, format, model_type, architectures, chunk_size, layers, include_re,
            exclude_re, max_params, sample, mode, method, params, chunks, frames, bytes_read,
            read_requests, encoding_secs, params_per_sec, peak_rss_bytes, reel_file, reel_bytes,
            created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
            $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29)
         RETURNING id",
        &[
            &entry.name,
            &key,
            &settings_json,
            &entry.source_kind,
            &entry.source,
            &entry.revision,
            &entry.commit,
            &entry.format,
            &entry.model_type,
            &serde_json::to_string(&entry.architectures).expect("strings serialize"),
            &i(s.chunk_size),
            &s.layers,
            &s.include,
            &s.exclude,
            &s.max_params.map(i),
            &s.sample,
            &s.mode,
            &s.method,
            &i(t.params),
            &i(t.chunks),
            &i(t.frames),
            &i(t.bytes_read),
            &i(t.read_requests),
            &t.encoding_secs,
            &t.params_per_sec,
            &i(t.peak_rss_bytes),
            &t.reel_file,
            &i(t.reel_bytes),
            &entry.created_at,
        ],
    )?;
    let id: i64 = row.get(0);
    {
        // COPY in text form: one round trip for all the frame rows (numbers only, nothing
        // to escape; Rust's float formatting reads back to the same f32).
        use std::io::Write;
        let mut copy = tx.copy_in(
            "COPY wr_frames (model_id, idx, first_value, count, width, height, checksum,
                nonfinite, min, max, mean, std) FROM STDIN",
        )?;
        let mut line = String::new();
        for frame in &mut *frames {
            let f = frame.map_err(CommitError::Frames)?;
            use std::fmt::Write as _;
            line.clear();
            let _ = writeln!(
                line,
                "{id}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                f.index,
                f.first_value,
                f.count,
                f.width,
                f.height,
                f.checksum,
                f.nonfinite,
                f.min,
                f.max,
                f.mean,
                f.std
            );
            copy.write_all(line.as_bytes()).map_err(|e| {
                CommitError::Frames(Error::store(
                    label,
                    format!("registry: sending frame rows: {e}"),
                ))
            })?;
        }
        copy.finish()?;
    }
    if let Some((source, fp)) = fingerprint {
        put_fingerprint_in(tx, source, fp)?;
    }
    if let Some(tag) = receipt {
        tx.execute(
            "INSERT INTO wr_receipts (tag, model_id) VALUES ($1, $2)
             ON CONFLICT (tag) DO UPDATE SET model_id = EXCLUDED.model_id",
            &[&tag, &id],
        )?;
    }
    Ok(id)
}

impl Registry for PgRegistry {
    fn label(&self) -> String {
        self.label.clone()
    }

    fn identity(&self) -> Result<Option<String>> {
        Ok(Some(
            self.read(|c| c.query_one("SELECT id FROM wr_registry_identity", &[]))?
                .get(0),
        ))
    }

    fn commit(
        &mut self,
        entry: &EntryRecord,
        frames: &mut dyn Iterator<Item = Result<FrameRecord>>,
        fingerprint: Option<(&FingerprintSource, &Fingerprint)>,
        receipt: Option<&str>,
    ) -> Result<(i64, Option<String>)> {
        let label = self.label.clone();
        let mut client = self.client();
        self.ready(&mut client)?;
        let mut replaced = None;
        // On any error the transaction is dropped, which rolls it back: nothing is visible.
        let outcome = (|| {
            let mut tx = client.transaction()?;
            let id = commit_in(
                &label,
                &mut tx,
                entry,
                frames,
                fingerprint,
                receipt,
                &mut replaced,
            )?;
            tx.commit()?;
            Ok(id)
        })();
        match outcome {
            Ok(id) => Ok((id, replaced)),
            Err(CommitError::Frames(e)) => Err(e),
            Err(CommitError::Server(e)) if crate::queue::transient(&e) => {
                // The connection was lost: if it went during COMMIT, the entry may be in.
                // Its reel name is unique (claimed when placed), so the entry is found by
                // it once the server is back; the caller must not delete a committed reel.
                let lost = pg_err(&label, e);
                self.reconnect(&mut client).map_err(|_| {
                    Error::store(
                        &label,
                        format!("{lost}; the server did not come back, so whether the entry was committed is unknown (`weightreel check` tells)"),
                    )
                })?;
                let found = client
                    .query_opt(
                        "SELECT id FROM wr_models
                         WHERE name = $1 AND settings_key = $2 AND reel_file = $3",
                        &[&entry.name, &entry.settings.key(), &entry.totals.reel_file],
                    )
                    .map_err(|e| pg_err(&label, e))?;
                match found {
                    Some(row) => Ok((row.get(0), replaced)),
                    None => Err(lost),
                }
            }
            Err(CommitError::Server(e)) => Err(pg_err(&label, e)),
        }
    }

    fn recorded_reels(&self) -> Result<Option<String>> {
        self.read(|c| {
            c.query_opt(
                "SELECT value FROM wr_store_settings WHERE key = 'reels'",
                &[],
            )
        })
        .map(|row| row.map(|r| r.get(0)))
    }

    fn record_reels(&mut self, value: &str) -> Result<()> {
        let mut client = self.client();
        self.ready(&mut client)?;
        client
            .execute(
                "INSERT INTO wr_store_settings (key, value) VALUES ('reels', $1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&value],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    fn receipt(&self, tag: &str) -> Result<Option<i64>> {
        self.read(|c| {
            c.query_opt(
                "SELECT r.model_id FROM wr_receipts r JOIN wr_models m ON m.id = r.model_id
                 WHERE r.tag = $1",
                &[&tag],
            )
        })
        .map(|row| row.map(|r| r.get(0)))
    }

    fn listing(&self) -> Result<Listing> {
        let rows = self.read(|c| {
            c.query(
                &format!(
                    "SELECT {ENTRY_COLUMNS} FROM wr_models m
                     LEFT JOIN wr_fingerprints f ON f.name = m.name ORDER BY m.id"
                ),
                &[],
            )
        })?;
        let mut listing = Listing::default();
        for row in &rows {
            match self.summary(row) {
                Ok(entry) => listing.entries.push(entry),
                Err(why) => listing.unreadable.push((row.get("id"), why)),
            }
        }
        Ok(listing)
    }

    fn entries_named(&self, name: &str) -> Result<Vec<EntrySummary>> {
        let rows = self.read(|c| {
            c.query(
                &format!(
                    "SELECT {ENTRY_COLUMNS} FROM wr_models m
                     LEFT JOIN wr_fingerprints f ON f.name = m.name
                     WHERE m.name = $1 ORDER BY m.id"
                ),
                &[&name],
            )
        })?;
        // Unreadable rows are skipped, as `listing` reports and `list` skips them.
        Ok(rows.iter().filter_map(|r| self.summary(r).ok()).collect())
    }

    fn reel_files_starting(&self, prefix: &str) -> Result<Vec<String>> {
        let rows = self.read(|c| {
            c.query(
                "SELECT reel_file FROM wr_models WHERE left(reel_file, length($1)) = $1",
                &[&prefix],
            )
        })?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn entry(&self, id: i64) -> Result<Option<EntrySummary>> {
        let row = self.read(|c| {
            c.query_opt(
                &format!(
                    "SELECT {ENTRY_COLUMNS} FROM wr_models m
                     LEFT JOIN wr_fingerprints f ON f.name = m.name WHERE m.id = $1"
                ),
                &[&id],
            )
        })?;
        row.map(|r| {
            self.summary(&r)
                .map_err(|why| Error::store(&self.label, format!("entry #{id}: {why}")))
        })
        .transpose()
    }

    fn frames(&self, id: i64) -> Result<Vec<FrameRecord>> {
        let rows = self.read(|c| c.query(
                "SELECT idx, first_value, count, width, height, checksum, nonfinite, min, max, mean, std
                 FROM wr_frames WHERE model_id = $1 ORDER BY idx",
                &[&id],
            ))?;
        Ok(rows
            .iter()
            .map(|r| {
                let u = |i: usize| r.get::<_, i64>(i).max(0) as u64;
                FrameRecord {
                    index: u(0),
                    first_value: u(1),
                    count: u(2),
                    width: u(3) as u32,
                    height: u(4) as u32,
                    checksum: u(5) as u32,
                    nonfinite: u(6),
                    min: r.get(7),
                    max: r.get(8),
                    mean: r.get(9),
                    std: r.get(10),
                }
            })
            .collect())
    }

    fn remove(&mut self, name: &str, settings_key: Option<&str>) -> Result<Removed> {
        let label = self.label.clone();
        let mut client = self.client();
        self.ready(&mut client)?;
        let run = |tx: &mut Transaction<'_>| -> std::result::Result<Removed, postgres::Error> {
            lock_name(tx, name)?;
            let rows = tx.query(
                "SELECT id, settings_json, reel_file FROM wr_models WHERE name = $1 ORDER BY id",
                &[&name],
            )?;
            let mut reels = Vec::new();
            for row in &rows {
                let json: String = row.get(1);
                let key = serde_json::from_str::<Settings>(&json)
                    .map(|s| s.key())
                    .ok();
                if settings_key.is_none_or(|k| key.as_deref() == Some(k)) {
                    let id: i64 = row.get(0);
                    tx.execute("DELETE FROM wr_models WHERE id = $1", &[&id])?;
                    reels.push(row.get::<_, String>(2));
                }
            }
            // The fingerprint goes with the model's last entry, or alone for a model that
            // was only fingerprinted (`rm NAME` without a settings key).
            let left: i64 = tx
                .query_one("SELECT count(*) FROM wr_models WHERE name = $1", &[&name])?
                .get(0);
            let mut fingerprints = 0;
            if left == 0 && (settings_key.is_none() || !reels.is_empty()) {
                tx.execute("DELETE FROM wr_fingerprint_index WHERE name = $1", &[&name])?;
                fingerprints =
                    tx.execute("DELETE FROM wr_fingerprints WHERE name = $1", &[&name])? as usize;
            }
            Ok(Removed {
                reels,
                fingerprints,
            })
        };
        let mut tx = client.transaction().map_err(|e| pg_err(&label, e))?;
        let removed = run(&mut tx).map_err(|e| pg_err(&label, e))?;
        tx.commit().map_err(|e| pg_err(&label, e))?;
        Ok(removed)
    }

    fn put_fingerprints(&mut self, rows: &[(&FingerprintSource, &Fingerprint)]) -> Result<()> {
        let label = self.label.clone();
        let mut client = self.client();
        self.ready(&mut client)?;
        let mut tx = client.transaction().map_err(|e| pg_err(&label, e))?;
        for (source, fp) in rows {
            put_fingerprint_in(&mut tx, source, fp).map_err(|e| pg_err(&label, e))?;
        }
        tx.commit().map_err(|e| pg_err(&label, e))
    }

    fn fingerprint(&self, name: &str) -> Result<Option<Fingerprint>> {
        let body: Option<Vec<u8>> = self
            .read(|c| c.query_opt("SELECT body FROM wr_fingerprints WHERE name = $1", &[&name]))?
            .map(|r| r.get(0));
        body.map(|b| {
            Fingerprint::from_bytes(&b)
                .map_err(|p| Error::store(&self.label, format!("fingerprint of '{name}': {p}")))
        })
        .transpose()
    }

    fn fingerprint_names(&self) -> Result<Vec<String>> {
        // Sorted here: Rust's string order is the byte order SQLite's ORDER BY gives, whatever
        // the database's collation.
        let mut names: Vec<String> = self
            .read(|c| c.query("SELECT name FROM wr_fingerprints", &[]))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        names.sort_unstable();
        Ok(names)
    }

    fn fingerprint_source(&self, name: &str) -> Result<Option<FingerprintSource>> {
        Ok(self
            .read(|c| {
                c.query_opt(
                    "SELECT name, source, revision, model_type, created_at FROM wr_fingerprints
                 WHERE name = $1",
                    &[&name],
                )
            })?
            .map(|r| FingerprintSource {
                name: r.get(0),
                source: r.get(1),
                revision: r.get(2),
                model_type: r.get(3),
                created_at: r.get(4),
            }))
    }

    fn fingerprint_index(&self) -> Result<Vec<IndexRow>> {
        // Streamed and decoded row by row (one copy of the index in memory), unsorted: sorting
        // by name in the server under the "C" collation would spill the whole table to a
        // disk sort; Rust's string order is that byte order.
        type Raw = (
            String,
            i64,
            std::result::Result<Vec<f32>, String>,
            std::result::Result<Vec<RoleFeatures>, String>,
        );
        let raw: Vec<Raw> = self.read(|c| {
            use postgres::fallible_iterator::FallibleIterator;
            let mut rows = c.query_raw(
                "SELECT name, params, sketch, features FROM wr_fingerprint_index",
                std::iter::empty::<i32>(),
            )?;
            let mut out = Vec::with_capacity(rows.size_hint().0);
            while let Some(r) = rows.next()? {
                out.push((
                    r.get(0),
                    r.get(1),
                    fingerprint::sketch_from_bytes(r.get(2)),
                    fingerprint::features_from_bytes(r.get(3)),
                ));
            }
            Ok(out)
        })?;
        let mut out = Vec::with_capacity(raw.len());
        for (name, params, sketch, features) in raw {
            let damaged =
                |p: String| Error::store(&self.label, format!("fingerprint of '{name}': {p}"));
            out.push(IndexRow {
                sketch: sketch.map_err(damaged)?,
                features: features.map_err(damaged)?,
                params: params.max(0) as u64,
                name,
            });
        }
        out.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn entries_without_fingerprint(&self) -> Result<Vec<(String, String)>> {
        // One per name, as SQLite's GROUP BY gives: the source of the name's first entry.
        Ok(self
            .read(|c| {
                c.query(
                    "SELECT DISTINCT ON (name COLLATE \"C\") name, source FROM wr_models
                 WHERE name NOT IN (SELECT name FROM wr_fingerprints)
                 ORDER BY name COLLATE \"C\", id",
                    &[],
                )
            })?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }
}

/// The local work directory of encodes into a PostgreSQL store (their parts and locks):
/// `$WEIGHTREEL_WORK`, else `$XDG_CACHE_HOME/weightreel/work`, else
/// `~/.cache/weightreel/work`.
pub fn work_root() -> Result<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("WEIGHTREEL_WORK") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(cache) = var("XDG_CACHE_HOME") {
        return Ok(Path::new(&cache).join("weightreel").join("work"));
    }
    if let Some(home) = var("HOME") {
        return Ok(Path::new(&home).join(".cache/weightreel/work"));
    }
    Err(Error::store(
        "work directory",
        "none of WEIGHTREEL_WORK, XDG_CACHE_HOME and HOME is set: set WEIGHTREEL_WORK=DIR",
    ))
}

/// Open the store whose registry is at `url`, its work in [`work_root`] (created when
/// `writable`), and its reels where `$WEIGHTREEL_REELS` says (the CLI's `--reels` replaces it
/// through [`Store::with_reels`]); a PostgreSQL store has no reel directory of its own, since
/// reels on one machine's disk would be missing on the others.
pub(super) fn open_postgres(url: &str, writable: bool) -> Result<Store> {
    let work = work_root()?;
    let local = work.parent().unwrap_or(&work).to_path_buf();
    let registry = PgRegistry::connect(url, writable)?;
    if writable {
        std::fs::create_dir_all(&work).map_err(|e| Error::io(&work, e))?;
    }
    let mut store = Store::with_registry(Box::new(registry), &local, &work);
    store.set_opened_as(Path::new(url));
    // The reels are where `$WEIGHTREEL_REELS` or the registry's record says; with neither,
    // `Store::with_reels` must say before a reel is read or written.
    let env_says = std::env::var_os("WEIGHTREEL_REELS").is_some_and(|v| !v.is_empty());
    if env_says || store.registry().recorded_reels()?.is_some() {
        store.set_reels(None)?;
    }
    Ok(store)
}

/// Open the store whose registry is at `url` with reels in the directory `reels` and work in
/// `work` (both created when `writable`).
pub(super) fn open_postgres_at(
    url: &str,
    reels: &Path,
    work: &Path,
    writable: bool,
) -> Result<Store> {
    let registry = PgRegistry::connect(url, writable)?;
    if writable {
        std::fs::create_dir_all(reels).map_err(|e| Error::io(reels, e))?;
        std::fs::create_dir_all(work).map_err(|e| Error::io(work, e))?;
    }
    let mut store = Store::with_registry(Box::new(registry), work, work);
    store.set_reels(Some(&super::objects::ReelLocation::Directory(
        reels.to_path_buf(),
    )))?;
    Ok(store)
}
