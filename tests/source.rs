//! The source stage on local files: dtypes, shards, the real MiniLM, malformed files, sampling
//! and bounded reads.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::Dtype;
use support::collect::{stream_values, Collect};
use support::fixtures::{self, arch_tensors, shard_name, spec, write_model, Dims};
use support::minilm;
use weightreel::inspect::Report;
use weightreel::selection::{SampleMode, Selection};
use weightreel::source::{Model, OpenOptions};
use weightreel::stream::{self, StreamOptions};

fn open(path: &Path) -> weightreel::Result<Model> {
    Model::open(path.to_str().unwrap(), &OpenOptions::default())
}

#[test]
fn every_dtype_streams_the_values_written() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("dtypes.safetensors");
    let written = write_model(&path, &fixtures::every_dtype(), 11);
    let model = open(&path).unwrap();

    let mut skipped: Vec<(&str, &str)> = model
        .skipped
        .iter()
        .map(|s| (s.name.as_str(), s.dtype.as_str()))
        .collect();
    skipped.sort();
    assert_eq!(
        skipped,
        vec![("embeddings.position_ids", "I64"), ("mask", "BOOL")]
    );
    let reasons: BTreeMap<&str, &str> = model
        .skipped
        .iter()
        .map(|s| (s.name.as_str(), s.reason.as_str()))
        .collect();
    assert_eq!(reasons["mask"], "bool mask");
    assert_eq!(reasons["embeddings.position_ids"], "index buffer");

    let (sink, summary) = stream_values(&model, &Selection::default());
    let streamed: Vec<&str> = sink.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(streamed.len(), written.len() - 2, "{streamed:?}");
    for w in written.iter().filter(|w| w.values.is_some()) {
        let delivered = sink
            .tensors
            .iter()
            .find(|d| d.name == w.spec.name)
            .unwrap_or_else(|| panic!("{} not streamed", w.spec.name));
        let info = model
            .tensors
            .iter()
            .find(|t| t.name == w.spec.name)
            .unwrap();
        assert_eq!(info.dtype, w.spec.dtype);
        assert_eq!(info.shape, w.spec.shape);
        let indices: Vec<u64> = delivered.values.iter().map(|&(i, _)| i).collect();
        assert_eq!(indices, (0..w.spec.numel() as u64).collect::<Vec<_>>());
        let values: Vec<f32> = delivered.values.iter().map(|&(_, v)| v).collect();
        let expected = w.values.as_ref().unwrap();
        // Bit-exact, so that -0.0 and NaN payloads would be caught too.
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&values), bits(expected), "{:?}", w.spec.dtype);
    }
    assert_eq!(summary.values, model.total_params());
}

/// Tensor names in data-offset order, read from a file's JSON header with serde_json alone.
fn names_by_offset(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let mut entries: Vec<(u64, String)> = header
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(k, v)| (v["data_offsets"][0].as_u64().unwrap(), k.clone()))
        .collect();
    entries.sort();
    entries.into_iter().map(|(_, k)| k).collect()
}

