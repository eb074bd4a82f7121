//! PyTorch (zip and legacy) and GGUF files, read like safetensors: real files from PyPI
//! (EasyOCR's `english_g2.pth` and `craft_mlt_25k.pth`, SmolLM2-135M-Instruct Q4_1), fixtures
//! written from MiniLM by `tests/formats/fixtures.py` (a torch-compatible zip `.bin` and a
//! sharded one, GGUF of every quantization gguf-py writes, K-quant blocks), each compared bit for
//! bit with a reference read made in Python (restricted `pickle.Unpickler` + numpy, gguf's
//! `dequantize`), through `encode --mode lossless` and `decode`. Then every malformed case, one
//! named test each: the exact one-line message, a non-zero exit, the store unchanged.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safetensors::SafeTensors;
use support::cli::{listing, run};
use support::minilm;
use support::venv::{arg, data, fixture};
use weightreel::inspect::plan_reads;
use weightreel::selection::Selection;
use weightreel::source::{Model, OpenOptions, WeightFormat};
use weightreel::stream::{self, windows, StreamOptions};

/// Tensors of a safetensors file: name → (dtype, shape, bytes).
type Tensors = BTreeMap<String, (String, Vec<usize>, Vec<u8>)>;

fn read_tensors(path: &Path) -> Tensors {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            (
                name,
                (
                    format!("{:?}", view.dtype()),
                    view.shape().to_vec(),
                    view.data().to_vec(),
                ),
            )
        })
        .collect()
}

/// `encode --mode lossless` then `decode`: the decoded safetensors file.
fn encode_decode(model: &Path, extra: &[&str], tmp: &Path) -> PathBuf {
    let store = tmp.join("store");
    let mut args = vec![
        "encode",
        arg(model),
        "--store",
        arg(&store),
        "--mode",
        "lossless",
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = run(&args);
    assert!(
        out.status.success(),
        "encode {}: {}",
        model.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let reel = json[0]["reel"].as_str().expect("a reel path").to_string();
    let decoded = tmp.join("decoded.safetensors");
    let out = run(&["decode", &reel, "--out", arg(&decoded)]);
    assert!(
        out.status.success(),
        "decode: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    decoded
}

/// Every tensor of `reference` comes back with its dtype, shape and bytes; the `skipped`
/// buffers (not streamed) come back too when the reel kept them verbatim, and then exactly.
fn assert_same(decoded: &Path, reference: &Path, skipped: &[&str]) {
    let mut got = read_tensors(decoded);
    let mut want = read_tensors(reference);
    for name in skipped {
        let buffer = want.remove(*name);
        assert!(buffer.is_some(), "{name} is not in the reference");
        if let Some(kept) = got.remove(*name) {
            assert!(
                kept == buffer.unwrap(),
                "{name}: the verbatim buffer differs"
            );
        }
    }
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (name, (dtype, shape, bytes)) in &want {
        let (d, s, b) = &got[name];
        assert_eq!((d, s), (dtype, shape), "{name}");
        assert!(b == bytes, "{name}: values differ from the reference read");
    }
}

fn reference_pth(file: &Path, tmp: &Path) -> PathBuf {
    let out = tmp.join("reference.safetensors");
    fixture(&["ref-pth", arg(file), arg(&out)]);
    out
}

fn reference_gguf(file: &Path, tmp: &Path, pattern: Option<&str>) -> PathBuf {
    let out = tmp.join("reference.safetensors");
    let mut args = vec!["ref-gguf", arg(file), arg(&out)];
    args.extend(pattern);
    fixture(&args);
    out
}

fn names_ending(reference: &Path, suffix: &str) -> Vec<String> {
    read_tensors(reference)
        .into_keys()
        .filter(|n| n.ends_with(suffix))
        .collect()
}

#[test]
fn english_g2_zip_checkpoint_decodes_bit_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let file = data("easyocr/english_g2.pth");
    let reference = reference_pth(&file, tmp.path());
    let counters = names_ending(&reference, "num_batches_tracked");
    let skipped: Vec<&str> = counters.iter().map(String::as_str).collect();
    let decoded = encode_decode(&file, &[], tmp.path());
    assert_same(&decoded, &reference, &skipped);
    // DataParallel's prefix is gone.
    assert!(read_tensors(&decoded)
        .keys()
        .all(|n| !n.starts_with("module.")));
}

#[test]
fn craft_legacy_checkpoint_decodes_bit_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let file = data("easyocr/craft_mlt_25k.pth");
    let reference = reference_pth(&file, tmp.path());
    let counters = names_ending(&reference, "num_batches_tracked");
    assert_eq!(counters.len(), 20);
    let skipped: Vec<&str> = counters.iter().map(String::as_str).collect();
    let decoded = encode_decode(&file, &[], tmp.path());
    assert_same(&decoded, &reference, &skipped);
}

#[test]
fn minilm_bin_decodes_to_the_safetensors_tensors() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("pytorch_model.bin");
    fixture(&["bin", arg(&minilm::safetensors()), arg(&bin)]);
    let reference = reference_pth(&bin, tmp.path());
    let decoded = encode_decode(&bin, &[], tmp.path());
    assert_same(&decoded, &reference, &["embeddings.position_ids"]);
    // And the reference read of the .bin is the safetensors file's content.
    assert_same(
        &decoded,
        &minilm::safetensors(),
        &["embeddings.position_ids"],
    );
}

