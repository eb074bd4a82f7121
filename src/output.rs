//! Files the user names as outputs (`decode --out`, `--preview`, `frames --png`): what may be
//! written there. Every writer also writes a temporary file beside the target and renames it
//! over the target only when complete, so a failed write leaves an existing file as it was.

use std::path::Path;

use crate::error::{Error, Result};

/// What was at an output path before writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Nothing: the file is new.
    Nothing,
    /// A regular file, which the output replaces once complete.
    File,
}

/// Check that `out` may be written as a regular file: it is not a symbolic link, a device, a
/// FIFO, a socket or a directory, and not inside a store's `reels/` directory (a reel there
/// would be replaced by something else). `what` names the flag in messages.
pub fn check_file(what: &str, out: &Path) -> Result<Existing> {
    refuse_store_reels(what, out)?;
    match std::fs::symlink_metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Existing::Nothing),
        Err(e) => Err(Error::io(out, e)),
        Ok(m) if m.file_type().is_symlink() => Err(Error::invalid(
            what,
            out.display(),
            "a path that is not a symbolic link (give the link's target)",
        )),
        Ok(m) if m.is_file() => Ok(Existing::File),
        Ok(m) if m.is_dir() => Err(Error::invalid(
            what,
            out.display(),
            "a file path, not a directory",
        )),
        Ok(_) => Err(Error::invalid(
            what,
            out.display(),
            "a regular file (this is a device, FIFO or socket)",
        )),
    }
}

/// Check that `dir` may hold output files: it is a directory or does not exist yet, is not a
/// symbolic link, and is not a store's `reels/` directory or inside it.
pub fn check_dir(what: &str, dir: &Path) -> Result<()> {
    refuse_store_reels(what, &dir.join("x"))?;
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(dir, e)),
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::invalid(
            what,
            dir.display(),
            "a directory (or a path that does not exist yet)",
        )),
    }
}

/// Refuse `out` when a directory above it is a store's `reels/` (a directory named `reels`
/// beside a `registry.sqlite`).
fn refuse_store_reels(what: &str, out: &Path) -> Result<()> {
    let absolute = if out.is_absolute() {
        out.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::io(out, e))?
            .join(out)
    };
    // Resolve what exists of the path, so that `store/reels/../reels/x` and links are seen.
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(p), Some(name)) => {
                rest.push(name.to_os_string());
                existing = p;
            }
            _ => break,
        }
    }
    let mut resolved = existing
        .canonicalize()
        .unwrap_or_else(|_| existing.to_path_buf());
    for name in rest.into_iter().rev() {
        resolved.push(name);
    }
    for dir in resolved.ancestors().skip(1) {
        if dir.file_name().is_some_and(|n| n == "reels")
            && dir
                .parent()
                .is_some_and(|p| p.join("registry.sqlite").is_file())
        {
            return Err(Error::invalid(
                what,
                out.display(),
                format!(
                    "a path outside the store's reels directory {} (writing there would replace a reel)",
                    dir.display()
                ),
            ));
        }
    }
    Ok(())
}
