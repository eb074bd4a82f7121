//! The registry behind a small trait, so that each backend is one module: SQLite in the store
//! directory (`sqlite.rs`, the default) and PostgreSQL (`postgres.rs`, feature `queue`).
//!
//! The trait holds only what the database does. [`super::Store`] is the facade the library
//! calls: it keeps the local concerns — the reel files under `reels/`, the work directories
//! and their locks, the sweep and `gc` — and derives `find`, `stats`, `matching` and the rest
//! from these operations, so search, list, stats, decode and the gallery read every backend
//! through the same code.
//!
//! Every backend keeps the same rules:
//! - [`Registry::commit`] writes an entry, all its frame rows, the model's fingerprint and the
//!   receipt in one transaction, deleting the entry of the same name and settings key it
//!   replaces; entries of other settings are kept. A failed frame stream or write leaves
//!   nothing of the new entry visible.
//! - The schema carries a version, read first; a newer one is refused with a message saying so.

use super::fingerprints::{FingerprintSource, IndexRow};
use super::registry::{EntryRecord, EntrySummary, FrameRecord, Listing};
use crate::error::Result;
use crate::fingerprint::Fingerprint;

/// What [`Registry::remove`] removed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Removed {
    /// Reel files (relative to the store) of the removed entries, for the caller to delete.
    pub reels: Vec<String>,
    /// Fingerprint rows removed (0 or 1).
    pub fingerprints: usize,
}

/// A registry backend.
pub trait Registry: Send {
    /// Where the registry is, for messages: a path, or a URL without its password.
    fn label(&self) -> String;

    /// The store's identity when the registry keeps it (a shared registry: every machine's
    /// handle names the same store in reel locations' owner objects); `None`: the store
    /// directory's `store-id` file is it.
    fn identity(&self) -> Result<Option<String>> {
        Ok(None)
    }

    /// Where the store keeps its reels, as last recorded by [`Registry::record_reels`] (see
    /// `reels.rs`); `None`: nothing recorded (a store written before it was, or empty).
    fn recorded_reels(&self) -> Result<Option<String>>;

    /// Record where the store keeps its reels, replacing an earlier record.
    fn record_reels(&mut self, value: &str) -> Result<()>;

    /// Commit `entry` with its `frames`, and optionally the model's fingerprint and a receipt
    /// tag, in one transaction replacing the entry with the same name and settings key.
    /// Returns the new id and the reel file of the replaced entry (which the caller deletes).
    fn commit(
        &mut self,
        entry: &EntryRecord,
        frames: &mut dyn Iterator<Item = Result<FrameRecord>>,
        fingerprint: Option<(&FingerprintSource, &Fingerprint)>,
        receipt: Option<&str>,
    ) -> Result<(i64, Option<String>)>;

    /// The entry committed with receipt `tag`, if it is still there.
    fn receipt(&self, tag: &str) -> Result<Option<i64>>;

    /// All entries, oldest first, and the rows that could not be read.
    fn listing(&self) -> Result<Listing>;

    /// The readable entries named `name`, oldest first (one indexed lookup, not a listing).
    fn entries_named(&self, name: &str) -> Result<Vec<EntrySummary>>;

    /// The reel files of entries that begin with `prefix` (to pick a free reel name without
    /// listing every entry).
    fn reel_files_starting(&self, prefix: &str) -> Result<Vec<String>>;

    /// The entry with id `id`.
    fn entry(&self, id: i64) -> Result<Option<EntrySummary>>;

    /// The frame rows of entry `id`, in order.
    fn frames(&self, id: i64) -> Result<Vec<FrameRecord>>;

    /// Remove the entries named `name` (only the one of `settings_key`, a full key, if given)
    /// in one transaction; the fingerprint goes with the name's last entry, or alone when
    /// no key is given.
    fn remove(&mut self, name: &str, settings_key: Option<&str>) -> Result<Removed>;

    /// Store fingerprints (replacing those of the same names) in one transaction.
    fn put_fingerprints(&mut self, rows: &[(&FingerprintSource, &Fingerprint)]) -> Result<()>;

    /// The fingerprint of `name`.
    fn fingerprint(&self, name: &str) -> Result<Option<Fingerprint>>;

    /// Names of the stored fingerprints, sorted.
    fn fingerprint_names(&self) -> Result<Vec<String>>;

    /// Where the fingerprint of `name` came from.
    fn fingerprint_source(&self, name: &str) -> Result<Option<FingerprintSource>>;

    /// Every model's compact index row (what search's candidate stage scans), by name.
    fn fingerprint_index(&self) -> Result<Vec<IndexRow>>;

    /// Names and sources of entries whose model has no fingerprint, one per name.
    fn entries_without_fingerprint(&self) -> Result<Vec<(String, String)>>;
}
