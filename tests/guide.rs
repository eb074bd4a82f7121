//! Every command of the user guide (`streaming_guide.md`), run with our binary in place of
//! `python examples/streaming_huggingface_encoder.py`, against a local Hub server that serves the
//! guide's repos with their real tensor names and layer counts (hidden sizes scaled down).

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use std::time::Duration;

use support::fixtures::{guide_selection, serve_guide_repos, GUIDE_COMMANDS};
use support::hub_server::HubServer;
use weightreel::roles::Role;
use weightreel::source::{Model, OpenOptions};

struct Guide {
    server: HubServer,
    tmp: tempfile::TempDir,
}

impl Guide {
    fn new() -> Guide {
        let server = HubServer::start();
        let tmp = tempfile::tempdir().unwrap();
        serve_guide_repos(&server, &tmp.path().join("repos"));
        std::fs::create_dir_all(tmp.path().join("work")).unwrap();
        Guide { server, tmp }
    }

    fn cwd(&self) -> PathBuf {
        self.tmp.path().join("work")
    }

    /// Run the binary with `args` (whitespace-separated, as typed in the guide) in `dir`.
    fn run_in(&self, dir: &Path, args: &str) -> Output {
        self.run_with(dir, args, &[])
    }

    /// [`Guide::run_in`] with extra environment variables.
    fn run_with(&self, dir: &Path, args: &str, envs: &[(&str, &str)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_weightreel"))
            .args(args.split_whitespace())
            .envs(envs.iter().copied())
            .current_dir(dir)
            .env("HF_ENDPOINT", self.server.url())
            .env("HF_HUB_CACHE", self.tmp.path().join("empty-cache"))
            .env_remove("HF_TOKEN")
            .env_remove("HF_HUB_OFFLINE")
            .env_remove("WEIGHTREEL_STORE")
            .output()
            .expect("run weightreel")
    }

    fn run(&self, args: &str) -> Output {
        self.run_in(&self.cwd(), args)
    }

    /// Run and require success; returns stdout.
    fn ok(&self, args: &str) -> String {
        ok_output(args, self.run(args))
    }

    fn ok_in(&self, dir: &Path, args: &str) -> String {
        ok_output(args, self.run_in(dir, args))
    }

    /// Run and require a one-line error and a non-zero exit; returns stderr.
    fn fails(&self, args: &str) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            !out.status.success(),
            "{args}: should fail, stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(!stderr.contains("panicked"), "{args}: panicked: {stderr}");
        stderr
    }
}

fn ok_output(args: &str, out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{args}: exit {:?}\nstdout: {stdout}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The reel path an encode printed.
fn reel_of(stdout: &str) -> PathBuf {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("Reel: "))
        .expect("a Reel line");
    PathBuf::from(line["Reel: ".len()..].split(" (").next().unwrap())
}

/// Roles of the tensors a reel holds, by decoding it.
fn roles_in_reel(g: &Guide, reel: &Path) -> BTreeSet<Role> {
    let out = g.tmp.path().join(format!(
        "decoded-{}.safetensors",
        reel.file_stem().unwrap().to_string_lossy()
    ));
    g.ok(&format!(
        "decode {} --out {}",
        reel.display(),
        out.display()
    ));
    let bytes = std::fs::read(&out).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.names()
        .into_iter()
        .filter(|n| !n.ends_with(".sample_indices"))
        .map(Role::of)
        .collect()
}

fn line_value<'a>(stdout: &'a str, label: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no '{label}' in:\n{stdout}"))
        .trim()
}

#[test]
fn basic_streaming() {
    let g = Guide::new();
    let out = g.ok("--model distilbert-base-uncased --stream --max-params 50000 --chunk-size 5000");
    assert_eq!(line_value(&out, "Total Parameters:"), "50,000");
    assert!(
        line_value(&out, "Frames:") == "1 frame of 50,000 values (batch mode)",
        "{out}"
    );
    let out = g.ok("--model bert-large-uncased --stream --max-params 100000 --chunk-size 10000");
    assert_eq!(line_value(&out, "Total Parameters:"), "100,000");
    assert!(
        line_value(&out, "Frames:") == "1 frame of 100,000 values (batch mode)",
        "{out}"
    );
    // Both went into the default store in the working directory.
    let stats = g.ok("--statistics");
    assert_eq!(line_value(&stats, "Encoded Models:"), "2");
    assert_eq!(line_value(&stats, "Total Parameters:"), "150,000");
    assert_eq!(line_value(&stats, "Chunk Size:"), "5,000, 10,000");
}