#[test]
fn sharded_models_stream_in_shard_then_offset_order() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sharded");
    // Mixed dtypes so that the serializer's alignment order differs from name order.
    let mut tensors = arch_tensors("distilgpt2", Dims::default());
    for (i, t) in tensors.iter_mut().enumerate() {
        if i % 3 == 1 {
            t.dtype = Dtype::F16;
        } else if i % 5 == 2 {
            t.dtype = Dtype::BF16;
        }
    }
    let written = fixtures::write_sharded(&dir, &tensors, 3, 5);
    let model = open(&dir).unwrap();
    assert_eq!(model.format(), "safetensors (3 shards)");
    assert_eq!(
        model.config.as_ref().unwrap().model_type.as_deref(),
        Some("test")
    );

    let expected: Vec<String> = (1..=3)
        .flat_map(|i| names_by_offset(&dir.join(shard_name(i, 3))))
        .filter(|n| !n.ends_with(".attn.bias"))
        .collect();
    let got: Vec<String> = model.tensors.iter().map(|t| t.name.clone()).collect();
    assert_eq!(got, expected);
    let shards: Vec<usize> = model.tensors.iter().map(|t| t.shard).collect();
    assert!(shards.windows(2).all(|w| w[0] <= w[1]), "{shards:?}");
    // Stable: a second open gives the same order.
    let again: Vec<String> = open(&dir)
        .unwrap()
        .tensors
        .iter()
        .map(|t| t.name.clone())
        .collect();
    assert_eq!(got, again);

    // The values come from the right shard.
    let (sink, _) = stream_values(&model, &Selection::default());
    for d in &sink.tensors {
        let w = written.iter().find(|w| w.spec.name == d.name).unwrap();
        let values: Vec<f32> = d.values.iter().map(|&(_, v)| v).collect();
        assert_eq!(&values, w.values.as_ref().unwrap(), "{}", d.name);
    }
}

#[test]
fn a_missing_shard_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sharded");
    fixtures::write_sharded(&dir, &arch_tensors("distilgpt2", Dims::default()), 3, 5);
    std::fs::remove_file(dir.join(shard_name(2, 3))).unwrap();
    let text = open(&dir).unwrap_err().to_string();
    assert!(
        text.contains(&shard_name(2, 3)) && text.contains("missing"),
        "{text}"
    );
    assert!(!text.contains('\n'));
}

#[test]
fn a_tensor_the_index_places_elsewhere_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sharded");
    let written = fixtures::write_sharded(&dir, &arch_tensors("distilgpt2", Dims::default()), 3, 5);
    let moved = &written
        .iter()
        .find(|w| w.file == shard_name(1, 3))
        .unwrap()
        .spec
        .name;
    let index_path = dir.join("model.safetensors.index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    index["weight_map"][moved] = shard_name(2, 3).into();
    std::fs::write(&index_path, index.to_string()).unwrap();

    let text = open(&dir).unwrap_err().to_string();
    assert!(text.contains(&format!("'{moved}'")), "{text}");
    assert!(text.contains(&shard_name(1, 3)), "{text}");
    assert!(
        text.contains(&format!("index places it in {}", shard_name(2, 3))),
        "{text}"
    );
    assert!(!text.contains('\n'));
}

#[test]
fn the_real_minilm_has_the_expected_tensors_params_and_roles() {
    let path = minilm::safetensors();
    let model = open(&path).unwrap();
    assert_eq!(model.tensors.len() + model.skipped.len(), 104);
    assert_eq!(model.tensors.len(), 103);
    let skipped: Vec<&str> = model.skipped.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(skipped, vec!["embeddings.position_ids"]);
    assert_eq!(model.skipped[0].dtype, "I64");
    assert!(model.tensors.iter().all(|t| t.dtype == Dtype::F32));

    // The parameter total, computed independently from the JSON header.
    let bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let independent: u64 = header
        .iter()
        .filter(|(k, v)| *k != "__metadata__" && v["dtype"] == "F32")
        .map(|(_, v)| {
            v["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap())
                .product::<u64>()
        })
        .sum();
    assert_eq!(independent, 22_713_216);
    assert_eq!(model.total_params(), independent);

    // Roles, counted by hand from the names: 6 layers × (8 attention: query/key/value/
    // attention.output.dense weight+bias; 4 mlp: intermediate.dense and output.dense; 4 norm:
    // two LayerNorms), plus embeddings (3 tables + LayerNorm) and the pooler.
    let report = Report::new(&model, &Selection::default());
    let roles: BTreeMap<&str, u64> = report
        .roles
        .iter()
        .map(|(k, c)| (k.as_str(), c.tensors))
        .collect();
    assert_eq!(roles["embedding"], 3);
    assert_eq!(roles["attention"], 48);
    assert_eq!(roles["mlp"], 24);
    assert_eq!(roles["norm"], 26);
    assert_eq!(roles["head"], 2);
    assert_eq!(roles["other"], 0);
    assert_eq!(report.roles["embedding"].params, (30522 + 512 + 2) * 384);
    assert_eq!(report.tensor_count, 104);
    let layers: Vec<u32> = model.tensors.iter().filter_map(|t| t.layer).collect();
    assert_eq!(layers.iter().max(), Some(&5));
}

#[test]
fn malformed_files_give_one_line_errors_naming_file_and_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = fixtures::malformed_files(tmp.path());
    assert_eq!(cases.len(), 10);
    for case in cases {
        let err = open(&case.path).expect_err(case.case);
        let text = err.to_string();
        assert!(!text.contains('\n'), "{}: multi-line: {text}", case.case);
        let file = case.path.file_name().unwrap().to_str().unwrap();
        assert!(text.contains(file), "{}: file not named: {text}", case.case);
        if let Some(tensor) = case.tensor {
            assert!(
                text.contains(&format!("tensor '{tensor}'")),
                "{}: tensor not named: {text}",
                case.case
            );
        }
        for word in case.words {
            assert!(
                text.contains(word),
                "{}: missing {word:?}: {text}",
                case.case
            );
        }
    }
}