#[test]
fn sharded_bin_with_an_index_reads_every_shard() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("model");
    std::fs::create_dir(&dir).unwrap();
    fixture(&["sharded", arg(&minilm::safetensors()), arg(&dir)]);
    let model = Model::open(arg(&dir), &OpenOptions::default()).unwrap();
    assert_eq!(model.format(), "pytorch zip (2 shards)");
    let safetensors = Model::open(arg(&minilm::safetensors()), &OpenOptions::default()).unwrap();
    assert_eq!(model.total_params(), safetensors.total_params());
    let decoded = encode_decode(&dir, &[], tmp.path());
    assert_same(
        &decoded,
        &minilm::safetensors(),
        &["embeddings.position_ids"],
    );
}

#[test]
fn views_dtypes_and_wrappers_match_the_reference_read() {
    let tmp = tempfile::tempdir().unwrap();
    for (kind, file) in [("views", "views.bin"), ("legacy", "legacy.pth")] {
        let dir = tmp.path().join(kind);
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join(file);
        fixture(&[kind, arg(&path)]);
        let model = Model::open(arg(&path), &OpenOptions::default()).unwrap();
        let transposed = "encoder.layer.0.attention.self.key.weight";
        assert_eq!(model.skipped.len(), 1, "{kind}");
        assert_eq!(model.skipped[0].name, transposed);
        assert_eq!(
            model.skipped[0].reason,
            "non-contiguous view (strides [1, 6]); weightreel reads contiguous tensors"
        );
        let reference = reference_pth(&path, &dir);
        // F64 is refused by lossless (f32 cannot hold it); the rest come back exactly.
        let decoded = encode_decode(&path, &["--exclude", "f64"], &dir);
        assert_same(&decoded, &reference, &[transposed, "extra.f64.weight"]);
    }
}

#[test]
fn smollm2_q4_1_gguf_dequantizes_like_gguf_py() {
    let tmp = tempfile::tempdir().unwrap();
    let file = data("smollm2/SmolLM2-135M-Instruct-Q4_1.gguf");
    let pattern = r"^(blk\.0\.|blk\.29\.|output_norm|token_embd)";
    let reference = reference_gguf(&file, tmp.path(), Some(pattern));
    let decoded = encode_decode(&file, &["--include", pattern], tmp.path());
    assert_same(&decoded, &reference, &[]);
    let model = Model::open(arg(&file), &OpenOptions::default()).unwrap();
    let mix = &model.shards[0].table.metadata["quantization mix"];
    assert_eq!(mix, "F32 ×61, Q4_1 ×210, Q8_0 ×1");
    assert_eq!(
        model.shards[0].table.metadata["llama.context_length"],
        "8192"
    );
}

