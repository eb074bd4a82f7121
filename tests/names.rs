//! Names and handles (issue 11, section 1): what a model is stored under, what its reel file is
//! called, and the commands that take a stored name (`decode`, `frames`, `show`, `rm`) with
//! `--settings-key` when a model has several entries. One named test per case.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use safetensors::Dtype;
use support::cli::{path as s, run as wr};
use support::fixtures::{spec, write_model};
use weightreel::source::{Model, OpenOptions};

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_string()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// A tiny model at `dir/rel` (a `.safetensors` file), with `config.json` beside it holding
/// `_name_or_path` when given.
fn tiny_at(dir: &Path, rel: &str, name_or_path: Option<&str>) -> PathBuf {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    write_model(
        &path,
        &[spec(
            "encoder.layer.0.output.dense.weight",
            Dtype::F32,
            &[16, 16],
        )],
        3,
    );
    if let Some(n) = name_or_path {
        let config = serde_json::json!({ "model_type": "bert", "_name_or_path": n });
        std::fs::write(
            path.parent().unwrap().join("config.json"),
            config.to_string(),
        )
        .unwrap();
    }
    path
}

/// The stored name of the model at `rel` (opened as the file, or with `open_dir` as its
/// directory).
fn stored_name(rel: &str, name_or_path: Option<&str>, open_dir: bool) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let file = tiny_at(tmp.path(), rel, name_or_path);
    let target = if open_dir {
        file.parent().unwrap().to_path_buf()
    } else {
        file
    };
    Model::open(s(&target), &OpenOptions::default())
        .unwrap()
        .name
}

macro_rules! naming_cases {
    ($($case:ident: ($rel:expr, $config:expr, $dir:expr) => $expected:expr;)*) => {
        $(
            #[test]
            fn $case() {
                assert_eq!(stored_name($rel, $config, $dir), $expected);
            }
        )*
    };
}

naming_cases! {
    a_file_is_named_by_its_stem: ("tiny-bert.safetensors", None, false) => "tiny-bert";
    a_generic_file_is_named_by_its_directory: ("my-model/model.safetensors", None, false) => "my-model";
    a_directory_is_named_by_itself: ("mpnet-base/model.safetensors", None, true) => "mpnet-base";
    a_config_repo_id_that_agrees_with_the_directory_adds_the_org:
        ("bert-large-uncased/model.safetensors", Some("google-bert/bert-large-uncased"), true)
        => "google-bert/bert-large-uncased";
    a_config_naming_the_base_model_does_not_rename_a_fine_tune:
        ("all-MiniLM-L6-v2/model.safetensors", Some("nreimers/MiniLM-L6-H384-uncased"), true)
        => "all-MiniLM-L6-v2";
    a_checkpoint_directory_takes_the_config_repo_id:
        ("checkpoint-500/model.safetensors", Some("org/fine-tuned"), true) => "org/fine-tuned";
    a_config_path_is_not_a_repo_id:
        ("output/model.safetensors", Some("/tmp/train/output"), true) => "output";
    a_cache_snapshot_path_gives_the_repo_id:
        ("hub/models--sentence-transformers--all-mpnet-base-v2/snapshots/0123456789abcdef0123456789abcdef01234567/model.safetensors", None, false)
        => "sentence-transformers/all-mpnet-base-v2";
}

/// A store with one tiny model encoded twice with different settings.
struct TwoEntries {
    tmp: tempfile::TempDir,
    model: PathBuf,
    store: PathBuf,
    keys: Vec<String>,
}

