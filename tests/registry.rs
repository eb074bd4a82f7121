//! One conformance suite for the registry backends (tantivy's habit): every case runs against
//! a SQLite store directory and a PostgreSQL registry (a private cluster, see
//! `support/postgres.rs`), asserts the rules on each, and checks that both give the same
//! answers. Then what only PostgreSQL has (two machines writing one model, its schema table)
//! and the CLI over `--store postgres://…`.
//!
//! Tests that need PostgreSQL skip only when `WEIGHTREEL_NO_SERVICES=1` is set, and say so.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;
use support::cli::path;
use support::fixtures::{write_arch, GUIDE_DIMS};
use support::postgres::{services_disabled, Postgres};
use weightreel::fingerprint::Fingerprint;
use weightreel::store::{
    EntryRecord, FingerprintSource, FrameRecord, Settings, Store, Totals, PG_SCHEMA_VERSION,
};
use weightreel::Error;

// ---------------------------------------------------------------------------------------
// Fixtures

fn settings(chunk: u64) -> Settings {
    Settings {
        revision: "main".into(),
        chunk_size: chunk,
        layers: "all".into(),
        include: None,
        exclude: None,
        max_params: Some(40_000),
        sample: "stratified".into(),
        mode: "u16".into(),
        method: "chunk".into(),
        max_frame_values: 1 << 24,
        min_efficiency: 0.5,
        pyramid_finest: 8,
    }
}

fn entry(name: &str, chunk: u64, params: u64, reel: &str) -> EntryRecord {
    EntryRecord {
        name: name.into(),
        source_kind: "file".into(),
        source: format!("/models/{name}"),
        revision: None,
        commit: None,
        format: "safetensors".into(),
        model_type: Some("bert".into()),
        architectures: vec!["BertModel".into()],
        settings: settings(chunk),
        totals: Totals {
            params,
            chunks: params.div_ceil(chunk),
            frames: params.div_ceil(chunk),
            bytes_read: 123_456,
            read_requests: 7,
            encoding_secs: 2.5,
            params_per_sec: params as f64 / 2.5,
            peak_rss_bytes: 1 << 20,
            reel_file: reel.into(),
            reel_bytes: 4096,
        },
        created_at: "2026-12-01T00:00:00Z".into(),
    }
}

fn frames(n: u64) -> Vec<weightreel::Result<FrameRecord>> {
    (0..n)
        .map(|i| {
            Ok(FrameRecord {
                index: i,
                first_value: i * 8000,
                count: 8000,
                width: 128,
                height: 64,
                checksum: 0xdead_0000 + i as u32,
                nonfinite: i,
                min: -1.5 - i as f32 / 3.0,
                max: 2.25,
                mean: 0.1 + i as f32 * 1e-7,
                std: 0.5,
            })
        })
        .collect()
}

/// Real fingerprints of three small models (taken once with `weightreel fingerprint` into a
/// scratch store), by name.
fn prints() -> &'static Vec<(String, Fingerprint)> {
    static P: OnceLock<Vec<(String, Fingerprint)>> = OnceLock::new();
    P.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let store = tmp.path().join("store");
        let mut out = Vec::new();
        for (name, seed) in [("alpha", 11), ("beta", 12), ("gamma", 13)] {
            let dir = tmp.path().join(name);
            write_arch(&dir, "bert-base-uncased", GUIDE_DIMS, seed);
            ok(weightreel(
                &["fingerprint", path(&dir), "--store", path(&store)],
                &[],
            ));
            let s = Store::open_read_only(&store).unwrap();
            let stored = s.stored_name_of(path(&dir)).unwrap().unwrap();
            out.push((name.to_string(), s.fingerprint(&stored).unwrap().unwrap()));
        }
        out
    })
}

fn source(name: &str) -> FingerprintSource {
    FingerprintSource {
        name: name.into(),
        source: format!("/models/{name}"),
        revision: None,
        model_type: Some("bert".into()),
        created_at: "2026-12-01T00:00:00Z".into(),
    }
}

fn print(name: &str) -> &'static Fingerprint {
    &prints().iter().find(|(n, _)| n == name).unwrap().1
}

// ---------------------------------------------------------------------------------------
// The two backends

/// A fresh store of each backend: a SQLite store directory, and a database of its own on
/// `pg` with reels and work in directories of their own.
struct Pair {
    _tmp: tempfile::TempDir,
    sqlite: Store,
    postgres: Store,
}

fn database(pg: &Postgres, name: &str) -> String {
    let out = pg.psql("postgres", &format!("CREATE DATABASE {name}"));
    assert!(
        out.status.success(),
        "createdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("postgres://weightreel@127.0.0.1:{}/{name}", pg.port)
}

fn pair(pg: &Postgres, db: &str) -> Pair {
    let tmp = tempfile::tempdir().unwrap();
    let sqlite = Store::open(&tmp.path().join("store")).unwrap();
    let url = database(pg, db);
    let postgres =
        Store::open_postgres(&url, &tmp.path().join("shared"), &tmp.path().join("work")).unwrap();
    Pair {
        _tmp: tmp,
        sqlite,
        postgres,
    }
}

/// Run `case` on both backends of a fresh pair; each asserts the rules and returns what it
/// saw, which must be the same on both.
fn conform(test: &str, case: fn(&mut Store) -> Vec<String>) {
    if services_disabled(test) {
        return;
    }
    let pg = Postgres::start();
    let mut p = pair(&pg, "conformance");
    let on_sqlite = case(&mut p.sqlite);
    let on_postgres = case(&mut p.postgres);
    assert_eq!(
        on_sqlite, on_postgres,
        "{test}: SQLite (left) and PostgreSQL (right) disagree"
    );
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            conform(stringify!($name), cases::$name);
        }
    )*};
}

