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
}
