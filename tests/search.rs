//! Search, compare and family trees on a family derived in the test from the real
//! all-MiniLM-L6-v2 (see `support/family.rs`), encoded with mixed settings.

mod support;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;
use support::cli::{path, run};
use support::family::{self, Kinship, Member};

/// The family, encoded once into one store for every test here.
struct Encoded {
    _tmp: tempfile::TempDir,
    store: PathBuf,
    members: Vec<Member>,
}

fn encoded() -> &'static Encoded {
    static E: OnceLock<Encoded> = OnceLock::new();
    E.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let members = family::derive(&support::minilm::safetensors(), &tmp.path().join("models"));
        let store = tmp.path().join("store");
        for m in &members {
            let mut args = vec!["encode", path(&m.dir), "--store", path(&store), "-q"];
            args.extend_from_slice(m.encode_args);
            let out = run(&args);
            assert!(
                out.status.success(),
                "encode {}: {}",
                m.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Encoded {
            _tmp: tmp,
            store,
            members,
        }
    })
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn member<'a>(e: &'a Encoded, name: &str) -> &'a Member {
    e.members.iter().find(|m| m.name == name).unwrap()
}

/// The ranking for the base under `method`: (member name, score, exact).
fn ranking(e: &Encoded, method: &str) -> Vec<(String, f64, Option<f64>)> {
    let base = member(e, "base");
    let json: Value = serde_json::from_str(&ok(&[
        "search",
        path(&base.dir),
        "--store",
        path(&e.store),
        "--method",
        method,
        "--top",
        "20",
        "--json",
    ]))
    .unwrap();
    json["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let name = Path::new(h["name"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (name, h["score"].as_f64().unwrap(), h["exact"].as_f64())
        })
        .collect()
}

fn kin(e: &Encoded, name: &str) -> Kinship {
    member(e, name).kinship
}

/// Rank groups in the order search must give them.
fn group_rank(k: Kinship) -> u32 {
    match k {
        Kinship::Base | Kinship::Copy => 0,
        Kinship::FineTune | Kinship::GrandChild => 1,
        Kinship::SharesEmbeddings => 2,
        Kinship::Unrelated => 3,
    }
}

fn assert_group_order(e: &Encoded, ranks: &[(String, f64, Option<f64>)], method: &str) {
    let groups: Vec<u32> = ranks.iter().map(|r| group_rank(kin(e, &r.0))).collect();
    let mut sorted = groups.clone();
    sorted.sort();
    assert_eq!(groups, sorted, "{method}: {ranks:#?}");
    assert_eq!(ranks.len(), e.members.len() - 1, "{method}: {ranks:#?}");
}

#[test]
fn hybrid_ranks_copy_then_fine_tunes_then_partial_then_unrelated() {
    let e = encoded();
    let ranks = ranking(e, "hybrid");
    assert_group_order(e, &ranks, "hybrid");
    assert_eq!(ranks[0].0, "base-f16");
    assert!(ranks[0].1 > 0.999, "{ranks:#?}");
}

#[test]
fn exact_scores_relatives_high_and_unrelated_low() {
    let e = encoded();
    let ranks = ranking(e, "exact");
    assert_group_order(e, &ranks, "exact");
    for (name, score, _) in &ranks {
        match kin(e, name) {
            Kinship::Copy | Kinship::FineTune | Kinship::GrandChild => {
                assert!(*score >= 0.9, "{name}: {score}")
            }
            Kinship::Unrelated => assert!(*score <= 0.2, "{name}: {score}"),
            Kinship::SharesEmbeddings => assert!(*score > 0.2 && *score < 0.9, "{name}: {score}"),
            Kinship::Base => unreachable!(),
        }
    }
}

#[test]
fn features_rank_the_family_above_unrelated_models() {
    let e = encoded();
    let ranks = ranking(e, "features");
    let worst_family = ranks
        .iter()
        .filter(|r| {
            matches!(
                kin(e, &r.0),
                Kinship::Copy | Kinship::FineTune | Kinship::GrandChild
            )
        })
        .map(|r| r.1)
        .fold(f64::INFINITY, f64::min);
    let best_unrelated = ranks
        .iter()
        .filter(|r| kin(e, &r.0) == Kinship::Unrelated)
        .map(|r| r.1)
        .fold(f64::NEG_INFINITY, f64::max);
    assert!(worst_family > best_unrelated, "{ranks:#?}");
}

#[test]
fn hierarchical_gives_exacts_top_results_touching_fewer_values() {
    let e = encoded();
    let exact = ranking(e, "exact");
    let hier = ranking(e, "hierarchical");
    let top = |r: &[(String, f64, Option<f64>)]| {
        r.iter().take(4).map(|x| x.0.clone()).collect::<Vec<_>>()
    };
    assert_eq!(top(&hier), top(&exact));
    let touched = |method: &str| -> u64 {
        let json: Value = serde_json::from_str(&ok(&[
            "search",
            path(&member(e, "base").dir),
            "--store",
            path(&e.store),
            "--method",
            method,
            "--top",
            "4",
            "--json",
        ]))
        .unwrap();
        json["values_touched"].as_u64().unwrap()
    };
    assert!(touched("hierarchical") < touched("exact"));
}