conformance!(
    commit_then_list_find_entry_and_frames,
    names_and_reel_files_are_looked_up_one_by_one,
    same_settings_replace_and_other_settings_add,
    a_failed_commit_leaves_nothing_visible,
    remove_takes_entries_and_the_last_entry_takes_the_fingerprint,
    stats_sum_the_entries,
    receipts_name_committed_entries_only,
    the_first_commit_records_where_the_reels_are,
    fingerprints_put_get_list_and_index,
    search_ranks_the_same,
);

mod cases {
    use super::*;

    fn seen(label: &str, v: impl std::fmt::Debug) -> String {
        format!("{label}: {v:?}")
    }

    /// Entries without their ids: PostgreSQL's sequence is not transactional, so a rolled-back
    /// commit uses up an id there (ids stay unique and increasing, not dense).
    fn entries(list: Vec<weightreel::store::EntrySummary>) -> Vec<String> {
        list.into_iter()
            .map(|e| format!("{:?} {} {:?}", e.record, e.settings_key, e.model_params))
            .collect()
    }

    pub fn commit_then_list_find_entry_and_frames(s: &mut Store) -> Vec<String> {
        let e = entry("bert", 8000, 40_000, "reels/bert-1.mkv");
        let (id, replaced) = s.commit_entry(&e, frames(5)).unwrap();
        assert_eq!(replaced, None);
        let list = s.list().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(
            list[0].record,
            e,
            "{}: the entry reads back as written",
            s.registry_label()
        );
        assert_eq!(list[0].id, id);
        assert_eq!(s.entry(id).unwrap().unwrap(), list[0]);
        assert_eq!(s.entry(id + 1000).unwrap(), None);
        assert_eq!(s.find("bert").unwrap(), list);
        assert!(s.find("gpt2").unwrap().is_empty());
        let rows = s.frames(id).unwrap();
        let want: Vec<FrameRecord> = frames(5).into_iter().map(|f| f.unwrap()).collect();
        assert_eq!(rows, want, "frame rows read back exactly");
        assert!(s.frames(id + 1000).unwrap().is_empty());
        assert!(s.listing().unwrap().unreadable.is_empty());
        vec![seen("list", &list), seen("frames", &rows)]
    }

    pub fn names_and_reel_files_are_looked_up_one_by_one(s: &mut Store) -> Vec<String> {
        for (name, chunk, reel) in [
            ("gpt2", 8000, "reels/gpt2-a.mkv"),
            ("gpt2", 4096, "reels/gpt2-b.mkv"),
            ("gpt2-large", 8000, "reels/gpt2-large-a.mkv"),
            ("bert", 8000, "reels/bert-a.mkv"),
        ] {
            s.commit_entry(&entry(name, chunk, 40_000, reel), frames(1))
                .unwrap();
        }
        // By name: exactly that name's entries, oldest first, as the listing has them.
        let gpt2 = s.find("gpt2").unwrap();
        let listed: Vec<_> = s
            .list()
            .unwrap()
            .into_iter()
            .filter(|e| e.record.name == "gpt2")
            .collect();
        assert_eq!(gpt2, listed);
        assert_eq!(gpt2.len(), 2);
        assert!(s.find("gpt").unwrap().is_empty(), "a name is not a prefix");
        // By reel-file prefix: every entry whose reel name begins so (a prefix, so a longer
        // model name's reels too), and nothing else.
        let mut files = s.registry().reel_files_starting("reels/gpt2").unwrap();
        files.sort();
        assert_eq!(
            files,
            [
                "reels/gpt2-a.mkv",
                "reels/gpt2-b.mkv",
                "reels/gpt2-large-a.mkv"
            ]
        );
        assert!(s
            .registry()
            .reel_files_starting("reels/gpt2%")
            .unwrap()
            .is_empty());
        assert!(s
            .registry()
            .reel_files_starting("reels/t5")
            .unwrap()
            .is_empty());
        vec![seen("gpt2", entries(gpt2)), seen("files", files)]
    }

    pub fn same_settings_replace_and_other_settings_add(s: &mut Store) -> Vec<String> {
        let (id1, r) = s
            .commit_entry(&entry("gpt2", 8000, 40_000, "reels/a.mkv"), frames(5))
            .unwrap();
        assert_eq!(r, None);
        let (id2, r) = s
            .commit_entry(&entry("gpt2", 8000, 40_000, "reels/b.mkv"), frames(5))
            .unwrap();
        assert_eq!(r.as_deref(), Some("reels/a.mkv"), "same settings replace");
        assert_ne!(id1, id2);
        assert!(
            s.frames(id1).unwrap().is_empty(),
            "the replaced frames are gone"
        );
        let (_, r) = s
            .commit_entry(&entry("gpt2", 5000, 40_000, "reels/c.mkv"), frames(8))
            .unwrap();
        assert_eq!(r, None, "other settings add");
        let (_, r) = s
            .commit_entry(&entry("bert", 8000, 40_000, "reels/d.mkv"), frames(5))
            .unwrap();
        assert_eq!(r, None, "another model with the same settings adds");
        let reels: Vec<String> = s
            .list()
            .unwrap()
            .into_iter()
            .map(|e| e.record.totals.reel_file)
            .collect();
        assert_eq!(reels, ["reels/b.mkv", "reels/c.mkv", "reels/d.mkv"]);
        vec![
            seen("reels", reels),
            seen("gpt2", entries(s.find("gpt2").unwrap())),
        ]
    }

