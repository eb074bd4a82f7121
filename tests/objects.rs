//! Reel storage: one conformance suite run against every backend (a directory, and S3 through
//! a real S3-compatible server, s3s-fs), then the faults of each and the location parser.
//!
//! Each check of the suite is a function taking `&dyn ReelStorage`; `conformance!` makes one
//! named test per check and backend.

mod support;

use std::io::Write;

use std::io::{Read, Seek, SeekFrom};

use weightreel::store::objects::{
    DirectoryStorage, ReelLocation, ReelReader, ReelStorage, UnfinishedUpload, MIN_PART_SIZE,
};

/// The part size the S3 tests use: the smallest S3 accepts, so that a 20 MiB reel has 5 parts.
const PART: usize = MIN_PART_SIZE;

/// Deterministic bytes that differ at every offset (xorshift), so that a misplaced range shows.
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Write `data` in uneven pieces and publish it as `name`.
fn put(storage: &dyn ReelStorage, name: &str, data: &[u8]) {
    let mut upload = storage.begin(name).unwrap();
    for piece in data.chunks(1_000_003) {
        upload.write_all(piece).unwrap();
    }
    assert_eq!(upload.written(), data.len() as u64);
    assert_eq!(upload.publish().unwrap(), data.len() as u64);
}

fn read(storage: &dyn ReelStorage, name: &str, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    storage.read_range(name, offset, &mut buf).unwrap();
    buf
}

fn names(storage: &dyn ReelStorage, prefix: &str) -> Vec<String> {
    storage
        .list(prefix)
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect()
}

/// One line, and no presigned URL (its signature is an hour's access to the object).
fn one_line(message: &str) {
    assert!(!message.contains('\n'), "not one line: {message}");
    assert!(!message.contains("X-Amz-"), "a signed URL in: {message}");
}

// --- The conformance suite -------------------------------------------------------------------

/// A reel of more than two parts comes back bit-exact, read whole and in pieces.
fn round_trip_of_a_multi_part_reel(storage: &dyn ReelStorage) {
    let data = bytes(20 * 1024 * 1024 + 12_345, 1);
    put(storage, "models/big.mkv", &data);
    assert_eq!(storage.size("models/big.mkv").unwrap(), data.len() as u64);
    assert!(read(storage, "models/big.mkv", 0, data.len()) == data);
    let mut pieces = Vec::with_capacity(data.len());
    let step = 3 * 1024 * 1024 + 1;
    for offset in (0..data.len()).step_by(step) {
        let len = step.min(data.len() - offset);
        pieces.extend(read(storage, "models/big.mkv", offset as u64, len));
    }
    assert!(pieces == data);
}

/// Ranges across part boundaries and at the end are exact; past the end is an error naming the
/// reel, the range and the size.
fn range_reads_at_part_boundaries_and_the_end(storage: &dyn ReelStorage) {
    let data = bytes(3 * PART + 100, 2);
    put(storage, "r.mkv", &data);
    let size = data.len() as u64;
    for (offset, len) in [
        (0, 1),
        (PART - 10, 20),
        (PART, 1),
        (2 * PART - 1, 2),
        (3 * PART - 5, 105),
        (data.len() - 7, 7),
        (data.len() - 1, 1),
    ] {
        assert_eq!(
            read(storage, "r.mkv", offset as u64, len),
            &data[offset..offset + len],
            "range {offset}+{len}"
        );
    }
    storage.read_range("r.mkv", size, &mut []).unwrap();
    let mut buf = [0u8; 4];
    let err = storage
        .read_range("r.mkv", size - 3, &mut buf)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "reel storage {}: reel 'r.mkv': range {}..{} is past its end ({size} bytes)",
            storage.location(),
            size - 3,
            size + 1
        )
    );
}

/// Until it is published an upload is not listed, has no size and cannot be read; then it is.
fn an_unpublished_upload_is_invisible(storage: &dyn ReelStorage) {
    let data = bytes(PART + 17, 3);
    let mut upload = storage.begin("models/a.mkv").unwrap();
    upload.write_all(&data).unwrap();
    assert!(names(storage, "").is_empty());
    let missing = format!(
        "reel storage {}: reel 'models/a.mkv' not found",
        storage.location()
    );
    assert_eq!(
        storage.size("models/a.mkv").unwrap_err().to_string(),
        missing
    );
    assert_eq!(
        storage
            .unfinished()
            .unwrap()
            .iter()
            .map(|u| u.name.as_str())
            .collect::<Vec<_>>(),
        ["models/a.mkv"]
    );
    upload.publish().unwrap();
    assert_eq!(names(storage, ""), ["models/a.mkv"]);
    assert!(storage.unfinished().unwrap().is_empty());
    assert!(read(storage, "models/a.mkv", 0, data.len()) == data);
}

