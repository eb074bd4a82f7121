//! Judge search on a family derived from your own base model: writes an F16 copy, two
//! fine-tunes (low-rank plus noise, 4% and 5%), a fine-tune of a fine-tune, a re-initialized
//! model with matching per-tensor statistics, a GPT-2-shaped model and a 3-layer model that
//! copies only the embeddings; encodes them with mixed settings into a fresh store with the
//! `weightreel` binary beside this example; prints the base's ranking under every method and
//! the family tree.
//!
//! ```text
//! cargo build --release && cargo run --release --example family -- BASE.safetensors WORK_DIR
//! ```
//!
//! `BASE.safetensors` holds F32 tensors of a BERT-style model (the 3-layer member keeps
//! `embeddings.*` and layers `layer.0.`–`layer.2.`). `tests/search.rs` asserts on the same
//! family built from all-MiniLM-L6-v2.

#[allow(dead_code)]
#[path = "../tests/support/family.rs"]
mod family;

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, work] = args.as_slice() else {
        eprintln!("usage: family BASE.safetensors WORK_DIR");
        std::process::exit(2)
    };
    let work = PathBuf::from(work);
    let store = work.join("store");
    if store.exists() {
        eprintln!("error: {} exists; give a new WORK_DIR", store.display());
        std::process::exit(2)
    }
    let bin = binary();
    let members = family::derive(Path::new(base), &work.join("models"));
    for m in &members {
        let mut cmd = Command::new(&bin);
        cmd.arg("encode")
            .arg(&m.dir)
            .arg("--store")
            .arg(&store)
            .arg("-q")
            .args(m.encode_args);
        run(&mut cmd, m.name);
        println!("encoded {:<12} {}", m.name, m.encode_args.join(" "));
    }
    let base_dir = &members[0].dir;
    for method in ["hybrid", "exact", "features", "hierarchical"] {
        println!();
        let mut cmd = Command::new(&bin);
        cmd.arg("search")
            .arg(base_dir)
            .arg("--store")
            .arg(&store)
            .arg("--method")
            .arg(method)
            .arg("--top")
            .arg("20");
        print!("{}", run(&mut cmd, method));
    }
    println!();
    let mut cmd = Command::new(&bin);
    cmd.arg("tree").arg("--store").arg(&store);
    print!("{}", run(&mut cmd, "tree"));
}

/// The `weightreel` binary of the same build (`target/<profile>/weightreel`).
fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("weightreel"))
        .expect("target directory");
    if !bin.exists() {
        eprintln!(
            "error: {} not found; run `cargo build --release` first",
            bin.display()
        );
        std::process::exit(1)
    }
    bin
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().expect("run weightreel");
    if !out.status.success() {
        eprintln!("error: {what}: {}", String::from_utf8_lossy(&out.stderr));
        std::process::exit(1)
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}