    pub fn a_failed_commit_leaves_nothing_visible(s: &mut Store) -> Vec<String> {
        let (alpha, fp) = (source("alpha"), print("alpha"));
        s.commit_entry_with(
            &entry("alpha", 8000, 40_000, "reels/a.mkv"),
            frames(5),
            Some((&alpha, fp)),
            Some("job-1"),
        )
        .unwrap();
        let before = (s.list().unwrap(), s.fingerprint_index().unwrap().len());
        // The replacing commit fails in its frame stream: the old entry stays, and neither
        // the new fingerprint nor the receipt is visible.
        let mut bad = frames(3);
        bad.push(Err(Error::Frame("boom".into())));
        let beta = source("beta");
        let err = s
            .commit_entry_with(
                &entry("alpha", 8000, 40_000, "reels/b.mkv"),
                bad,
                Some((&beta, print("beta"))),
                Some("job-2"),
            )
            .unwrap_err();
        assert!(err.to_string().contains("boom"), "{err}");
        // A new model's failed commit adds nothing either.
        let mut bad = frames(2);
        bad.push(Err(Error::Frame("bang".into())));
        assert!(s
            .commit_entry_with(
                &entry("delta", 8000, 40_000, "reels/c.mkv"),
                bad,
                Some((&beta, print("beta"))),
                Some("job-3"),
            )
            .is_err());
        let after = (s.list().unwrap(), s.fingerprint_index().unwrap().len());
        assert_eq!(before, after);
        assert_eq!(s.frames(after.0[0].id).unwrap().len(), 5);
        assert_eq!(s.receipt("job-2").unwrap(), None);
        assert_eq!(s.receipt("job-3").unwrap(), None);
        assert_eq!(s.fingerprint("beta").unwrap(), None);
        assert!(s.receipt("job-1").unwrap().is_some());
        // The store still takes commits after a failed one.
        s.commit_entry(&entry("delta", 8000, 40_000, "reels/c.mkv"), frames(1))
            .unwrap();
        vec![seen("after", entries(s.list().unwrap()))]
    }

    pub fn remove_takes_entries_and_the_last_entry_takes_the_fingerprint(
        s: &mut Store,
    ) -> Vec<String> {
        let reel = |name: &str| s.reel_path(&format!("reels/{name}"));
        let (a, b, c) = (reel("a.mkv"), reel("b.mkv"), reel("c.mkv"));
        for f in [&a, &b, &c] {
            std::fs::write(f, b"reel").unwrap();
        }
        let (alpha, fp) = (source("alpha"), print("alpha"));
        s.commit_entry_with(
            &entry("alpha", 8000, 40_000, "reels/a.mkv"),
            frames(2),
            Some((&alpha, fp)),
            None,
        )
        .unwrap();
        s.commit_entry(&entry("alpha", 5000, 40_000, "reels/b.mkv"), frames(2))
            .unwrap();
        let key = settings(8000).key();
        assert_eq!(s.remove("alpha", Some(&key)).unwrap(), 1);
        assert!(!a.exists(), "the removed entry's reel goes");
        assert!(b.exists());
        assert!(
            s.fingerprint("alpha").unwrap().is_some(),
            "the fingerprint stays while an entry does"
        );
        assert_eq!(s.remove("alpha", Some("v3-000000000000")).unwrap(), 0);
        assert_eq!(s.remove("alpha", None).unwrap(), 1);
        assert_eq!(
            s.fingerprint("alpha").unwrap(),
            None,
            "and goes with the last"
        );
        assert!(!b.exists());
        // A model only fingerprinted is removed by name alone.
        let beta = source("beta");
        s.put_fingerprint(&beta, print("beta")).unwrap();
        assert_eq!(s.remove("beta", None).unwrap(), 1);
        assert_eq!(s.fingerprint_names().unwrap(), Vec::<String>::new());
        assert_eq!(s.remove("nobody", None).unwrap(), 0);
        assert!(c.exists(), "unnamed reels are not touched");
        vec![seen("left", entries(s.list().unwrap()))]
    }

    pub fn stats_sum_the_entries(s: &mut Store) -> Vec<String> {
        let empty = s.stats().unwrap();
        assert_eq!(empty.encoded_models, 0);
        assert_eq!(empty.average_encoding_time, 0.0);
        s.commit_entry(&entry("gpt2", 8000, 40_000, "reels/a.mkv"), frames(5))
            .unwrap();
        s.commit_entry(&entry("gpt2", 5000, 40_000, "reels/c.mkv"), frames(8))
            .unwrap();
        let stats = s.stats().unwrap();
        assert_eq!(stats.encoded_models, 2);
        assert_eq!(stats.total_parameters, 80_000);
        assert_eq!(stats.total_chunks, 13);
        assert_eq!(stats.chunk_sizes, vec![5000, 8000]);
        assert!((stats.average_chunks_per_model - 6.5).abs() < 1e-9);
        vec![seen("stats", stats)]
    }

