//! Streaming benchmark: every tensor of all-MiniLM-L6-v2 to f32 from a warm page cache, on one
//! core. Prints GB/s of source bytes, params/s, and the header-only inspect time. Run with
//! `/usr/bin/time -v cargo bench --bench stream` (or on the built binary) for peak RSS.

use std::hint::black_box;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use weightreel::inspect::Report;
use weightreel::selection::Selection;
use weightreel::source::{Model, OpenOptions, TensorInfo};
use weightreel::stream::{stream, Sink, StreamOptions};

struct Checksum(f64, u64);

impl Sink for Checksum {
    fn values(&mut self, _t: &TensorInfo, _start: u64, values: &[f32]) -> weightreel::Result<bool> {
        // Touch every value so the conversion cannot be optimised away.
        let mut s = 0f32;
        for v in values {
            s += *v;
        }
        self.0 += s as f64;
        self.1 += values.len() as u64;
        Ok(true)
    }
}

fn main() {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch-minilm.sh");
    let out = Command::new("bash")
        .arg(script)
        .output()
        .expect("fetch MiniLM");
    let dir = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let file = dir.join("model.safetensors");
    let options = OpenOptions::default();

    let mut best_inspect = f64::MAX;
    for _ in 0..20 {
        let t = Instant::now();
        let model = Model::open(file.to_str().unwrap(), &options).unwrap();
        black_box(Report::new(&model, &Selection::default()));
        best_inspect = best_inspect.min(t.elapsed().as_secs_f64());
    }

    let model = Model::open(file.to_str().unwrap(), &options).unwrap();
    let plan = Selection::default().plan(&model);
    let bytes = plan.data_bytes(&model);
    let mut best = f64::MAX;
    for _ in 0..7 {
        let mut sink = Checksum(0.0, 0);
        let t = Instant::now();
        let summary = stream(&model, &plan, &mut sink, StreamOptions::default()).unwrap();
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(summary.values, plan.total);
        black_box(sink.0);
        best = best.min(secs);
    }
    println!(
        "model: all-MiniLM-L6-v2, {} params, {} bytes of F32 data",
        plan.total, bytes
    );
    println!(
        "stream all tensors to f32 (best of 7): {:.3} s, {:.2} GB/s, {:.0} M params/s",
        best,
        bytes as f64 / best / 1e9,
        plan.total as f64 / best / 1e6
    );
    println!(
        "inspect (header only, best of 20): {:.3} ms",
        best_inspect * 1e3
    );

    // An all-mpnet-base-v2-shaped file (438 MB, 109 M params) with the real tensor names and
    // shapes; its data region is sparse, since inspect reads headers only.
    let tmp = std::env::temp_dir().join(format!(
        "weightreel-mpnet-{}.safetensors",
        std::process::id()
    ));
    write_sparse_mpnet(&tmp);
    let size = std::fs::metadata(&tmp).unwrap().len();
    let mut best = f64::MAX;
    for _ in 0..20 {
        let t = Instant::now();
        let model = Model::open(tmp.to_str().unwrap(), &options).unwrap();
        black_box(Report::new(&model, &Selection::default()));
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "inspect all-mpnet-base-v2-shaped file ({size} bytes, best of 20): {:.3} ms in-process",
        best * 1e3
    );
    let cli = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/weightreel");
    if cli.exists() {
        let mut best = f64::MAX;
        for _ in 0..10 {
            let t = Instant::now();
            let out = Command::new(&cli)
                .arg("inspect")
                .arg(&tmp)
                .output()
                .unwrap();
            assert!(out.status.success());
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!(
            "weightreel inspect on it, whole process (best of 10): {:.1} ms",
            best * 1e3
        );
    }
    let _ = std::fs::remove_file(&tmp);
}

/// Write the header of an MPNet-base model and extend the file sparsely to its full size.
fn write_sparse_mpnet(path: &std::path::Path) {
    let (h, i, layers) = (768usize, 3072usize, 12);
    let mut tensors: Vec<(String, Vec<usize>)> = vec![
        ("embeddings.word_embeddings.weight".into(), vec![30527, h]),
        ("embeddings.position_embeddings.weight".into(), vec![514, h]),
        ("embeddings.LayerNorm.weight".into(), vec![h]),
        ("embeddings.LayerNorm.bias".into(), vec![h]),
        (
            "encoder.relative_attention_bias.weight".into(),
            vec![32, 12],
        ),
    ];
    for n in 0..layers {
        let l = format!("encoder.layer.{n}");
        for p in ["q", "k", "v", "o"] {
            tensors.push((format!("{l}.attention.attn.{p}.weight"), vec![h, h]));
            tensors.push((format!("{l}.attention.attn.{p}.bias"), vec![h]));
        }
        tensors.push((format!("{l}.attention.LayerNorm.weight"), vec![h]));
        tensors.push((format!("{l}.attention.LayerNorm.bias"), vec![h]));
        tensors.push((format!("{l}.intermediate.dense.weight"), vec![i, h]));
        tensors.push((format!("{l}.intermediate.dense.bias"), vec![i]));
        tensors.push((format!("{l}.output.dense.weight"), vec![h, i]));
        tensors.push((format!("{l}.output.dense.bias"), vec![h]));
        tensors.push((format!("{l}.output.LayerNorm.weight"), vec![h]));
        tensors.push((format!("{l}.output.LayerNorm.bias"), vec![h]));
    }
    tensors.push(("pooler.dense.weight".into(), vec![h, h]));
    tensors.push(("pooler.dense.bias".into(), vec![h]));
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, shape) in &tensors {
        let len = shape.iter().product::<usize>() * 4;
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len]}),
        );
        offset += len;
    }
    let json = serde_json::to_vec(&header).unwrap();
    let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&json);
    std::fs::write(path, &bytes).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.set_len((bytes.len() + offset) as u64).unwrap();
}