#[test]
fn layer_specific_analysis_selects_the_right_roles() {
    let g = Guide::new();
    let cases: &[(&str, &[Role])] = &[
        ("--model bert-base-uncased --stream --layers attention --max-params 30000", &[Role::Attention]),
        ("--model gpt2 --stream --layers attention mlp --max-params 40000", &[Role::Attention, Role::Mlp]),
        ("--model roberta-base --stream --layers embedding --max-params 20000", &[Role::Embedding]),
        ("--model bert-base-uncased --stream --layers mlp --max-params 30000 --storage-dir bert_mlp_analysis", &[Role::Mlp]),
        ("--model bert-base-uncased --stream --layers embedding --max-params 20000 --storage-dir bert_embedding_analysis", &[Role::Embedding]),
    ];
    for (args, roles) in cases {
        let out = g.ok(args);
        let limit: u64 = args
            .split("--max-params ")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let total: u64 = line_value(&out, "Total Parameters:")
            .replace(',', "")
            .parse()
            .unwrap();
        assert_eq!(total, limit, "{args}");
        let found = roles_in_reel(&g, &g.cwd().join(reel_of(&out)));
        let expected: BTreeSet<Role> = roles.iter().copied().collect();
        assert_eq!(
            found, expected,
            "{args}: every selected role present, no other"
        );
    }
}

#[test]
fn chunk_and_batch_encoding() {
    let g = Guide::new();
    let chunk = g.ok("--model distilbert-base-uncased --stream --chunk-encoding --chunk-size 8000 --max-params 40000");
    assert!(
        line_value(&chunk, "Chunks:").starts_with("5 of 8,000 values (5 frames, chunk"),
        "{chunk}"
    );
    let batch =
        g.ok("--model distilbert-base-uncased --stream --max-params 40000 --chunk-size 8000");
    assert!(
        line_value(&batch, "Frames:") == "1 frame of 40,000 values (batch mode)",
        "{batch}"
    );
    // Different settings: two entries, not an overwrite.
    let list = g.ok("--list-models");
    assert_eq!(
        list.lines()
            .filter(|l| l.starts_with("distilbert-base-uncased"))
            .count(),
        2,
        "{list}"
    );
    assert!(list.contains("chunk") && list.contains("batch"), "{list}");
    // The same command again replaces its own entry.
    g.ok("--model distilbert-base-uncased --stream --max-params 40000 --chunk-size 8000");
    let list = g.ok("--list-models");
    assert_eq!(
        list.lines()
            .filter(|l| l.starts_with("distilbert-base-uncased"))
            .count(),
        2,
        "{list}"
    );
}

#[test]
fn real_world_scenarios_and_monitoring() {
    let g = Guide::new();
    g.ok("--model bert-large-uncased --stream --max-params 75000 --chunk-size 7500 --storage-dir bert_large_analysis");
    g.ok("--model bert-large-uncased --stream --layers attention --max-params 50000 --chunk-size 10000 --storage-dir bert_large_attention");
    for model in ["gpt2", "distilgpt2", "microsoft/DialoGPT-medium"] {
        g.ok(&format!("--model {model} --stream --max-params 40000 --chunk-size 8000 --storage-dir gpt_family"));
    }
    let stats = g.ok("--statistics --storage-dir gpt_family");
    let expected_labels = [
        "📊 STREAMING ENCODING STATISTICS",
        "================================================",
        "Encoded Models: 3",
        "Total Parameters: 120,000",
        "Total Chunks: 15",
        "Average Encoding Time: ",
        "Average Chunks per Model: 5.0",
        "Chunk Size: 8,000",
    ];
    let lines: Vec<&str> = stats.lines().collect();
    assert_eq!(lines.len(), expected_labels.len(), "{stats}");
    for (line, expected) in lines.iter().zip(expected_labels) {
        assert!(
            line.starts_with(expected),
            "{line:?} should start with {expected:?}\n{stats}"
        );
    }
    assert!(lines[5].ends_with('s'), "{stats}");
    let list = g.ok("--list-models --storage-dir gpt_family");
    for model in ["gpt2", "distilgpt2", "microsoft/DialoGPT-medium"] {
        assert!(
            list.lines().any(|l| l.starts_with(model)
                && l.contains("40,000")
                && l.contains("batch")
                && l.contains("u16")),
            "{model}:\n{list}"
        );
    }
    let stats = g.ok("--statistics --storage-dir bert_large_analysis");
    assert_eq!(line_value(&stats, "Total Chunks:"), "10");
    assert_eq!(line_value(&stats, "Chunk Size:"), "7,500");
    // JSON for machines.
    let json: serde_json::Value =
        serde_json::from_str(&g.ok("--statistics --storage-dir gpt_family --json")).unwrap();
    assert_eq!(json["encoded_models"], 3);
    assert_eq!(json["total_parameters"], 120_000);
    let json: serde_json::Value =
        serde_json::from_str(&g.ok("list --storage-dir gpt_family --json")).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 3);
}

