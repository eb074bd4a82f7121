//! Handles: the short reel file names, and finding entries by the names users type.
//!
//! A reel is named `reels/<slug>-<short key>.mkv` (`all-minilm-l6-v2-1a2b3c4d.mkv`): the model
//! name's slug and the first 8 hex digits of its settings key. When that name is taken (the
//! entry being replaced still uses it, or another model has the same slug), `-2`, `-3`… are
//! added; the name is claimed with `link(2)`, which never replaces a file, so two encodes
//! cannot take the same name. Before linking, the encode writes the name it is about to take
//! into its locked work directory (`work/<…>/claim`), so that a sweep by another process does
//! not take the new, not yet committed reel for an orphan.

use std::path::Path;

use super::registry::{EntrySummary, Store};
use crate::error::{Error, Result};

/// The file in an encode's work directory naming the reel it is placing.
pub(super) const CLAIM_FILE: &str = "claim";

/// The short form of a settings key users type and see: its first 8 hex digits
/// (`v3-1a2b3c4d5e6f` → `1a2b3c4d`).
pub fn short_key(key: &str) -> &str {
    let hex = key.rsplit('-').next().unwrap_or(key);
    hex.get(..8).unwrap_or(hex)
}

/// Whether `typed` names settings key `key`: the whole key, or its short form or a longer
/// prefix of its hex digits.
pub fn key_matches(key: &str, typed: &str) -> bool {
    let hex = key.rsplit('-').next().unwrap_or(key);
    key == typed || (typed.len() >= 4 && hex.starts_with(typed))
}

