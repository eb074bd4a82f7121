//! Writes a synthetic model for benchmarks: `model.safetensors` and `config.json` in a
//! directory, with deterministic values at realistic per-tensor scales (norm weights near 1,
//! projections with std ≈ 1/√fan-in). Never committed: the benchmark generates it.
//!
//! - `--arch llama` (default): TinyLlama-1.1B's names and shapes (22 layers, hidden 2048,
//!   grouped key/value heads, vocabulary 32,000), F16 by default: 1.1 B parameters, 2.2 GB.
//! - `--arch mpnet`: all-mpnet-base-v2's names and shapes (12 layers, hidden 768), F32 by
//!   default: 109 M parameters, 438 MB.
//!
//! ```text
//! cargo run --release --example synth_model -- OUT_DIR [--arch llama|mpnet] [--dtype f16|bf16|f32] [--layers N]
//! ```
//!
//! Values are streamed to the file a tensor at a time, so generating 2.2 GB takes little memory.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

const HIDDEN: usize = 2048;
const INTERMEDIATE: usize = 5632;
const KV: usize = 256;
const VOCAB: usize = 32_000;

#[derive(Clone, Copy)]
enum Dtype {
    F16,
    Bf16,
    F32,
}

impl Dtype {
    fn name(self) -> &'static str {
        match self {
            Dtype::F16 => "F16",
            Dtype::Bf16 => "BF16",
            Dtype::F32 => "F32",
        }
    }
    fn bytes(self) -> usize {
        match self {
            Dtype::F32 => 4,
            _ => 2,
        }
    }
}

/// One tensor: name, shape, centre and spread of its values.
struct Spec {
    name: String,
    shape: Vec<usize>,
    center: f32,
    std: f32,
}

fn mpnet_tensors(layers: usize) -> Vec<Spec> {
    let (h, i) = (768usize, 3072usize);
    let t = |name: String, shape: Vec<usize>, center: f32, std: f32| Spec {
        name,
        shape,
        center,
        std,
    };
    let linear = |name: String, out: usize, inp: usize| {
        t(name, vec![out, inp], 0.0, 1.0 / (inp as f32).sqrt())
    };
    let bias = |name: String, n: usize| t(name, vec![n], 0.0, 0.02);
    let norm = |name: String| t(name, vec![h], 1.0, 0.05);
    let mut out = vec![
        t(
            "embeddings.word_embeddings.weight".into(),
            vec![30527, h],
            0.0,
            0.05,
        ),
        t(
            "embeddings.position_embeddings.weight".into(),
            vec![514, h],
            0.0,
            0.05,
        ),
        norm("embeddings.LayerNorm.weight".into()),
        bias("embeddings.LayerNorm.bias".into(), h),
        t(
            "encoder.relative_attention_bias.weight".into(),
            vec![32, 12],
            0.0,
            0.5,
        ),
    ];
    for n in 0..layers {
        let l = format!("encoder.layer.{n}");
        for p in ["q", "k", "v", "o"] {
            out.push(linear(format!("{l}.attention.attn.{p}.weight"), h, h));
            out.push(bias(format!("{l}.attention.attn.{p}.bias"), h));
        }
        out.push(norm(format!("{l}.attention.LayerNorm.weight")));
        out.push(bias(format!("{l}.attention.LayerNorm.bias"), h));
        out.push(linear(format!("{l}.intermediate.dense.weight"), i, h));
        out.push(bias(format!("{l}.intermediate.dense.bias"), i));
        out.push(linear(format!("{l}.output.dense.weight"), h, i));
        out.push(bias(format!("{l}.output.dense.bias"), h));
        out.push(norm(format!("{l}.output.LayerNorm.weight")));
        out.push(bias(format!("{l}.output.LayerNorm.bias"), h));
    }
    out.push(linear("pooler.dense.weight".into(), h, h));
    out.push(bias("pooler.dense.bias".into(), h));
    out
}

fn llama_tensors(layers: usize) -> Vec<Spec> {
    let linear = |name: String, out: usize, inp: usize| Spec {
        name,
        shape: vec![out, inp],
        center: 0.0,
        std: 1.0 / (inp as f32).sqrt(),
    };
    let norm = |name: String| Spec {
        name,
        shape: vec![HIDDEN],
        center: 1.0,
        std: 0.05,
    };
    let mut out = vec![Spec {
        name: "model.embed_tokens.weight".into(),
        shape: vec![VOCAB, HIDDEN],
        center: 0.0,
        std: 0.02,
    }];
    for i in 0..layers {
        let p = format!("model.layers.{i}");
        out.push(norm(format!("{p}.input_layernorm.weight")));
        out.push(linear(
            format!("{p}.self_attn.q_proj.weight"),
            HIDDEN,
            HIDDEN,
        ));
        out.push(linear(format!("{p}.self_attn.k_proj.weight"), KV, HIDDEN));
        out.push(linear(format!("{p}.self_attn.v_proj.weight"), KV, HIDDEN));
        out.push(linear(
            format!("{p}.self_attn.o_proj.weight"),
            HIDDEN,
            HIDDEN,
        ));
        out.push(norm(format!("{p}.post_attention_layernorm.weight")));
        out.push(linear(
            format!("{p}.mlp.gate_proj.weight"),
            INTERMEDIATE,
            HIDDEN,
        ));
        out.push(linear(
            format!("{p}.mlp.up_proj.weight"),
            INTERMEDIATE,
            HIDDEN,
        ));
        out.push(linear(
            format!("{p}.mlp.down_proj.weight"),
            HIDDEN,
            INTERMEDIATE,
        ));
    }
    out.push(norm("model.norm.weight".into()));
    out.push(linear("lm_head.weight".into(), VOCAB, HIDDEN));
    out
}