#[test]
fn complete_workflow_example() {
    let g = Guide::new();
    let dir = g.cwd().join("transformer_family_analysis");
    std::fs::create_dir(&dir).unwrap();
    for model in [
        "bert-base-uncased",
        "distilbert-base-uncased",
        "roberta-base",
    ] {
        g.ok_in(&dir, &format!("--model {model} --stream --max-params 40000 --chunk-size 8000 --storage-dir bert_models"));
    }
    for model in ["gpt2", "distilgpt2"] {
        g.ok_in(&dir, &format!("--model {model} --stream --max-params 40000 --chunk-size 8000 --storage-dir gpt_models"));
    }
    let list = g.ok_in(&dir, "--list-models --storage-dir bert_models");
    assert_eq!(
        list.lines().filter(|l| l.contains("40,000")).count(),
        3,
        "{list}"
    );
    let stats = g.ok_in(&dir, "--statistics --storage-dir bert_models");
    assert_eq!(line_value(&stats, "Encoded Models:"), "3");
    assert_eq!(line_value(&stats, "Total Parameters:"), "120,000");
    let stats = g.ok_in(&dir, "--statistics --storage-dir gpt_models");
    assert_eq!(line_value(&stats, "Encoded Models:"), "2");
    // Step 5: regular encoding of several models into the default store.
    let out = g.ok_in(&dir, "--models bert-base-uncased gpt2 --max-params 40000");
    assert_eq!(out.matches("Total Parameters: 40,000").count(), 2, "{out}");
    // ...and the pairwise matrix: each model is itself (1.000 on the diagonal), and the two
    // architectures' weights are unrelated (a low score, whatever pairs by shape).
    let matrix: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("Similarity matrix"))
        .collect();
    assert_eq!(matrix.len(), 4, "{out}");
    let cells = |row: &str| -> Vec<f64> {
        row.split_whitespace()
            .skip(1)
            .map(|c| c.parse().unwrap())
            .collect()
    };
    let (bert, gpt2) = (cells(matrix[2]), cells(matrix[3]));
    assert_eq!(bert[0], 1.0, "{out}");
    assert_eq!(gpt2[1], 1.0, "{out}");
    assert_eq!(bert[1], gpt2[0], "{out}");
    assert!(bert[1] <= 0.25, "{out}");
    let stats = g.ok_in(&dir, "--statistics");
    assert_eq!(line_value(&stats, "Encoded Models:"), "2");
    // Step 5's search ranks the other stored model, with a score that says how it was reached.
    let out = g.ok_in(&dir, "--search-similar bert-base-uncased");
    assert!(
        out.starts_with(
            "Models most related to bert-base-uncased (method hybrid, 1 stored model searched):"
        ),
        "{out}"
    );
    // BERT and GPT-2 share the hidden size 768, so tensors of equal role and shape pair by
    // order; their weights are unrelated, which the score says.
    let line = out.lines().nth(2).unwrap();
    let row: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(row[1], "gpt2", "{out}");
    let score: f64 = row[2].parse().unwrap();
    assert!(score < 0.25, "{out}");
    assert!(line.ends_with("by role/shape/order"), "{out}");
}

#[test]
fn efficiency_troubleshooting_case() {
    let g = Guide::new();
    // 5,000 values fill a 128×64 frame to 0.61: accepted at the default minimum 0.5...
    g.ok("--model gpt2 --stream --chunk-encoding --chunk-size 5000 --max-params 20000");
    // ...and refused, in the guide's words, when the user asks for more.
    let err = g.fails("--model gpt2 --stream --chunk-encoding --chunk-size 5000 --max-params 20000 --min-efficiency 0.7");
    assert!(
        err.contains("Efficiency ratio 0.61 is below minimum 0.7"),
        "{err}"
    );
}