/// An upload dropped or aborted half-way leaves nothing: not listed, not unfinished.
fn an_upload_dropped_or_aborted_half_way_leaves_nothing(storage: &dyn ReelStorage) {
    let mut upload = storage.begin("half.mkv").unwrap();
    upload.write_all(&bytes(PART + PART / 2, 4)).unwrap();
    drop(upload);
    let mut upload = storage.begin("half2.mkv").unwrap();
    upload.write_all(&bytes(PART + 1, 5)).unwrap();
    upload.abort().unwrap();
    assert!(names(storage, "").is_empty());
    assert_eq!(
        storage.unfinished().unwrap(),
        Vec::<UnfinishedUpload>::new()
    );
    assert!(storage.size("half.mkv").is_err());
}

/// An upload whose writer died (never dropped) is listed as unfinished, never as a reel, and
/// `abort_unfinished` removes it.
fn a_crashed_upload_is_found_and_removed(storage: &dyn ReelStorage) {
    put(storage, "kept.mkv", b"kept");
    let mut upload = storage.begin("models/crashed.mkv").unwrap();
    upload.write_all(&bytes(PART + 3, 6)).unwrap();
    std::mem::forget(upload);
    assert_eq!(names(storage, ""), ["kept.mkv"]);
    let unfinished = storage.unfinished().unwrap();
    assert_eq!(unfinished.len(), 1, "{unfinished:?}");
    assert_eq!(unfinished[0].name, "models/crashed.mkv");
    storage.abort_unfinished(&unfinished[0]).unwrap();
    assert!(storage.unfinished().unwrap().is_empty());
    assert_eq!(names(storage, ""), ["kept.mkv"]);
    assert_eq!(read(storage, "kept.mkv", 0, 4), b"kept");
}

/// Listing takes a prefix and is sorted; publishing a name again replaces the reel.
fn list_by_prefix_and_replace(storage: &dyn ReelStorage) {
    put(storage, "models/b.mkv", b"bbb");
    put(storage, "models/a.mkv", b"a");
    put(storage, "other/c.mkv", b"cc");
    put(storage, "modelsx.mkv", b"x");
    assert_eq!(names(storage, "models/"), ["models/a.mkv", "models/b.mkv"]);
    assert_eq!(
        names(storage, ""),
        ["models/a.mkv", "models/b.mkv", "modelsx.mkv", "other/c.mkv"]
    );
    let listed = storage.list("other/").unwrap();
    assert_eq!(
        (listed[0].name.as_str(), listed[0].size),
        ("other/c.mkv", 2)
    );
    put(storage, "models/a.mkv", b"replaced");
    assert_eq!(storage.size("models/a.mkv").unwrap(), 8);
    assert_eq!(read(storage, "models/a.mkv", 0, 8), b"replaced");
}

/// A reel read as `Read + Seek` gives the same bytes as its ranges, across windows and parts.
fn a_reel_reads_and_seeks_as_a_file(storage: &dyn ReelStorage) {
    let data = bytes(PART + 1000, 11);
    put(storage, "file.mkv", &data);
    let mut reader = ReelReader::open(storage, "file.mkv", 64 * 1024).unwrap();
    assert_eq!(reader.size(), data.len() as u64);
    let mut all = Vec::new();
    reader.read_to_end(&mut all).unwrap();
    assert!(all == data);
    let at = PART as u64 - 3;
    assert_eq!(reader.seek(SeekFrom::Start(at)).unwrap(), at);
    let mut piece = [0u8; 10];
    reader.read_exact(&mut piece).unwrap();
    assert_eq!(piece, data[PART - 3..PART + 7]);
    reader.seek(SeekFrom::End(-4)).unwrap();
    let mut tail = Vec::new();
    reader.read_to_end(&mut tail).unwrap();
    assert_eq!(tail, &data[data.len() - 4..]);
    assert_eq!(reader.read(&mut piece).unwrap(), 0);
    reader
        .seek(SeekFrom::Current(-(data.len() as i64)))
        .unwrap();
    assert!(reader.seek(SeekFrom::Current(-1)).is_err());
    let missing = ReelReader::open(storage, "nope.mkv", 1)
        .err()
        .unwrap()
        .to_string();
    assert_eq!(
        missing,
        format!(
            "reel storage {}: reel 'nope.mkv' not found",
            storage.location()
        )
    );
}

