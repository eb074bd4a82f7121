//! The store under damage and restrictions (issue 8, items 13 and 14): a lost or truncated
//! registry is refused while reels remain, a damaged row is reported and skipped, `check`
//! reports what disagrees, and read commands work where the store cannot be written. Each
//! case is its own test and asserts the exact outcome.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use safetensors::Dtype;
use support::cli::{listing, path as store_arg, run as wr};
use support::fixtures::{spec, write_model};

struct Stored {
    tmp: tempfile::TempDir,
    store: PathBuf,
    reel: PathBuf,
}

/// A store holding one small encoded model (16 frames of 1024 values).
fn stored() -> Stored {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m.safetensors");
    write_model(
        &model,
        &[spec(
            "encoder.layer.0.output.dense.weight",
            Dtype::F32,
            &[128, 128],
        )],
        5,
    );
    let store = tmp.path().join("store");
    let out = wr(&[
        "encode",
        model.to_str().unwrap(),
        "--chunk-encoding",
        "--chunk-size",
        "1024",
        "--store",
        store.to_str().unwrap(),
        "--quiet",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let reel = PathBuf::from(json[0]["reel"].as_str().unwrap());
    Stored { tmp, store, reel }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_string()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn an_empty_registry_beside_reels_is_refused_and_left_alone() {
    let s = stored();
    let db = s.store.join("registry.sqlite");
    for side in ["registry.sqlite-wal", "registry.sqlite-shm"] {
        let _ = std::fs::remove_file(s.store.join(side));
    }
    std::fs::write(&db, b"").unwrap();
    for args in [vec!["list", "--store"], vec!["stats", "--store"]] {
        let mut args = args.clone();
        args.push(store_arg(&s.store));
        let out = wr(&args);
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(
            err.contains("registry.sqlite is empty but reels/ holds 1 reel(s)"),
            "{err}"
        );
    }
    assert_eq!(
        std::fs::metadata(&db).unwrap().len(),
        0,
        "nothing was written"
    );
    assert!(s.reel.exists());
}

#[test]
fn a_missing_registry_beside_reels_is_refused_by_encode_too() {
    let s = stored();
    for f in [
        "registry.sqlite",
        "registry.sqlite-wal",
        "registry.sqlite-shm",
    ] {
        let _ = std::fs::remove_file(s.store.join(f));
    }
    let model = s.tmp.path().join("m.safetensors");
    let out = wr(&[
        "encode",
        model.to_str().unwrap(),
        "--store",
        store_arg(&s.store),
        "--quiet",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("registry.sqlite is missing but reels/ holds 1 reel(s)"));
    assert!(
        !s.store.join("registry.sqlite").exists(),
        "no new registry was started"
    );
}

#[test]
fn a_damaged_row_is_reported_and_skipped_by_list() {
    let s = stored();
    let model = s.tmp.path().join("m.safetensors");
    // A second entry (other settings), then damage the first one's settings.
    let out = wr(&[
        "encode",
        model.to_str().unwrap(),
        "--store",
        store_arg(&s.store),
        "--quiet",
    ]);
    assert!(out.status.success());
    let conn = rusqlite::Connection::open(s.store.join("registry.sqlite")).unwrap();
    conn.execute(
        "UPDATE models SET settings_json = '{not json' WHERE id = 1",
        [],
    )
    .unwrap();
    drop(conn);
    let out = wr(&["list", "--store", store_arg(&s.store), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        listed.as_array().unwrap().len(),
        1,
        "the readable entry is listed"
    );
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("warning: ") && err.contains("registry entry #1 cannot be read"),
        "{err}"
    );
    let out = wr(&["check", "--store", store_arg(&s.store)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("problem: entry #1: the registry row cannot be read"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn check_passes_on_a_healthy_store_deep_too() {
    let s = stored();
    for deep in [false, true] {
        let mut args = vec!["check", "--store", store_arg(&s.store)];
        if deep {
            args.push("--deep");
        }
        let out = wr(&args);
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
        assert!(
            stdout(&out).ends_with("1 entries ok, 0 problems\n"),
            "{}",
            stdout(&out)
        );
    }
}

#[test]
fn check_reports_a_missing_reel_and_an_orphan() {
    let s = stored();
    let orphan = s.store.join("reels/stray.mkv");
    std::fs::rename(&s.reel, &orphan).unwrap();
    let out = wr(&["check", "--store", store_arg(&s.store)]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("the reel is missing"), "{text}");
    assert!(
        text.contains("orphan reel (no entry names it)") && text.contains("stray.mkv"),
        "{text}"
    );
}

#[test]
fn check_deep_finds_a_flipped_byte_in_a_frame() {
    let s = stored();
    // Flip a byte in the middle of the reel's packet data (past the header).
    let mut bytes = std::fs::read(&s.reel).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x5a;
    std::fs::write(&s.reel, bytes).unwrap();
    let out = wr(&["check", "--deep", "--store", store_arg(&s.store)]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("problem: ") && text.contains("frame "),
        "{text}"
    );
}

/// Run the binary as the unprivileged user `nobody` (the store belongs to root and is not
/// writable for it), with `setpriv`.
fn as_nobody(args: &[&str]) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_weightreel"))
        .args(args)
        .env_remove("WEIGHTREEL_STORE")
        .output()
        .expect("setpriv (util-linux) runs")
}

#[test]
fn read_commands_work_for_a_user_who_may_not_write_the_store() {
    // Only meaningful when the tests run as root, who can switch to another user.
    assert!(
        is_root(),
        "this test needs root to run a command as another user"
    );
    let s = stored();
    // Let `nobody` reach the store: every directory on the way must be searchable.
    let mut dir = s.store.clone();
    while let Some(parent) = dir.parent() {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode | 0o755)).unwrap();
        if parent == Path::new("/") || parent.as_os_str().is_empty() {
            break;
        }
        dir = parent.to_path_buf();
    }
    let before: Vec<_> = std::fs::read_dir(&s.store)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let list = as_nobody(&["list", "--store", store_arg(&s.store), "--json"]);
    assert!(list.status.success(), "{}", stderr(&list));
    let listed: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let stats = as_nobody(&["stats", "--store", store_arg(&s.store)]);
    assert!(stats.status.success(), "{}", stderr(&stats));
    assert!(stdout(&stats).contains("Encoded Models: 1"));
    let check = as_nobody(&["check", "--store", store_arg(&s.store)]);
    assert!(
        check.status.success(),
        "{}{}",
        stdout(&check),
        stderr(&check)
    );
    let after: Vec<_> = std::fs::read_dir(&s.store)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before, after, "nothing was created in the store");
}

/// True when the effective user is root (from `/proc/self/status`).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// Leftovers of a crashed encode of "ghost": its work directory with a part and an unheld
/// lock, its join's temporary files and a complete reel no entry names.
fn leave_crash_debris(store: &Path, real_reel: &Path) -> Vec<PathBuf> {
    let work = store.join("work/ghost-v2-0123456789ab");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("lock"), b"").unwrap();
    std::fs::write(work.join("part-00000000.mkv"), vec![7u8; 5000]).unwrap();
    std::fs::write(work.join("part-00000001.mkv.packets.tmp"), vec![7u8; 300]).unwrap();
    let base = store.join("reels/ghost-v2-0123456789ab-1796133064286-4242.mkv");
    let tmp = PathBuf::from(format!("{}.tmp", base.display()));
    let packets = PathBuf::from(format!("{}.packets.tmp", base.display()));
    std::fs::write(&tmp, vec![1u8; 1000]).unwrap();
    std::fs::write(&packets, vec![1u8; 2000]).unwrap();
    std::fs::copy(real_reel, &base).unwrap();
    vec![work, tmp, packets, base]
}

#[test]
fn gc_dry_run_reports_and_removes_nothing() {
    let s = stored();
    let debris = leave_crash_debris(&s.store, &s.reel);
    let out = wr(&["gc", "--dry-run", "--store", store_arg(&s.store)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("would remove interrupted encode"), "{text}");
    assert!(text.contains("would remove unreferenced reel"), "{text}");
    assert!(text.contains("would remove temporary file"), "{text}");
    assert!(
        text.trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("Would free 4 items"),
        "{text}"
    );
    assert!(debris.iter().all(|p| p.exists()));
}

#[test]
fn gc_removes_leftovers_reports_bytes_and_keeps_entries() {
    let s = stored();
    let debris = leave_crash_debris(&s.store, &s.reel);
    let reel_bytes = std::fs::metadata(&s.reel).unwrap().len();
    let out = wr(&["gc", "--store", store_arg(&s.store), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["removed"].as_array().unwrap().len(), 4);
    // 5,000 + 300 of work, 1,000 + 2,000 of temporaries, and the orphan reel's copy.
    assert_eq!(report["bytes"].as_u64().unwrap(), 5300 + 3000 + reel_bytes);
    assert!(debris.iter().all(|p| !p.exists()));
    assert!(s.reel.exists(), "the entry's reel is kept");
    let check = wr(&["check", "--store", store_arg(&s.store)]);
    assert!(check.status.success(), "{}", stdout(&check));
}

#[test]
fn encode_sweeps_crash_temporaries_but_keeps_resumable_work_and_list_says_so() {
    let s = stored();
    let debris = leave_crash_debris(&s.store, &s.reel);
    let out = wr(&[
        "encode",
        s.tmp.path().join("m.safetensors").to_str().unwrap(),
        "--mode",
        "u8",
        "--store",
        store_arg(&s.store),
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (work, tmp, packets, orphan) = (&debris[0], &debris[1], &debris[2], &debris[3]);
    assert!(
        !tmp.exists() && !packets.exists() && !orphan.exists(),
        "swept"
    );
    assert!(
        work.join("part-00000000.mkv").exists(),
        "resumable work is kept"
    );
    assert!(
        !work.join("part-00000001.mkv.packets.tmp").exists(),
        "a dead part's spill is swept"
    );
    let list = wr(&["list", "--store", store_arg(&s.store)]);
    assert!(list.status.success());
    let note = stderr(&list);
    assert!(
        note.contains("note: interrupted encode kept in") && note.contains("ghost-v2-0123456789ab"),
        "{note}"
    );
}

#[test]
fn gc_leaves_a_running_encode_alone() {
    let s = stored();
    let debris = leave_crash_debris(&s.store, &s.reel);
    // This process holds the lock, as a running encode does.
    let lock = std::fs::File::open(debris[0].join("lock")).unwrap();
    lock.try_lock().unwrap();
    let out = wr(&["gc", "--store", store_arg(&s.store), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["removed"].as_array().unwrap().len(), 0, "{report}");
    assert!(debris.iter().all(|p| p.exists()));
    drop(lock);
}

#[test]
fn rm_with_an_unknown_settings_key_lists_the_keys() {
    let s = stored();
    let name = s.tmp.path().join("m.safetensors");
    let entries = weightreel::store::Store::open_read_only(&s.store)
        .unwrap()
        .list()
        .unwrap();
    let key = entries[0].record.settings.key();
    let out = wr(&[
        "rm",
        name.to_str().unwrap(),
        "--settings-key",
        "bogus",
        "--store",
        store_arg(&s.store),
    ]);
    // The source path names the entry (stored as `m`); an unknown key is a usage error.
    assert_eq!(out.status.code(), Some(2));
    let short = weightreel::store::short_key(&key);
    let date = &entries[0].record.created_at[..10];
    assert_eq!(
        stderr(&out),
        format!(
            "error: '{}' has no entry with settings key 'bogus'; its keys: {short} (chunk mode, chunk size 1,024, u16, layers all, {date})",
            name.display()
        )
    );
    let out = wr(&["rm", "m.safetensor", "--store", store_arg(&s.store)]);
    assert!(
        stderr(&out).ends_with("no model named 'm.safetensor' (closest: m)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn read_commands_on_a_directory_without_a_store_say_so_and_create_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let nowhere = tmp.path().join("not-a-store");
    for cmd in [
        &["list"][..],
        &["stats"],
        &["--list-models"],
        &["--statistics"],
        &["tree"],
    ] {
        let mut args = cmd.to_vec();
        args.extend(["--storage-dir", store_arg(&nowhere)]);
        let out = wr(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&out).starts_with(&format!(
                "error: store {}: no store here (no registry.sqlite)",
                nowhere.display()
            )),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(!nowhere.exists(), "{args:?} created the directory");
    }
}

#[test]
fn a_stores_reels_directory_is_not_taken_for_a_store() {
    let s = stored();
    let before = listing(&s.store);
    let reels = s.store.join("reels");
    let model = s.tmp.path().join("m.safetensors");
    let out = wr(&[
        "encode",
        model.to_str().unwrap(),
        "--store",
        store_arg(&reels),
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "error: store {}: is the reels directory of the store at {}; give that store instead",
            reels.display(),
            s.store.display()
        )
    );
    assert_eq!(listing(&s.store), before);
}

/// A reel a running encode has placed but not yet committed: in `reels/` under its short
/// name, claimed in the encode's locked work directory.
fn placed_reel(store: &Path, real_reel: &Path) -> (PathBuf, PathBuf) {
    let work = store.join("work/placing-v3-0123456789ab");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("lock"), b"").unwrap();
    std::fs::write(work.join("claim"), b"reels/placing-01234567.mkv").unwrap();
    let reel = store.join("reels/placing-01234567.mkv");
    std::fs::copy(real_reel, &reel).unwrap();
    (work, reel)
}

#[test]
fn a_claimed_reel_of_a_running_encode_is_kept_and_an_unclaimed_one_removed() {
    let s = stored();
    let (work, reel) = placed_reel(&s.store, &s.reel);
    // Not ours: a file of another name in reels/ stays whatever happens.
    let foreign = s.store.join("reels/notes.mkv");
    std::fs::write(&foreign, b"x").unwrap();
    let lock = std::fs::File::open(work.join("lock")).unwrap();
    lock.try_lock().unwrap();
    let out = wr(&["gc", "--store", store_arg(&s.store), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["removed"].as_array().unwrap().len(), 0, "{report}");
    assert!(reel.exists());
    drop(lock);
    // The encode died before committing: the reel is an orphan now.
    let out = wr(&["gc", "--store", store_arg(&s.store), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<(&str, &str)> = report["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["kind"].as_str().unwrap(),
                Path::new(l["path"].as_str().unwrap())
                    .file_name()
                    .unwrap()
                    .to_str()
                    .unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("unreferenced reel", "placing-01234567.mkv"),
            ("interrupted encode", "placing-v3-0123456789ab")
        ]
    );
    assert!(!reel.exists());
    assert!(foreign.exists());
    assert!(s.reel.exists(), "the committed entry's reel stays");
}
