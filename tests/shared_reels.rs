//! A store whose reels live in object storage (`--reels s3://…`) against a real S3-compatible
//! server (s3s-fs, tests/support/s3.rs): MiniLM encoded there reads back like a directory
//! store's, one tensor's decode fetches a small part of the object, a refusing server fails
//! the encode cleanly, `gc` removes what crashed encodes left, and the gallery draws a frame;
//! and the whole shared store, a PostgreSQL registry with reels in S3, used by two machines.
#![cfg(feature = "s3")]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use support::cli::{listing, path};
use support::postgres::services_disabled;
use support::s3::{S3Server, ACCESS_KEY, SECRET_KEY};
use weightreel::store::objects::{
    ReelStorage, S3Config, S3Storage, StoredReel, UnfinishedUpload, Upload, MIN_PART_SIZE,
};

/// The binary set to talk to `server` with `secret`, with no store or reels from the
/// environment.
fn wr_command(server: &S3Server, secret: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weightreel"));
    cmd.env_remove("WEIGHTREEL_STORE")
        .env_remove("WEIGHTREEL_REELS")
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("WEIGHTREEL_S3_ENDPOINT", server.endpoint());
    cmd
}

/// Run the binary against `server` with `secret`.
fn wr_with(server: &S3Server, secret: &str, args: &[&str]) -> Output {
    wr_command(server, secret).args(args).output().unwrap()
}