/// An empty reel is a reel.
fn an_empty_reel_round_trips(storage: &dyn ReelStorage) {
    put(storage, "empty.mkv", b"");
    assert_eq!(storage.size("empty.mkv").unwrap(), 0);
    assert_eq!(names(storage, ""), ["empty.mkv"]);
    storage.read_range("empty.mkv", 0, &mut []).unwrap();
}

/// Delete removes a reel; deleting, sizing or reading a missing reel is an error naming it.
fn delete_and_missing_reels(storage: &dyn ReelStorage) {
    put(storage, "gone.mkv", b"soon gone");
    storage.delete("gone.mkv").unwrap();
    assert!(names(storage, "").is_empty());
    let missing = format!(
        "reel storage {}: reel 'gone.mkv' not found",
        storage.location()
    );
    assert_eq!(storage.delete("gone.mkv").unwrap_err().to_string(), missing);
    assert_eq!(storage.size("gone.mkv").unwrap_err().to_string(), missing);
    let mut buf = [0u8; 3];
    assert_eq!(
        storage
            .read_range("gone.mkv", 0, &mut buf)
            .unwrap_err()
            .to_string(),
        missing
    );
}

/// Names that could escape the location or collide with its bookkeeping are refused.
fn bad_names_are_refused(storage: &dyn ReelStorage) {
    for name in [
        "",
        "../up.mkv",
        "/abs.mkv",
        "a//b.mkv",
        ".uploads/x",
        "a/./b",
        "sp ace.mkv",
    ] {
        let err = match storage.begin(name) {
            Ok(_) => panic!("'{name}' was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.starts_with(&format!(
                "invalid reel name '{name}' (expected a relative path"
            )),
            "{err}"
        );
        one_line(&err);
    }
    assert!(names(storage, "").is_empty());
}

/// Listings tell when each reel was written and each unfinished upload last written to or
/// begun (what `gc --min-age` goes by).
fn listings_tell_when_reels_and_uploads_were_written(storage: &dyn ReelStorage) {
    let slack = std::time::Duration::from_secs(5);
    let before = std::time::SystemTime::now() - slack;
    put(storage, "timed.mkv", b"timed");
    let mut upload = storage.begin("pending.mkv").unwrap();
    upload.write_all(b"pending").unwrap();
    std::mem::forget(upload);
    let after = std::time::SystemTime::now() + slack;
    let listed = storage.list("").unwrap();
    let unfinished = storage.unfinished().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(unfinished.len(), 1, "{unfinished:?}");
    for t in [listed[0].modified, unfinished[0].modified] {
        let t = t.expect("a time");
        assert!(before <= t && t <= after, "{t:?}");
    }
    storage.abort_unfinished(&unfinished[0]).unwrap();
}

/// The owner object is written once (a second write keeps the first), read back as written,
/// and never listed as a reel or an upload.
fn the_owner_object_is_written_once_and_never_listed(storage: &dyn ReelStorage) {
    assert_eq!(storage.read_owner().unwrap(), None);
    put(storage, "a.mkv", b"a");
    storage.create_owner(b"first owner\n").unwrap();
    assert_eq!(
        storage.read_owner().unwrap().as_deref(),
        Some(&b"first owner\n"[..])
    );
    storage.create_owner(b"second owner\n").unwrap();
    assert_eq!(
        storage.read_owner().unwrap().as_deref(),
        Some(&b"first owner\n"[..])
    );
    assert_eq!(names(storage, ""), ["a.mkv"]);
    assert!(storage.unfinished().unwrap().is_empty());
}

macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod directory {
            $(
                #[test]
                fn $check() {
                    let dir = tempfile::tempdir().unwrap();
                    let storage = super::DirectoryStorage::open(&dir.path().join("reels")).unwrap();
                    super::$check(&storage);
                }
            )*
        }

        #[cfg(feature = "s3")]
        mod s3 {
            $(
                #[test]
                fn $check() {
                    if crate::support::postgres::services_disabled(concat!("s3::", stringify!($check))) {
                        return;
                    }
                    let server = crate::support::s3::S3Server::start();
                    server.create_bucket("reels");
                    let storage = super::s3_storage(&server, "reels", "team/reels/", crate::support::s3::SECRET_KEY);
                    super::$check(&storage);
                }
            )*
        }
    };
}

conformance!(
    round_trip_of_a_multi_part_reel,
    range_reads_at_part_boundaries_and_the_end,
    an_unpublished_upload_is_invisible,
    an_upload_dropped_or_aborted_half_way_leaves_nothing,
    a_crashed_upload_is_found_and_removed,
    list_by_prefix_and_replace,
    a_reel_reads_and_seeks_as_a_file,
    an_empty_reel_round_trips,
    delete_and_missing_reels,
    bad_names_are_refused,
    listings_tell_when_reels_and_uploads_were_written,
    the_owner_object_is_written_once_and_never_listed,
);

