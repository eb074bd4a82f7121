//! What an encode keeps does not grow with the number of frames: the reel's header metadata
//! (held in memory while the reel is joined and read) is the same size for 64 frames and for
//! 2,048, and the registry costs at most 256 bytes a frame. These are the structural halves of
//! the memory and registry-size targets; the benchmark (`scripts/bench.sh`) measures peak RSS
//! and registry bytes on a 1.1B-parameter model.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use safetensors::Dtype;
use support::fixtures::{spec, write_model};
use weightreel::encode::{encode, EncodeOptions, EncodeOutcome};
use weightreel::reel::{read_metadata, ReelReader};
use weightreel::source::{Model, OpenOptions};
use weightreel::store::Store;

/// A model of 4 × 128 × 1024 = 524,288 F32 values.
fn model(dir: &Path) -> PathBuf {
    let path = dir.join("m.safetensors");
    let tensors: Vec<_> = (0..4)
        .map(|i| spec(&format!("layers.{i}.mlp.weight"), Dtype::F32, &[128, 1024]))
        .collect();
    write_model(&path, &tensors, 3);
    path
}

/// Encode `model` in chunks of `chunk` values into a new store under `dir`; the store's
/// directory and the reel.
fn encode_chunks(dir: &Path, model: &Path, chunk: u64) -> (PathBuf, PathBuf) {
    let store_dir = dir.join(format!("store-{chunk}"));
    let mut store = Store::open(&store_dir).unwrap();
    let model = Model::open(model.to_str().unwrap(), &OpenOptions::default()).unwrap();
    let options = EncodeOptions {
        chunk_size: chunk,
        chunk_encoding: true,
        ..EncodeOptions::default()
    };
    let outcome = encode(&mut store, &model, &options, &AtomicBool::new(false)).unwrap();
    let EncodeOutcome::Completed { reel, .. } = outcome else {
        panic!("not completed: {outcome:?}")
    };
    (store_dir, reel)
}

/// Bytes of the registry with its write-ahead log folded in.
fn registry_bytes(store_dir: &Path) -> u64 {
    let db = store_dir.join("registry.sqlite");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    conn.execute_batch("VACUUM").unwrap();
    drop(conn);
    std::fs::metadata(&db).unwrap().len()
}

#[test]
fn reel_header_metadata_is_the_same_size_for_64_and_2048_frames() {
    let dir = tempfile::tempdir().unwrap();
    let model = model(dir.path());
    let (_, few) = encode_chunks(dir.path(), &model, 8192);
    let (_, many) = encode_chunks(dir.path(), &model, 256);
    assert_eq!(ReelReader::open(&few).unwrap().frame_count(), 64);
    assert_eq!(ReelReader::open(&many).unwrap().frame_count(), 2048);
    let (a, b) = (
        read_metadata(&few).unwrap().len(),
        read_metadata(&many).unwrap().len(),
    );
    // The settings differ in the chunk size's digits and the settings key, nothing else.
    assert!(a.abs_diff(b) <= 4, "{a} bytes for 64 frames, {b} for 2048");
}

#[test]
fn registry_costs_at_most_256_bytes_a_frame() {
    let dir = tempfile::tempdir().unwrap();
    let model = model(dir.path());
    let (few, _) = encode_chunks(dir.path(), &model, 8192);
    let (many, _) = encode_chunks(dir.path(), &model, 256);
    let per_frame = (registry_bytes(&many) - registry_bytes(&few)) as f64 / (2048.0 - 64.0);
    assert!(per_frame <= 256.0, "{per_frame:.0} bytes a frame");
    // And the rows still say where each frame is.
    let store = Store::open(&many).unwrap();
    let id = store.list().unwrap()[0].id;
    let rows = store.frames(id).unwrap();
    assert_eq!(rows.len(), 2048);
    assert!(rows
        .iter()
        .enumerate()
        .all(|(i, r)| r.index == i as u64 && r.first_value == 256 * i as u64 && r.count == 256));
}