#[test]
fn minilm_gguf_of_every_gguf_py_quantization_dequantizes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("minilm.gguf");
    fixture(&["gguf", arg(&minilm::safetensors()), arg(&file)]);
    let reference = reference_gguf(&file, tmp.path(), None);
    let decoded = encode_decode(&file, &[], tmp.path());
    assert_same(&decoded, &reference, &[]);
}

#[test]
fn k_quant_blocks_dequantize_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("k.gguf");
    fixture(&["gguf-k", arg(&file)]);
    let reference = reference_gguf(&file, tmp.path(), None);
    let decoded = encode_decode(&file, &[], tmp.path());
    assert_same(&decoded, &reference, &[]);
}

#[test]
fn sampled_gguf_reads_whole_blocks_and_inspect_counts_what_is_read() {
    let file = data("smollm2/SmolLM2-135M-Instruct-Q4_1.gguf");
    let model = Model::open(arg(&file), &OpenOptions::default()).unwrap();
    let selection = Selection {
        max_params: Some(50_000),
        ..Default::default()
    };
    let plan = selection.plan(&model);
    for w in windows(&model, &plan, 0) {
        for p in &w.pieces {
            let t = &model.tensors[p.tensor];
            let (begin, end) = t.byte_range(p.start, p.len);
            let (_, block_bytes) = t.block();
            assert_eq!((begin - t.offset) % block_bytes, 0, "{}", t.name);
            assert_eq!((end - t.offset) % block_bytes, 0, "{}", t.name);
            assert!(begin >= w.begin && end <= w.end);
        }
    }
    let (reads, bytes) = plan_reads(&model, &plan);
    let before = model.read_stats();
    let (collected, summary) = support::collect::stream_values(&model, &selection);
    let after = model.read_stats();
    assert_eq!((summary.data.requests, summary.data.bytes), (reads, bytes));
    assert_eq!(after.requests - before.requests, reads);
    assert_eq!(after.bytes - before.bytes, bytes);
    assert_eq!(collected.count, 50_000);
}

#[test]
fn sampled_gguf_values_are_the_dequantized_values_at_their_positions() {
    let tmp = tempfile::tempdir().unwrap();
    let file = data("smollm2/SmolLM2-135M-Instruct-Q4_1.gguf");
    let pattern = r"^blk\.3\.";
    let reference = read_tensors(&reference_gguf(&file, tmp.path(), Some(pattern)));
    let model = Model::open(arg(&file), &OpenOptions::default()).unwrap();
    let selection = Selection {
        include: Some(weightreel::selection::parse_regex("--include", pattern).unwrap()),
        max_params: Some(7_000),
        ..Default::default()
    };
    let (collected, _) = support::collect::stream_values(&model, &selection);
    assert_eq!(collected.count, 7_000);
    for t in &collected.tensors {
        let (_, _, bytes) = &reference[&t.name];
        for &(i, v) in &t.values {
            let at = i as usize * 4;
            let want = f32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
            assert_eq!(v.to_bits(), want.to_bits(), "{}[{i}]", t.name);
        }
    }
}

