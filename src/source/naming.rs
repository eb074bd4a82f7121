//! What a model is called in the store: its Hub repo id when one is known, else its directory
//! or file name. The full source (the path as typed, the endpoint) is kept apart by the
//! caller; this is the short handle users type back (`decode all-MiniLM-L6-v2`, `rm gpt2`).
//!
//! In order:
//! 1. a Hub repo or a cache snapshot: the repo id;
//! 2. a path inside a Hugging Face cache (`…/models--org--name/snapshots/<sha>/…`): `org/name`;
//! 3. a local model whose `config.json` has a `_name_or_path` that is a repo id (not a path)
//!    and agrees with the directory's name (`bert-large-uncased/` and
//!    `google-bert/bert-large-uncased`), or whose directory's name says nothing
//!    (`checkpoint-500/`, `output/`);
//! 4. the directory's name, or for a file its stem, unless the stem is a generic weight-file
//!    name (`model`, `pytorch_model`, `model-00001-of-00002`…), which names the directory.

use std::path::{Component, Path};

use super::model::validate_repo_id;

/// The store name of a local model at `path` (a file or a directory). `name_or_path` is
/// `config.json`'s `_name_or_path`, when it was read.
pub fn local_name(path: &Path, name_or_path: Option<&str>) -> String {
    if let Some(repo) = cache_repo(path) {
        return repo;
    }
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let clean: std::path::PathBuf = absolute
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect();
    let dir_name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty() && n != "..")
    };
    // `_name_or_path` often names the model a fine-tune started from (all-MiniLM-L6-v2's says
    // nreimers/MiniLM-L6-H384-uncased): it is taken when it agrees with the directory's name
    // (adding the org) or when the directory's name says nothing (`checkpoint-500`, a commit).
    let folder = if clean.is_dir() {
        dir_name(&clean)
    } else {
        clean.parent().and_then(dir_name)
    };
    if let Some(repo) = name_or_path.filter(|n| is_repo_id(n)) {
        let repo_name = repo.rsplit('/').next().unwrap_or(repo);
        let agrees = folder
            .as_deref()
            .is_some_and(|f| f.eq_ignore_ascii_case(repo_name) || is_generic_folder(f));
        if agrees {
            return repo.to_string();
        }
    }
    if clean.is_dir() {
        return folder.unwrap_or_else(|| "model".into());
    }
    let stem = clean
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if stem.is_empty() || is_generic_stem(&stem) {
        if let Some(parent) = clean.parent().and_then(dir_name) {
            return parent;
        }
    }
    if stem.is_empty() {
        "model".into()
    } else {
        stem
    }
}

/// `org/name` of a path inside a Hugging Face cache (`models--org--name/snapshots/…`).
fn cache_repo(path: &Path) -> Option<String> {
    let absolute = std::path::absolute(path).ok()?;
    let parts: Vec<String> = absolute
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let at = parts.iter().rposition(|p| p == "snapshots")?;
    let folder = parts.get(at.checked_sub(1)?)?.strip_prefix("models--")?;
    let repo = folder.replacen("--", "/", 1);
    is_repo_id(&repo).then_some(repo)
}

/// A Hub repo id (`name` or `org/name`), not a path that happens to be one.
pub fn is_repo_id(text: &str) -> bool {
    text.matches('/').count() <= 1
        && !text.starts_with('.')
        && !text.ends_with('/')
        && validate_repo_id(text).is_ok()
        && !Path::new(text).exists()
}

/// Check a name given with `--name`: 1 to 200 characters, no control characters, not
/// blank at either end.
pub fn check_name(name: &str) -> crate::error::Result<()> {
    let ok = !name.is_empty()
        && name.chars().count() <= 200
        && !name.chars().any(char::is_control)
        && name.trim() == name;
    if ok {
        Ok(())
    } else {
        Err(crate::error::Error::invalid(
            "--name",
            format!("'{name}'"),
            "1 to 200 characters, no control characters or surrounding spaces",
        ))
    }
}

/// Directory names that say nothing about the model: training outputs and commit hashes.
fn is_generic_folder(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("checkpoint")
        || matches!(
            lower.as_str(),
            "model" | "models" | "output" | "outputs" | "out" | "final" | "weights"
        )
        || (name.len() == 40 && name.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Weight-file stems that say nothing about the model.
fn is_generic_stem(stem: &str) -> bool {
    let base = stem.split("-0000").next().unwrap_or(stem);
    matches!(
        base,
        "model" | "pytorch_model" | "consolidated" | "diffusion_pytorch_model" | "adapter_model"
    ) || stem.starts_with("model-0")
}

/// The file-system-safe short form of `name` for reel files: its last part (after the
/// org), lowercased, runs of other characters as one `-`, at most 48 characters.
pub fn slug(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    let mut out = String::new();
    for c in last.chars() {
        if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out: String = out
        .trim_matches(|c| c == '-' || c == '.')
        .chars()
        .take(48)
        .collect();
    let out = out.trim_end_matches(['-', '.']).to_string();
    if out.is_empty() {
        "model".into()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_short_and_safe() {
        for (name, expected) in [
            ("sentence-transformers/all-MiniLM-L6-v2", "all-minilm-l6-v2"),
            ("gpt2", "gpt2"),
            ("../weird name!!/x", "x"),
            ("Qwen/Qwen2.5-0.5B", "qwen2.5-0.5b"),
            ("///", "model"),
            ("..", "model"),
        ] {
            assert_eq!(slug(name), expected, "{name}");
        }
    }

    #[test]
    fn cache_paths_give_the_repo() {
        let p = Path::new(
            "/root/.cache/huggingface/hub/models--org--my-model/snapshots/abc/model.safetensors",
        );
        assert_eq!(cache_repo(p).as_deref(), Some("org/my-model"));
        assert_eq!(cache_repo(Path::new("/tmp/x/model.safetensors")), None);
    }

    #[test]
    fn repo_ids_are_not_paths() {
        assert!(is_repo_id("bert-base-uncased"));
        assert!(is_repo_id("sentence-transformers/all-MiniLM-L6-v2"));
        assert!(!is_repo_id("/tmp/out"));
        assert!(!is_repo_id("./out"));
        assert!(!is_repo_id("a/b/c"));
        assert!(!is_repo_id(""));
    }
}
