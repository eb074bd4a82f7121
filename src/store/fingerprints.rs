//! Fingerprints in the registry: one row per model name, replaced by every encode or
//! `fingerprint` of that name. The index that search scans first (sketch and role features,
//! ~0.7 KB a model) is a table of its own, so that a query over many models does not read
//! their bodies (a few tens of KB each).

use super::Store;
use crate::error::Result;
use crate::fingerprint::{Fingerprint, RoleFeatures};

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
    /// Store `fp` as the fingerprint of `source.name`, replacing the one there.
    pub fn put_fingerprint(&mut self, source: &FingerprintSource, fp: &Fingerprint) -> Result<()> {
        self.registry.put_fingerprints(&[(source, fp)])
    }

    /// Store many fingerprints in one transaction (indexing a batch of models).
    pub fn put_fingerprints<'a>(
        &mut self,
        rows: impl IntoIterator<Item = (&'a FingerprintSource, &'a Fingerprint)>,
    ) -> Result<()> {
        let rows: Vec<(&FingerprintSource, &Fingerprint)> = rows.into_iter().collect();
        self.registry.put_fingerprints(&rows)
    }

    /// The fingerprint of `name`, if one is stored.
    pub fn fingerprint(&self, name: &str) -> Result<Option<Fingerprint>> {
        self.registry.fingerprint(name)
    }

    /// Names of the stored fingerprints, sorted.
    pub fn fingerprint_names(&self) -> Result<Vec<String>> {
        self.registry.fingerprint_names()
    }

    /// Where the fingerprint of `name` came from.
    pub fn fingerprint_source(&self, name: &str) -> Result<Option<FingerprintSource>> {
        self.registry.fingerprint_source(name)
    }

    /// Every stored model's sketch and role features, by name. A damaged row is an error
    /// naming the model.
    pub fn fingerprint_index(&self) -> Result<Vec<IndexRow>> {
        self.registry.fingerprint_index()
    }

    /// Names and sources of entries whose model has no fingerprint (encoded by a weightreel
    /// before fingerprints existed), one per name.
    pub fn entries_without_fingerprint(&self) -> Result<Vec<(String, String)>> {
        self.registry.entries_without_fingerprint()
    }
}
