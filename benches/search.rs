//! Search speed over 1k, 10k and 100k stored fingerprints (synthetic: families of one
//! 16-tensor architecture, each model its family's base plus noise), for the README:
//! loading the index (warm, median of 3), one top-10 query in process (median of 21, index loaded), and the whole
//! `weightreel search` process (median of 3). Also the index's memory per stored model.
//!
//! `cargo bench --bench search [-- 1000 10000 100000]` (the release binary is built first);
//! `SEARCH_BREAKDOWN=1` also prints each method's query time and 40 fingerprint loads.
//! Stores go to `target/bench-data/search-N` and are reused when present.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use weightreel::fingerprint::{Fingerprint, SampleStats, TensorPrint};
use weightreel::roles::Role;
use weightreel::search::{search, Method, SearchOptions};
use weightreel::store::{FingerprintSource, Store};

const TENSORS: usize = 16;
const VALUES: usize = 256;
const FAMILY: usize = 50;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn normal(&mut self) -> f32 {
        let u = ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let v = ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }
}

fn base_values(family: usize) -> Vec<Vec<f32>> {
    let mut rng = Rng(family as u64 * 7919 + 1);
    (0..TENSORS)
        .map(|_| (0..VALUES).map(|_| 0.02 * rng.normal()).collect())
        .collect()
}

fn model(i: usize) -> Fingerprint {
    let base = base_values(i / FAMILY);
    let mut rng = Rng(i as u64 * 104_729 + 3);
    let tensors = base
        .iter()
        .enumerate()
        .map(|(k, b)| {
            let raw: Vec<f32> = b.iter().map(|&v| v + 0.001 * rng.normal()).collect();
            let (values, scale) = weightreel::fingerprint::round_to_stored(&raw);
            TensorPrint {
                name: format!("encoder.layer.{}.attention.self.query.weight", k),
                role: Role::Attention,
                layer: Some(k as u32),
                shape: vec![384, 384],
                dtype: "F32".into(),
                sample_start: (384 * 384 - VALUES as u64) / 2,
                stats: SampleStats::of(&raw),
                values,
                scale,
            }
        })
        .collect();
    let mut fp = Fingerprint {
        tensors,
        sketch: Vec::new(),
    };
    fp.sketch = fp.make_sketch();
    fp
}

fn name(i: usize) -> String {
    format!("synthetic/family-{:05}/model-{:02}", i / FAMILY, i % FAMILY)
}

