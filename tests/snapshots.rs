//! Snapshots of the CLI's text (issue 11, §7): every named bad invocation with its message and
//! exit status, `--help`, `list`/`stats` on a fixed store, and the encode summary, `show` and
//! `inspect --tensors` of a tiny model. A changed output shows as a diff
//! of `tests/snapshots/*.snap`; accept a deliberate change with `INSTA_UPDATE=always` (or
//! `cargo insta review`) and review the diff like code.
//!
//! Paths, dates, timings and reel sizes are normalised: `[TMP]` is the test's directory,
//! durations read `#.##s`, rates and reel bytes `#`, dates `YYYY-MM-DD`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::fixtures::{self, Dims};

/// A directory with a tiny model (`tiny-model/`: distilgpt2's layout, hidden size 8), a
/// `config.json` next to nothing, and a file that is not a reel.
struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Workspace {
        let dir = tempfile::tempdir().unwrap();
        fixtures::write_arch(
            &dir.path().join("tiny-model"),
            "distilgpt2",
            Dims::default(),
            1,
        );
        std::fs::write(
            dir.path().join("config.json"),
            "{\"model_type\": \"gpt2\"}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("bad.mkv"), b"not a reel").unwrap();
        std::fs::create_dir_all(dir.path().join("empty")).unwrap();
        Workspace { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Run weightreel in the workspace, with no Hub, no token and no default store.
    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_weightreel"))
            .args(args)
            .current_dir(self.path())
            .env("HF_HUB_CACHE", self.path().join("empty-cache"))
            .env("HF_TOKEN_PATH", self.path().join("no-token"))
            .env("HF_HUB_OFFLINE", "1")
            .env("COLUMNS", "100")
            .env_remove("HF_TOKEN")
            .env_remove("HF_ENDPOINT")
            .env_remove("WEIGHTREEL_STORE")
            .output()
            .unwrap()
    }

    /// What a command that must succeed and print nothing on stderr printed, normalised.
    fn stdout_of(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.normalise(&String::from_utf8_lossy(&out.stdout))
    }

    /// The text with the workspace's path, dates and timings replaced.
    fn normalise(&self, text: &str) -> String {
        let dir = self.path().to_str().unwrap();
        let canonical = self.path().canonicalize().unwrap();
        let text = text
            .replace(canonical.to_str().unwrap(), "[TMP]")
            .replace(dir, "[TMP]");
        let seconds = regex_lite::Regex::new(r"\b\d+\.\d+s\b").unwrap();
        let text = seconds.replace_all(&text, |c: &regex_lite::Captures| {
            c[0].chars()
                .map(|ch| if ch.is_ascii_digit() { '#' } else { ch })
                .collect::<String>()
        });
        let rate = regex_lite::Regex::new(r"[\d,]+ params/s").unwrap();
        let text = rate.replace_all(&text, "# params/s");
        // A reel holds its encode's time and date, whose text varies in length.
        let reel = regex_lite::Regex::new(r"(\.mkv) \([\d,]+ bytes\)").unwrap();
        let text = reel.replace_all(&text, "$1 (# bytes)");
        let date = regex_lite::Regex::new(r"\b\d{4}-\d{2}-\d{2}\b").unwrap();
        date.replace_all(&text, "YYYY-MM-DD").into_owned()
    }
}

/// One bad invocation: its exit status and what it printed on stderr (stdout must be empty).
fn bad(args: &[&str]) -> String {
    let ws = Workspace::new();
    let out = ws.run(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.stdout.is_empty(),
        "{args:?} printed on stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    format!(
        "$ weightreel {}\nexit status: {}\n{}",
        args.join(" "),
        out.status.code().map_or("none".into(), |c| c.to_string()),
        ws.normalise(&stderr)
    )
}

/// One test per bad invocation, named after the mistake, each with its own snapshot.
macro_rules! bad_invocations {
    ($($name:ident: [$($arg:expr),*] => $code:expr;)*) => {$(
        #[test]
        fn $name() {
            let text = bad(&[$($arg),*]);
            let code = text.lines().nth(1).unwrap().to_string();
            assert_eq!(code, format!("exit status: {}", $code), "{text}");
            insta::assert_snapshot!(stringify!($name), text);
        }
    )*};
}

bad_invocations! {
    // Usage errors: exit 2.
    usage_no_arguments: [] => 2;
    usage_unknown_flag: ["--frobnicate"] => 2;
    usage_unknown_command: ["encdoe", "tiny-model"] => 2;
    usage_layers_misspelt: ["inspect", "tiny-model", "--layers", "attension"] => 2;
    usage_layers_empty: ["inspect", "tiny-model", "--layers", ""] => 2;
    usage_layers_all_and_bogus: ["inspect", "tiny-model", "--layers", "all,bogus"] => 2;
    usage_mode_misspelt: ["encode", "tiny-model", "--mode", "lossles"] => 2;
    usage_include_bad_regex: ["inspect", "tiny-model", "--include", "layer.(0"] => 2;
    usage_exclude_bad_regex: ["encode", "tiny-model", "--exclude", "[a-"] => 2;
    usage_decode_include_bad_regex: ["decode", "bad.mkv", "--out", "x.safetensors", "--include", "*"] => 2;
    usage_chunk_size_zero: ["encode", "tiny-model", "--chunk-size", "0"] => 2;
    usage_max_params_negative: ["encode", "tiny-model", "--max-params", "-5"] => 2;
    usage_sample_unknown: ["encode", "tiny-model", "--sample", "random"] => 2;
    usage_format_unknown: ["inspect", "tiny-model", "--format", "onnx"] => 2;
    usage_hub_connections_zero: ["inspect", "tiny-model", "--hub-connections", "0"] => 2;
    usage_revision_escapes: ["inspect", "gpt2", "--revision", "../main"] => 2;
    usage_top_zero: ["search", "gpt2", "--top", "0"] => 2;
    usage_method_unknown: ["search", "gpt2", "--method", "fuzzy"] => 2;
    usage_frames_backwards_range: ["frames", "bad.mkv", "--png", "out", "--frames", "5-2"] => 2;
    usage_port_with_address: ["serve", "--port", "127.0.0.1:8470"] => 2;
    usage_completions_unknown_shell: ["completions", "pwsh"] => 2;
    usage_model_and_models: ["--model", "a", "--models", "b"] => 2;
    usage_stream_without_model: ["--stream"] => 2;
    // Bad input: exit 1, one line.
    input_missing_file: ["inspect", "./no-such-model.safetensors"] => 1;
    input_not_safetensors: ["inspect", "config.json"] => 1;
    input_not_a_reel: ["decode", "bad.mkv", "--out", "back.safetensors"] => 1;
    input_no_store_here: ["list", "--store", "empty"] => 1;
    input_statistics_without_store: ["--statistics", "--storage-dir", "empty"] => 1;
    input_offline_not_cached: ["inspect", "gpt2"] => 1;
    input_offline_hub_url_not_cached: ["inspect", "https://huggingface.co/openai-community/gpt2/tree/v1.0"] => 1;
    input_dataset_url: ["inspect", "https://huggingface.co/datasets/squad"] => 1;
}

/// Every bad invocation but the no-arguments one says it on one line.
#[test]
fn bad_invocations_are_one_line_each() {
    let ws = Workspace::new();
    for args in [
        vec!["--frobnicate"],
        vec!["inspect", "tiny-model", "--layers", "attension"],
        vec!["inspect", "tiny-model", "--include", "("],
        vec!["inspect", "config.json"],
        vec!["list", "--store", "empty"],
    ] {
        let out = ws.run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    }
}

#[test]
fn help_text() {
    let ws = Workspace::new();
    let out = ws.run(&["--help"]);
    assert!(out.status.success());
    insta::assert_snapshot!("help", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn completions_name_the_commands_for_each_shell() {
    let ws = Workspace::new();
    for (shell, marker) in [
        ("bash", "complete -F _weightreel"),
        ("zsh", "#compdef weightreel"),
        ("fish", "complete -c weightreel"),
    ] {
        let out = ws.run(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(marker),
            "{shell}: {}",
            &text[..text.len().min(200)]
        );
        for command in ["encode", "inspect", "completions", "storage-dir"] {
            assert!(text.contains(command), "{shell} lacks {command}");
        }
    }
}

/// A store holding the tiny model twice (u16 batch, lossless chunks), made the same way every
/// time.
fn fixed_store(ws: &Workspace) -> PathBuf {
    let store = ws.path().join("store");
    for extra in [
        &["--max-params", "500"][..],
        &[
            "--mode",
            "lossless",
            "--chunk-encoding",
            "--chunk-size",
            "256",
        ][..],
    ] {
        let mut args = vec!["encode", "tiny-model", "--store", "store", "--quiet"];
        args.extend_from_slice(extra);
        let out = ws.run(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    store
}

#[test]
fn list_and_stats_of_a_fixed_store() {
    let ws = Workspace::new();
    fixed_store(&ws);
    let text = |args: &[&str]| ws.stdout_of(args);
    insta::assert_snapshot!("list", text(&["list", "--store", "store"]));
    insta::assert_snapshot!("stats", text(&["stats", "--store", "store"]));
    // The guide's pair prints both, the list first, a blank line between.
    let both = text(&["--list-models", "--statistics", "--storage-dir", "store"]);
    assert_eq!(
        both,
        format!(
            "{}\n{}",
            text(&["list", "--store", "store"]),
            text(&["stats", "--store", "store"])
        )
    );
    let json: serde_json::Value = serde_json::from_str(&text(&[
        "--list-models",
        "--statistics",
        "--storage-dir",
        "store",
        "--json",
    ]))
    .unwrap();
    assert_eq!(json["models"].as_array().unwrap().len(), 2);
    assert_eq!(json["statistics"]["encoded_models"], 2, "{json}");
}

#[test]
fn plain_progress_lines_group_thousands() {
    let ws = Workspace::new();
    // Not a terminal: the last line reports the totals with separators.
    let out = ws.run(&["encode", "tiny-model", "--store", "store"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap();
    let line = regex_lite::Regex::new(
        r"^tiny-model: 100\.0% (\d{1,3}(,\d{3})*)/(\d{1,3}(,\d{3})*) params, \d{1,3}(,\d{3})* params/s, done in \d+\.\d\ds$",
    )
    .unwrap();
    assert!(line.is_match(last), "{last}");
}

/// The encode summary, `show` and `inspect --tensors` of the tiny model: what a user reads after
/// each step.
#[test]
fn encode_summary_show_and_inspect_of_the_tiny_model() {
    let ws = Workspace::new();
    let text = |args: &[&str]| ws.stdout_of(args);
    insta::assert_snapshot!(
        "encode_summary",
        text(&[
            "encode",
            "tiny-model",
            "--store",
            "store",
            "--quiet",
            "--chunk-encoding",
            "--chunk-size",
            "512",
        ])
    );
    insta::assert_snapshot!("show", text(&["show", "tiny-model", "--store", "store"]));
    insta::assert_snapshot!(
        "inspect_tensors",
        text(&["inspect", "tiny-model", "--tensors"])
    );
}