    pub fn receipts_name_committed_entries_only(s: &mut Store) -> Vec<String> {
        assert_eq!(s.receipt("queue-1/job-1").unwrap(), None);
        let (id, _) = s
            .commit_entry_with(
                &entry("gpt2", 8000, 40_000, "reels/a.mkv"),
                frames(1),
                None,
                Some("queue-1/job-1"),
            )
            .unwrap();
        assert_eq!(s.receipt("queue-1/job-1").unwrap(), Some(id));
        // Replaced by a commit without that receipt: the receipt names no entry any more.
        s.commit_entry(&entry("gpt2", 8000, 40_000, "reels/b.mkv"), frames(1))
            .unwrap();
        assert_eq!(s.receipt("queue-1/job-1").unwrap(), None);
        // The same tag again (a retried job) names the newest commit.
        let (id3, _) = s
            .commit_entry_with(
                &entry("gpt2", 8000, 40_000, "reels/c.mkv"),
                frames(1),
                None,
                Some("queue-1/job-1"),
            )
            .unwrap();
        assert_eq!(s.receipt("queue-1/job-1").unwrap(), Some(id3));
        s.remove("gpt2", None).unwrap();
        assert_eq!(s.receipt("queue-1/job-1").unwrap(), None);
        vec![]
    }

    pub fn the_first_commit_records_where_the_reels_are(s: &mut Store) -> Vec<String> {
        assert_eq!(s.registry().recorded_reels().unwrap(), None);
        s.commit_entry(&entry("gpt2", 8000, 40_000, "reels/a.mkv"), frames(1))
            .unwrap();
        // The store directory's own reels/, or the location the PostgreSQL store was given.
        let expected = match s.reel_storage() {
            Some(_) => s.reels_url(),
            None => "reels/".to_string(),
        };
        let recorded = s.registry().recorded_reels().unwrap();
        assert_eq!(recorded.as_deref(), Some(expected.as_str()));
        // Later commits leave the record as it is.
        s.commit_entry(&entry("bert", 8000, 40_000, "reels/b.mkv"), frames(1))
            .unwrap();
        assert_eq!(s.registry().recorded_reels().unwrap(), recorded);
        vec![]
    }

