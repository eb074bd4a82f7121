//! Fingerprints in the registry: one row per model name, replaced by every encode or
//! `fingerprint` of that name. The index that search scans first (sketch and role features,
//! ~0.7 KB a model) is a table of its own, so that a query over many models does not read
//! their bodies (a few tens of KB each).

use rusqlite::{params, OptionalExtension};

use super::registry::sql_err;
use super::Store;
use crate::error::{Error, Result};
use crate::fingerprint::{self, Fingerprint, RoleFeatures};

/// Where a fingerprint came from.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FingerprintSource {
    /// The model's name in the store.
    pub name: String,
    /// The source as opened (path, cache or Hub URL, without credentials).
    pub source: String,
    /// Hub revision, when from the Hub.
    pub revision: Option<String>,
    /// `config.json`'s `model_type`.
    pub model_type: Option<String>,
    /// When it was taken (RFC 3339).
    pub created_at: String,
}

/// What search scans for every stored model.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexRow {
    /// Model name.
    pub name: String,
    /// Parameters over its printed tensors.
    pub params: u64,
    /// Its sketch.
    pub sketch: Vec<f32>,
    /// Its role features.
    pub features: Vec<RoleFeatures>,
}

impl Store {
    pub(super) fn has_fingerprints_table(&self) -> Result<bool> {
        if let Some(&known) = self.has_fingerprints.get() {
            return Ok(known);
        }
        let found = self.has_table("fingerprints")?;
        Ok(*self.has_fingerprints.get_or_init(|| found))
    }

    fn fp_err(&self, e: rusqlite::Error) -> Error {
        sql_err(&self.dir.join("registry.sqlite"), e)
    }

    /// Store `fp` as the fingerprint of `source.name`, replacing the one there.
    pub fn put_fingerprint(&mut self, source: &FingerprintSource, fp: &Fingerprint) -> Result<()> {
        let db = self.dir.join("registry.sqlite");
        let tx = self.conn.transaction().map_err(|e| sql_err(&db, e))?;
        put_fingerprint_in(&tx, source, fp)
            .and_then(|()| tx.commit())
            .map_err(|e| sql_err(&db, e))
    }

    /// Store many fingerprints in one transaction (indexing a batch of models).
    pub fn put_fingerprints<'a>(
        &mut self,
        rows: impl IntoIterator<Item = (&'a FingerprintSource, &'a Fingerprint)>,
    ) -> Result<()> {
        let db = self.dir.join("registry.sqlite");
        let tx = self.conn.transaction().map_err(|e| sql_err(&db, e))?;
        for (source, fp) in rows {
            put_fingerprint_in(&tx, source, fp).map_err(|e| sql_err(&db, e))?;
        }
        tx.commit().map_err(|e| sql_err(&db, e))
    }

    /// The fingerprint of `name`, if one is stored.
    pub fn fingerprint(&self, name: &str) -> Result<Option<Fingerprint>> {
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

    /// Names of the stored fingerprints, sorted.
    pub fn fingerprint_names(&self) -> Result<Vec<String>> {
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

    /// Where the fingerprint of `name` came from.
    pub fn fingerprint_source(&self, name: &str) -> Result<Option<FingerprintSource>> {
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

    /// Every stored model's sketch and role features, by name. A damaged row is an error
    /// naming the model.
    pub fn fingerprint_index(&self) -> Result<Vec<IndexRow>> {
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

    /// Names and sources of entries whose model has no fingerprint (encoded by a weightreel
    /// before fingerprints existed), one per name.
    pub fn entries_without_fingerprint(&self) -> Result<Vec<(String, String)>> {
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
pub(super) fn put_fingerprint_in(
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
