//! Safetensors files written by the tests with the `safetensors` crate's own serializer, so the
//! reader is checked against the real writer: deterministic pseudo-random values in every dtype,
//! sharded models with an index, architecture layouts with real tensor names (hidden sizes scaled
//! down), and — hand-built, since no crate writes them — malformed files.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use safetensors::tensor::TensorView;
use safetensors::Dtype;

use super::hub_server::{HubServer, Repo};
use weightreel::selection::{parse_roles, Selection};

/// A tensor to write: name, dtype, shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// Name as stored.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<usize>,
}

impl TensorSpec {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Shorthand for a [`TensorSpec`].
pub fn spec(name: &str, dtype: Dtype, shape: &[usize]) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        dtype,
        shape: shape.to_vec(),
    }
}

/// A tensor as written: its spec, raw little-endian bytes, and the f32 values the reader must
/// give back (`None` for dtypes the reader skips, such as BOOL).
#[derive(Debug, Clone)]
pub struct Written {
    /// What was written.
    pub spec: TensorSpec,
    /// The stored bytes.
    pub bytes: Vec<u8>,
    /// Expected values after conversion to f32.
    pub values: Option<Vec<f32>>,
    /// File (name only) that holds it.
    pub file: String,
}

/// xorshift64*: small, deterministic, good enough for test data.
pub struct Rng(u64);

impl Rng {
    /// Seeded generator (a zero seed is remapped).
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15 | 1)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Bytes and expected f32 values of one tensor, from `seed` and its name.
pub fn tensor_data(t: &TensorSpec, seed: u64) -> (Vec<u8>, Option<Vec<f32>>) {
    let mut rng = Rng::new(seed.wrapping_mul(0x1000_0000_01B3) ^ name_hash(&t.name));
    let n = t.numel();
    let mut bytes = Vec::new();
    let mut values = Vec::with_capacity(n);
    macro_rules! ints {
        ($ty:ty, $range:expr) => {
            for _ in 0..n {
                let v = (rng.next_u64() % $range) as i128 - ($range as i128 / 2);
                let v = v as $ty;
                bytes.extend_from_slice(&v.to_le_bytes());
                values.push(v as f32);
            }
        };
    }
    match t.dtype {
        Dtype::F64 => {
            for _ in 0..n {
                let v = rng.unit() * 4.0;
                bytes.extend_from_slice(&v.to_le_bytes());
                values.push(v as f32);
            }
        }
        Dtype::F32 => {
            for _ in 0..n {
                let v = rng.unit() as f32;
                bytes.extend_from_slice(&v.to_le_bytes());
                values.push(v);
            }
        }
        Dtype::F16 => {
            for _ in 0..n {
                let v = f16::from_f64(rng.unit() * 8.0);
                bytes.extend_from_slice(&v.to_le_bytes());
                values.push(v.to_f32());
            }
        }
        Dtype::BF16 => {
            for _ in 0..n {
                let v = bf16::from_f64(rng.unit() * 8.0);
                bytes.extend_from_slice(&v.to_le_bytes());
                values.push(v.to_f32());
            }
        }
        Dtype::I8 => ints!(i8, 256u64),
        Dtype::I16 => ints!(i16, 65_536u64),
        Dtype::I32 => ints!(i32, 1u64 << 32),
        Dtype::I64 => ints!(i64, 1u64 << 40),
        Dtype::U8 => {
            for _ in 0..n {
                let v = rng.next_u64() as u8;
                bytes.push(v);
                values.push(v as f32);
            }
        }
        Dtype::U16 => {
            for _ in 0..n {
                let v = rng.next_u64() as u16;
                bytes.extend_from_slice(&v.to_le_bytes());
                values.push(v as f32);
            }
        }
        Dtype::U32 => {
            for _ in 0..n {
                let v = rng.next_u64() as u32;
                bytes.extend_from_slice(&v.to_le_bytes());
                values.push(v as f32);
            }
        }
        Dtype::U64 => {
            for _ in 0..n {
                let v = rng.next_u64() >> 20;
                bytes.extend_from_slice(&v.to_le_bytes());
                values.push(v as f32);
            }
        }
        Dtype::BOOL => {
            for _ in 0..n {
                bytes.push((rng.next_u64() & 1) as u8);
            }
            return (bytes, None);
        }
        other => panic!("fixtures do not write {other:?}"),
    }
    // Index buffers are written but skipped by the reader.
    let skipped = t.name.ends_with("position_ids");
    (bytes, (!skipped).then_some(values))
}