fn gpt2_file(dir: &Path, seed: u64) -> std::path::PathBuf {
    let path = dir.join(format!("gpt2-{seed}.safetensors"));
    let dims = Dims {
        hidden: 16,
        vocab: 300,
        positions: 64,
    };
    write_model(&path, &arch_tensors("distilgpt2", dims), seed);
    path
}

#[test]
fn stratified_max_params_is_exact_spread_and_position_stable() {
    let tmp = tempfile::tempdir().unwrap();
    let a = open(&gpt2_file(tmp.path(), 1)).unwrap();
    let b = open(&gpt2_file(tmp.path(), 2)).unwrap();
    let total = a.total_params();
    let n = total / 4;
    let selection = Selection {
        max_params: Some(n),
        ..Default::default()
    };
    let (sa, summary) = stream_values(&a, &selection);
    let (sb, _) = stream_values(&b, &selection);
    assert_eq!(sa.count, n);
    assert_eq!(summary.values, n);
    // Every selected tensor gets values, as many as begin_tensor announced.
    assert_eq!(sa.tensors.len(), a.tensors.len());
    for d in &sa.tensors {
        assert!(!d.values.is_empty(), "{} got nothing", d.name);
        assert_eq!(d.values.len() as u64, d.selected, "{}", d.name);
    }
    // Spread: the largest tensor is sampled beyond its first half, not just at its head.
    let big = a.tensors.iter().max_by_key(|t| t.numel()).unwrap();
    let d = sa.tensors.iter().find(|d| d.name == big.name).unwrap();
    let last = d.values.iter().map(|&(i, _)| i).max().unwrap();
    assert!(
        last > big.numel() / 2,
        "{} sampled only up to {last}",
        big.name
    );
    // Same names and shapes → same positions; different values.
    let positions = |c: &Collect| -> Vec<(String, Vec<u64>)> {
        c.tensors
            .iter()
            .map(|d| (d.name.clone(), d.values.iter().map(|&(i, _)| i).collect()))
            .collect()
    };
    assert_eq!(positions(&sa), positions(&sb));
    assert_ne!(sa.tensors, sb.tensors);
    // The sampled values are the file's values at those positions.
    let (full, _) = stream_values(&a, &Selection::default());
    for d in &sa.tensors {
        let all = &full
            .tensors
            .iter()
            .find(|f| f.name == d.name)
            .unwrap()
            .values;
        for &(i, v) in &d.values {
            assert_eq!(all[i as usize], (i, v));
        }
    }
}