#[test]
fn tree_puts_the_base_at_the_root_and_the_grandchild_under_its_parent() {
    let e = encoded();
    let json: Value =
        serde_json::from_str(&ok(&["tree", "--store", path(&e.store), "--json"])).unwrap();
    let families = json.as_array().unwrap();
    let short = |v: &Value| {
        Path::new(v.as_str().unwrap())
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    let family = families
        .iter()
        .find(|f| {
            f["members"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| short(m) == "grandchild")
        })
        .unwrap();
    assert_eq!(short(&family["root"]), "base", "{family:#}");
    let parent_of = |child: &str| -> String {
        family["edges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|edge| short(&edge["child"]) == child)
            .map(|edge| short(&edge["parent"]))
            .unwrap_or_default()
    };
    for m in &e.members {
        if let Some(parent) = m.parent {
            assert_eq!(parent_of(m.name), parent, "{}: {family:#}", m.name);
        }
    }
    for unrelated in ["reinit", "gpt2-like"] {
        let alone = families
            .iter()
            .find(|f| short(&f["root"]) == unrelated)
            .unwrap();
        assert_eq!(alone["members"].as_array().unwrap().len(), 1, "{alone:#}");
    }
}

#[test]
fn compare_lists_each_tensor_and_the_layers() {
    let e = encoded();
    let json: Value = serde_json::from_str(&ok(&[
        "compare",
        path(&member(e, "base").dir),
        path(&member(e, "finetune-a").dir),
        "--store",
        path(&e.store),
        "--json",
    ]))
    .unwrap();
    let tensors = json["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), 103);
    // The fine-tune changed every tensor by 4%. A sample sees a few rows of a low-rank
    // update, so one tensor's measure scatters around that; the weighted whole is close.
    for t in tensors {
        let change = t["relative_change"].as_f64().unwrap();
        // (A tensor of zeros, like the pooler's bias, has no relative update.)
        let zero = change == 0.0 && t["similarity"].as_f64() == Some(1.0);
        assert!((0.01..0.12).contains(&change) || zero, "{t}");
    }
    let overall = json["relative_change"].as_f64().unwrap();
    assert!((0.03..0.05).contains(&overall), "{overall}");
    let changes: Vec<f64> = tensors
        .iter()
        .map(|t| t["relative_change"].as_f64().unwrap())
        .collect();
    assert!(changes.windows(2).all(|w| w[0] >= w[1]), "sorted by change");
    let grid = &json["layers"];
    assert_eq!(grid["layers"].as_array().unwrap().len(), 7); // no layer, then 0..=5
}

fn fails(args: &[&str]) -> String {
    let out = run(args);
    assert!(!out.status.success(), "{args:?} should fail");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

fn minilm() -> String {
    support::minilm::dir().to_str().unwrap().to_string()
}

fn stored_fingerprint(store: &Path, name: &str) -> Vec<u8> {
    weightreel::store::Store::open_read_only(store)
        .unwrap()
        .fingerprint(name)
        .unwrap()
        .expect("a stored fingerprint")
        .to_bytes()
}

#[test]
fn the_fingerprint_does_not_depend_on_encode_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let m = minilm();
    ok(&[
        "encode",
        &m,
        "--store",
        path(&a),
        "-q",
        "--max-params",
        "20000",
        "--layers",
        "attention",
    ]);
    ok(&[
        "encode",
        &m,
        "--store",
        path(&b),
        "-q",
        "--max-params",
        "50000",
        "--chunk-encoding",
        "--mode",
        "lossless",
    ]);
    let name = "all-MiniLM-L6-v2";
    assert_eq!(stored_fingerprint(&a, name), stored_fingerprint(&b, name));
    // Re-encoding with other settings adds an entry and keeps one fingerprint per name.
    ok(&[
        "encode",
        &m,
        "--store",
        path(&a),
        "-q",
        "--max-params",
        "30000",
    ]);
    let store = weightreel::store::Store::open_read_only(&a).unwrap();
    assert_eq!(store.list().unwrap().len(), 2);
    assert_eq!(store.fingerprint_names().unwrap(), vec![name]);
}

#[test]
fn fingerprint_alone_stores_no_reel_and_is_searchable() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let gpt2 = tmp.path().join("gpt2-like");
    std::fs::create_dir_all(&gpt2).unwrap();
    family::write(
        &gpt2.join("model.safetensors"),
        &family::gpt2_like(5),
        safetensors::Dtype::F32,
    );
    let out = ok(&[
        "fingerprint",
        &minilm(),
        path(&gpt2),
        "--store",
        path(&store),
    ]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        out.starts_with("Fingerprinted all-MiniLM-L6-v2: 103 tensors,"),
        "{out}"
    );
    let list: Value =
        serde_json::from_str(&ok(&["list", "--store", path(&store), "--json"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 0);
    assert_eq!(std::fs::read_dir(store.join("reels")).unwrap().count(), 0);
    let out = ok(&["search", &minilm(), "--store", path(&store)]);
    let rows: Vec<&str> = out.lines().collect();
    assert_eq!(rows.len(), 4, "{out}");
    assert!(rows[2].contains("gpt2-like"), "{out}");
    assert!(
        rows[2].ends_with("no shared tensor shapes: distribution features only"),
        "{out}"
    );
    // rm takes a fingerprint-only model out of search.
    ok(&["rm", path(&gpt2), "--store", path(&store)]);
    let store = weightreel::store::Store::open_read_only(&store).unwrap();
    assert_eq!(store.fingerprint_names().unwrap(), vec!["all-MiniLM-L6-v2"]);
}

#[test]
fn search_errors_say_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let err = fails(&["search", &minilm(), "--store", path(&store)]);
    assert!(
        err.contains(&format!(
            "store {}: no store here (no registry.sqlite)",
            store.display()
        )),
        "{err}"
    );
    assert!(!store.exists(), "a read command created the store");
    // A store that exists but holds no fingerprint says so.
    ok(&["fingerprint", &minilm(), "--store", path(&store)]);
    ok(&["rm", &minilm(), "--store", path(&store)]);
    let err = fails(&["search", &minilm(), "--store", path(&store)]);
    assert!(
        err.ends_with(
            "holds no fingerprinted models yet (encode or `weightreel fingerprint` some first)\n"
        ),
        "{err}"
    );
    ok(&["fingerprint", &minilm(), "--store", path(&store)]);
    let err = fails(&[
        "search",
        "all-MiniLM-L6",
        "--store",
        path(&store),
        "--offline",
    ]);
    assert!(
        err.starts_with(
            "error: model 'all-MiniLM-L6': no stored model has this name, and it cannot be opened"
        ),
        "{err}"
    );
    assert!(
        err.ends_with("; closest stored names: all-MiniLM-L6-v2\n"),
        "{err}"
    );
    let err = fails(&[
        "search",
        &minilm(),
        "--store",
        path(&store),
        "--method",
        "bogus",
    ]);
    assert_eq!(
        err,
        "error: invalid --method bogus (expected exact, features, hierarchical or hybrid)\n"
    );
    let out = run(&["search", &minilm(), "--store", path(&store), "--top", "0"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_store_from_before_fingerprints_is_upgraded_by_fingerprint_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let m = minilm();
    ok(&[
        "encode",
        &m,
        "--store",
        path(&store),
        "-q",
        "--max-params",
        "20000",
    ]);
    // What a store written before fingerprints looks like: schema version 2, no table.
    {
        let db = rusqlite::Connection::open(store.join("registry.sqlite")).unwrap();
        db.execute_batch("DROP TABLE fingerprints; PRAGMA user_version = 2;")
            .unwrap();
    }
    let out = run(&["search", &m, "--store", path(&store)]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with(&format!(
            "note: 1 stored model has no fingerprint (encoded before fingerprints existed): run `weightreel fingerprint --missing --store {}` to add it\n",
            store.display()
        )),
        "{err}"
    );
    let out = ok(&["fingerprint", "--missing", "--store", path(&store)]);
    assert!(
        out.starts_with("Fingerprinted all-MiniLM-L6-v2: 103 tensors"),
        "{out}"
    );
    assert!(stored_fingerprint(&store, "all-MiniLM-L6-v2").len() > 1000);
    let db = rusqlite::Connection::open(store.join("registry.sqlite")).unwrap();
    let version: i64 = db
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, weightreel::store::SCHEMA_VERSION);
}

#[test]
fn compare_png_and_tree_dot_are_written() {
    let e = encoded();
    let tmp = tempfile::tempdir().unwrap();
    let png = tmp.path().join("heat.png");
    let out = ok(&[
        "compare",
        path(&member(e, "base").dir),
        path(&member(e, "three-layer").dir),
        "--store",
        path(&e.store),
        "--png",
        path(&png),
    ]);
    assert!(
        out.contains("Per-layer similarity (rows: layer, columns: role):"),
        "{out}"
    );
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    // IHDR: width and height are 24 pixels per role column and per layer row (7 rows: no
    // layer, then 0..=5; the three-layer model pairs layers 0..=2 only, the rest are grey).
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!(height, 24 * 4, "layers: none, 0, 1, 2");
    assert_eq!(width % 24, 0);
    let dot = tmp.path().join("families.dot");
    ok(&["tree", "--store", path(&e.store), "--dot", path(&dot)]);
    let text = std::fs::read_to_string(&dot).unwrap();
    assert!(text.starts_with("digraph families {"), "{text}");
    // Stored under their directories' names.
    let (base, grandchild, parent) = ("base", "grandchild", "finetune-a");
    assert!(
        text.contains(&format!("\"{parent}\" -> \"{grandchild}\"")),
        "{text}"
    );
    assert!(
        text.contains(&format!("\"{base}\" -> \"{parent}\"")),
        "{text}"
    );
}
