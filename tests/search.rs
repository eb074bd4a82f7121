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