fn store_of(n: usize) -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("target/bench-data/search-{n}"));
    let done = dir.join("complete");
    if done.exists() {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let mut store = Store::open(&dir).expect("store");
    let started = Instant::now();
    for batch in (0..n).collect::<Vec<_>>().chunks(2000) {
        let rows: Vec<(FingerprintSource, Fingerprint)> = batch
            .iter()
            .map(|&i| {
                (
                    FingerprintSource {
                        name: name(i),
                        source: "synthetic".into(),
                        revision: None,
                        model_type: Some("bert".into()),
                        created_at: "2026-12-01T00:00:00Z".into(),
                    },
                    model(i),
                )
            })
            .collect();
        store
            .put_fingerprints(rows.iter().map(|(s, f)| (s, f)))
            .expect("insert");
    }
    std::fs::write(&done, "").unwrap();
    eprintln!(
        "built {n} fingerprints in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    dir
}

/// `FAMILIES=N`: family trees of `N` stored fingerprints, for the gallery's Families page:
/// all pairs compared on one thread (how the trees were computed before), on every core
/// (`families_counting`), and in the gallery, whose trees start computing when it opens: the
/// first page request (answered at once, with the progress) and the wait until the trees are
/// ready.
/// `FAMILIES_STORE=DIR` times an existing store instead of the synthetic one.
fn families_timings(n: usize) {
    let dir = std::env::var_os("FAMILIES_STORE").map_or_else(|| store_of(n), PathBuf::from);
    let store = Store::open_read_only(&dir).expect("store");
    let names = store.fingerprint_names().expect("names");
    let n = names.len();
    let models: Vec<(String, Fingerprint)> = names
        .iter()
        .map(|m| (m.clone(), store.fingerprint(m).unwrap().unwrap()))
        .collect();
    let t = Instant::now();
    let mut related = 0usize;
    for i in 0..models.len() {
        for j in i + 1..models.len() {
            let c = weightreel::search::compare(&models[i].1, &models[j].1);
            if c.exact.unwrap_or(0.0) * c.coverage >= weightreel::search::RELATED {
                related += 1;
            }
        }
    }
    let one_thread = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let trees = weightreel::search::families(&models);
    let every_core = t.elapsed().as_secs_f64();
    assert!(related > 0 && !trees.is_empty());
    let t = Instant::now();
    let mut gallery = weightreel::serve::Gallery::open(&dir, 1 << 20).expect("gallery");
    let opened = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let first = gallery.get("/api/families/page");
    let first_page = t.elapsed().as_secs_f64();
    assert_eq!(first.status, 200);
    let mut polls = 0;
    loop {
        let r = gallery.get("/api/families/page");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        if v["computing"] == false {
            break;
        }
        polls += 1;
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let ready = t.elapsed().as_secs_f64() + opened;
    let t = Instant::now();
    let r = gallery.get("/api/families/page?page=1");
    let cached = t.elapsed().as_secs_f64();
    assert_eq!(r.status, 200);
    println!(
        "\nFamilies of {n} fingerprints ({} pairs, {} threads): all pairs on one thread {one_thread:.2} s, on every core {every_core:.2} s; gallery: open {:.0} ms, first /api/families/page {:.1} ms, trees ready {ready:.2} s after opening ({polls} polls), a page when ready {:.1} ms",
        weightreel::search::family_pairs(n),
        std::thread::available_parallelism().map_or(1, |t| t.get()),
        opened * 1e3,
        first_page * 1e3,
        cached * 1e3,
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1000, 10_000, 100_000]
    } else {
        sizes
    };
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/weightreel");
    println!("| stored models | index load | top-10 query in process | `weightreel search` process | registry size |");
    println!("|---|---|---|---|---|");
    for n in sizes {
        let dir = store_of(n);
        let store = Store::open_read_only(&dir).expect("store");
        // Warm page cache, as the README's other figures: median of 3 loads.
        let mut loads = Vec::new();
        let mut index = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            index = store.fingerprint_index().expect("index");
            loads.push(t.elapsed().as_secs_f64());
        }
        let load = median(loads);
        let mut times = Vec::new();
        for q in 0..21 {
            let query = model(q * 37 % n);
            let t = Instant::now();
            let r = search(
                &store,
                &index,
                &query,
                SearchOptions {
                    top: 10,
                    method: Method::Hybrid,
                    exclude: None,
                    roles: &[],
                },
            )
            .expect("search");
            times.push(t.elapsed().as_secs_f64());
            // The query's own family fills the top 10.
            let family = name(q * 37 % n)[..26].to_string();
            assert!(
                r.hits.iter().all(|h| h.name.starts_with(&family)),
                "{:?}",
                r.hits
            );
        }
        if std::env::var_os("SEARCH_BREAKDOWN").is_some() {
            for method in [Method::Features, Method::Hybrid, Method::Hierarchical] {
                let query = model(7 % n);
                let t = Instant::now();
                for _ in 0..5 {
                    search(
                        &store,
                        &index,
                        &query,
                        SearchOptions {
                            top: 10,
                            method,
                            exclude: None,
                            roles: &[],
                        },
                    )
                    .unwrap();
                }
                eprintln!(
                    "{n}: {method:?} {:.2} ms",
                    t.elapsed().as_secs_f64() * 200.0
                );
            }
            let t = Instant::now();
            for i in 0..40 {
                store.fingerprint(&name(i)).unwrap();
            }
            eprintln!(
                "{n}: 40 fingerprint loads {:.2} ms",
                t.elapsed().as_secs_f64() * 1e3
            );
        }
        let query_name = name(n / 2);
        let mut whole = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let out = Command::new(&bin)
                .args([
                    "search",
                    &query_name,
                    "--store",
                    dir.to_str().unwrap(),
                    "--top",
                    "10",
                ])
                .output()
                .expect("run weightreel");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            whole.push(t.elapsed().as_secs_f64());
        }
        let size = std::fs::metadata(Path::new(&dir).join("registry.sqlite"))
            .map(|m| m.len())
            .unwrap_or(0);
        println!(
            "| {n} | {:.1} ms | {:.2} ms | {:.0} ms | {:.0} MB |",
            load * 1e3,
            median(times) * 1e3,
            median(whole) * 1e3,
            size as f64 / 1e6
        );
    }
    if let Some(n) = std::env::var("FAMILIES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        families_timings(n);
    }
    let row = weightreel::fingerprint::SKETCH_DIM * 4 + 6 * 48 + 64;
    println!(
        "\nIndex memory per stored model: ~{row} bytes (sketch {} f32, role features, name).",
        weightreel::fingerprint::SKETCH_DIM
    );
}