/// Write `tensors` to `path` with `safetensors::serialize_to_file`; returns what was written.
pub fn write_model(path: &Path, tensors: &[TensorSpec], seed: u64) -> Vec<Written> {
    write_model_with(path, tensors, seed, None)
}

/// [`write_model`] with a `__metadata__` map.
pub fn write_model_with(
    path: &Path,
    tensors: &[TensorSpec],
    seed: u64,
    metadata: Option<HashMap<String, String>>,
) -> Vec<Written> {
    let file = path.file_name().unwrap().to_string_lossy().into_owned();
    let written: Vec<Written> = tensors
        .iter()
        .map(|t| {
            let (bytes, values) = tensor_data(t, seed);
            Written {
                spec: t.clone(),
                bytes,
                values,
                file: file.clone(),
            }
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = written
        .iter()
        .map(|w| {
            let view = TensorView::new(w.spec.dtype, w.spec.shape.clone(), &w.bytes)
                .expect("consistent tensor view");
            (w.spec.name.clone(), view)
        })
        .collect();
    safetensors::serialize_to_file(views, metadata, path).expect("serialize safetensors");
    written
}

/// One tensor of every dtype the reader streams, plus a BOOL mask and I64 `position_ids`, which
/// it lists as skipped.
pub fn every_dtype() -> Vec<TensorSpec> {
    vec![
        spec("f64.weight", Dtype::F64, &[3, 5]),
        spec("f32.weight", Dtype::F32, &[7, 3]),
        spec("f16.weight", Dtype::F16, &[4, 9]),
        spec("bf16.weight", Dtype::BF16, &[2, 2, 5]),
        spec("i8.weight", Dtype::I8, &[33]),
        spec("u8.weight", Dtype::U8, &[17]),
        spec("i16.weight", Dtype::I16, &[6, 2]),
        spec("u16.weight", Dtype::U16, &[5]),
        spec("i32.weight", Dtype::I32, &[11]),
        spec("u32.weight", Dtype::U32, &[3]),
        spec("i64.weight", Dtype::I64, &[2, 3]),
        spec("u64.weight", Dtype::U64, &[4]),
        spec("scalar.weight", Dtype::F32, &[]),
        spec("mask", Dtype::BOOL, &[2, 8]),
        spec("embeddings.position_ids", Dtype::I64, &[1, 16]),
    ]
}

/// Write a `config.json` with `model_type` and `architectures`.
pub fn write_config(dir: &Path, model_type: &str, architecture: &str) {
    let config = serde_json::json!({ "model_type": model_type, "architectures": [architecture] });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
}

/// Shard file name `model-0000i-of-0000N.safetensors` (1-based).
pub fn shard_name(i: usize, n: usize) -> String {
    format!("model-{i:05}-of-{n:05}.safetensors")
}

/// Split `tensors` in order into `shards` contiguous groups, write each group as
/// `model-0000i-of-0000N.safetensors`, an index with the `weight_map`, and a `config.json`.
pub fn write_sharded(dir: &Path, tensors: &[TensorSpec], shards: usize, seed: u64) -> Vec<Written> {
    assert!(shards >= 1 && shards <= tensors.len());
    std::fs::create_dir_all(dir).unwrap();
    let mut written = Vec::new();
    let mut weight_map = BTreeMap::new();
    let per = tensors.len().div_ceil(shards);
    for (i, group) in tensors.chunks(per).enumerate() {
        let name = shard_name(i + 1, shards);
        for t in group {
            weight_map.insert(t.name.clone(), name.clone());
        }
        written.extend(write_model(&dir.join(&name), group, seed));
    }
    let total_size: usize = written.iter().map(|w| w.bytes.len()).sum();
    let index = serde_json::json!({
        "metadata": { "total_size": total_size },
        "weight_map": weight_map,
    });
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        serde_json::to_string_pretty(&index).unwrap(),
    )
    .unwrap();
    write_config(dir, "test", "TestModel");
    written
}

/// Model dimensions, scaled down from the real ones to keep tests fast. Layer counts and names
/// stay real.
#[derive(Debug, Clone, Copy)]
pub struct Dims {
    /// Hidden size (768 or 1024 in the real models).
    pub hidden: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// Maximum positions.
    pub positions: usize,
}

impl Default for Dims {
    fn default() -> Self {
        Dims {
            hidden: 8,
            vocab: 40,
            positions: 16,
        }
    }
}

/// The repos the user guide names.
pub const GUIDE_REPOS: &[&str] = &[
    "distilbert-base-uncased",
    "bert-base-uncased",
    "bert-large-uncased",
    "roberta-base",
    "gpt2",
    "distilgpt2",
    "microsoft/DialoGPT-medium",
];

/// Model sizes for the guide's commands: big enough that every guide limit (up to 100,000) is a
/// real sample of a larger model.
pub const GUIDE_DIMS: Dims = Dims {
    hidden: 32,
    vocab: 1000,
    positions: 64,
};

/// Every encode command of the user guide (README Quick start and `streaming_guide.md`), as
/// typed there after the script name, each run alone in a fresh directory.
pub const GUIDE_COMMANDS: &[&str] = &[
    "--model distilbert-base-uncased --stream --max-params 50000 --chunk-size 5000",
    "--model bert-large-uncased --stream --max-params 100000 --chunk-size 10000",
    "--model bert-base-uncased --stream --layers attention --max-params 30000",
    "--model gpt2 --stream --layers attention mlp --max-params 40000",
    "--model roberta-base --stream --layers embedding --max-params 20000",
    "--model bert-base-uncased --stream --layers mlp --max-params 30000",
    "--model distilbert-base-uncased --stream --chunk-encoding --chunk-size 8000 --max-params 40000",
    "--model distilbert-base-uncased --stream --max-params 40000 --chunk-size 8000",
    "--model bert-large-uncased --stream --max-params 75000 --chunk-size 7500",
    "--model bert-large-uncased --stream --layers attention --max-params 50000 --chunk-size 10000",
    "--model gpt2 --stream --max-params 40000 --chunk-size 8000",
    "--model distilgpt2 --stream --max-params 40000 --chunk-size 8000",
    "--model microsoft/DialoGPT-medium --stream --max-params 40000 --chunk-size 8000",
    "--model roberta-base --stream --max-params 40000 --chunk-size 8000",
    "--models bert-base-uncased gpt2 --max-params 40000",
    "--model gpt2 --stream --chunk-encoding --chunk-size 5000 --max-params 20000",
];

/// The models of a guide command and the selection it asks for (the flags the guide uses).
pub fn guide_selection(args: &str) -> (Vec<String>, Selection) {
    let mut models = Vec::new();
    let mut layers = Vec::new();
    let mut selection = Selection::default();
    let mut flag = "";
    for word in args.split_whitespace() {
        if word.starts_with("--") {
            flag = word;
            continue;
        }
        match flag {
            "--model" | "--models" => models.push(word.to_string()),
            "--layers" => layers.push(word.to_string()),
            "--max-params" => selection.max_params = Some(word.parse().unwrap()),
            _ => {}
        }
    }
    selection.roles = parse_roles(&layers).unwrap();
    (models, selection)
}

/// Serve every guide repo at [`GUIDE_DIMS`] from files under `dir`.
pub fn serve_guide_repos(server: &HubServer, dir: &Path) {
    for (i, repo) in GUIDE_REPOS.iter().enumerate() {
        serve_arch(server, dir, repo, GUIDE_DIMS, 100 + i as u64);
    }
}

/// Real layer count, `model_type` and architecture of a guide repo.
pub fn arch_of(repo: &str) -> (usize, &'static str, &'static str) {
    match repo {
        "distilbert-base-uncased" => (6, "distilbert", "DistilBertForMaskedLM"),
        "bert-base-uncased" => (12, "bert", "BertForMaskedLM"),
        "bert-large-uncased" => (24, "bert", "BertForMaskedLM"),
        "roberta-base" => (12, "roberta", "RobertaForMaskedLM"),
        "gpt2" => (12, "gpt2", "GPT2LMHeadModel"),
        "distilgpt2" => (6, "gpt2", "GPT2LMHeadModel"),
        "microsoft/DialoGPT-medium" => (24, "gpt2", "GPT2LMHeadModel"),
        other => panic!("no architecture for {other}"),
    }
}

fn f32s(out: &mut Vec<TensorSpec>, name: String, shape: &[usize]) {
    out.push(TensorSpec {
        name,
        dtype: Dtype::F32,
        shape: shape.to_vec(),
    });
}

fn linear(out: &mut Vec<TensorSpec>, prefix: &str, outputs: usize, inputs: usize) {
    f32s(out, format!("{prefix}.weight"), &[outputs, inputs]);
    f32s(out, format!("{prefix}.bias"), &[outputs]);
}

fn norm(out: &mut Vec<TensorSpec>, prefix: &str, h: usize) {
    f32s(out, format!("{prefix}.weight"), &[h]);
    f32s(out, format!("{prefix}.bias"), &[h]);
}

/// BERT-style encoder (`bert.`/`roberta.` prefix): embeddings, N layers, pooler.
fn bert_like(out: &mut Vec<TensorSpec>, p: &str, layers: usize, d: Dims) {
    let (h, i) = (d.hidden, 4 * d.hidden);
    f32s(
        out,
        format!("{p}.embeddings.word_embeddings.weight"),
        &[d.vocab, h],
    );
    f32s(
        out,
        format!("{p}.embeddings.position_embeddings.weight"),
        &[d.positions, h],
    );
    f32s(
        out,
        format!("{p}.embeddings.token_type_embeddings.weight"),
        &[2, h],
    );
    norm(out, &format!("{p}.embeddings.LayerNorm"), h);
    for n in 0..layers {
        let l = format!("{p}.encoder.layer.{n}");
        linear(out, &format!("{l}.attention.self.query"), h, h);
        linear(out, &format!("{l}.attention.self.key"), h, h);
        linear(out, &format!("{l}.attention.self.value"), h, h);
        linear(out, &format!("{l}.attention.output.dense"), h, h);
        norm(out, &format!("{l}.attention.output.LayerNorm"), h);
        linear(out, &format!("{l}.intermediate.dense"), i, h);
        linear(out, &format!("{l}.output.dense"), h, i);
        norm(out, &format!("{l}.output.LayerNorm"), h);
    }
    linear(out, &format!("{p}.pooler.dense"), h, h);
}

/// The tensor list of a guide repo with real names and layer counts and `dims` sizes.
pub fn arch_tensors(repo: &str, d: Dims) -> Vec<TensorSpec> {
    let (layers, model_type, _) = arch_of(repo);
    let (h, i) = (d.hidden, 4 * d.hidden);
    let mut out = Vec::new();
    match model_type {
        "bert" => {
            bert_like(&mut out, "bert", layers, d);
            f32s(&mut out, "cls.predictions.bias".into(), &[d.vocab]);
            linear(&mut out, "cls.predictions.transform.dense", h, h);
            norm(&mut out, "cls.predictions.transform.LayerNorm", h);
        }
        "roberta" => {
            bert_like(&mut out, "roberta", layers, d);
            f32s(&mut out, "lm_head.bias".into(), &[d.vocab]);
            linear(&mut out, "lm_head.dense", h, h);
            norm(&mut out, "lm_head.layer_norm", h);
        }
        "distilbert" => {
            let e = "distilbert.embeddings";
            f32s(
                &mut out,
                format!("{e}.word_embeddings.weight"),
                &[d.vocab, h],
            );
            f32s(
                &mut out,
                format!("{e}.position_embeddings.weight"),
                &[d.positions, h],
            );
            norm(&mut out, &format!("{e}.LayerNorm"), h);
            for n in 0..layers {
                let l = format!("distilbert.transformer.layer.{n}");
                for lin in ["q_lin", "k_lin", "v_lin", "out_lin"] {
                    linear(&mut out, &format!("{l}.attention.{lin}"), h, h);
                }
                norm(&mut out, &format!("{l}.sa_layer_norm"), h);
                linear(&mut out, &format!("{l}.ffn.lin1"), i, h);
                linear(&mut out, &format!("{l}.ffn.lin2"), h, i);
                norm(&mut out, &format!("{l}.output_layer_norm"), h);
            }
            linear(&mut out, "vocab_transform", h, h);
            norm(&mut out, "vocab_layer_norm", h);
            f32s(&mut out, "vocab_projector.bias".into(), &[d.vocab]);
        }
        "gpt2" => {
            f32s(&mut out, "wte.weight".into(), &[d.vocab, h]);
            f32s(&mut out, "wpe.weight".into(), &[d.positions, h]);
            for n in 0..layers {
                let l = format!("h.{n}");
                norm(&mut out, &format!("{l}.ln_1"), h);
                // The causal mask buffer GPT-2 checkpoints carry; the reader skips it.
                f32s(
                    &mut out,
                    format!("{l}.attn.bias"),
                    &[1, 1, d.positions, d.positions],
                );
                // Conv1D layout: [in, out].
                f32s(&mut out, format!("{l}.attn.c_attn.weight"), &[h, 3 * h]);
                f32s(&mut out, format!("{l}.attn.c_attn.bias"), &[3 * h]);
                f32s(&mut out, format!("{l}.attn.c_proj.weight"), &[h, h]);
                f32s(&mut out, format!("{l}.attn.c_proj.bias"), &[h]);
                norm(&mut out, &format!("{l}.ln_2"), h);
                f32s(&mut out, format!("{l}.mlp.c_fc.weight"), &[h, i]);
                f32s(&mut out, format!("{l}.mlp.c_fc.bias"), &[i]);
                f32s(&mut out, format!("{l}.mlp.c_proj.weight"), &[i, h]);
                f32s(&mut out, format!("{l}.mlp.c_proj.bias"), &[h]);
            }
            norm(&mut out, "ln_f", h);
        }
        _ => unreachable!(),
    }
    out
}

/// Write a guide repo as a local model directory (`model.safetensors` + `config.json`).
pub fn write_arch(dir: &Path, repo: &str, d: Dims, seed: u64) -> Vec<Written> {
    std::fs::create_dir_all(dir).unwrap();
    let (_, model_type, architecture) = arch_of(repo);
    write_config(dir, model_type, architecture);
    write_model(&dir.join("model.safetensors"), &arch_tensors(repo, d), seed)
}

/// Write a guide repo under `dir` and register it on `server` as `repo` (the safetensors file
/// as a large, redirected file). Returns the local directory and what was written.
pub fn serve_arch(
    server: &HubServer,
    dir: &Path,
    repo: &str,
    d: Dims,
    seed: u64,
) -> (PathBuf, Vec<Written>) {
    let local = dir.join(repo.replace('/', "__"));
    let written = write_arch(&local, repo, d, seed);
    let config = std::fs::read(local.join("config.json")).unwrap();
    server.add_repo(
        repo,
        Repo::new(repo)
            .small("config.json", config)
            .small("README.md", "# test repo\n")
            .disk("model.safetensors", local.join("model.safetensors"), true),
    );
    (local, written)
}

// ---------------------------------------------------------------------------------------------
// Malformed files (hand-built bytes).

/// Write `8-byte length ++ header ++ data`, with `claimed_len` overriding the length field.
pub fn write_raw(path: &Path, claimed_len: Option<u64>, header: &str, data: &[u8]) -> PathBuf {
    let mut bytes = claimed_len
        .unwrap_or(header.len() as u64)
        .to_le_bytes()
        .to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).unwrap();
    path.to_path_buf()
}

