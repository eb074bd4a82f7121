//! Showing the analysis (issue 11, section 2): `show MODEL` / `stats MODEL` and
//! `inspect --tensors`, asserting the exact lines and JSON fields they print.

mod support;

use std::path::PathBuf;
use std::process::Output;

use safetensors::Dtype;
use support::cli::{path as s, run as wr};
use support::fixtures::{spec, write_model};

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_string()
}

fn ok(args: &[&str]) -> String {
    let o = wr(args);
    assert!(o.status.success(), "{args:?}: {}", err(&o));
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// A GPT-2-like model of 3 layers with a causal-mask buffer per layer.
fn gpt2_like(dir: &std::path::Path) -> PathBuf {
    let path = dir.join("gpt2-like.safetensors");
    let mut specs = vec![spec("wte.weight", Dtype::F32, &[50, 16])];
    for l in 0..3 {
        specs.push(spec(
            &format!("h.{l}.attn.c_attn.weight"),
            Dtype::F32,
            &[16, 48],
        ));
        specs.push(spec(
            &format!("h.{l}.mlp.c_fc.weight"),
            Dtype::F32,
            &[16, 64],
        ));
        specs.push(spec(&format!("h.{l}.ln_1.weight"), Dtype::F32, &[16]));
        specs.push(spec(&format!("h.{l}.attn.bias"), Dtype::F32, &[1, 1, 8, 8]));
    }
    write_model(&path, &specs, 11);
    let config = serde_json::json!({"model_type": "gpt2", "n_embd": 16, "n_layer": 3, "n_head": 4, "vocab_size": 50});
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    path
}

#[test]
fn inspect_tensors_lists_every_tensor_and_collapses_repeated_buffers() {
    let tmp = tempfile::tempdir().unwrap();
    let model = gpt2_like(tmp.path());
    let text = ok(&["inspect", s(&model), "--tensors"]);
    assert!(
        text.contains("\nConfig: hidden size 16, layers 3, heads 4, vocabulary 50\n"),
        "{text}"
    );
    let tensors = text.split("\nTensors:\n").nth(1).unwrap();
    let rows: Vec<Vec<&str>> = tensors
        .lines()
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 10 + 1, "{tensors}");
    // Streamed tensors in file order, then the skipped ones.
    let row = |name: &str| rows[..10].iter().find(|r| r[0] == name).unwrap().clone();
    assert_eq!(
        row("wte.weight"),
        ["wte.weight", "F32", "[50,", "16]", "embedding", "-"]
    );
    assert_eq!(
        row("h.2.attn.c_attn.weight"),
        [
            "h.2.attn.c_attn.weight",
            "F32",
            "[16,",
            "48]",
            "attention",
            "2"
        ]
    );
    assert_eq!(
        rows[10],
        [
            "h.*.attn.bias",
            "F32",
            "[1,",
            "1,",
            "8,",
            "8]",
            "skipped:",
            "attention",
            "mask",
            "buffer",
            "(x3)"
        ]
    );
    let skipped = text.split("\nSkipped:\n").nth(1).unwrap();
    assert_eq!(
        skipped.lines().next().unwrap(),
        "  h.*.attn.bias F32 [1, 1, 8, 8]: attention mask buffer (x3)"
    );
}

#[test]
fn inspect_json_has_numeric_layer_keys_the_config_and_the_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let model = gpt2_like(tmp.path());
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["inspect", s(&model), "--json"])).unwrap();
    let layers: Vec<&String> = json["layers"].as_object().unwrap().keys().collect();
    assert_eq!(layers, ["0", "1", "2"]);
    assert_eq!(json["no_layer"]["tensors"], 1);
    assert_eq!(json["config"]["hidden_size"], 16);
    assert_eq!(json["config"]["heads"], 4);
    assert!(json.get("tensors").is_none(), "only with --tensors");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["inspect", s(&model), "--json", "--tensors"])).unwrap();
    assert_eq!(json["tensors"].as_array().unwrap().len(), 13);
    let h1 = json["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "h.1.ln_1.weight")
        .unwrap();
    assert_eq!(h1["layer"], 1);
    assert_eq!(h1["role"], "norm");
}