// --- S3: the backend's own guarantees and faults ------------------------------------------------

#[cfg(feature = "s3")]
fn s3_storage(
    server: &support::s3::S3Server,
    bucket: &str,
    prefix: &str,
    secret: &str,
) -> weightreel::store::objects::S3Storage {
    let config = weightreel::store::objects::S3Config {
        endpoint: Some(server.endpoint()),
        region: "us-east-1".into(),
        credentials: Some((support::s3::ACCESS_KEY.into(), secret.into())),
        session_token: None,
        part_size: PART,
    };
    weightreel::store::objects::S3Storage::new(bucket, prefix, config).unwrap()
}

#[cfg(feature = "s3")]
mod s3_faults {
    use super::*;
    use support::postgres::services_disabled;
    use support::s3::{S3Server, SECRET_KEY};

    /// The files of the server's root outside the bucket directory itself: parts of uploads.
    fn server_files(server: &S3Server) -> Vec<String> {
        server.files()
    }

    // A bucket that does not exist is not a fault s3s-fs can show: it creates the bucket's
    // directory on the first write. A server that starts refusing mid-upload is.
    #[test]
    fn a_server_refusing_the_rest_of_an_upload_fails_it_in_one_line_and_nothing_is_visible() {
        if services_disabled("s3_faults::a_server_refusing_the_rest_of_an_upload") {
            return;
        }
        let mut server = S3Server::start();
        server.create_bucket("reels");
        let storage = s3_storage(&server, "reels", "team/", SECRET_KEY);
        let mut upload = storage.begin("a.mkv").unwrap();
        upload.write_all(&bytes(PART + 1, 10)).unwrap();
        server.restart_with_secret("rotated-secret");
        let err = upload.publish().unwrap_err().to_string();
        one_line(&err);
        assert!(
            err.starts_with(
                "reel storage s3://reels/team: upload part 2 of reel 'a.mkv': HTTP 403"
            ),
            "{err}"
        );
        assert!(
            err.ends_with(&format!("(endpoint {})", server.endpoint())),
            "{err}"
        );
        // Back with the old keys: nothing was published under the name.
        server.restart_with_secret(SECRET_KEY);
        assert!(names(&storage, "").is_empty());
        assert!(storage.size("a.mkv").is_err());
    }

    #[test]
    fn wrong_credentials_refuse_the_upload_in_one_line_and_nothing_is_stored() {
        if services_disabled("s3_faults::wrong_credentials_refuse_the_upload") {
            return;
        }
        let server = S3Server::start();
        server.create_bucket("reels");
        let storage = s3_storage(&server, "reels", "", "not-the-secret");
        let err = match storage.begin("a.mkv") {
            Ok(_) => panic!("an upload with a wrong secret began"),
            Err(e) => e.to_string(),
        };
        one_line(&err);
        assert!(
            err.starts_with("reel storage s3://reels: begin upload of reel 'a.mkv': HTTP 403"),
            "{err}"
        );
        assert_eq!(server_files(&server), Vec::<String>::new());
        // The same server takes the right secret: the refusal was the credentials.
        let storage = s3_storage(&server, "reels", "", SECRET_KEY);
        put(&storage, "a.mkv", b"ok");
        assert_eq!(names(&storage, ""), ["a.mkv"]);
    }

    #[test]
    fn a_server_gone_mid_upload_fails_the_write_in_one_line() {
        if services_disabled("s3_faults::a_server_gone_mid_upload") {
            return;
        }
        let server = S3Server::start();
        server.create_bucket("reels");
        let storage = s3_storage(&server, "reels", "p/", SECRET_KEY);
        let mut upload = storage.begin("a.mkv").unwrap();
        upload.write_all(&bytes(PART, 7)).unwrap();
        let endpoint = server.endpoint();
        drop(server);
        let err = upload.append(&bytes(PART, 8)).unwrap_err().to_string();
        one_line(&err);
        assert!(
            err.starts_with(
                "reel storage s3://reels/p: upload part 2 of reel 'a.mkv': Connection Failed: "
            ),
            "{err}"
        );
        assert!(err.ends_with(&format!("(endpoint {endpoint})")), "{err}");
        // The upload is over: it refuses more bytes instead of sending them.
        let again = upload.append(b"x").unwrap_err().to_string();
        assert_eq!(
            again,
            "reel storage s3://reels/p: reel 'a.mkv': write after the upload ended"
        );
    }

