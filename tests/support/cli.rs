//! Running the real binary, and what a store holds on disk, for tests that check a command
//! left a store as it was.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `p` as a command-line argument.
pub fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Run the weightreel binary with `args`, without `WEIGHTREEL_STORE`.
pub fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_weightreel"))
        .args(args)
        .env_remove("WEIGHTREEL_STORE")
        .output()
        .unwrap()
}

/// Every file under `dir` with its size, sorted.
pub fn listing(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                stack.push(e.path());
                out.push((e.path(), 0));
            } else if !e
                .file_name()
                .to_string_lossy()
                .starts_with("registry.sqlite-")
            {
                // WAL side files come and go with readers; the database itself is compared.
                out.push((e.path(), meta.len()));
            }
        }
    }
    out.sort();
    out
}