#[test]
fn bad_flags_give_clear_errors_and_leave_the_store_alone() {
    let g = Guide::new();
    g.ok("--model gpt2 --stream --max-params 40000 --chunk-size 8000");
    let before = g.ok("--list-models --json");
    let cases: &[(&str, &[&str])] = &[
        (
            "--model gpt2 --stream --chunk-size 0",
            &["--chunk-size", ">= 1"],
        ),
        (
            "--model gpt2 --stream --max-params -1",
            &["--max-params", "-1", ">= 1"],
        ),
        (
            "--model gpt2 --stream --layers transformer",
            &["'transformer'", "attention", "mlp", "embedding"],
        ),
        (
            "--model gpt2 --stream --mode jpeg",
            &["--mode", "u16", "lossless"],
        ),
        (
            "--model gpt2 --stream --min-efficiency 1.5",
            &["--min-efficiency", "0.0..=1.0"],
        ),
        (
            "--model no-such-model --stream",
            &["no-such-model", "RepoNotFound"],
        ),
        ("--model ../etc/passwd --stream", &["../etc/passwd"]),
        (
            "--model gpt2 --stream --sample random",
            &["--sample", "stratified", "head"],
        ),
    ];
    for (args, words) in cases {
        let err = g.fails(args);
        let text = err.trim();
        assert_eq!(text.lines().count(), 1, "{args}: not one line: {err}");
        assert!(text.starts_with("error: "), "{args}: {err}");
        for word in *words {
            assert!(text.contains(word), "{args}: missing {word:?} in {err}");
        }
    }
    std::fs::write(g.cwd().join("a-file"), b"not a directory").unwrap();
    let err = g.fails("--model gpt2 --stream --storage-dir a-file");
    assert!(
        err.contains("a-file") && err.contains("not a directory"),
        "{err}"
    );
    assert_eq!(
        g.ok("--list-models --json"),
        before,
        "the store is unchanged"
    );
}

#[test]
fn two_encoders_share_one_store() {
    let g = Guide::new();
    let spawn = |model: &str| {
        Command::new(env!("CARGO_BIN_EXE_weightreel"))
            .args([
                "--model",
                model,
                "--stream",
                "--chunk-encoding",
                "--chunk-size",
                "2000",
                "--max-params",
                "100000",
                "--storage-dir",
                "shared",
            ])
            .current_dir(g.cwd())
            .env("HF_ENDPOINT", g.server.url())
            .env("HF_HUB_CACHE", g.tmp.path().join("empty-cache"))
            .env_remove("HF_TOKEN")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let children: Vec<_> = ["gpt2", "bert-base-uncased", "roberta-base", "distilgpt2"]
        .iter()
        .map(|m| spawn(m))
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let stats = g.ok("--statistics --storage-dir shared");
    assert_eq!(line_value(&stats, "Encoded Models:"), "4");
    assert_eq!(line_value(&stats, "Total Chunks:"), "200");
}

#[test]
fn plain_progress_lines_when_not_on_a_terminal() {
    let g = Guide::new();
    // stderr is a pipe here: progress comes as plain lines, not a bar; --quiet silences it.
    let out = g.run("--model bert-large-uncased --stream --chunk-encoding --chunk-size 2000 --checkpoint-every 0.01");
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains('\r'),
        "no bar redraws in a pipe: {stderr:?}"
    );
    assert!(
        stderr.contains("bert-large-uncased: 100.0% ") && stderr.contains("params/s"),
        "{stderr}"
    );
    let out = g.run("--model bert-large-uncased --stream --quiet --max-params 1000");
    assert!(out.status.success());
    assert!(out.stderr.is_empty(), "--quiet prints nothing on stderr");
}

#[test]
fn rm_removes_an_entry_and_its_reel() {
    let g = Guide::new();
    let out = g.ok("encode gpt2 --max-params 40000 --store s");
    let reel = g.cwd().join(reel_of(&out));
    g.ok("encode distilgpt2 --max-params 40000 --store s");
    assert!(reel.is_file());
    let out = g.ok("rm gpt2 --store s");
    assert!(out.contains("Removed 1 entry of gpt2"), "{out}");
    assert!(!reel.exists());
    let list = g.ok("list --store s");
    assert!(
        !list.lines().any(|l| l.starts_with("gpt2 ")) && list.contains("distilgpt2"),
        "{list}"
    );
    let err = g.fails("rm gpt2 --store s");
    assert!(err.contains("no model named 'gpt2'"), "{err}");
}