/// A broken file and what its error must say.
pub struct Malformed {
    /// Case name, also the file stem.
    pub case: &'static str,
    /// The file.
    pub path: PathBuf,
    /// The tensor the error must name, when one is at fault.
    pub tensor: Option<&'static str>,
    /// Words the message must contain.
    pub words: &'static [&'static str],
}

/// Every malformed-file case, written into `dir`.
pub fn malformed_files(dir: &Path) -> Vec<Malformed> {
    let f = |case: &str| dir.join(format!("{case}.safetensors"));
    let mut out = Vec::new();

    // A good file cut short inside its data.
    let good = f("truncated");
    write_model(&good, &[spec("a.weight", Dtype::F32, &[64])], 1);
    let len = std::fs::metadata(&good).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&good).unwrap();
    file.set_len(len - 10).unwrap();
    out.push(Malformed {
        case: "truncated",
        path: good,
        tensor: None,
        words: &["truncated"],
    });

    out.push(Malformed {
        case: "header_longer_than_file",
        path: write_raw(&f("header_longer_than_file"), Some(4096), "{}", &[]),
        tensor: None,
        words: &["header length 4096", "larger than the file"],
    });
    out.push(Malformed {
        case: "header_over_100mb",
        path: write_raw(&f("header_over_100mb"), Some(200_000_000), "{}", &[]),
        tensor: None,
        words: &["200000000", "exceeds", "limit"],
    });
    out.push(Malformed {
        case: "invalid_json",
        path: write_raw(&f("invalid_json"), None, "{\"a\": {\"dtype\": ", &[]),
        tensor: None,
        words: &["not valid JSON"],
    });
    out.push(Malformed {
        case: "offsets_out_of_range",
        path: write_raw(
            &f("offsets_out_of_range"),
            None,
            r#"{"big.weight":{"dtype":"F32","shape":[64],"data_offsets":[0,256]}}"#,
            &[0u8; 16],
        ),
        tensor: Some("big.weight"),
        words: &["offsets out of range", "has"],
    });
    out.push(Malformed {
        case: "overlapping",
        path: write_raw(
            &f("overlapping"),
            None,
            r#"{"a.weight":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b.weight":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#,
            &[0u8; 24],
        ),
        tensor: Some("b.weight"),
        words: &["overlap"],
    });
    out.push(Malformed {
        case: "gap",
        path: write_raw(
            &f("gap"),
            None,
            r#"{"a.weight":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b.weight":{"dtype":"F32","shape":[4],"data_offsets":[20,36]}}"#,
            &[0u8; 36],
        ),
        tensor: Some("b.weight"),
        words: &["gap", "cover the data"],
    });
    out.push(Malformed {
        case: "trailing_bytes",
        path: write_raw(
            &f("trailing_bytes"),
            None,
            r#"{"a.weight":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
            &[0u8; 20],
        ),
        tensor: None,
        words: &["do not cover the data", "4 bytes"],
    });
    out.push(Malformed {
        case: "shape_mismatch",
        path: write_raw(
            &f("shape_mismatch"),
            None,
            r#"{"a.weight":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}"#,
            &[0u8; 16],
        ),
        tensor: Some("a.weight"),
        words: &["12 bytes", "span 16"],
    });
    out.push(Malformed {
        case: "unknown_dtype",
        path: write_raw(
            &f("unknown_dtype"),
            None,
            r#"{"a.weight":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}}"#,
            &[0u8; 16],
        ),
        tensor: Some("a.weight"),
        words: &["F128", "unknown variant"],
    });
    out
}