#[test]
fn inspect_shows_the_safetensors_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("m.safetensors");
    let meta = [("format".to_string(), "pt".to_string())]
        .into_iter()
        .collect();
    support::fixtures::write_model_with(&path, &[spec("w", Dtype::F32, &[4])], 1, Some(meta));
    let text = ok(&["inspect", s(&path)]);
    assert!(text.contains("\n  __metadata__: format: pt\n"), "{text}");
}

#[test]
fn show_gives_role_layer_and_tensor_statistics_and_a_histogram_of_every_value() {
    let tmp = tempfile::tempdir().unwrap();
    let model = gpt2_like(tmp.path());
    let store = tmp.path().join("store");
    ok(&[
        "encode",
        s(&model),
        "--store",
        s(&store),
        "--quiet",
        "--mode",
        "lossless",
    ]);
    let json: serde_json::Value = serde_json::from_str(&ok(&[
        "show",
        "gpt2-like",
        "--store",
        s(&store),
        "--json",
        "--bins",
        "8",
    ]))
    .unwrap();
    let stored = 50 * 16 + 3 * (16 * 48 + 16 * 64 + 16);
    assert_eq!(json["values_stored"], stored);
    assert_eq!(json["model_params"], stored);
    let counts: Vec<u64> = json["histogram"]["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .collect();
    assert_eq!(counts.len(), 8);
    assert_eq!(counts.iter().sum::<u64>(), stored);
    let roles: Vec<&String> = json["roles"].as_object().unwrap().keys().collect();
    assert_eq!(roles, ["attention", "embedding", "mlp", "norm"]);
    assert_eq!(json["roles"]["attention"]["tensors"], 3);
    assert_eq!(json["roles"]["attention"]["count"], 3 * 16 * 48);
    let layers: Vec<&String> = json["layers"].as_object().unwrap().keys().collect();
    assert_eq!(layers, ["0", "1", "2"]);
    assert_eq!(json["layers"]["1"]["count"], 16 * 48 + 16 * 64 + 16);
    assert_eq!(json["tensors"].as_array().unwrap().len(), 10);
    // Lossless: the statistics are those of the source values, which the fixture draws in
    // [-1, 1).
    let t = json["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "wte.weight")
        .unwrap();
    assert_eq!(t["shape"], serde_json::json!([50, 16]));
    assert!(
        t["min"].as_f64().unwrap() >= -1.0 && t["max"].as_f64().unwrap() < 1.0,
        "{t}"
    );
    assert!(t["std"].as_f64().unwrap() > 0.1, "{t}");
    // `stats MODEL` is the same analysis; `stats` alone keeps the store's block.
    let text = ok(&["stats", "gpt2-like", "--store", s(&store)]);
    assert!(
        text.starts_with("Model: gpt2-like (settings key "),
        "{text}"
    );
    assert!(
        text.contains("\nBy role:\n") && text.contains("\nBy layer:\n"),
        "{text}"
    );
    assert!(text.contains("\nHistogram (20 bins from "), "{text}");
    let block = ok(&["stats", "--store", s(&store)]);
    assert!(
        block.starts_with("📊 STREAMING ENCODING STATISTICS\n"),
        "{block}"
    );
}

#[test]
fn show_of_an_unknown_model_names_the_closest() {
    let tmp = tempfile::tempdir().unwrap();
    let model = gpt2_like(tmp.path());
    let store = tmp.path().join("store");
    ok(&["encode", s(&model), "--store", s(&store), "--quiet"]);
    let o = wr(&["show", "gpt2-lik", "--store", s(&store)]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        err(&o),
        format!(
            "error: store {}: no model named 'gpt2-lik' (closest: gpt2-like)",
            store.display()
        )
    );
}