impl Store {
    /// Move the finished reel `joined` (inside the locked work directory `work`) into `reels/`
    /// under the first free name of `stem`; returns that name relative to the store.
    pub fn place_reel(&self, joined: &Path, stem: &str, work: &Path) -> Result<String> {
        let referenced = self.reel_files_of_stem(stem)?;
        let claim = work.join(CLAIM_FILE);
        for n in 1..=1000u32 {
            let name = if n == 1 {
                format!("reels/{stem}.mkv")
            } else {
                format!("reels/{stem}-{n}.mkv")
            };
            let target = self.dir().join(&name);
            if referenced.contains(&name) || target.exists() {
                continue;
            }
            std::fs::write(&claim, name.as_bytes()).map_err(|e| Error::io(&claim, e))?;
            match std::fs::hard_link(joined, &target) {
                Ok(()) => {
                    let _ = std::fs::remove_file(joined);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                // The work directory is on another file system (a PostgreSQL store's local
                // work, a shared reel directory): a copy beside the target, then the link.
                Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
                    // Named after this encode's (locked) work directory: no other encode
                    // writes the same copy.
                    let owner = work.file_name().unwrap_or_default().to_string_lossy();
                    let copy = self.reels_dir().join(format!(".{owner}.placing.tmp"));
                    let linked = std::fs::copy(joined, &copy)
                        .and_then(|_| std::fs::File::open(&copy)?.sync_all())
                        .and_then(|()| std::fs::hard_link(&copy, &target));
                    let _ = std::fs::remove_file(&copy);
                    match linked {
                        Ok(()) => {
                            let _ = std::fs::remove_file(joined);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                        Err(e) => return Err(Error::io(&target, e)),
                    }
                }
                // A file system without hard links: a rename, checked just before.
                Err(_) if !target.exists() => {
                    std::fs::rename(joined, &target).map_err(|e| Error::io(&target, e))?;
                }
                Err(e) => return Err(Error::io(&target, e)),
            }
            if let Ok(dir) = std::fs::File::open(self.reels_dir()) {
                let _ = dir.sync_all();
            }
            return Ok(name);
        }
        Err(Error::store(
            self.dir(),
            format!("no free reel name for '{stem}' (reels/{stem}-2.mkv … -1000.mkv are taken)"),
        ))
    }

    /// The entries `typed` names: entries of that model name, else entries whose source is
    /// that path (as typed or resolved), each kept if `settings_key` (full or short) matches.
    pub fn matching(&self, typed: &str, settings_key: Option<&str>) -> Result<Vec<EntrySummary>> {
        // A name is one indexed lookup; only a path needs every entry's source.
        let mut found = self.find(typed)?;
        if found.is_empty() {
            let canonical = |p: &str| std::fs::canonicalize(p).ok();
            let typed_path = canonical(typed);
            found = self
                .list()?
                .into_iter()
                .filter(|e| {
                    e.record.source == typed
                        || (typed_path.is_some() && canonical(&e.record.source) == typed_path)
                })
                .collect();
        }
        Ok(found
            .into_iter()
            .filter(|e| settings_key.is_none_or(|k| key_matches(&e.record.settings.key(), k)))
            .collect())
    }

    /// The stored model name `typed` stands for: a name with entries or a fingerprint, else
    /// the name of the entries or fingerprint whose source is the path `typed`.
    pub fn stored_name_of(&self, typed: &str) -> Result<Option<String>> {
        if let Some(e) = self.matching(typed, None)?.first() {
            return Ok(Some(e.record.name.clone()));
        }
        if self.fingerprint_source(typed)?.is_some() {
            return Ok(Some(typed.to_string()));
        }
        let canonical = |p: &str| std::fs::canonicalize(p).ok();
        let typed_path = canonical(typed);
        for name in self.fingerprint_names()? {
            if let Some(src) = self.fingerprint_source(&name)? {
                if src.source == typed
                    || (typed_path.is_some() && canonical(&src.source) == typed_path)
                {
                    return Ok(Some(name));
                }
            }
        }
        Ok(None)
    }

    /// The one entry `typed` (a stored name or source) and `settings_key` name. No entry, an
    /// unknown key and several entries without a key are errors that list what there is;
    /// the last two are [`Error::Ambiguous`] (usage errors, exit 2).
    pub fn resolve(&self, typed: &str, settings_key: Option<&str>) -> Result<EntrySummary> {
        let all = self.matching(typed, None)?;
        if all.is_empty() {
            let mut names: Vec<String> = self.list()?.into_iter().map(|e| e.record.name).collect();
            names.sort();
            names.dedup();
            names.sort_by_key(|n| {
                crate::text::edit_distance(&typed.to_lowercase(), &n.to_lowercase())
            });
            let near: Vec<&str> = names.iter().take(3).map(String::as_str).collect();
            let hint = if near.is_empty() {
                String::new()
            } else {
                format!(" (closest: {})", near.join(", "))
            };
            return Err(Error::store(
                self.location(),
                format!("no model named '{typed}'{hint}"),
            ));
        }
        let keys = || all.iter().map(entry_label).collect::<Vec<_>>().join("; ");
        let chosen: Vec<&EntrySummary> = all
            .iter()
            .filter(|e| settings_key.is_none_or(|k| key_matches(&e.record.settings.key(), k)))
            .collect();
        match (chosen.as_slice(), settings_key) {
            ([one], _) => Ok((*one).clone()),
            ([], Some(k)) => Err(Error::Ambiguous {
                name: typed.to_string(),
                choices: format!("has no entry with settings key '{k}'; its keys: {}", keys()),
            }),
            _ => Err(Error::Ambiguous {
                name: typed.to_string(),
                choices: format!(
                    "has {} entries; choose one with --settings-key: {}",
                    chosen.len(),
                    keys()
                ),
            }),
        }
    }
}

/// `1a2b3c4d (batch mode, chunk size 8,192, u16, layers all, 2026-12-01)`: what tells an
/// entry apart.
pub fn entry_label(e: &EntrySummary) -> String {
    let s = &e.record.settings;
    let mut parts = vec![
        format!("{} mode", s.method),
        format!("chunk size {}", crate::text::group(s.chunk_size)),
        s.mode.clone(),
        format!("layers {}", s.layers),
    ];
    if let Some(m) = s.max_params {
        parts.push(format!("max-params {}", crate::text::group(m)));
    }
    parts.push(e.record.created_at.get(..10).unwrap_or("").to_string());
    format!("{} ({})", short_key(&s.key()), parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_and_matching() {
        let key = "v3-1a2b3c4d5e6f";
        assert_eq!(short_key(key), "1a2b3c4d");
        for (typed, expected) in [
            ("v3-1a2b3c4d5e6f", true),
            ("1a2b3c4d", true),
            ("1a2b", true),
            ("1a2", false),
            ("2b3c", false),
            ("bogus", false),
        ] {
            assert_eq!(key_matches(key, typed), expected, "{typed}");
        }
    }
}