    pub fn fingerprints_put_get_list_and_index(s: &mut Store) -> Vec<String> {
        assert_eq!(s.fingerprint("alpha").unwrap(), None);
        assert!(s.fingerprint_index().unwrap().is_empty());
        let (a, b, g) = (source("alpha"), source("beta"), source("gamma"));
        s.put_fingerprints([(&g, print("gamma")), (&a, print("alpha"))])
            .unwrap();
        s.put_fingerprint(&b, print("beta")).unwrap();
        assert_eq!(s.fingerprint_names().unwrap(), ["alpha", "beta", "gamma"]);
        assert_eq!(s.fingerprint("beta").unwrap().as_ref(), Some(print("beta")));
        assert_eq!(s.fingerprint_source("alpha").unwrap(), Some(a.clone()));
        // Replacing a fingerprint replaces its index row too.
        let mut a2 = a.clone();
        a2.source = "/elsewhere/alpha".into();
        s.put_fingerprint(&a2, print("gamma")).unwrap();
        assert_eq!(s.fingerprint_source("alpha").unwrap(), Some(a2));
        let index = s.fingerprint_index().unwrap();
        let names: Vec<&str> = index.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["alpha", "beta", "gamma"]);
        assert_eq!(index[0].sketch, index[2].sketch);
        // The index keeps the sketch at 16 bits a value.
        let want = &print("beta").sketch;
        assert_eq!(index[1].sketch.len(), want.len());
        assert!(index[1]
            .sketch
            .iter()
            .zip(want)
            .all(|(a, b)| (a - b).abs() <= 1e-3 * b.abs().max(1e-2)));
        assert_eq!(index[1].params, print("beta").params());
        // Entries without a fingerprint, one per name.
        s.commit_entry(&entry("old", 8000, 16_000, "reels/o1.mkv"), frames(1))
            .unwrap();
        s.commit_entry(&entry("old", 5000, 16_000, "reels/o2.mkv"), frames(1))
            .unwrap();
        s.commit_entry(&entry("beta", 8000, 16_000, "reels/b.mkv"), frames(1))
            .unwrap();
        assert_eq!(
            s.entries_without_fingerprint().unwrap(),
            [("old".to_string(), "/models/old".to_string())]
        );
        let beta = s.find("beta").unwrap();
        assert_eq!(beta[0].model_params, Some(print("beta").params()));
        vec![seen("index", &index), seen("beta", entries(beta))]
    }

    pub fn search_ranks_the_same(s: &mut Store) -> Vec<String> {
        for (name, fp) in prints() {
            s.put_fingerprint(&source(name), fp).unwrap();
        }
        let index = s.fingerprint_index().unwrap();
        let mut out = Vec::new();
        for method in ["exact", "features", "hierarchical", "hybrid"] {
            let result = weightreel::search::search(
                s,
                &index,
                print("alpha"),
                weightreel::search::SearchOptions {
                    top: 10,
                    method: weightreel::search::Method::parse(method).unwrap(),
                    exclude: Some("alpha"),
                    roles: &[],
                },
            )
            .unwrap();
            let ranking: Vec<(String, String)> = result
                .hits
                .iter()
                .map(|h| (h.name.clone(), format!("{:.12}", h.score)))
                .collect();
            assert_eq!(ranking.len(), 2, "{method}");
            out.push(seen(method, ranking));
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// PostgreSQL only

#[test]
fn two_writers_of_one_model_on_postgres_lose_nothing() {
    if services_disabled("two_writers_of_one_model_on_postgres_lose_nothing") {
        return;
    }
    let pg = Postgres::start();
    let tmp = tempfile::tempdir().unwrap();
    let url = pg.url();
    // Two "machines" (threads with their own connection) commit the same model, with the
    // same settings and with settings of their own, 20 times each, racing.
    let handles: Vec<_> = (0..2)
        .map(|w| {
            let (url, root) = (url.clone(), tmp.path().to_path_buf());
            std::thread::spawn(move || {
                let mut s = Store::open_postgres(
                    &url,
                    &root.join("shared"),
                    &root.join(format!("work{w}")),
                )
                .unwrap();
                let mut committed = Vec::new();
                let mut replaced = Vec::new();
                for i in 0..20 {
                    for chunk in [8000, 6000 + w as u64] {
                        let reel = format!("reels/w{w}-{chunk}-{i}.mkv");
                        let (_, old) = s
                            .commit_entry(&entry("shared/model", chunk, 48_000, &reel), frames(50))
                            .unwrap();
                        committed.push(reel);
                        replaced.extend(old);
                    }
                }
                (committed, replaced)
            })
        })
        .collect();
    let mut committed = Vec::new();
    let mut replaced = Vec::new();
    for h in handles {
        let (c, r) = h.join().unwrap();
        committed.extend(c);
        replaced.extend(r);
    }
    let s = Store::open_postgres(&url, &tmp.path().join("shared"), &tmp.path().join("w")).unwrap();
    let list = s.list().unwrap();
    // One entry per settings key: the shared key, and each writer's own.
    let mut keys: Vec<u64> = list.iter().map(|e| e.record.settings.chunk_size).collect();
    keys.sort_unstable();
    assert_eq!(keys, [6000, 6001, 8000]);
    // Every commit is either an entry now or was handed back, exactly once, to the commit
    // that replaced it (whose caller deletes its reel): no reel is lost track of.
    let mut accounted: Vec<String> = list
        .iter()
        .map(|e| e.record.totals.reel_file.clone())
        .chain(replaced.iter().cloned())
        .collect();
    accounted.sort();
    committed.sort();
    assert_eq!(accounted, committed);
    for e in &list {
        assert_eq!(
            s.frames(e.id).unwrap().len(),
            50,
            "{}",
            e.record.totals.reel_file
        );
    }
    assert_eq!(
        pg.query("SELECT count(*) FROM wr_frames"),
        "150",
        "no frame rows of replaced entries are left"
    );
}

#[test]
fn a_postgres_store_rides_out_a_server_restart() {
    if services_disabled("a_postgres_store_rides_out_a_server_restart") {
        return;
    }
    let pg = Postgres::start();
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Store::open_postgres(
        &pg.url(),
        &tmp.path().join("shared"),
        &tmp.path().join("work"),
    )
    .unwrap();
    s.commit_entry(&entry("bert", 8000, 40_000, "reels/a.mkv"), frames(3))
        .unwrap();
    // Gone at once, as in a crash, and back: the same handle reads and commits again.
    pg.restart();
    assert_eq!(s.list().unwrap().len(), 1);
    s.commit_entry(&entry("gpt2", 8000, 40_000, "reels/b.mkv"), frames(3))
        .unwrap();
    pg.restart();
    s.put_fingerprint(&source("alpha"), print("alpha")).unwrap();
    pg.restart();
    assert_eq!(s.remove("gpt2", None).unwrap(), 1);
    let names: Vec<String> = s
        .list()
        .unwrap()
        .into_iter()
        .map(|e| e.record.name)
        .collect();
    assert_eq!(names, ["bert"]);
    assert_eq!(s.fingerprint_names().unwrap(), ["alpha"]);
}

#[test]
fn every_machines_handle_on_a_postgres_store_has_the_registrys_identity() {
    let test = "every_machines_handle_on_a_postgres_store_has_the_registrys_identity";
    if services_disabled(test) {
        return;
    }
    let pg = Postgres::start();
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let open = |t: &tempfile::TempDir| {
        Store::open_postgres(&pg.url(), &t.path().join("reels"), &t.path().join("work")).unwrap()
    };
    let (a, b) = (open(&one), open(&two));
    let id = pg.query("SELECT id FROM wr_registry_identity");
    assert_eq!(id.len(), 32, "{id}");
    assert_eq!(a.identity().unwrap(), id);
    assert_eq!(
        b.identity().unwrap(),
        id,
        "reel owner objects name one store"
    );
    // A store directory keeps its own.
    let dir = tempfile::tempdir().unwrap();
    assert_ne!(Store::open(dir.path()).unwrap().identity().unwrap(), id);
}

#[test]
fn a_newer_postgres_schema_is_refused_and_an_empty_database_is_not_a_store() {
    let test = "a_newer_postgres_schema_is_refused_and_an_empty_database_is_not_a_store";
    if services_disabled(test) {
        return;
    }
    let pg = Postgres::start();
    let tmp = tempfile::tempdir().unwrap();
    let env = [
        ("WEIGHTREEL_REELS", tmp.path().join("shared")),
        ("WEIGHTREEL_WORK", tmp.path().join("work")),
    ];
    let url = pg.url().replace("weightreel@", "weightreel:s3cret@");
    // Reading a database without a registry says so (and creates nothing).
    let out = weightreel(&["list", "--store", &url], &env)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no weightreel registry in this database"),
        "{err}"
    );
    assert!(
        !err.contains("s3cret"),
        "the password is never printed: {err}"
    );
    assert_eq!(pg.query("SELECT to_regclass('wr_models') IS NULL"), "t");
    // A writable open creates the schema at this build's version.
    drop(Store::open_postgres(&url, &env[0].1, &env[1].1).unwrap());
    assert_eq!(
        pg.query("SELECT version FROM wr_registry_schema"),
        PG_SCHEMA_VERSION.to_string()
    );
    let newer = PG_SCHEMA_VERSION + 1;
    pg.query(&format!("UPDATE wr_registry_schema SET version = {newer}"));
    for read_only in [false, true] {
        let err = if read_only {
            let out = weightreel(&["stats", "--store", &url], &env)
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(1));
            String::from_utf8_lossy(&out.stderr).to_string()
        } else {
            Store::open_postgres(&url, &env[0].1, &env[1].1)
                .err()
                .unwrap()
                .to_string()
        };
        assert!(
            err.contains(&format!("registry schema version {newer} is newer than this weightreel supports ({PG_SCHEMA_VERSION}); upgrade weightreel")),
            "{err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
    }
    assert_eq!(
        pg.query("SELECT version FROM wr_registry_schema"),
        newer.to_string()
    );
}

#[test]
fn an_older_postgres_schema_migrates_in_place_keeping_its_entries() {
    let test = "an_older_postgres_schema_migrates_in_place_keeping_its_entries";
    if services_disabled(test) {
        return;
    }
    let pg = Postgres::start();
    let tmp = tempfile::tempdir().unwrap();
    let reels = tmp.path().join("shared");
    let env = [
        ("WEIGHTREEL_REELS", reels.clone()),
        ("WEIGHTREEL_WORK", tmp.path().join("work")),
    ];
    let url = pg.url();
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--store", &url]);
        let out = weightreel(&all, &env).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let models: Vec<PathBuf> = (0..2)
        .map(|i| {
            let d = tmp.path().join(format!("model-{i}"));
            write_arch(&d, "bert-base-uncased", GUIDE_DIMS, 700 + i as u64);
            d
        })
        .collect();
    let (code, _, err) = run(&["encode", path(&models[0]), "-q"]);
    assert_eq!(code, Some(0), "{err}");
    // What a registry of schema version 1 was: no identity (and so no owner object beside its
    // reels) and nothing recorded about where its reels live.
    pg.query(
        "DROP TABLE wr_store_settings; DROP TABLE wr_registry_identity;
         UPDATE wr_registry_schema SET version = 1",
    );
    std::fs::remove_file(reels.join(weightreel::store::OWNER_OBJECT)).unwrap();
    // A reading command does not migrate: it says what will.
    let (code, _, err) = run(&["list"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("registry schema version 1 is older than this weightreel's ({PG_SCHEMA_VERSION}); run a writing command")),
        "{err}"
    );
    assert_eq!(pg.query("SELECT version FROM wr_registry_schema"), "1");
    // A writing one migrates, in place: the old entry is still there and reads back.
    let (code, _, err) = run(&["encode", path(&models[1]), "-q"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        pg.query("SELECT version FROM wr_registry_schema"),
        PG_SCHEMA_VERSION.to_string()
    );
    assert_eq!(pg.query("SELECT count(*) FROM wr_registry_identity"), "1");
    let (code, out, err) = run(&["check"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("2 entries ok, 0 problems"), "{out}");
    let (code, out, err) = run(&["list", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let list: Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap_or_else(|| panic!("{list}"))
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["model-0", "model-1"]);
}

#[test]
fn a_postgres_store_without_a_reel_location_is_refused() {
    let test = "a_postgres_store_without_a_reel_location_is_refused";
    if services_disabled(test) {
        return;
    }
    let pg = Postgres::start();
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m");
    write_arch(&model, "bert-base-uncased", GUIDE_DIMS, 5);
    let url = pg.url().replace("weightreel@", "weightreel:pw@");
    for args in [
        vec!["encode", path(&model), "--store", &url, "-q"],
        vec!["list", "--store", &url],
    ] {
        let out = weightreel(&args, &[("WEIGHTREEL_WORK", tmp.path().join("work"))])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        let want = format!(
            "store {}: a PostgreSQL store needs a reel location every machine reaches: give --reels",
            pg.url()
        );
        assert!(err.contains(&want), "{err}");
        assert!(!err.contains(":pw@"), "{err}");
    }
}

// ---------------------------------------------------------------------------------------
// The CLI over both backends

fn weightreel(args: &[&str], env: &[(&str, PathBuf)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weightreel"));
    cmd.args(args)
        .env_remove("WEIGHTREEL_STORE")
        .env_remove("WEIGHTREEL_REELS")
        .env_remove("WEIGHTREEL_WORK");
    // The reel location is the PostgreSQL store's: `$WEIGHTREEL_REELS` would send a store
    // directory's reels there too.
    let postgres = args.iter().any(|a| a.starts_with("postgres://"));
    for (k, v) in env {
        if *k != "WEIGHTREEL_REELS" || postgres {
            cmd.env(k, v);
        }
    }
    cmd
}

fn ok(mut cmd: Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// What `list --json` shows that does not depend on when or how fast the encode ran.
fn listed(json: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(json).unwrap();
    let entries = v
        .as_array()
        .or_else(|| v["entries"].as_array())
        .unwrap_or_else(|| panic!("list --json: {json}"));
    entries
        .iter()
        .map(|e| {
            serde_json::json!({
                "name": e["name"], "settings_key": e["settings_key"], "settings": e["settings"],
                "params": e["totals"]["params"], "frames": e["totals"]["frames"],
                "chunks": e["totals"]["chunks"],
                "model_params": e["model_params"],
            })
        })
        .collect()
}

#[test]
fn cli_encode_list_stats_search_and_decode_work_on_postgres_as_on_sqlite() {
    let test = "cli_encode_list_stats_search_and_decode_work_on_postgres_as_on_sqlite";
    if services_disabled(test) {
        return;
    }
    let pg = Postgres::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir_store = tmp.path().join("store");
    let url = pg.url();
    let env = [
        ("WEIGHTREEL_REELS", tmp.path().join("shared")),
        ("WEIGHTREEL_WORK", tmp.path().join("work")),
    ];
    let models: Vec<PathBuf> = (0..3)
        .map(|i| {
            let d = tmp.path().join(format!("model-{i}"));
            write_arch(&d, "bert-base-uncased", GUIDE_DIMS, 100 + i);
            d
        })
        .collect();
    for m in &models {
        for store in [path(&dir_store), url.as_str()] {
            ok(weightreel(
                &["encode", path(m), "--store", store, "-q"],
                &env,
            ));
        }
    }
    // A second encode with other settings adds an entry on both.
    for store in [path(&dir_store), url.as_str()] {
        ok(weightreel(
            &[
                "encode",
                path(&models[0]),
                "--store",
                store,
                "--chunk-size",
                "5000",
                "-q",
            ],
            &env,
        ));
    }
    let both = |args: &[&str]| -> (String, String) {
        let run = |store: &str| {
            let mut a = args.to_vec();
            a.extend(["--store", store]);
            ok(weightreel(&a, &env))
        };
        (run(path(&dir_store)), run(&url))
    };
    let (a, b) = both(&["list", "--json"]);
    let entries = listed(&b);
    assert_eq!(listed(&a), entries);
    assert_eq!(entries.len(), 4);
    // $WEIGHTREEL_STORE takes the URL too.
    let mut from_env = weightreel(&["list", "--json", "--reels", path(&env[0].1)], &env);
    from_env.env("WEIGHTREEL_STORE", &url);
    assert_eq!(listed(&ok(from_env)), entries);
    let (a, b) = both(&["stats", "--json"]);
    let pick = |s: &str| {
        let v: Value = serde_json::from_str(s).unwrap();
        (
            v["encoded_models"].clone(),
            v["total_parameters"].clone(),
            v["total_chunks"].clone(),
            v["chunk_sizes"].clone(),
        )
    };
    assert_eq!(pick(&a), pick(&b));
    assert_eq!(pick(&b).0, 4);
    let name0 = entries[0]["name"].as_str().unwrap().to_string();
    let (a, b) = both(&["search", &name0, "--top", "10", "--json"]);
    let hits = |s: &str| -> Vec<(String, String)> {
        let v: Value = serde_json::from_str(s).unwrap();
        v["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["name"].as_str().unwrap().to_string(),
                    format!("{:.9}", h["score"].as_f64().unwrap()),
                )
            })
            .collect()
    };
    assert_eq!(hits(&a), hits(&b));
    assert_eq!(hits(&b).len(), 2);
    // The guide's form.
    let (a, b) = both(&["--search-similar", &name0]);
    assert_eq!(a, b);
    // Decode from each store gives the same file.
    let key = entries[0]["settings_key"].as_str().unwrap().to_string();
    let outs: Vec<PathBuf> = [path(&dir_store), url.as_str()]
        .iter()
        .enumerate()
        .map(|(i, store)| {
            let out = tmp.path().join(format!("decoded-{i}.safetensors"));
            ok(weightreel(
                &[
                    "decode",
                    &name0,
                    "--store",
                    store,
                    "--settings-key",
                    &key,
                    "--out",
                    path(&out),
                ],
                &env,
            ));
            out
        })
        .collect();
    // The same tensors and data; the metadata names the reel each was decoded from.
    let split = |p: &PathBuf| {
        let bytes = std::fs::read(p).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let mut header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        let reel = header["__metadata__"]
            .as_object_mut()
            .unwrap()
            .remove("weightreel_reel")
            .unwrap();
        (header, bytes[8 + n..].to_vec(), reel)
    };
    let (h0, d0, r0) = split(&outs[0]);
    let (h1, d1, r1) = split(&outs[1]);
    assert!(!d0.is_empty());
    assert_eq!((h0, d0), (h1, d1));
    assert!(
        r1.as_str().unwrap().starts_with(path(&env[0].1)),
        "{r1} {r0}"
    );
    // The reels are in the shared directory, the work directory is left empty.
    let reels = |dir: &std::path::Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "mkv")
            })
            .count()
    };
    assert_eq!(reels(&env[0].1), 4, "one reel per entry");
    assert_eq!(std::fs::read_dir(&env[1].1).unwrap().count(), 0);
    // rm on PostgreSQL removes the entry and its reel.
    ok(weightreel(
        &["rm", &name0, "--store", &url, "--settings-key", &key],
        &env,
    ));
    assert_eq!(
        listed(&ok(weightreel(&["list", "--json", "--store", &url], &env))).len(),
        3
    );
    assert_eq!(reels(&env[0].1), 3);
}