#[test]
fn head_max_params_takes_the_first_values_in_stream_order() {
    let tmp = tempfile::tempdir().unwrap();
    let model = open(&gpt2_file(tmp.path(), 3)).unwrap();
    let n = 5_000;
    let selection = Selection {
        max_params: Some(n),
        sample: SampleMode::Head,
        ..Default::default()
    };
    let (head, _) = stream_values(&model, &selection);
    assert_eq!(head.count, n);
    let (full, _) = stream_values(&model, &Selection::default());
    let flat = |c: &Collect| -> Vec<(String, u64, u32)> {
        c.tensors
            .iter()
            .flat_map(|d| {
                d.values
                    .iter()
                    .map(|&(i, v)| (d.name.clone(), i, v.to_bits()))
            })
            .collect()
    };
    let all = flat(&full);
    assert_eq!(flat(&head), all[..n as usize].to_vec());
}

#[test]
fn streaming_all_of_minilm_never_passes_more_than_a_mebibyte_at_once() {
    let model = open(&minilm::safetensors()).unwrap();
    let plan = Selection::default().plan(&model);
    let mut sink = Collect::default();
    let summary = stream::stream(&model, &plan, &mut sink, StreamOptions::default()).unwrap();
    eprintln!(
        "MiniLM whole: {} values in {} calls, largest slice {}, {} reads",
        sink.count, sink.calls, sink.max_slice, summary.data.requests
    );
    assert_eq!(sink.count, 22_713_216);
    assert!(sink.max_slice <= 262_144, "slice of {}", sink.max_slice);
    assert_eq!(sink.tensors.len(), 103);
}

#[test]
fn a_file_with_metadata_and_an_empty_tensor_opens() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("meta.safetensors");
    let metadata = [("format".to_string(), "pt".to_string())].into();
    fixtures::write_model_with(
        &path,
        &[
            spec("a.weight", Dtype::F32, &[4]),
            spec("empty.weight", Dtype::F32, &[0, 3]),
        ],
        1,
        Some(metadata),
    );
    let model = open(&path).unwrap();
    assert_eq!(model.shards[0].table.metadata["format"], "pt");
    assert_eq!(model.total_params(), 4);
}

mod header_never_panics {
    use proptest::prelude::*;
    use weightreel::source::header::parse_header_json;

    fn entry() -> impl Strategy<Value = String> {
        (
            prop::sample::select(vec![
                "F32", "F16", "BF16", "I64", "BOOL", "F128", "U8", "F4",
            ]),
            prop::collection::vec(0u64..1_000_000_000_000, 0..4),
            any::<u64>(),
            any::<u64>(),
        )
            .prop_map(|(dtype, shape, a, b)| {
                format!(
                    r#"{{"dtype":"{dtype}","shape":{shape:?},"data_offsets":[{},{}]}}"#,
                    a % 4096,
                    b % 8192
                )
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn on_random_headers(entries in prop::collection::vec(entry(), 0..6)) {
            let json = format!(
                "{{{}}}",
                entries
                    .iter()
                    .enumerate()
                    .map(|(i, e)| format!(r#""t{i}":{e}"#))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            if let Err(e) = parse_header_json("p", json.as_bytes(), 8 + json.len() as u64) {
                prop_assert!(!e.to_string().contains('\n'));
            }
        }

        #[test]
        fn on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_header_json("p", &bytes, 8 + bytes.len() as u64);
        }
    }
}

#[test]
fn inspect_estimate_equals_what_streaming_reads() {
    let model = open(&minilm::safetensors()).unwrap();
    for selection in [
        Selection::default(),
        Selection {
            max_params: Some(50_000),
            ..Default::default()
        },
        Selection {
            max_params: Some(50_000),
            sample: SampleMode::Head,
            ..Default::default()
        },
    ] {
        let report = Report::new(&model, &selection);
        let (_, summary) = stream_values(&model, &selection);
        assert_eq!(report.selection.reads, summary.data.requests);
        assert_eq!(report.selection.read_bytes, summary.data.bytes);
        assert_eq!(report.selection.params, summary.values);
    }
}