fn wr(server: &S3Server, args: &[&str]) -> Output {
    wr_with(server, SECRET_KEY, args)
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn storage(server: &S3Server, bucket: &str, prefix: &str) -> S3Storage {
    let config = S3Config {
        endpoint: Some(server.endpoint()),
        region: "us-east-1".into(),
        credentials: Some((ACCESS_KEY.into(), SECRET_KEY.into())),
        session_token: None,
        part_size: MIN_PART_SIZE,
    };
    S3Storage::new(bucket, prefix, config).unwrap()
}

fn minilm() -> PathBuf {
    support::minilm::dir()
}

/// The tensors of a safetensors file, by name: dtype, shape and bytes.
fn tensors(file: &Path) -> Vec<(String, String, Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(file).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(name, t)| {
            (
                name,
                format!("{:?}", t.dtype()),
                t.shape().to_vec(),
                t.data().to_vec(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The `list --json` entries without what differs between two encodes of one model (times,
/// dates, ids, memory).
fn entries(json: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let list = v
        .get("entries")
        .or(Some(&v))
        .and_then(|e| e.as_array())
        .unwrap_or_else(|| panic!("list --json: {json}"))
        .clone();
    list.into_iter()
        .map(|e| {
            let r = &e;
            let t = &r["totals"];
            serde_json::json!({
                "name": r["name"], "settings": r["settings"], "params": t["params"],
                "frames": t["frames"], "chunks": t["chunks"], "reel_file": t["reel_file"],
            })
        })
        .collect()
}

#[test]
fn minilm_in_s3_lists_checks_and_decodes_bit_exact_like_a_directory_store() {
    if services_disabled("minilm_in_s3_lists_checks_and_decodes_bit_exact") {
        return;
    }
    let server = S3Server::start();
    server.create_bucket("team-reels");
    let tmp = tempfile::tempdir().unwrap();
    let (s3_store, dir_store) = (tmp.path().join("s3"), tmp.path().join("dir"));
    let reels = "s3://team-reels/shared/reels";
    let model = minilm();
    let encoded = ok(wr(
        &server,
        &[
            "encode",
            path(&model),
            "--store",
            path(&s3_store),
            "--reels",
            reels,
            "-q",
        ],
    ));
    assert!(
        encoded.contains("Reel: s3://team-reels/shared/reels/all-minilm-l6-v2-"),
        "{encoded}"
    );
    ok(wr(
        &server,
        &["encode", path(&model), "--store", path(&dir_store), "-q"],
    ));

    // The reel is an object under the prefix, and nothing is in the store's own reels/.
    let objects: Vec<String> = server
        .files()
        .into_iter()
        .filter(|f| f.starts_with("team-reels/"))
        .collect();
    // Beside it, the owner object that says the location is this store's.
    assert_eq!(objects.len(), 2, "{objects:?}");
    assert_eq!(objects[0], "team-reels/shared/reels/.weightreel-owner");
    let objects = &objects[1..];
    assert!(objects[0].starts_with("team-reels/shared/reels/all-minilm-l6-v2-"));
    assert_eq!(
        std::fs::read_dir(s3_store.join("reels")).unwrap().count(),
        0
    );

    let list = |store: &Path, extra: &[&str]| {
        let mut args = vec!["list", "--store", path(store), "--json"];
        args.extend_from_slice(extra);
        entries(&ok(wr(&server, &args)))
    };
    assert_eq!(list(&s3_store, &["--reels", reels]), list(&dir_store, &[]));

    let check = ok(wr(
        &server,
        &["check", "--store", path(&s3_store), "--reels", reels],
    ));
    assert!(check.contains("1 entries ok, 0 problems"), "{check}");

    let (a, b) = (
        tmp.path().join("a.safetensors"),
        tmp.path().join("b.safetensors"),
    );
    ok(wr(
        &server,
        &[
            "decode",
            "all-MiniLM-L6-v2",
            "--store",
            path(&s3_store),
            "--reels",
            reels,
            "--out",
            path(&a),
        ],
    ));
    ok(wr(
        &server,
        &[
            "decode",
            "all-MiniLM-L6-v2",
            "--store",
            path(&dir_store),
            "--out",
            path(&b),
        ],
    ));
    let (ta, tb) = (tensors(&a), tensors(&b));
    assert_eq!(ta.len(), 104);
    assert!(
        ta == tb,
        "the tensors decoded from S3 differ from the directory store's"
    );

    // Without --reels the store reads where its first encode recorded its reels.
    let d = tmp.path().join("d.safetensors");
    ok(wr(
        &server,
        &[
            "decode",
            "all-MiniLM-L6-v2",
            "--store",
            path(&s3_store),
            "--out",
            path(&d),
        ],
    ));
    assert!(tensors(&d) == tb, "decoded without --reels");

    // The same reels through $WEIGHTREEL_REELS, and a frame written as a PNG.
    let png = tmp.path().join("png");
    let out = wr_command(&server, SECRET_KEY)
        .args(["frames", "all-MiniLM-L6-v2", "--store", path(&s3_store)])
        .args(["--png", path(&png), "--frames", "2"])
        .env("WEIGHTREEL_REELS", reels)
        .output()
        .unwrap();
    ok(out);
    assert_eq!(std::fs::read_dir(&png).unwrap().count(), 1);

    // A shared directory (`file:///…`) serves the same way: the reel is a file there.
    let shared = tmp.path().join("shared-reels");
    let file_store = tmp.path().join("file");
    let file_url = format!("file://{}", shared.display());
    ok(wr(
        &server,
        &[
            "encode",
            path(&model),
            "--store",
            path(&file_store),
            "--reels",
            &file_url,
            "-q",
        ],
    ));
    let files: Vec<_> = std::fs::read_dir(&shared)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].starts_with("all-minilm-l6-v2-"));
    assert_eq!(
        std::fs::read_dir(file_store.join("reels")).unwrap().count(),
        0
    );
    assert_eq!(
        list(&file_store, &["--reels", &file_url]),
        list(&dir_store, &[])
    );
    let c = tmp.path().join("c.safetensors");
    ok(wr(
        &server,
        &[
            "decode",
            "all-MiniLM-L6-v2",
            "--store",
            path(&file_store),
            "--reels",
            &file_url,
            "--out",
            path(&c),
        ],
    ));
    assert!(tensors(&c) == tb);
    let dry = ok(wr(
        &server,
        &[
            "gc",
            "--dry-run",
            "--store",
            path(&file_store),
            "--reels",
            &file_url,
        ],
    ));
    assert!(dry.contains("Would free 0 items"), "{dry}");

    // Encoding it again replaces the entry: the new reel gets a free name, and the old one is
    // deleted after the commit.
    let first: Vec<String> = server
        .files()
        .into_iter()
        .filter(|f| f.starts_with("team-reels/shared/reels/") && f.ends_with(".mkv"))
        .collect();
    ok(wr(
        &server,
        &[
            "encode",
            path(&model),
            "--store",
            path(&s3_store),
            "--reels",
            reels,
            "-q",
        ],
    ));
    let second: Vec<String> = server
        .files()
        .into_iter()
        .filter(|f| f.starts_with("team-reels/shared/reels/") && f.ends_with(".mkv"))
        .collect();
    assert_eq!(second.len(), 1, "{second:?}");
    assert_ne!(first, second);
    assert!(second[0].ends_with("-2.mkv"), "{second:?}");
    let check = ok(wr(
        &server,
        &["check", "--store", path(&s3_store), "--reels", reels],
    ));
    assert!(check.contains("1 entries ok, 0 problems"), "{check}");

    // Removing the model removes its object.
    ok(wr(
        &server,
        &[
            "rm",
            "all-MiniLM-L6-v2",
            "--store",
            path(&s3_store),
            "--reels",
            reels,
        ],
    ));
    // Only the owner object is left: the location stays this store's.
    assert_eq!(
        server
            .files()
            .into_iter()
            .filter(|f| f.starts_with("team-reels/shared/"))
            .collect::<Vec<_>>(),
        ["team-reels/shared/reels/.weightreel-owner"]
    );
}

/// A real S3 storage that counts the bytes read from it.
struct Counting {
    inner: S3Storage,
    read: AtomicU64,
    requests: AtomicU64,
}

impl ReelStorage for Counting {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn begin(&self, name: &str) -> weightreel::error::Result<Upload> {
        self.inner.begin(name)
    }
    fn read_range(&self, name: &str, offset: u64, buf: &mut [u8]) -> weightreel::error::Result<()> {
        self.read.fetch_add(buf.len() as u64, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.inner.read_range(name, offset, buf)
    }
    fn size(&self, name: &str) -> weightreel::error::Result<u64> {
        self.inner.size(name)
    }
    fn list(&self, prefix: &str) -> weightreel::error::Result<Vec<StoredReel>> {
        self.inner.list(prefix)
    }
    fn delete(&self, name: &str) -> weightreel::error::Result<()> {
        self.inner.delete(name)
    }
    fn unfinished(&self) -> weightreel::error::Result<Vec<UnfinishedUpload>> {
        self.inner.unfinished()
    }
    fn abort_unfinished(&self, upload: &UnfinishedUpload) -> weightreel::error::Result<()> {
        self.inner.abort_unfinished(upload)
    }
    fn read_owner(&self) -> weightreel::error::Result<Option<Vec<u8>>> {
        self.inner.read_owner()
    }
    fn create_owner(&self, bytes: &[u8]) -> weightreel::error::Result<()> {
        self.inner.create_owner(bytes)
    }
}

#[test]
fn decoding_one_tensor_of_an_s3_reel_reads_a_small_fraction_of_the_object() {
    if services_disabled("decoding_one_tensor_of_an_s3_reel_reads_a_small_fraction") {
        return;
    }
    let server = S3Server::start();
    server.create_bucket("fraction");
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    // One frame per 8,192-value chunk: 2,773 frames.
    ok(wr(
        &server,
        &[
            "encode",
            path(&minilm()),
            "--store",
            path(&store),
            "--reels",
            "s3://fraction",
            "--chunk-encoding",
            "-q",
        ],
    ));
    let counting = Arc::new(Counting {
        inner: storage(&server, "fraction", ""),
        read: AtomicU64::new(0),
        requests: AtomicU64::new(0),
    });
    let reel = counting.list("").unwrap().remove(0);
    let location = weightreel::reel::stored::mount(counting.clone());
    let reel_path = PathBuf::from(format!("{location}/{}", reel.name));
    let include =
        regex_lite::Regex::new(r"^encoder\.layer\.3\.attention\.output\.LayerNorm\.bias$").unwrap();
    let out = tmp.path().join("one.safetensors");
    let summary =
        weightreel::decode::decode_reel_matching(&reel_path, &out, Some(&include)).unwrap();
    assert_eq!(summary.tensors, 1);
    let read = counting.read.load(Ordering::Relaxed);
    let requests = counting.requests.load(Ordering::Relaxed);
    eprintln!(
        "one tensor: {read} of {} bytes in {requests} range requests",
        reel.size
    );
    assert!(
        read * 20 < reel.size,
        "decoding one tensor read {read} of {} bytes",
        reel.size
    );
    // The tensor is the directory store's, bit for bit.
    let local = tmp.path().join("local");
    ok(wr(
        &server,
        &[
            "encode",
            path(&minilm()),
            "--store",
            path(&local),
            "--chunk-encoding",
            "-q",
        ],
    ));
    let whole = tmp.path().join("whole.safetensors");
    ok(wr(
        &server,
        &[
            "decode",
            "all-MiniLM-L6-v2",
            "--store",
            path(&local),
            "--include",
            include.as_str(),
            "--out",
            path(&whole),
        ],
    ));
    assert!(tensors(&out) == tensors(&whole));
}

#[test]
fn an_s3_server_refusing_requests_fails_the_encode_in_one_line_and_changes_nothing() {
    if services_disabled("an_s3_server_refusing_requests_fails_the_encode") {
        return;
    }
    let mut server = S3Server::start();
    server.create_bucket("refusing");
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let model = minilm();
    let reels = "s3://refusing/r";
    // A store holding one entry already (its reel in the bucket).
    ok(wr(
        &server,
        &[
            "encode",
            path(&model),
            "--store",
            path(&store),
            "--reels",
            reels,
            "--mode",
            "lossless",
            "-q",
        ],
    ));
    let before = listing(&store);
    let objects = server.files();
    let entries_before = ok(wr(&server, &["list", "--store", path(&store), "--json"]));

    // Wrong credentials: refused at the first request.
    let out = wr_with(
        &server,
        "not-the-secret",
        &[
            "encode",
            path(&model),
            "--store",
            path(&store),
            "--reels",
            reels,
            "-q",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: reel storage s3://refusing/r"),
        "{err}"
    );
    assert!(!err.contains("X-Amz-"), "{err}");
    assert_eq!(listing(&store), before, "the store's files changed");
    assert_eq!(server.files(), objects);

    // No server at all.
    server.stop();
    let out = wr(
        &server,
        &[
            "encode",
            path(&model),
            "--store",
            path(&store),
            "--reels",
            reels,
            "-q",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: reel storage s3://refusing/r"),
        "{err}"
    );
    assert_eq!(listing(&store), before, "the store's files changed");
    server.restart_with_secret(SECRET_KEY);
    assert_eq!(server.files(), objects);
    assert_eq!(
        ok(wr(&server, &["list", "--store", path(&store), "--json"])),
        entries_before
    );
}

#[test]
fn gc_aborts_orphaned_uploads_and_removes_unreferenced_objects_but_not_a_running_encodes() {
    if services_disabled("gc_aborts_orphaned_uploads_and_removes_unreferenced_objects") {
        return;
    }
    let server = S3Server::start();
    server.create_bucket("gcreels");
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let reels = "s3://gcreels/p";
    ok(wr(
        &server,
        &[
            "encode",
            path(&minilm()),
            "--store",
            path(&store),
            "--reels",
            reels,
            "-q",
        ],
    ));
    let kept = server.files();
    let s3 = storage(&server, "gcreels", "p/");
    let part = vec![7u8; MIN_PART_SIZE + 10];
    // What an encode killed while uploading leaves: a begun multipart upload with a part sent
    // (forgotten: a dead process aborts nothing).
    let mut upload = s3.begin("killed-0123abcd.mkv").unwrap();
    upload.write_all(&part).unwrap();
    std::mem::forget(upload);
    // What an encode killed between publishing and committing leaves: an object no entry names.
    let mut upload = s3.begin("uncommitted-0123abcd.mkv").unwrap();
    upload.write_all(b"not referenced").unwrap();
    upload.publish().unwrap();
    // A running encode's upload, claimed in its locked work directory.
    let live = store.join("work/running-0123abcd");
    std::fs::create_dir_all(&live).unwrap();
    std::fs::write(live.join("claim"), "reels/running-0123abcd.mkv").unwrap();
    let lock = std::fs::File::create(live.join("lock")).unwrap();
    lock.lock().unwrap();
    let mut running = s3.begin("running-0123abcd.mkv").unwrap();
    running.write_all(&part).unwrap();

    // With the default grace (24h) both are kept: another machine's encode sharing the
    // registry may be uploading the one, or about to commit the entry naming the other.
    let fresh = ok(wr(
        &server,
        &["gc", "--dry-run", "--store", path(&store), "--reels", reels],
    ));
    assert!(
        fresh.contains("kept orphaned upload: s3://gcreels/p/killed-0123abcd.mkv (upload ")
            && fresh.contains(
                "kept unreferenced reel: s3://gcreels/p/uncommitted-0123abcd.mkv (14 bytes, age "
            )
            && fresh.contains("): younger than --min-age 24h")
            && fresh.contains("Would free 0 items, 0 bytes"),
        "{fresh}"
    );
    assert!(!fresh.contains("running"), "{fresh}");
    let grace = ok(wr(
        &server,
        &["gc", "--store", path(&store), "--reels", reels],
    ));
    assert!(grace.contains("Freed 0 items, 0 bytes"), "{grace}");
    assert_eq!(s3.unfinished().unwrap().len(), 2);
    assert_eq!(s3.list("").unwrap().len(), 2);
    let grace = ok(wr(
        &server,
        &[
            "gc",
            "--min-age",
            "2h",
            "--store",
            path(&store),
            "--reels",
            reels,
        ],
    ));
    assert!(grace.contains("younger than --min-age 2h"), "{grace}");
    assert_eq!(s3.unfinished().unwrap().len(), 2);

    let dry = ok(wr(
        &server,
        &[
            "gc",
            "--dry-run",
            "--min-age",
            "0",
            "--store",
            path(&store),
            "--reels",
            reels,
        ],
    ));
    // The part the dead process sent is counted; the 10 bytes it still held are gone with it.
    let killed = dry
        .lines()
        .find(|l| l.starts_with("would remove orphaned upload: s3://gcreels/p/killed-0123abcd.mkv"))
        .unwrap_or_else(|| panic!("{dry}"));
    assert_eq!(MIN_PART_SIZE, 5_242_880);
    assert!(killed.contains(" (5,242,880 bytes, age "), "{killed}");
    assert!(
        dry.contains(
            "would remove unreferenced reel: s3://gcreels/p/uncommitted-0123abcd.mkv (14 bytes, age "
        ),
        "{dry}"
    );
    assert!(!dry.contains("running"), "{dry}");
    assert_eq!(s3.unfinished().unwrap().len(), 2);

    let done = ok(wr(
        &server,
        &[
            "gc",
            "--min-age",
            "0",
            "--store",
            path(&store),
            "--reels",
            reels,
        ],
    ));
    assert!(done.contains("removed orphaned upload"), "{done}");
    // The owner object is no reel: gc leaves it.
    assert!(server
        .files()
        .contains(&"gcreels/p/.weightreel-owner".to_string()));
    let left = s3.unfinished().unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].name, "running-0123abcd.mkv");
    let names: Vec<String> = s3.list("").unwrap().into_iter().map(|r| r.name).collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].starts_with("all-minilm-l6-v2-"));
    // The running encode finishes; the entry's reel and the store read as before.
    running.abort().unwrap();
    drop(lock);
    let check = ok(wr(
        &server,
        &["check", "--store", path(&store), "--reels", reels],
    ));
    assert!(check.contains("1 entries ok, 0 problems"), "{check}");
    let published: Vec<String> = kept
        .into_iter()
        .filter(|f| f.starts_with("gcreels/p/all-minilm"))
        .collect();
    assert_eq!(published.len(), 1);
    assert!(server.files().contains(&published[0]));
}

#[test]
fn the_gallery_draws_a_frame_of_an_s3_reel_like_the_directory_stores() {
    if services_disabled("the_gallery_draws_a_frame_of_an_s3_reel") {
        return;
    }
    let server = S3Server::start();
    server.create_bucket("gallery");
    let tmp = tempfile::tempdir().unwrap();
    let (s3_store, dir_store) = (tmp.path().join("s3"), tmp.path().join("dir"));
    let reels = "s3://gallery/g";
    ok(wr(
        &server,
        &[
            "encode",
            path(&minilm()),
            "--store",
            path(&s3_store),
            "--reels",
            reels,
            "-q",
        ],
    ));
    ok(wr(
        &server,
        &["encode", path(&minilm()), "--store", path(&dir_store), "-q"],
    ));
    let frame = |store: &Path, extra: &[&str]| -> Vec<u8> {
        let mut child = wr_command(&server, SECRET_KEY)
            .args(["serve", "--port", "0", "--store", path(store)])
            .args(extra)
            .env_remove("WEIGHTREEL_QUEUE")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("weightreel gallery: ")
            .unwrap_or_else(|| panic!("serve printed {line:?}"))
            .to_string();
        let got = ureq::get(&format!(
            "{url}api/model/1/frame/1.png?scale=frame&outline=0"
        ))
        .call()
        .map_err(|e| e.to_string())
        .and_then(|response| {
            assert_eq!(response.status(), 200);
            let mut body = Vec::new();
            std::io::Read::read_to_end(&mut response.into_reader(), &mut body)
                .map_err(|e| e.to_string())?;
            Ok(body)
        });
        let _ = child.kill();
        let _ = child.wait();
        got.unwrap_or_else(|e| panic!("GET frame: {e}"))
    };
    let from_s3 = frame(&s3_store, &["--reels", reels]);
    assert!(from_s3.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert!(from_s3 == frame(&dir_store, &[]));
}

#[test]
fn an_encode_killed_while_uploading_leaves_an_upload_that_gc_aborts() {
    if services_disabled("an_encode_killed_while_uploading_leaves_an_upload_that_gc_aborts") {
        return;
    }
    let server = S3Server::start();
    server.create_bucket("killed");
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let reels = "s3://killed/k";
    let before = server.files();
    // Lossless MiniLM is a reel of ~80 MB: several parts, sent after the encode's
    // marker object appears and before the upload is published.
    let mut child = wr_command(&server, SECRET_KEY)
        .args([
            "encode",
            path(&minilm()),
            "--store",
            path(&store),
            "--reels",
            reels,
        ])
        .args(["--mode", "lossless", "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        if server
            .files()
            .iter()
            .any(|f| f.starts_with("killed/k/.uploads/"))
        {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the encode ended before its upload was seen"
        );
        assert!(std::time::Instant::now() < deadline, "no upload began");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let s3 = storage(&server, "killed", "k/");
    assert_eq!(s3.unfinished().unwrap().len(), 1);
    assert!(
        s3.list("").unwrap().is_empty(),
        "the killed encode published its reel"
    );
    let list = ok(wr(&server, &["list", "--store", path(&store), "--json"]));
    assert!(entries(&list).is_empty(), "{list}");

    let dry = ok(wr(
        &server,
        &[
            "gc",
            "--dry-run",
            "--min-age",
            "0",
            "--store",
            path(&store),
            "--reels",
            reels,
        ],
    ));
    assert!(
        dry.contains("would remove orphaned upload: s3://killed/k/all-minilm-l6-v2-"),
        "{dry}"
    );
    ok(wr(
        &server,
        &[
            "gc",
            "--min-age",
            "0",
            "--store",
            path(&store),
            "--reels",
            reels,
        ],
    ));
    assert!(s3.unfinished().unwrap().is_empty());
    assert!(s3.list("").unwrap().is_empty());
    // Nothing of the upload is left on the server's disk but s3s-fs's own bookkeeping, and
    // the owner object the encode wrote before it began uploading.
    eprintln!("server files after gc: {:?}", server.files());
    assert!(server
        .files()
        .contains(&"killed/k/.weightreel-owner".to_string()));
    let left_on_server = || -> Vec<String> {
        server
            .files()
            .into_iter()
            .filter(|f| {
                !before.contains(f)
                    && !f.ends_with(".internal.json")
                    && !f.ends_with(".metadata.json")
                    && f != "killed/k/.weightreel-owner"
            })
            .collect()
    };
    // s3s-fs receives a part into `.tmp.N.internal.part` and deletes it when the request is
    // dropped, which happens only once it notices the killed client's connection is gone:
    // give it that moment rather than count its half-received part as ours.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut left = left_on_server();
    while left.iter().any(|f| f.starts_with(".tmp.")) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        left = left_on_server();
    }
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn an_s3_server_killed_during_the_upload_fails_the_encode_and_gc_cleans_up_after_it() {
    if services_disabled("an_s3_server_killed_during_the_upload_fails_the_encode") {
        return;
    }
    let mut server = S3Server::start();
    server.create_bucket("gone");
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let reels = "s3://gone/g";
    let mut child = wr_command(&server, SECRET_KEY)
        .args([
            "encode",
            path(&minilm()),
            "--store",
            path(&store),
            "--reels",
            reels,
        ])
        .args(["--mode", "lossless", "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !server
        .files()
        .iter()
        .any(|f| f.starts_with("gone/g/.uploads/"))
    {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the encode ended before its upload was seen"
        );
        assert!(std::time::Instant::now() < deadline, "no upload began");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    server.stop();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: reel storage s3://gone/g: "),
        "{err}"
    );

    server.restart_with_secret(SECRET_KEY);
    let list = ok(wr(&server, &["list", "--store", path(&store), "--json"]));
    assert!(entries(&list).is_empty(), "{list}");
    let s3 = storage(&server, "gone", "g/");
    assert!(s3.list("").unwrap().is_empty(), "a reel was published");
    // The abort could not reach the server: the upload is left for gc.
    assert_eq!(s3.unfinished().unwrap().len(), 1);
    ok(wr(
        &server,
        &[
            "gc",
            "--min-age",
            "0",
            "--store",
            path(&store),
            "--reels",
            reels,
        ],
    ));
    assert!(s3.unfinished().unwrap().is_empty());
}

/// The files under `bucket/prefix/` on the server's disk, with their bytes.
fn held(server: &S3Server, under: &str) -> Vec<(String, Vec<u8>)> {
    server
        .files()
        .into_iter()
        .filter(|f| f.starts_with(under))
        .map(|f| {
            let bytes = std::fs::read(server.root().join(&f)).unwrap();
            (f, bytes)
        })
        .collect()
}

#[test]
fn a_second_store_on_the_same_s3_prefix_is_refused_in_one_line_and_collects_nothing_there() {
    if services_disabled("a_second_store_on_the_same_s3_prefix_is_refused") {
        return;
    }
    let server = S3Server::start();
    server.create_bucket("two");
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let reels = "s3://two/team";
    let model = minilm();
    ok(wr(
        &server,
        &[
            "encode",
            path(&model),
            "--store",
            path(&a),
            "--reels",
            reels,
            "-q",
        ],
    ));
    let owner = std::fs::read_to_string(server.root().join("two/team/.weightreel-owner")).unwrap();
    let id = std::fs::read_to_string(a.join("store-id")).unwrap();
    assert!(
        owner.contains(&format!("\"store\":\"{}\"", id.trim())),
        "{owner}"
    );
    let before = held(&server, "two/");
    assert_eq!(
        before
            .iter()
            .filter(|(f, _)| f.starts_with("two/team/all-minilm-l6-v2-"))
            .count(),
        1,
        "{:?}",
        server.files()
    );

    // Store B (its own registry) given A's prefix: refused before anything is written.
    let out = wr(
        &server,
        &[
            "encode",
            path(&model),
            "--store",
            path(&b),
            "--reels",
            reels,
            "-q",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("s3://two/team: belongs to another weightreel store")
            && err.contains(id.trim())
            && err.contains(&format!("file://{}", a.display()))
            && err.contains("another --reels prefix"),
        "{err}"
    );
    assert_eq!(held(&server, "two/"), before);
    let list = ok(wr(&server, &["list", "--store", path(&b), "--json"]));
    assert!(entries(&list).is_empty(), "{list}");

    // B's gc, even with no grace, removes nothing of A's: every reel there is unreferenced
    // for B, and kept because the location is A's.
    let gc = ok(wr(
        &server,
        &[
            "gc",
            "--min-age",
            "0",
            "--store",
            path(&b),
            "--reels",
            reels,
        ],
    ));
    assert!(
        gc.contains("kept unreferenced reel: s3://two/team/all-minilm-l6-v2-")
            && gc.contains("the location belongs to store ")
            && gc.contains("Freed 0 items"),
        "{gc}"
    );
    assert_eq!(held(&server, "two/"), before);
    // A's own gc keeps its reel (named) and the owner object; its check passes.
    let gc = ok(wr(
        &server,
        &[
            "gc",
            "--min-age",
            "0",
            "--store",
            path(&a),
            "--reels",
            reels,
        ],
    ));
    assert!(gc.contains("Freed 0 items"), "{gc}");
    assert_eq!(held(&server, "two/"), before);
    let check = ok(wr(
        &server,
        &["check", "--store", path(&a), "--reels", reels],
    ));
    assert!(check.contains("1 entries ok, 0 problems"), "{check}");

    // A bad --min-age is a usage error stating the valid form.
    for bad in ["1.5h", "24", "-1h", "soon"] {
        let out = wr(
            &server,
            &[
                "gc",
                &format!("--min-age={bad}"),
                "--store",
                path(&a),
                "--reels",
                reels,
            ],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(
            err.contains(&format!("invalid --min-age '{bad}'"))
                && err.contains("0, or a whole number with a unit s, m, h or d"),
            "{err}"
        );
    }
    assert_eq!(held(&server, "two/"), before);

    // A damaged owner object is named, and refuses both the encode and the gc.
    let owner_file = server.root().join("two/team/.weightreel-owner");
    std::fs::write(
        &owner_file,
        owner.replacen("\"store\":\"", "\"store\":\"0", 1),
    )
    .unwrap();
    let damaged = held(&server, "two/");
    for args in [
        vec![
            "encode",
            path(&model),
            "--store",
            path(&a),
            "--reels",
            reels,
            "-q",
        ],
        vec![
            "gc",
            "--min-age",
            "0",
            "--store",
            path(&a),
            "--reels",
            reels,
        ],
    ] {
        let out = wr(&server, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(
            err.contains(
                "s3://two/team: its owner object '.weightreel-owner' is damaged: CRC mismatch"
            ),
            "{err}"
        );
        assert_eq!(held(&server, "two/"), damaged);
    }
}

#[test]
fn a_second_store_on_the_same_reel_directory_is_refused_too() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, shared) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("shared"),
    );
    let shared_url = format!("file://{}", shared.display());
    let model = minilm();
    let run = |store: &Path| {
        Command::new(env!("CARGO_BIN_EXE_weightreel"))
            .args([
                "encode",
                path(&model),
                "--store",
                path(store),
                "--reels",
                &shared_url,
                "-q",
            ])
            .env_remove("WEIGHTREEL_STORE")
            .env_remove("WEIGHTREEL_REELS")
            .output()
            .unwrap()
    };
    ok(run(&a));
    assert!(shared.join(".weightreel-owner").is_file());
    let before = listing(&shared);
    let out = run(&b);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "{shared_url}: belongs to another weightreel store"
        )),
        "{err}"
    );
    assert_eq!(listing(&shared), before);
}

/// The whole shared store of issue 14: a PostgreSQL registry and reels in S3, used by two
/// machines (each with its own local work directory). What one machine encodes, the other
/// lists, searches, checks and decodes bit-exactly; the reel location belongs to the one store
/// both machines open, so neither's encode is refused and `gc` on either removes nothing that
/// is referenced.
#[test]
fn a_postgres_registry_with_s3_reels_is_one_store_for_every_machine() {
    let test = "a_postgres_registry_with_s3_reels_is_one_store_for_every_machine";
    if services_disabled(test) {
        return;
    }
    use support::fixtures::{write_arch, GUIDE_DIMS};
    let pg = support::postgres::Postgres::start();
    let server = S3Server::start();
    server.create_bucket("team");
    let tmp = tempfile::tempdir().unwrap();
    let url = pg.url();
    let reels = "s3://team/reels";
    let machine = |k: usize, args: &[&str]| -> Output {
        wr_command(&server, SECRET_KEY)
            .args(args)
            .args(["--store", &url, "--reels", reels])
            .env("WEIGHTREEL_WORK", tmp.path().join(format!("work-{k}")))
            .output()
            .unwrap()
    };
    let models: Vec<PathBuf> = (0..2)
        .map(|i| {
            let d = tmp.path().join(format!("model-{i}"));
            write_arch(&d, "bert-base-uncased", GUIDE_DIMS, 300 + i as u64);
            d
        })
        .collect();
    // Each machine encodes one model, losslessly.
    for (k, m) in models.iter().enumerate() {
        ok(machine(k, &["encode", path(m), "--mode", "lossless", "-q"]));
    }
    // Both machines see both entries, the same way.
    let lists: Vec<String> = (0..2)
        .map(|k| ok(machine(k, &["list", "--json"])))
        .collect();
    assert_eq!(entries(&lists[0]), entries(&lists[1]));
    let names: Vec<String> = entries(&lists[0])
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["model-0", "model-1"], "{}", lists[0]);
    // The bucket holds exactly the two reels (and the owner object).
    let stored = storage(&server, "team", "reels/").list("").unwrap();
    assert_eq!(stored.len(), 2, "{stored:?}");
    // Machine 1 decodes what machine 0 encoded, bit for bit.
    let out = tmp.path().join("back.safetensors");
    ok(machine(1, &["decode", "model-0", "--out", path(&out)]));
    let original = tensors(&models[0].join("model.safetensors"));
    let back = tensors(&out);
    for t in &back {
        let o = original.iter().find(|o| o.0 == t.0).unwrap();
        assert_eq!((&o.1, &o.2, &o.3), (&t.1, &t.2, &t.3), "{}", t.0);
    }
    assert_eq!(back.len(), original.len());
    // A third machine told only the registry finds the reels where the store recorded them.
    let told_nothing = wr_command(&server, SECRET_KEY)
        .args(["check", "--store", &url])
        .env("WEIGHTREEL_WORK", tmp.path().join("work-2"))
        .output()
        .unwrap();
    let check = ok(told_nothing);
    assert!(check.contains("2 entries ok, 0 problems"), "{check}");
    // Search from machine 0 finds machine 1's model; check is clean on both.
    let hits: serde_json::Value =
        serde_json::from_str(&ok(machine(0, &["search", "model-1", "--json"]))).unwrap();
    assert_eq!(hits["hits"][0]["name"], "model-0", "{hits}");
    for k in 0..2 {
        let check = ok(machine(k, &["check"]));
        assert!(check.contains("2 entries ok, 0 problems"), "{check}");
        // The location is this store's on every machine: gc removes nothing referenced.
        ok(machine(k, &["gc", "--min-age", "0"]));
    }
    assert_eq!(
        storage(&server, "team", "reels/").list("").unwrap().len(),
        2
    );
}

/// Run `args` and return its one-line error (asserting exit code 1 and one line).
fn refused(out: Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

#[test]
fn a_store_remembers_where_its_reels_are_and_keeps_them_in_one_place() {
    if services_disabled("a_store_remembers_where_its_reels_are") {
        return;
    }
    let server = S3Server::start();
    server.create_bucket("remember");
    let tmp = tempfile::tempdir().unwrap();
    let model = minilm();
    let encode = |store: &Path, reels: Option<&str>, max_params: &str| {
        let mut args = vec!["encode", path(&model), "--store", path(store), "-q"];
        args.extend(["--max-params", max_params]);
        if let Some(reels) = reels {
            args.extend(["--reels", reels]);
        }
        wr(&server, &args)
    };
    let check = |store: &Path, reels: Option<&str>| {
        let mut args = vec!["check", "--store", path(store)];
        if let Some(reels) = reels {
            args.extend(["--reels", reels]);
        }
        wr(&server, &args)
    };
    let objects = |prefix: &str| storage(&server, "remember", prefix).list("").unwrap();

    // Encoded into S3 once, the store reads there without being told again.
    let s3_store = tmp.path().join("s3-store");
    ok(encode(&s3_store, Some("s3://remember/a"), "50000"));
    let report = ok(check(&s3_store, None));
    assert!(report.contains("1 entries ok, 0 problems"), "{report}");

    // A second place is refused before anything is written, naming where the reels are.
    let before = listing(&s3_store);
    let err = refused(encode(&s3_store, Some("s3://remember/b"), "40000"));
    assert!(
        err.starts_with("error: reel storage s3://remember/b: is not where this store keeps its reels: its entry has its reel in s3://remember/a"),
        "{err}"
    );
    assert!(err.contains("give --reels s3://remember/a"), "{err}");
    assert_eq!(listing(&s3_store), before, "the store's files changed");
    assert!(objects("b/").is_empty(), "{:?}", objects("b/"));

    // A store with reels in its own reels/ refuses S3 the same way.
    let dir_store = tmp.path().join("dir-store");
    ok(encode(&dir_store, None, "50000"));
    let err = refused(encode(&dir_store, Some("s3://remember/c"), "40000"));
    assert!(
        err.contains("its entry has its reel in its own reels/"),
        "{err}"
    );
    assert!(objects("c/").is_empty());
    // $WEIGHTREEL_REELS is a default for stores that recorded nothing else: this one keeps its
    // own reels/ (a machine set up for a shared store still reads its local stores).
    let out = wr_command(&server, SECRET_KEY)
        .args(["check", "--store", path(&dir_store)])
        .env("WEIGHTREEL_REELS", "s3://remember/c")
        .output()
        .unwrap();
    let report = ok(out);
    assert!(report.contains("1 entries ok, 0 problems"), "{report}");

    // Emptied, the store may move: the next encode records the new place.
    ok(wr(
        &server,
        &["rm", "all-MiniLM-L6-v2", "--store", path(&s3_store)],
    ));
    ok(encode(&s3_store, Some("s3://remember/b"), "40000"));
    assert_eq!(objects("b/").len(), 1, "{:?}", objects("b/"));
    let report = ok(check(&s3_store, None));
    assert!(report.contains("1 entries ok, 0 problems"), "{report}");

    // A shared directory reached by another path is the same place (its owner file says this
    // store's): accepted, and the record stays.
    let shared = tmp.path().join("shared");
    let other_path = tmp.path().join("mounted-elsewhere");
    let file_store = tmp.path().join("file-store");
    ok(encode(&file_store, Some(path(&shared)), "50000"));
    std::os::unix::fs::symlink(&shared, &other_path).unwrap();
    ok(encode(&file_store, Some(path(&other_path)), "40000"));
    let report = ok(check(&file_store, None));
    assert!(report.contains("2 entries ok, 0 problems"), "{report}");
    // Moved away, the recorded directory is reported rather than created empty again.
    let moved = tmp.path().join("moved");
    std::fs::rename(&shared, &moved).unwrap();
    let err = refused(check(&file_store, None));
    assert!(
        err.contains(&format!(
            "reel storage file://{}: is where this store keeps its reels",
            shared.display()
        )),
        "{err}"
    );
    assert!(!shared.exists(), "the recorded directory was created again");
    let report = ok(check(&file_store, Some(path(&moved))));
    assert!(report.contains("2 entries ok, 0 problems"), "{report}");
    // So does $WEIGHTREEL_REELS naming it, as a machine that mounts it there would set it.
    let out = wr_command(&server, SECRET_KEY)
        .args(["check", "--store", path(&file_store)])
        .env("WEIGHTREEL_REELS", &moved)
        .output()
        .unwrap();
    let report = ok(out);
    assert!(report.contains("2 entries ok, 0 problems"), "{report}");
}