/// `weightreel serve` on `store` (a directory or a URL), stopped when dropped.
#[cfg(all(feature = "serve", feature = "hub"))]
struct Gallery {
    child: std::process::Child,
    url: String,
}

#[cfg(all(feature = "serve", feature = "hub"))]
impl Gallery {
    fn start(store: &str, env: &[(&str, PathBuf)]) -> Gallery {
        use std::io::BufRead;
        let mut child = weightreel(&["serve", "--port", "0", "--store", store], env)
            .env_remove("WEIGHTREEL_QUEUE")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("weightreel gallery: ")
            .unwrap_or_else(|| panic!("serve printed {line:?}"))
            .to_string();
        Gallery { child, url }
    }

    fn get(&self, path: &str) -> (u16, Vec<u8>) {
        let response = match ureq::get(&format!("{}{path}", self.url)).call() {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("GET {path}: {e}"),
        };
        let status = response.status();
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut response.into_reader(), &mut body).unwrap();
        (status, body)
    }

    fn json(&self, path: &str) -> Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }
}

#[cfg(all(feature = "serve", feature = "hub"))]
impl Drop for Gallery {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(all(feature = "serve", feature = "hub"))]
#[test]
fn the_gallery_serves_a_postgres_store_as_it_serves_a_store_directory() {
    let test = "the_gallery_serves_a_postgres_store_as_it_serves_a_store_directory";
    if services_disabled(test) {
        return;
    }
    let pg = Postgres::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir_store = tmp.path().join("store");
    let url = pg.url();
    let env = [
        ("WEIGHTREEL_REELS", tmp.path().join("shared")),
        ("WEIGHTREEL_WORK", tmp.path().join("work")),
    ];
    for i in 0..2 {
        let d = tmp.path().join(format!("model-{i}"));
        write_arch(&d, "bert-base-uncased", GUIDE_DIMS, 200 + i);
        for store in [path(&dir_store), url.as_str()] {
            ok(weightreel(
                &["encode", path(&d), "--store", store, "-q"],
                &env,
            ));
        }
    }
    let (local, shared) = (
        Gallery::start(path(&dir_store), &env),
        Gallery::start(&url, &env),
    );
    let a = local.json("/api/list");
    let b = shared.json("/api/list");
    assert_eq!(listed(&a.to_string()), listed(&b.to_string()), "/api/list");
    assert_eq!(listed(&b.to_string()).len(), 2);
    let stats = |v: Value| (v["encoded_models"].clone(), v["total_chunks"].clone());
    assert_eq!(
        stats(local.json("/api/stats")),
        stats(shared.json("/api/stats"))
    );
    let hits = |v: Value| -> Vec<(String, String)> {
        v["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["name"].as_str().unwrap().to_string(),
                    format!("{:.9}", h["score"].as_f64().unwrap()),
                )
            })
            .collect()
    };
    let q = "/api/search?q=model-0&top=5";
    assert_eq!(hits(local.json(q)), hits(shared.json(q)));
    assert_eq!(hits(shared.json(q)).len(), 1);
    // A frame is read from the shared reel directory.
    let id = b.as_array().unwrap()[0]["id"].as_i64().unwrap();
    let (status, png) = shared.get(&format!("/api/model/{id}/frame/0.png"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&png));
    assert!(png.starts_with(b"\x89PNG"));
    let families = |v: Value| v.to_string();
    assert_eq!(
        families(local.json("/api/families")),
        families(shared.json("/api/families"))
    );
}

