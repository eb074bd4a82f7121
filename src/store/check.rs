//! `weightreel check`: do the registry and the reels agree?
//!
//! For every entry: the reel exists and opens (envelope and manifest checksums), holds the
//! frames the entry says, and each frame's record carries the checksum of the registry's row
//! (records are read without decoding). With `deep`, every frame is also decoded and checked
//! against its CRC32. Also reported: rows that cannot be read, reels no entry names, and work
//! directories of encodes that did not finish. Nothing is changed.

use std::collections::HashSet;
use std::path::PathBuf;

use serde::Serialize;

use super::registry::Store;
use crate::error::Result;
use crate::reel::{Manifest, ReelFrame, ReelReader};

/// What `check` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// Entries whose reel and frame rows agree.
    pub ok: Vec<String>,
    /// One line per problem found.
    pub problems: Vec<String>,
    /// Reels in `reels/` that no entry names.
    pub orphan_reels: Vec<PathBuf>,
    /// Work directories of encodes that did not finish (resume them, or `rm` the directory).
    pub interrupted: Vec<PathBuf>,
}

impl CheckReport {
    /// True when nothing is wrong (orphans and interrupted encodes are not errors).
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Store {
    /// Check the registry against the reels; see the module documentation.
    pub fn check(&self, deep: bool) -> Result<CheckReport> {
        let listing = self.listing()?;
        let mut report = CheckReport::default();
        for (id, why) in &listing.unreadable {
            report.problems.push(format!(
                "entry #{id}: the registry row cannot be read ({why})"
            ));
        }
        let mut named = HashSet::new();
        for entry in &listing.entries {
            let rec = &entry.record;
            let label = format!(
                "{} (entry #{}, {})",
                rec.name, entry.id, rec.totals.reel_file
            );
            let path = self.reel_path(&rec.totals.reel_file);
            named.insert(path.clone());
            match self.check_entry(entry.id, &path, rec.totals.frames, deep) {
                Ok(()) => report.ok.push(label),
                Err(problem) => report.problems.push(format!("{label}: {problem}")),
            }
        }
        if let Ok(rd) = std::fs::read_dir(self.reels_dir()) {
            let mut orphans: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| !named.contains(p))
                .collect();
            orphans.sort();
            report.orphan_reels = orphans;
        }
        if let Some(storage) = self.reel_storage() {
            for s in storage.list("")? {
                let path = self.reel_path(&format!("reels/{}", s.name));
                if !named.contains(&path) {
                    report.orphan_reels.push(path);
                }
            }
        }
        if let Ok(rd) = std::fs::read_dir(self.work_dir()) {
            let mut work: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir())
                .collect();
            work.sort();
            report.interrupted = work;
        }
        Ok(report)
    }

    /// The problem with one entry, if any.
    fn check_entry(
        &self,
        id: i64,
        path: &std::path::Path,
        frames: u64,
        deep: bool,
    ) -> std::result::Result<(), String> {
        if crate::reel::stored::resolve(path).is_none() && !path.is_file() {
            return Err("the reel is missing".into());
        }
        let mut reader = ReelReader::open(path).map_err(|e| e.to_string())?;
        let manifest = Manifest::parse(path, reader.metadata_json()).map_err(|e| e.to_string())?;
        if reader.frame_count() != frames {
            return Err(format!(
                "the reel holds {} frames, the registry says {frames}",
                reader.frame_count()
            ));
        }
        let rows = self.frames(id).map_err(|e| e.to_string())?;
        if rows.len() as u64 != frames {
            return Err(format!(
                "the registry has {} frame rows for {frames} frames",
                rows.len()
            ));
        }
        for row in &rows {
            let i = row.index;
            let frame = if manifest.frames.is_empty() {
                let bytes = reader.frame_record(i).map_err(|e| e.to_string())?;
                ReelFrame::parse_record(path, &manifest, i, &bytes).map_err(|e| e.to_string())?
            } else {
                manifest
                    .frames
                    .get(i as usize)
                    .cloned()
                    .ok_or_else(|| format!("frame {i} is not in the reel's manifest"))?
            };
            if frame.checksum != row.checksum || frame.first_value != row.first_value {
                return Err(format!(
                    "frame {i}: the reel's checksum or position disagrees with the registry"
                ));
            }
            if deep {
                // Tile by tile for a tiled frame: one tile held at a time.
                reader.verify_frame(i).map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }
}