/// A decoded tensor: name, dtype, shape and bytes.
type DecodedTensor = (String, String, Vec<usize>, Vec<u8>);

/// The tensors the reels of the store in `dir` decode to, in reel-name order. (Reels record
/// the encoding time and their own path, and are named by the time, so they differ in those
/// bytes; every value must not.)
fn decoded_reels(g: &Guide, dir: &Path) -> Vec<Vec<DecodedTensor>> {
    let mut reels: Vec<PathBuf> = std::fs::read_dir(dir.join("weightreel_store/reels"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    reels.sort();
    reels
        .iter()
        .map(|reel| {
            let out = dir.join("decoded.safetensors");
            g.ok(&format!(
                "decode {} --out {}",
                reel.display(),
                out.display()
            ));
            let bytes = std::fs::read(&out).unwrap();
            std::fs::remove_file(&out).unwrap();
            let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            let mut tensors: Vec<DecodedTensor> = st
                .tensors()
                .into_iter()
                .map(|(name, view)| {
                    let dtype = format!("{:?}", view.dtype());
                    (name, dtype, view.shape().to_vec(), view.data().to_vec())
                })
                .collect();
            tensors.sort();
            tensors
        })
        .collect()
}

/// Issue 7's Hub at real latency: every guide command finishes with 50 ms per request and the
/// default connection pool, within the request budget (one per 1,000 values plus one per
/// tensor, plus the listing, config, redirect and header of each model); the first two give the
/// same values, byte for byte, and the same requests as one connection without delay
/// (`tests/hub.rs` compares the streams of all of them). Wall times are in `benches/hub.rs`.
#[test]
fn guide_commands_at_50_ms_per_request_stay_in_the_request_budget() {
    let g = Guide::new();
    let options = OpenOptions {
        endpoint: Some(g.server.url().to_string()),
        cache_dir: Some(g.tmp.path().join("empty-cache")),
        ..OpenOptions::default()
    };
    for (i, args) in GUIDE_COMMANDS.iter().enumerate() {
        let run = |delay_ms: u64, connections: &str| {
            let dir = g.tmp.path().join(format!("latency-{i}-{connections}"));
            std::fs::create_dir_all(&dir).unwrap();
            g.server.set_delay(Duration::from_millis(delay_ms));
            g.server.reset_counts();
            ok_output(
                args,
                g.run_with(&dir, args, &[("WEIGHTREEL_HUB_CONNECTIONS", connections)]),
            );
            g.server.set_delay(Duration::ZERO);
            (dir, g.server.counts().requests)
        };
        let (pooled, pooled_requests) = run(50, "16");
        let (models, selection) = guide_selection(args);
        let budget: u64 = models
            .iter()
            .map(|name| {
                let plan = selection.plan(&Model::open(name, &options).unwrap());
                plan.total / 1000 + plan.items.len() as u64 + 4
            })
            .sum();
        assert!(
            pooled_requests <= budget,
            "{args}: {pooled_requests} requests, budget {budget}"
        );
        if i < 2 {
            let (single, single_requests) = run(0, "1");
            assert_eq!(pooled_requests, single_requests, "{args}");
            let pooled = decoded_reels(&g, &pooled);
            assert!(!pooled.is_empty(), "{args}");
            assert!(
                pooled == decoded_reels(&g, &single),
                "{args}: decoded reels differ from a one-connection run"
            );
        }
    }
}

#[test]
fn hub_connections_out_of_range_is_refused_with_the_range() {
    let g = Guide::new();
    for (value, shown) in [("0", "0"), ("65", "65"), ("many", "'many'")] {
        let err = g.fails(&format!(
            "--model gpt2 --stream --max-params 100 --hub-connections {value}"
        ));
        assert!(
            err.contains(&format!("invalid --hub-connections {shown} (expected")),
            "{err}"
        );
        assert!(err.contains("1..=64"), "{err}");
    }
    let out = g.run_with(
        &g.cwd(),
        "--model gpt2 --stream --max-params 100",
        &[("WEIGHTREEL_HUB_CONNECTIONS", "100")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("invalid WEIGHTREEL_HUB_CONNECTIONS 100 (expected 1..=64)"),
        "{err}"
    );
    assert!(
        !g.cwd().join("weightreel_store").exists(),
        "nothing created"
    );
}
