//! Crash safety and resume on the real all-MiniLM-L6-v2: an encode killed with SIGKILL at
//! several points, then re-run, gives the same frames and registry row as an uninterrupted
//! run; the registry opens after every kill, shows no half-written entry, and keeps earlier
//! entries as they were. Ctrl-C (SIGINT) stops cleanly, says what was kept, and resumes too.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::minilm;
use weightreel::reel::ReelReader;
use weightreel::store::{EntrySummary, Store};

fn weightreel(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weightreel"));
    cmd.args(args).env_remove("WEIGHTREEL_STORE");
    cmd
}

fn encode_args<'a>(model: &'a str, store: &'a str) -> Vec<&'a str> {
    vec![
        "encode",
        model,
        "--chunk-encoding",
        "--chunk-size",
        "8192",
        "--store",
        store,
        "--checkpoint-every",
        "0.05",
        "--quiet",
    ]
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Complete parts in an encode's work directory.
fn parts(store: &Path) -> usize {
    let Ok(dirs) = std::fs::read_dir(store.join("work")) else {
        return 0;
    };
    dirs.filter_map(|d| d.ok())
        .filter_map(|d| std::fs::read_dir(d.path()).ok())
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            name.starts_with("part-") && name.ends_with(".mkv")
        })
        .count()
}

/// Wait until the work directory holds more than `at_least` parts (or the child exits).
fn wait_for_parts(child: &mut Child, store: &Path, at_least: usize) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(120) {
        if parts(store) > at_least {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("no progress in 120 s");
}

/// Wait for the encode's first part in `store`, send it Ctrl-C (SIGINT) and wait for it.
fn ctrl_c_after_a_part(mut child: Child, store: &Path) -> Output {
    assert!(
        wait_for_parts(&mut child, store, 0),
        "finished before Ctrl-C"
    );
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    child.wait_with_output().unwrap()
}

/// Per-frame checksums of every frame of a reel, read back through FFmpeg.
fn reel_frame_crcs(reel: &Path) -> Vec<u32> {
    let mut reader = ReelReader::open(reel).unwrap();
    (0..reader.frame_count())
        .map(|i| {
            let (width, height) = reader.frame_size(i).unwrap();
            let planes = reader.read_frame(i, width, height).unwrap();
            weightreel::reel::planes_crc32(&planes)
        })
        .collect()
}

/// The deterministic part of a registry row (times, memory and read counts vary by run).
fn stable(e: &EntrySummary) -> String {
    let mut r = e.record.clone();
    r.totals.encoding_secs = 0.0;
    r.totals.params_per_sec = 0.0;
    r.totals.peak_rss_bytes = 0;
    r.totals.bytes_read = 0;
    r.totals.read_requests = 0;
    r.totals.reel_file = String::new();
    r.totals.reel_bytes = 0;
    r.created_at = String::new();
    serde_json::to_string(&r).unwrap()
}

/// The one chunk-mode entry of `name` (a stored name or the source path).
fn only_entry(store: &Path, name: &str) -> EntrySummary {
    let s = Store::open(store).unwrap();
    let found: Vec<EntrySummary> = s
        .matching(name, None)
        .unwrap()
        .into_iter()
        .filter(|e| e.record.settings.method == "chunk")
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found.into_iter().next().unwrap()
}

#[test]
fn sigkill_at_several_points_then_resume_matches_an_uninterrupted_run() {
    let model = minilm::dir();
    let model = model.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let reference = tmp.path().join("reference");
    let killed = tmp.path().join("killed");
    let (reference_s, killed_s) = (reference.to_str().unwrap(), killed.to_str().unwrap());

    ok(weightreel(&encode_args(model, reference_s))
        .output()
        .unwrap());
    let want = only_entry(&reference, model);

    // An earlier entry that must survive every kill untouched.
    ok(weightreel(&[
        "encode",
        model,
        "--max-params",
        "40000",
        "--store",
        killed_s,
        "--quiet",
    ])
    .output()
    .unwrap());
    let earlier = Store::open(&killed).unwrap().list().unwrap();
    assert_eq!(earlier.len(), 1);

    let mut kills = 0;
    let mut seen = 0;
    for _ in 0..3 {
        let mut child = weightreel(&encode_args(model, killed_s))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Let it make at least one more checkpoint, then kill it without warning.
        let progressed = wait_for_parts(&mut child, &killed, seen);
        let _ = child.kill();
        let status = child.wait().unwrap();
        if !progressed || status.success() {
            break;
        }
        kills += 1;
        seen = parts(&killed);
        // After every kill: the registry opens, shows no half-written entry, and the
        // earlier entry is exactly as it was.
        let store = Store::open(&killed).unwrap();
        assert_eq!(store.list().unwrap(), earlier, "after kill {kills}");
        for e in &earlier {
            assert!(killed.join(&e.record.totals.reel_file).is_file());
        }
        // Every reel the registry references is complete (readable to the end).
        for e in store.list().unwrap() {
            assert!(!reel_frame_crcs(&killed.join(&e.record.totals.reel_file)).is_empty());
        }
    }
    assert!(
        kills >= 2,
        "only {kills} kill(s) landed before the encode finished"
    );

    let out = ok(
        weightreel(&[&encode_args(model, killed_s)[..], &["--json"]].concat())
            .output()
            .unwrap(),
    );
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let resumed = json[0]["resumed_values"].as_u64().unwrap();
    assert!(resumed > 0, "the last run resumed nothing: {out}");

    let got = only_entry(&killed, model);
    assert_eq!(stable(&got), stable(&want), "registry rows differ");
    let (s1, s2) = (
        Store::open(&reference).unwrap(),
        Store::open(&killed).unwrap(),
    );
    let (f1, f2) = (s1.frames(want.id).unwrap(), s2.frames(got.id).unwrap());
    assert_eq!(f1.len(), 2773);
    assert_eq!(f1, f2, "frame rows differ");
    let r1 = reel_frame_crcs(&reference.join(&want.record.totals.reel_file));
    let r2 = reel_frame_crcs(&killed.join(&got.record.totals.reel_file));
    assert_eq!(r1, r2, "reel frames differ");
    assert_eq!(r1, f1.iter().map(|f| f.checksum).collect::<Vec<_>>());
    // The earlier entry is still there, and the work directory is gone.
    assert_eq!(Store::open(&killed).unwrap().list().unwrap().len(), 2);
    assert_eq!(parts(&killed), 0);
}

#[test]
fn ctrl_c_stops_cleanly_and_says_what_was_kept() {
    let model = minilm::dir();
    let model = model.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let store: PathBuf = tmp.path().join("store");
    let store_s = store.to_str().unwrap();
    let child = weightreel(&encode_args(model, store_s))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = ctrl_c_after_a_part(child, &store);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("Interrupted: kept") && stderr.contains("--resume"),
        "{stderr}"
    );
    assert!(Store::open(&store).unwrap().list().unwrap().is_empty());
    // --resume continues from what was kept.
    let out = ok(
        weightreel(&[&encode_args(model, store_s)[..], &["--resume"]].concat())
            .output()
            .unwrap(),
    );
    assert!(out.contains("Resumed: "), "{out}");
    assert_eq!(only_entry(&store, model).record.totals.frames, 2773);
}