#[test]
fn safetensors_is_preferred_and_format_forces_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("both");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(minilm::safetensors(), dir.join("model.safetensors")).unwrap();
    fixture(&["views", arg(&dir.join("pytorch_model.bin"))]);
    let open = |format| {
        Model::open(
            arg(&dir),
            &OpenOptions {
                format,
                ..Default::default()
            },
        )
    };
    assert_eq!(open(None).unwrap().format(), "safetensors");
    assert_eq!(
        open(Some(WeightFormat::PyTorch)).unwrap().format(),
        "pytorch zip"
    );
    let out = run(&["inspect", arg(&dir), "--format", "gguf"]);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "error: model '{}': --format asks for GGUF weights but it has only model.safetensors, pytorch_model.bin\n",
            dir.display()
        )
    );
    let out = run(&["inspect", arg(&dir), "--format", "bin"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Format: pytorch zip\n"));
}

// ---------------------------------------------------------------- malformed files

/// A GGUF file with one tensor `w` (dims fastest first) and `data_len` bytes of data.
fn gguf_file(version: u32, dims: &[u64], ggml_type: u32, data_len: usize) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(version.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    let string = |b: &mut Vec<u8>, s: &str| {
        b.extend((s.len() as u64).to_le_bytes());
        b.extend(s.as_bytes());
    };
    string(&mut b, "general.architecture");
    b.extend(8u32.to_le_bytes());
    string(&mut b, "llama");
    string(&mut b, "w");
    b.extend((dims.len() as u32).to_le_bytes());
    for d in dims {
        b.extend(d.to_le_bytes());
    }
    b.extend(ggml_type.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    while !b.len().is_multiple_of(32) {
        b.push(0);
    }
    b.extend(std::iter::repeat_n(0u8, data_len));
    b
}

fn eocd(bytes: &[u8]) -> usize {
    (0..bytes.len() - 21)
        .rev()
        .find(|&i| bytes[i..i + 4] == [0x50, 0x4b, 0x05, 0x06])
        .unwrap()
}

/// Encode `bad` into a store that already holds a model: it must fail with exactly `message`
/// on one line, and leave the store as it was.
fn assert_refused(dir: &Path, bad: &Path, message: String) {
    let store = dir.join("store");
    let good = dir.join("good.bin");
    fixture(&["views", arg(&good)]);
    let out = run(&["encode", arg(&good), "--store", arg(&store)]);
    assert!(out.status.success());
    let before = listing(&store);
    let out = run(&["encode", arg(bad), "--store", arg(&store)]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("error: {message}\n")
    );
    assert_eq!(listing(&store), before);
}

/// `make(dir)` writes the bad file and returns it; `message(file)` is the expected error.
fn refused(make: impl Fn(&Path) -> PathBuf, message: impl Fn(&Path) -> String) {
    let tmp = tempfile::tempdir().unwrap();
    let bad = make(tmp.path());
    assert_refused(tmp.path(), &bad, message(&bad));
}

fn views_bytes(dir: &Path) -> Vec<u8> {
    let path = dir.join("source.bin");
    fixture(&["views", arg(&path)]);
    std::fs::read(path).unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn a_truncated_zip_is_refused() {
    refused(
        |dir| {
            let bytes = views_bytes(dir);
            write(dir, "truncated.bin", &bytes[..bytes.len() - 30])
        },
        |f| {
            format!(
                "{}: zip archive is truncated or corrupt: no end-of-central-directory record at its end",
                f.display()
            )
        },
    );
}

#[test]
fn a_central_directory_outside_the_file_is_refused() {
    refused(
        |dir| {
            let mut bytes = views_bytes(dir);
            let at = eocd(&bytes);
            bytes[at + 16..at + 20].copy_from_slice(&0x00ff_fff0u32.to_le_bytes());
            write(dir, "outside.bin", &bytes)
        },
        |f| {
            let bytes = std::fs::read(f).unwrap();
            let at = eocd(&bytes);
            let len = u32::from_le_bytes(bytes[at + 12..at + 16].try_into().unwrap());
            format!(
                "{}: zip archive is corrupt: its central directory (bytes {}..+{len}) lies outside the file ({} bytes)",
                f.display(),
                0x00ff_fff0u32,
                bytes.len()
            )
        },
    );
}

/// A bad file written by `fixtures.py KIND DIR/NAME EXTRA…`.
fn made(
    kind: &'static str,
    name: &'static str,
    extra: &'static [&'static str],
) -> impl Fn(&Path) -> PathBuf {
    move |dir| {
        let path = dir.join(name);
        let mut args = vec![kind, arg(&path)];
        args.extend_from_slice(extra);
        fixture(&args);
        path
    }
}

fn forbidden(global: &'static str) -> impl Fn(&Path) -> String {
    move |f| {
        format!(
            "{}: archive/data.pkl: pickle names the global '{global}', which weightreel does not allow (a checkpoint holds only tensors and containers)",
            f.display()
        )
    }
}

#[test]
fn a_pickle_calling_os_system_is_refused() {
    refused(
        made("evil", "evil.bin", &["os.system"]),
        forbidden("posix.system"),
    );
}

#[test]
fn a_pickle_calling_builtins_eval_is_refused() {
    refused(
        made("evil", "evil.bin", &["builtins.eval"]),
        forbidden("builtins.eval"),
    );
}

#[test]
fn a_reduce_payload_of_any_other_class_is_refused() {
    refused(
        made("evil", "evil.bin", &["reduce"]),
        forbidden("zipfile.ZipFile"),
    );
}

#[test]
fn a_zip_storage_of_the_wrong_size_is_refused() {
    refused(made("wrong-size", "wrong-size.bin", &[]), |f| {
        format!(
            "{}: storage 'archive/data/0' holds 188 bytes but the pickle says 48 elements of F32",
            f.display()
        )
    });
}

#[test]
fn a_compressed_zip_storage_is_refused() {
    refused(made("compressed", "compressed.bin", &[]), |f| {
        format!(
                "{}: zip entry 'archive/data/0' is compressed (method 8); torch.save stores entries uncompressed, and weightreel reads only those",
                f.display()
            )
    });
}

#[test]
fn a_legacy_storage_of_the_wrong_size_is_refused() {
    refused(made("legacy", "wrong-size.pth", &["--wrong-size"]), |f| {
        // Seven storages (48 F32, then 40 each of F16, BF16, I8, I16, U8 and 10 F64), each
        // after an 8-byte count, end the file; the second's count says 41.
        let storages: u64 = [192, 80, 80, 80, 40, 80, 40].iter().map(|b| b + 8).sum();
        let second = std::fs::metadata(f).unwrap().len() - storages + 8 + 192;
        format!(
            "{}: legacy storage '1' at byte {second} holds 41 elements but the pickle says 40",
            f.display()
        )
    });
}

#[test]
fn a_gguf_of_an_unknown_version_is_refused() {
    refused(
        |dir| write(dir, "v4.gguf", &gguf_file(4, &[64, 17], 8, 1156)),
        |f| {
            format!(
                "{}: unsupported GGUF version 4 (expected 2 or 3)",
                f.display()
            )
        },
    );
}

#[test]
fn a_gguf_tensor_running_past_the_end_is_refused() {
    refused(
        |dir| write(dir, "short.gguf", &gguf_file(3, &[64, 17], 8, 100)),
        |f| {
            format!(
                "{}: tensor 'w': data at offset 0 (1156 bytes of Q8_0) runs past the end of the file ({} bytes)",
                f.display(),
                std::fs::metadata(f).unwrap().len()
            )
        },
    );
}

#[test]
fn a_gguf_block_count_that_does_not_divide_is_refused() {
    refused(
        |dir| write(dir, "rows.gguf", &gguf_file(3, &[48, 2], 8, 1156)),
        |f| {
            format!(
                "{}: tensor 'w': rows of 48 values are not a whole number of Q8_0 blocks (32 values each)",
                f.display()
            )
        },
    );
}

#[test]
fn the_stream_delivers_what_the_plan_says_for_a_bin() {
    // Streaming the zip .bin of MiniLM gives the safetensors file's values, in the same order.
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("pytorch_model.bin");
    fixture(&["bin", arg(&minilm::safetensors()), arg(&bin)]);
    let selection = Selection {
        max_params: Some(50_000),
        ..Default::default()
    };
    let from_bin = Model::open(arg(&bin), &OpenOptions::default()).unwrap();
    let from_st = Model::open(arg(&minilm::safetensors()), &OpenOptions::default()).unwrap();
    let (a, _) = support::collect::stream_values(&from_bin, &selection);
    let (b, _) = support::collect::stream_values(&from_st, &selection);
    let by_name = |c: &support::collect::Collect| {
        c.tensors
            .iter()
            .map(|t| (t.name.clone(), t.values.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(by_name(&a), by_name(&b));
    let plan = selection.plan(&from_bin);
    let summary = stream::stream(
        &from_bin,
        &plan,
        &mut support::collect::Collect::default(),
        StreamOptions::default(),
    )
    .unwrap();
    assert_eq!(
        (summary.data.requests, summary.data.bytes),
        plan_reads(&from_bin, &plan)
    );
}

// ---------------------------------------------------------------- over HTTP

/// A Hub repo holding only MiniLM's `pytorch_model.bin`: `encode --max-params 50000` reads the
/// zip's tail, its pickle and the local headers it needs, then the sampled ranges — under 1 MB
/// and about 300 requests, counted by the server.
#[test]
fn a_bin_only_repo_encodes_50k_over_http_in_few_bytes() {
    use support::hub_server::{HubServer, Repo};
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("pytorch_model.bin");
    fixture(&["bin", arg(&minilm::safetensors()), arg(&bin)]);
    let server = HubServer::start();
    let repo = "sentence-transformers/all-MiniLM-L6-v2";
    server.add_repo(
        repo,
        Repo::new(repo)
            .small(
                "config.json",
                std::fs::read(minilm::dir().join("config.json")).unwrap(),
            )
            .disk("pytorch_model.bin", &bin, true),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weightreel"))
        .args(["encode", repo, "--max-params", "50000", "--json", "--store"])
        .arg(tmp.path().join("store"))
        .env("HF_ENDPOINT", server.url())
        .env("HF_HUB_CACHE", tmp.path().join("empty-cache"))
        .env_remove("HF_TOKEN")
        .env_remove("WEIGHTREEL_STORE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let counts = server.counts();
    eprintln!(
        "MiniLM pytorch_model.bin, 50k over HTTP: {} requests, {} bytes sent",
        counts.requests, counts.bytes
    );
    assert!(counts.bytes < 1_000_000, "{counts:?}");
    assert!(counts.requests <= 300, "{counts:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["entry"]["format"], "pytorch zip");
    assert_eq!(json[0]["entry"]["totals"]["params"], 50_000);
}

/// A Hub repo holding only SmolLM2's GGUF: its 1.8 MB header takes a few doubling reads, and
/// 50,000 sampled values over HTTP equal those read from the local file.
#[test]
fn a_gguf_only_repo_streams_over_http_like_the_local_file() {
    use support::hub_server::{HubServer, Repo};
    let file = data("smollm2/SmolLM2-135M-Instruct-Q4_1.gguf");
    let server = HubServer::start();
    let repo = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF";
    server.add_repo(
        repo,
        Repo::new(repo).disk("SmolLM2-135M-Instruct-Q4_1.gguf", &file, true),
    );
    let tmp = tempfile::tempdir().unwrap();
    let options = OpenOptions {
        endpoint: Some(server.url().to_string()),
        cache_dir: Some(tmp.path().join("empty-cache")),
        ..Default::default()
    };
    let remote = Model::open(repo, &options).unwrap();
    let opened = server.counts();
    eprintln!(
        "SmolLM2 GGUF over HTTP: opened in {} requests, {} bytes",
        opened.requests, opened.bytes
    );
    // The listing, the resolve redirect, and 256 KiB + 512 KiB + 1 MiB + 2 MiB of header.
    assert!(opened.requests <= 6, "{opened:?}");
    assert_eq!(remote.format(), "gguf v3");
    let selection = Selection {
        max_params: Some(50_000),
        ..Default::default()
    };
    let local = Model::open(arg(&file), &OpenOptions::default()).unwrap();
    let (a, _) = support::collect::stream_values(&remote, &selection);
    let (b, _) = support::collect::stream_values(&local, &selection);
    assert_eq!(a.count, 50_000);
    assert_eq!(a.tensors, b.tensors);
}
