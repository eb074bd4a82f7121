//! Stage 5: the store — a directory holding reels and a SQLite registry (`registry.sqlite`, WAL
//! mode), or a PostgreSQL registry with reels in a shared directory, that records every encoded
//! model, its settings, totals and per-frame index.
//!
//! Visibility rules that make the store crash-safe:
//! - a reel is written to a temporary name, fsynced and renamed before the registry row that
//!   names it is committed, so no committed row ever points at an incomplete reel;
//! - an entry and all its frame rows are inserted in one transaction, which also deletes the
//!   entry it replaces (same name, same settings), so readers see the old entry or the new one;
//! - the replaced reel is deleted only after that commit.
//!
//! The schema carries a version (SQLite: `PRAGMA user_version`; PostgreSQL: the table
//! `wr_registry_schema`); a newer one is refused.
//!
//! The registry sits behind [`Registry`] (`backend.rs`), one module per backend: `sqlite.rs`
//! (the store directory, the default) and `postgres.rs` (`--store postgres://…`, feature
//! `queue`); see [`Store::open_url`].

mod backend;
mod check;
mod fingerprints;
mod gc;
mod names;
pub mod objects;
mod owner;
#[cfg(feature = "queue")]
mod postgres;
mod reels;
mod registry;
mod sqlite;

pub use backend::{Registry, Removed};

pub use check::CheckReport;
pub use fingerprints::{FingerprintSource, IndexRow};
pub use gc::Kept;
pub use gc::{GcReport, Leftover};
pub use names::{entry_label, key_matches, short_key};
pub use owner::{age_text, parse_min_age, Owner, DEFAULT_MIN_AGE, OWNER_OBJECT, STORE_ID_FILE};
pub use reels::reels_location;

#[cfg(feature = "queue")]
pub use postgres::PG_SCHEMA_VERSION;

pub use registry::{
    EntryRecord, EntrySummary, FrameRecord, Listing, Settings, Store, StoreStats, Totals,
    SCHEMA_VERSION,
};

/// The default store directory when neither `--storage-dir` nor `$WEIGHTREEL_STORE` is given.
pub const DEFAULT_STORE_DIR: &str = "weightreel_store";

/// The store directory from an explicit flag, else `$WEIGHTREEL_STORE`, else the default.
pub fn store_dir(flag: Option<&std::path::Path>) -> std::path::PathBuf {
    if let Some(dir) = flag {
        return dir.to_path_buf();
    }
    std::env::var_os("WEIGHTREEL_STORE")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(DEFAULT_STORE_DIR))
}

/// The PostgreSQL URL a store "directory" names (`postgres://…` or `postgresql://…`), if it
/// names one: the CLI's `--store` and `$WEIGHTREEL_STORE` take either a directory or a URL.
pub fn registry_url(dir: &std::path::Path) -> Option<&str> {
    dir.to_str()
        .filter(|s| s.starts_with("postgres://") || s.starts_with("postgresql://"))
}

/// A store location (`--store`) as messages show it: a PostgreSQL URL loses its password.
pub fn shown(location: &std::path::Path) -> String {
    match registry_url(location) {
        #[cfg(feature = "queue")]
        Some(url) => crate::queue::redacted(url),
        #[cfg(not(feature = "queue"))]
        Some(_) => "the PostgreSQL store".to_string(),
        None => location.display().to_string(),
    }
}

#[cfg(not(feature = "queue"))]
fn open_postgres(url: &str, _writable: bool) -> crate::error::Result<Store> {
    Err(crate::error::Error::store(
        url.split('@').next_back().unwrap_or("postgres"),
        "this weightreel was built without PostgreSQL support (cargo feature `queue`)",
    ))
}

#[cfg(feature = "queue")]
use postgres::open_postgres;