/// Ctrl-C during a batch encode of tiled frames (1024×1024, 64 tiles each) most likely lands
/// inside a frame, whose tiles are dropped from the open part; the resumed encode gives the
/// frames and rows of an uninterrupted run.
#[test]
fn ctrl_c_inside_a_tiled_batch_frame_resumes_to_the_same_frames() {
    let model = minilm::dir();
    let model = model.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (reference, store) = (tmp.path().join("reference"), tmp.path().join("store"));
    let args = |store: &Path| -> Vec<String> {
        [
            "encode",
            model,
            "--mode",
            "lossless",
            "--max-frame-values",
            "1048576",
            "--store",
            store.to_str().unwrap(),
            "--checkpoint-every",
            "0.05",
            "--quiet",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run = |store: &Path, extra: &[&str]| {
        let mut a: Vec<String> = args(store);
        a.extend(extra.iter().map(|s| s.to_string()));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        weightreel(&a)
    };
    ok(run(&reference, &[]).output().unwrap());
    let child = run(&store, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = ctrl_c_after_a_part(child, &store);
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ok(run(&store, &["--resume"]).output().unwrap());
    assert!(out.contains("Resumed: "), "{out}");
    let (s1, s2) = (
        Store::open(&reference).unwrap(),
        Store::open(&store).unwrap(),
    );
    let (want, got) = (&s1.list().unwrap()[0], &s2.list().unwrap()[0]);
    assert_eq!(stable(want), stable(got));
    let (f1, f2) = (s1.frames(want.id).unwrap(), s2.frames(got.id).unwrap());
    // 21 full frames, then the tail's 693,120 values as frames of 524,288, 131,072, 32,768
    // (exactly full) and 4,992 values.
    assert_eq!(f1.len(), 25);
    assert_eq!(f1, f2, "frame rows differ");
    let r1 = reel_frame_crcs(&reference.join(&want.record.totals.reel_file));
    let r2 = reel_frame_crcs(&store.join(&got.record.totals.reel_file));
    assert_eq!(r1, r2, "reel frames differ");
}