fn encode(args: &[&str]) -> serde_json::Value {
    let o = wr(args);
    assert!(o.status.success(), "{args:?}: {}", err(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn two_entries() -> TwoEntries {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_at(tmp.path(), "tiny-bert/model.safetensors", None);
    let store = tmp.path().join("store");
    for extra in [&[][..], &["--chunk-encoding", "--chunk-size", "64"][..]] {
        let mut args = vec!["encode", s(&model), "--store", s(&store), "--json"];
        args.extend_from_slice(extra);
        encode(&args);
    }
    let list = encode(&["list", "--store", s(&store), "--json"]);
    let keys = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["short_key"].as_str().unwrap().to_string())
        .collect();
    TwoEntries {
        tmp,
        model,
        store,
        keys,
    }
}

#[test]
fn reel_files_are_named_by_slug_and_short_key_and_replacing_keeps_one_reel() {
    let t = two_entries();
    let list = encode(&["list", "--store", s(&t.store), "--json"]);
    for (entry, key) in list.as_array().unwrap().iter().zip(&t.keys) {
        assert_eq!(entry["name"], "tiny-bert");
        assert_eq!(
            entry["totals"]["reel_file"],
            format!("reels/tiny-bert-{key}.mkv")
        );
        assert_eq!(entry["short_key"], key.as_str());
        assert!(entry["settings_key"]
            .as_str()
            .unwrap()
            .contains(key.as_str()));
    }
    // The same settings again: the entry is replaced, its reel too, and one reel remains
    // per entry (the new one under the next free name while the old one was in use).
    let again = encode(&["encode", s(&t.model), "--store", s(&t.store), "--json"]);
    assert_eq!(again[0]["replaced"], true);
    assert_eq!(
        again[0]["entry"]["totals"]["reel_file"],
        format!("reels/tiny-bert-{}-2.mkv", t.keys[0])
    );
    let third = encode(&["encode", s(&t.model), "--store", s(&t.store), "--json"]);
    assert_eq!(
        third[0]["entry"]["totals"]["reel_file"],
        format!("reels/tiny-bert-{}.mkv", t.keys[0])
    );
    let mut reels: Vec<String> = std::fs::read_dir(t.store.join("reels"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    reels.sort();
    let mut expected = vec![
        format!("tiny-bert-{}.mkv", t.keys[0]),
        format!("tiny-bert-{}.mkv", t.keys[1]),
    ];
    expected.sort();
    assert_eq!(reels, expected);
}

#[test]
fn decode_by_name_with_several_entries_lists_the_keys_and_exits_2() {
    let t = two_entries();
    let o = wr(&[
        "decode",
        "tiny-bert",
        "--store",
        s(&t.store),
        "--out",
        s(&t.tmp.path().join("x.safetensors")),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    let e = err(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.starts_with("error: 'tiny-bert' has 2 entries; choose one with --settings-key: "),
        "{e}"
    );
    for key in &t.keys {
        assert!(e.contains(key.as_str()), "{e}");
    }
    assert!(!t.tmp.path().join("x.safetensors").exists());
}

#[test]
fn an_unknown_settings_key_names_the_model_and_its_keys() {
    let t = two_entries();
    for cmd in ["decode", "frames", "show"] {
        let mut args = vec![
            cmd,
            "tiny-bert",
            "--store",
            s(&t.store),
            "--settings-key",
            "bogus",
        ];
        let png = t.tmp.path().join("png");
        let outf = t.tmp.path().join("y.safetensors");
        match cmd {
            "decode" => args.extend(["--out", s(&outf)]),
            "frames" => args.extend(["--png", s(&png)]),
            _ => {}
        }
        let o = wr(&args);
        assert_eq!(o.status.code(), Some(2), "{cmd}: {}", err(&o));
        let e = err(&o);
        assert!(
            e.starts_with("error: 'tiny-bert' has no entry with settings key 'bogus'; its keys: "),
            "{cmd}: {e}"
        );
        assert!(t.keys.iter().all(|k| e.contains(k.as_str())), "{e}");
    }
}

#[test]
fn decode_frames_show_and_rm_take_the_stored_name_and_a_short_key() {
    let t = two_entries();
    let outf = t.tmp.path().join("back.safetensors");
    let o = wr(&[
        "decode",
        "tiny-bert",
        "--store",
        s(&t.store),
        "--settings-key",
        &t.keys[1],
        "--out",
        s(&outf),
    ]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(outf.is_file());
    let png = t.tmp.path().join("png");
    let o = wr(&[
        "frames",
        "tiny-bert",
        "--store",
        s(&t.store),
        "--settings-key",
        &t.keys[1],
        "--png",
        s(&png),
    ]);
    assert!(o.status.success(), "{}", err(&o));
    // 256 values in chunks of 64: four frames.
    assert_eq!(std::fs::read_dir(&png).unwrap().count(), 4);
    let o = wr(&[
        "show",
        "tiny-bert",
        "--store",
        s(&t.store),
        "--settings-key",
        &t.keys[0],
    ]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        out(&o).starts_with(&format!(
            "Model: tiny-bert (settings key {}, mode u16)\n",
            t.keys[0]
        )),
        "{}",
        out(&o)
    );
    let o = wr(&[
        "rm",
        "tiny-bert",
        "--settings-key",
        &t.keys[0],
        "--store",
        s(&t.store),
    ]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o), "Removed 1 entry of tiny-bert\n");
    // One entry left: the name alone is enough now.
    let o = wr(&["show", "tiny-bert", "--store", s(&t.store), "--json"]);
    assert!(o.status.success(), "{}", err(&o));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["short_key"], t.keys[1].as_str());
}

#[test]
fn rm_by_source_path_removes_the_entries_of_that_source() {
    let t = two_entries();
    let o = wr(&["rm", s(&t.model), "--store", s(&t.store)]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o), "Removed 2 entries of tiny-bert\n");
    assert_eq!(std::fs::read_dir(t.store.join("reels")).unwrap().count(), 0);
}

#[test]
fn name_flag_overrides_the_derived_name() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_at(tmp.path(), "x/model.safetensors", None);
    let store = tmp.path().join("store");
    let json = encode(&[
        "encode",
        s(&model),
        "--store",
        s(&store),
        "--name",
        "acme/Tiny BERT",
        "--json",
    ]);
    assert_eq!(json[0]["entry"]["name"], "acme/Tiny BERT");
    assert_eq!(json[0]["entry"]["source"], s(&model));
    let reel = json[0]["entry"]["totals"]["reel_file"].as_str().unwrap();
    assert!(
        reel.starts_with("reels/tiny-bert-") && reel.ends_with(".mkv"),
        "{reel}"
    );
    let o = wr(&["encode", s(&model), "--store", s(&store), "--name", ""]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert_eq!(
        err(&o),
        "error: invalid --name '' (expected 1 to 200 characters, no control characters or surrounding spaces)"
    );
}

#[test]
fn list_shows_what_tells_entries_apart_and_both_counts() {
    let t = two_entries();
    let o = wr(&["list", "--store", s(&t.store)]);
    assert!(o.status.success(), "{}", err(&o));
    let text = out(&o);
    let lines: Vec<&str> = text.lines().collect();
    let header: Vec<&str> = lines[1]
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "Name",
            "Key",
            "Values stored",
            "Model params",
            "Chunks",
            "Chunk size",
            "Method",
            "Mode",
            "Layers",
            "Max-params",
            "Time",
            "Date"
        ]
    );
    let rows: Vec<Vec<&str>> = lines[3..5]
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0][..10],
        [
            "tiny-bert",
            &t.keys[0],
            "256",
            "256",
            "1",
            "8,192",
            "batch",
            "u16",
            "all",
            "-"
        ]
    );
    assert_eq!(
        rows[1][..10],
        [
            "tiny-bert",
            &t.keys[1],
            "256",
            "256",
            "4",
            "64",
            "chunk",
            "u16",
            "all",
            "-"
        ]
    );
    let list = encode(&["list", "--store", s(&t.store), "--json"]);
    assert_eq!(list[0]["model_params"], 256);
    assert_eq!(list[0]["totals"]["params"], 256);
}