/// xorshift64*, seeded from the tensor's name: the same file every time.
struct Rng(u64);

impl Rng {
    fn for_name(name: &str) -> Rng {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for b in name.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x1000_0000_01b3);
        }
        Rng(h | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Approximately standard normal: the sum of four uniforms, rescaled (Irwin–Hall).
    fn normal(&mut self) -> f32 {
        let r = self.next();
        let sum: u32 = (0..4).map(|i| ((r >> (16 * i)) & 0xffff) as u32).sum();
        (sum as f32 / 65535.0 - 2.0) * 1.732_050_8
    }
}

fn encode(dtype: Dtype, v: f32, out: &mut Vec<u8>) {
    match dtype {
        Dtype::F16 => out.extend_from_slice(&half::f16::from_f32(v).to_le_bytes()),
        Dtype::Bf16 => out.extend_from_slice(&half::bf16::from_f32(v).to_le_bytes()),
        Dtype::F32 => out.extend_from_slice(&v.to_le_bytes()),
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut dir: Option<PathBuf> = None;
    let mut dtype = None;
    let mut layers = None;
    let mut mpnet = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--arch" => {
                mpnet = match args.next().as_deref() {
                    Some("llama") => false,
                    Some("mpnet") => true,
                    other => {
                        eprintln!("error: invalid --arch {other:?} (expected llama or mpnet)");
                        std::process::exit(2)
                    }
                }
            }
            "--dtype" => {
                dtype = match args.next().as_deref() {
                    Some("f16") => Some(Dtype::F16),
                    Some("bf16") => Some(Dtype::Bf16),
                    Some("f32") => Some(Dtype::F32),
                    other => {
                        eprintln!("error: invalid --dtype {other:?} (expected f16, bf16 or f32)");
                        std::process::exit(2)
                    }
                }
            }
            "--layers" => {
                layers = match args.next().and_then(|v| v.parse().ok()) {
                    Some(n) if (1..=200).contains(&n) => Some(n),
                    _ => {
                        eprintln!("error: invalid --layers (expected 1..=200)");
                        std::process::exit(2)
                    }
                }
            }
            _ if dir.is_none() => dir = Some(PathBuf::from(a)),
            _ => {
                eprintln!("usage: synth_model OUT_DIR [--arch llama|mpnet] [--dtype f16|bf16|f32] [--layers N]");
                std::process::exit(2)
            }
        }
    }
    let Some(dir) = dir else {
        eprintln!(
            "usage: synth_model OUT_DIR [--arch llama|mpnet] [--dtype f16|bf16|f32] [--layers N]"
        );
        std::process::exit(2)
    };
    std::fs::create_dir_all(&dir)?;
    let dtype = dtype.unwrap_or(if mpnet { Dtype::F32 } else { Dtype::F16 });
    let specs = if mpnet {
        mpnet_tensors(layers.unwrap_or(12))
    } else {
        llama_tensors(layers.unwrap_or(22))
    };
    let layers = layers.unwrap_or(if mpnet { 12 } else { 22 });
    let mut header = serde_json::Map::new();
    header.insert(
        "__metadata__".into(),
        serde_json::json!({"format": "pt", "generator": "weightreel synth_model"}),
    );
    let mut offset = 0usize;
    let mut params = 0usize;
    for s in &specs {
        let n: usize = s.shape.iter().product();
        params += n;
        let len = n * dtype.bytes();
        header.insert(
            s.name.clone(),
            serde_json::json!({"dtype": dtype.name(), "shape": s.shape, "data_offsets": [offset, offset + len]}),
        );
        offset += len;
    }
    let mut json = serde_json::to_vec(&header)?;
    // The data starts 8-byte aligned, padded with spaces as the format allows.
    while !(8 + json.len()).is_multiple_of(8) {
        json.push(b' ');
    }
    let path = dir.join("model.safetensors");
    let tmp = dir.join("model.safetensors.part");
    let mut out = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
    out.write_all(&(json.len() as u64).to_le_bytes())?;
    out.write_all(&json)?;
    let mut buf = Vec::with_capacity(1 << 20);
    for s in &specs {
        let n: usize = s.shape.iter().product();
        let mut rng = Rng::for_name(&s.name);
        let mut left = n;
        while left > 0 {
            let take = left.min(1 << 18);
            buf.clear();
            for _ in 0..take {
                encode(dtype, s.center + s.std * rng.normal(), &mut buf);
            }
            out.write_all(&buf)?;
            left -= take;
        }
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    let config = if mpnet {
        serde_json::json!({
            "model_type": "mpnet",
            "architectures": ["MPNetForMaskedLM"],
            "hidden_size": 768,
            "num_hidden_layers": layers,
        })
    } else {
        serde_json::json!({
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE,
        "num_hidden_layers": layers,
        "num_attention_heads": 32,
        "num_key_value_heads": 4,
        "vocab_size": VOCAB,
        "torch_dtype": match dtype { Dtype::F16 => "float16", Dtype::Bf16 => "bfloat16", Dtype::F32 => "float32" },
        })
    };
    std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&config)?)?;
    println!(
        "{} parameters, {} bytes: {}",
        params,
        offset,
        path.display()
    );
    Ok(())
}