/// Search's candidate stage on PostgreSQL at scale, for the README: `N` fingerprints (the
/// three real ones under `N` names; default 10,000), the index load and a top-10 hybrid query,
/// on both backends. `WEIGHTREEL_SCALE_N=100000 cargo test --release --test registry --
/// --ignored --nocapture`.
#[test]
#[ignore = "a measurement (minutes), not a check"]
fn search_index_load_at_scale_on_both_backends() {
    let test = "search_index_load_at_scale_on_both_backends";
    if services_disabled(test) {
        return;
    }
    let n: usize = std::env::var("WEIGHTREEL_SCALE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let pg = Postgres::start();
    let mut p = pair(&pg, "scale");
    for (label, store) in [("SQLite", &mut p.sqlite), ("PostgreSQL", &mut p.postgres)] {
        let started = std::time::Instant::now();
        for batch in (0..n).collect::<Vec<_>>().chunks(2000) {
            let rows: Vec<(FingerprintSource, &Fingerprint)> = batch
                .iter()
                .map(|&i| (source(&format!("model-{i:06}")), &prints()[i % 3].1))
                .collect();
            store
                .put_fingerprints(rows.iter().map(|(s, f)| (s, *f)))
                .unwrap();
        }
        let built = started.elapsed().as_secs_f64();
        let mut loads = Vec::new();
        let mut queries = Vec::new();
        for _ in 0..3 {
            let t = std::time::Instant::now();
            let index = store.fingerprint_index().unwrap();
            loads.push(t.elapsed().as_secs_f64());
            assert_eq!(index.len(), n);
            let t = std::time::Instant::now();
            let result = weightreel::search::search(
                store,
                &index,
                print("alpha"),
                weightreel::search::SearchOptions {
                    top: 10,
                    method: weightreel::search::Method::parse("hybrid").unwrap(),
                    exclude: None,
                    roles: &[],
                },
            )
            .unwrap();
            queries.push(t.elapsed().as_secs_f64());
            assert_eq!(result.hits.len(), 10);
        }
        loads.sort_by(f64::total_cmp);
        queries.sort_by(f64::total_cmp);
        println!(
            "{label}: {n} fingerprints stored in {built:.1} s; index load {:.0} ms, top-10 hybrid query {:.0} ms (medians of 3)",
            loads[1] * 1e3,
            queries[1] * 1e3
        );
    }
    let size = |table: &str| {
        let out = pg.psql(
            "scale",
            &format!("SELECT pg_size_pretty(pg_total_relation_size('{table}'))"),
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    println!(
        "PostgreSQL sizes: wr_fingerprint_index {}, wr_fingerprints {}",
        size("wr_fingerprint_index"),
        size("wr_fingerprints")
    );
}