    #[test]
    fn a_part_upload_rides_out_a_server_restart() {
        if services_disabled("s3_faults::a_part_upload_rides_out_a_server_restart") {
            return;
        }
        let mut server = S3Server::start();
        server.create_bucket("reels");
        let storage = s3_storage(&server, "reels", "", SECRET_KEY);
        let data = bytes(2 * PART + 9, 12);
        let mut upload = storage.begin("a.mkv").unwrap();
        upload.write_all(&data[..PART]).unwrap();
        // Down now, back in 0.6 s: the second part's first tries fail, a retry gets through.
        server.stop();
        let restarted = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(600));
            server.restart_with_secret(SECRET_KEY);
            server
        });
        upload.write_all(&data[PART..]).unwrap();
        let _server = restarted.join().unwrap();
        upload.publish().unwrap();
        assert!(read(&storage, "a.mkv", 0, data.len()) == data);
    }

    #[test]
    fn an_aborted_upload_leaves_no_parts_on_the_server() {
        if services_disabled("s3_faults::an_aborted_upload_leaves_no_parts") {
            return;
        }
        let server = S3Server::start();
        server.create_bucket("reels");
        let storage = s3_storage(&server, "reels", "", SECRET_KEY);
        let mut upload = storage.begin("a.mkv").unwrap();
        upload.write_all(&bytes(2 * PART + 5, 9)).unwrap();
        assert!(
            server_files(&server).len() >= 2,
            "{:?}",
            server_files(&server)
        );
        std::mem::forget(upload);
        for unfinished in storage.unfinished().unwrap() {
            storage.abort_unfinished(&unfinished).unwrap();
        }
        // s3s-fs keeps an upload's parts as `.upload_id-…` files of its root (it leaves the
        // metadata files of deleted objects behind, so those are not counted).
        let parts: Vec<String> = server_files(&server)
            .into_iter()
            .filter(|f| f.starts_with(".upload"))
            .collect();
        assert_eq!(parts, Vec::<String>::new());
    }
}

// --- Locations ---------------------------------------------------------------------------------

#[test]
fn locations_parse() {
    assert_eq!(
        ReelLocation::parse("s3://team-reels/shared/reels/").unwrap(),
        ReelLocation::S3 {
            bucket: "team-reels".into(),
            prefix: "shared/reels/".into()
        }
    );
    assert_eq!(
        ReelLocation::parse("s3://team-reels").unwrap(),
        ReelLocation::S3 {
            bucket: "team-reels".into(),
            prefix: String::new()
        }
    );
    assert_eq!(
        ReelLocation::parse("file:///mnt/shared/reels").unwrap(),
        ReelLocation::Directory("/mnt/shared/reels".into())
    );
    assert_eq!(
        ReelLocation::parse("store/reels").unwrap(),
        ReelLocation::Directory("store/reels".into())
    );
    assert_eq!(
        ReelLocation::parse("s3://team-reels/shared/")
            .unwrap()
            .url(),
        "s3://team-reels/shared"
    );
    assert_eq!(
        ReelLocation::parse("s3://team-reels/").unwrap().url(),
        "s3://team-reels"
    );
}

#[test]
fn bad_locations_are_refused_in_one_line_naming_the_url() {
    let accepted = "(expected s3://BUCKET[/PREFIX], file:///ABSOLUTE/DIR or a directory path)";
    for (text, why) in [
        ("http://host/reels", "unknown scheme 'http'"),
        (
            "s3://",
            "a bucket name is 3 to 63 lowercase letters, digits, '.' or '-'",
        ),
        (
            "s3://Upper/x",
            "a bucket name is 3 to 63 lowercase letters, digits, '.' or '-'",
        ),
        ("s3://bucket/../x", "the prefix is not a valid key prefix"),
        (
            "file://host/reels",
            "a file URL needs an absolute path and no host",
        ),
        ("", "empty"),
    ] {
        let err = ReelLocation::parse(text).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("invalid reel location '{text}': {why} {accepted}")
        );
    }
}

#[test]
fn a_directory_location_opens_a_directory_storage() {
    let dir = tempfile::tempdir().unwrap();
    let location = ReelLocation::parse(dir.path().to_str().unwrap()).unwrap();
    let storage = location.open().unwrap();
    assert_eq!(
        storage.location(),
        format!("file://{}", dir.path().display())
    );
    put(storage.as_ref(), "x.mkv", b"xyz");
    assert_eq!(std::fs::read(dir.path().join("x.mkv")).unwrap(), b"xyz");
    // The upload's temporary file went away with the rename.
    assert_eq!(
        std::fs::read_dir(dir.path().join(".uploads"))
            .unwrap()
            .count(),
        0
    );
}
