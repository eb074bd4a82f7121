//! The local Hugging Face cache, laid out and located exactly as `huggingface_hub` does:
//! `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`; inside it
//! `models--{org}--{name}/refs/{revision}` holds a commit hash and
//! `models--{org}--{name}/snapshots/{commit}/` holds the files.

use std::path::{Path, PathBuf};

/// The cache directory from the environment, as `huggingface_hub` computes it.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("HF_HUB_CACHE").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    if let Some(home) = std::env::var_os("HF_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(home).join("hub"));
    }
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(xdg).join("huggingface").join("hub"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/huggingface/hub"))
}

/// Folder name of a model repo in the cache: `models--org--name`.
pub fn repo_folder(repo: &str) -> String {
    format!("models--{}", repo.replace('/', "--"))
}

/// A snapshot found in the cache.
#[derive(Debug, Clone)]
pub struct CachedSnapshot {
    /// The commit hash the revision points at.
    pub commit: String,
    /// `snapshots/{commit}` directory.
    pub dir: PathBuf,
}

/// Look `repo` at `revision` up in the cache at `root`. A revision that is a full commit hash is
/// looked up directly in `snapshots/`; a branch or tag goes through `refs/`.
pub fn find_snapshot(root: &Path, repo: &str, revision: &str) -> Option<CachedSnapshot> {
    let repo_dir = root.join(repo_folder(repo));
    let commit = if is_commit_hash(revision) {
        revision.to_string()
    } else {
        let text = std::fs::read_to_string(repo_dir.join("refs").join(revision)).ok()?;
        text.trim().to_string()
    };
    if !is_commit_hash(&commit) {
        return None;
    }
    let dir = repo_dir.join("snapshots").join(&commit);
    dir.is_dir().then_some(CachedSnapshot { commit, dir })
}

/// A 40-hex-digit git commit id.
pub fn is_commit_hash(text: &str) -> bool {
    text.len() == 40 && text.bytes().all(|b| b.is_ascii_hexdigit())
}
